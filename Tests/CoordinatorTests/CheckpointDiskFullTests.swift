@testable import Coordinator
import Foundation
@testable import Shared
import TestSupport
import Testing

/// A checkpoint write that runs out of disk space, with real processes: `cerm coordinator` and
/// one `cerm worker` of this build, the run directory on a tmpfs too small for a third
/// checkpoint. The coordinator must fail with status 2 (cerm's error status), saying what happened, keep the two
/// checkpoints it wrote, and leave no temporary file. Found by scripts/chaos.sh (disk-full):
/// the HDF5 file of the failed write stayed half-closed in the library, whose exit handler
/// then crashed the coordinator with SIGSEGV (status 139) after it had reported the error.
/// Needs root for `mount -t tmpfs`; reported as skipped otherwise.
@Suite(.serialized) struct CheckpointDiskFullTests {
    @Test(.enabled(if: getuid() == 0, "skipped: needs root to mount a tmpfs"))
    func aFullDiskFailsTheRunCleanlyAndKeepsTheEarlierCheckpoints() throws {
        guard let binary = TestCluster.cermBinary else {
            Issue.record("no cerm binary under .build/{debug,release}: run `swift build --build-tests` first")
            return
        }
        let root = NSTemporaryDirectory() + "cerm-disk-full-\(UUID().uuidString)"
        let checkpoints = root + "/Checkpoints"
        try FileManager.default.createDirectory(atPath: checkpoints, withIntermediateDirectories: true)
        // About 146 kB a checkpoint: two fit in 400 kB with the logs, the third does not.
        let mount = try TestCluster.start("/bin/mount", ["-t", "tmpfs", "-o", "size=400k", "tmpfs", checkpoints], log: root + "/mount.log", in: root)
        mount.waitUntilExit()
        guard mount.terminationStatus == 0 else {
            print("CheckpointDiskFullTests: skipped (mount -t tmpfs failed: \((try? String(contentsOfFile: root + "/mount.log", encoding: .utf8)) ?? ""))")
            try? FileManager.default.removeItem(atPath: root)
            return
        }
        var processes: [Process] = []
        defer {
            for process in processes where process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
            let unmount = try? TestCluster.start("/bin/umount", [checkpoints], log: root + "/umount.log", in: root)
            unmount?.waitUntilExit()
            try? FileManager.default.removeItem(atPath: root)
        }
        let config = try TestCluster.writeRun(directory: root, port: try TestCluster.freePort(), steps: 6)
        let endpoint = try String(contentsOfFile: config, encoding: .utf8).split(separator: "\n")
            .first { $0.hasPrefix("endpoint") }.map { String($0.split(separator: "\"")[1]) } ?? ""
        let coordinator = try TestCluster.start(binary, ["coordinator", "--config", config], log: root + "/coordinator.log", in: root)
        processes.append(coordinator)
        processes.append(try TestCluster.start(binary, ["worker", "--connect", endpoint, "--config", config, "--threads", "1", "--name", "w0"],
                                      log: root + "/worker.log", in: root))
        let ended = TestCluster.waitUntil(timeout: 120) { !coordinator.isRunning }
        let log = (try? String(contentsOfFile: root + "/coordinator.log", encoding: .utf8)) ?? ""
        #expect(ended, "the coordinator did not end within 120 s on a full disk:\n\(log)")
        guard ended else { return }
        #expect(coordinator.terminationReason == .exit && coordinator.terminationStatus == 2,
                "coordinator ended by \(coordinator.terminationReason == .exit ? "exit" : "signal") \(coordinator.terminationStatus), not exit 2:\n\(log)")
        #expect(log.contains("checkpoint write failed, previous checkpoints kept"), "no 'checkpoint write failed' line:\n\(log)")
        #expect(log.contains("No space left on device"), "the error does not say the disk is full:\n\(log)")

        let run = checkpoints + "/chaos"
        let files = (try? FileManager.default.contentsOfDirectory(atPath: run)) ?? []
        #expect(!files.contains { $0.hasSuffix(".tmp") }, "a temporary file was left: \(files)")
        #expect(files.contains("step_1.h5") && files.contains("step_2.h5"), "the checkpoints before the full disk: \(files.sorted())")
        #expect(!files.contains("step_6.h5"), "the run finished: the tmpfs was not too small, the test proved nothing")
        for name in files.filter({ $0.hasPrefix("step_") }) {
            #expect(throws: Never.self, "\(name) does not load after the failed write") { _ = try CheckpointReader.load(path: run + "/" + name) }
        }
    }
}
