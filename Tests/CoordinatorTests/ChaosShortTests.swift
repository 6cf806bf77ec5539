@testable import Coordinator
import Foundation
@testable import Shared
import TestSupport
import Testing

/// The short case of the chaos suite (`scripts/chaos.sh --short`; `make chaos` runs the long
/// ones): an undisturbed run, then the same run of real `cerm coordinator` and `cerm worker`
/// processes of this build while two workers and then the coordinator are killed with SIGKILL
/// (the script restarts the workers, and the coordinator with `--resume`). The script compares
/// the final checkpoints, metrics and trained pairs itself; this test also reads both final
/// checkpoints and compares every tensor, the AdamW moments and the training state bit for
/// bit, so it fails when the weights differ even if the script's comparison were wrong.
@Suite(.serialized) struct ChaosShortTests {
    static var script: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/chaos.sh").path
    }

    @Test func twoWorkerKillsAndACoordinatorKillEndWithTheUndisturbedWeights() throws {
        guard let binary = TestCluster.cermBinary else {
            Issue.record("no cerm binary under .build/{debug,release}: run `swift build --build-tests` first")
            return
        }
        let root = NSTemporaryDirectory() + "cerm-chaos-short-\(UUID().uuidString)"
        let keep = ProcessInfo.processInfo.environment["CERM_KEEP_CHAOS"] != nil
        defer {
            if keep { print("chaos run directories kept in \(root)") } else { try? FileManager.default.removeItem(atPath: root) }
        }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let outputPath = root + "/chaos.out"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [Self.script, "--short"]
        var environment = ProcessInfo.processInfo.environment
        environment["CERM_BIN"] = binary
        environment["CHAOS_DIR"] = root + "/runs"
        environment["CHAOS_SEED"] = environment["CHAOS_SEED"] ?? "27"
        process.environment = environment
        process.standardOutput = output
        process.standardError = output
        try process.run()
        process.waitUntilExit()
        try output.close()
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        #expect(process.terminationStatus == 0, "scripts/chaos.sh --short failed:\n\(text)")
        #expect(text.contains("chaos: PASS"), "no PASS line:\n\(text)")

        // The faults did happen: 2 worker kills and 1 coordinator kill, else the run proved nothing.
        let row = text.split(separator: "\n").first { $0.hasPrefix("| short |") }
        let cells = row.map { $0.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) } } ?? []
        #expect(cells.count >= 4 && cells[1] == "2" && cells[2] == "1",
                "expected 2 worker kills and 1 coordinator kill in the summary row, got \(row.map(String.init) ?? "no row"):\n\(text)")

        // Independently of the script: both final checkpoints, every value.
        let final = "/Checkpoints/chaos/step_8.h5"
        let expected = try CheckpointReader.load(path: root + "/runs/undisturbed" + final)
        let actual = try CheckpointReader.load(path: root + "/runs/short" + final)
        #expect(actual.step == expected.step && actual.policyVersion == expected.policyVersion && actual.adamStep == expected.adamStep)
        #expect(actual.dataCursor == expected.dataCursor, "data cursor")
        #expect(actual.rngState == expected.rngState, "rng state")
        for (group, a, b) in [("model", expected.tensors, actual.tensors), ("optim/m", expected.adamM, actual.adamM), ("optim/v", expected.adamV, actual.adamV)] {
            #expect(a.map(\.name) == b.map(\.name), "\(group) tensor names")
            #expect(!a.isEmpty, "\(group) holds no tensor")
            for (x, y) in zip(a, b) {
                #expect(x.shape == y.shape && LearnerFixture.bitsEqual(x.values, y.values), "\(group)/\(x.name) differs from the undisturbed run's")
            }
        }
        #expect(expected.tensors.contains { $0.name.hasPrefix(GRPOLearner.referencePrefix) }, "no reference tensors in the checkpoint")
    }
}
