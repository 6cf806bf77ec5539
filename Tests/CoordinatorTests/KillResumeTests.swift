@testable import Coordinator
import Foundation
@testable import Shared
import TestSupport
import Testing

/// `cerm launch` as real processes: the coordinator is killed with SIGKILL after a checkpoint,
/// then `cerm launch --resume` finishes the run, which must end with the same policy, bit for
/// bit, as an uninterrupted run. Uses the `cerm` binary of this build (`swift build
/// --build-tests` builds it next to the test bundle).
///
/// What the workers do (observed with `cerm launch` and with standalone `cerm worker`s): after a
/// SIGKILL of the coordinator alone they hit the heartbeat timeout and reconnect with growing
/// backoff; a standalone worker rejoins a coordinator restarted with `--resume` and carries on,
/// while under `cerm launch` the launcher, seeing its coordinator gone, sends them SIGTERM after
/// its grace period. When the launcher is killed too, the parent-death signal (SIGTERM) stops
/// them at once: they exit 0 and no orphan remains, which this test checks.
@Suite(.serialized) struct KillResumeTests {
    static func policyTensors(_ path: String) throws -> [NamedTensor] {
        try CheckpointReader.load(path: path).tensors.filter { !$0.name.hasPrefix(GRPOLearner.referencePrefix) }
    }

    @Test func killNineThenResumeEndsWithTheUninterruptedPolicy() throws {
        guard let binary = TestCluster.cermBinary else {
            Issue.record("no cerm binary under .build/{debug,release}: run `swift build --build-tests` first")
            return
        }
        let steps = 6
        let root = NSTemporaryDirectory() + "cerm-chaos-\(UUID().uuidString)"
        let dirA = root + "/a", dirB = root + "/b"
        for directory in [dirA, dirB] { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        defer {
            if ProcessInfo.processInfo.environment["CERM_KEEP_CHAOS"] == nil {
                try? FileManager.default.removeItem(atPath: root)
            } else {
                print("kill-resume run directories kept in \(root)")
            }
        }

        // Run A, uninterrupted.
        let configA = try TestCluster.writeRun(directory: dirA, port: try TestCluster.freePort(), steps: steps)
        let runA = try TestCluster.launch(binary, config: configA, log: dirA + "/launch.log")
        runA.waitUntilExit()
        #expect(runA.terminationStatus == 0, "run A: \((try? String(contentsOfFile: dirA + "/launch.log", encoding: .utf8)) ?? "")")

        // Run B: SIGKILL the coordinator (then the launcher) once step 2 is saved.
        let configB = try TestCluster.writeRun(directory: dirB, port: try TestCluster.freePort(), steps: steps)
        let runDirectoryB = dirB + "/Checkpoints/chaos"
        let runB = try TestCluster.launch(binary, config: configB, log: dirB + "/launch1.log")
        let launcher = runB.processIdentifier
        var coordinator: Int32?, workers: [Int32] = []
        #expect(TestCluster.waitUntil(timeout: 30) {
            let kids = TestCluster.children(of: launcher)
            coordinator = kids.first { TestCluster.commandLine($0).dropFirst().first == "coordinator" }
            workers = kids.filter { TestCluster.commandLine($0).dropFirst().first == "worker" }
            return coordinator != nil && workers.count == 2
        })
        let saved = TestCluster.waitUntil(timeout: 60) { FileManager.default.fileExists(atPath: runDirectoryB + "/step_2.h5") }
        #expect(saved)
        guard let coordinator, saved else {
            kill(launcher, SIGKILL)
            return
        }
        kill(coordinator, SIGKILL)
        kill(launcher, SIGKILL)
        runB.waitUntilExit()
        // No orphans: the workers get SIGTERM when the launcher dies (parent-death signal).
        #expect(TestCluster.waitUntil(timeout: 15) { !workers.contains(where: TestCluster.isAlive) }, "workers \(workers) outlived their launcher")
        let finalPath = runDirectoryB + "/step_\(steps).h5"
        let killedBeforeEnd = !FileManager.default.fileExists(atPath: finalPath)
        #expect(killedBeforeEnd, "the run finished before the kill; the test proved nothing")

        let resumed = try TestCluster.launch(binary, config: configB, extra: ["--resume"], log: dirB + "/launch2.log")
        resumed.waitUntilExit()
        #expect(resumed.terminationStatus == 0, "resumed run: \((try? String(contentsOfFile: dirB + "/launch2.log", encoding: .utf8)) ?? "")")

        let expected = try Self.policyTensors(dirA + "/Checkpoints/chaos/step_\(steps).h5")
        let actual = try Self.policyTensors(finalPath)
        #expect(expected.map(\.name) == actual.map(\.name))
        #expect(!expected.isEmpty)
        for (a, b) in zip(expected, actual) {
            #expect(LearnerFixture.bitsEqual(a.values, b.values), "tensor \(a.name)")
        }
    }
}
