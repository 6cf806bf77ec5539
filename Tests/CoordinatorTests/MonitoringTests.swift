import Foundation
import ModelFormats
import Shared
import Testing
@testable import Coordinator

/// The `metrics.jsonl` keys as documented in docs/MONITORING.md.
private let documentedKeys: Set<String> = [
    "step", "policy_version", "time", "reward_criteria_mean", "reward_evaluation_mean", "pairwise_accuracy",
    "valid_format_rate", "kl", "loss", "clip_fraction", "entropy", "grad_norm", "frac_zero_std",
    "generated_tokens", "tokens_per_second", "trajectories", "time_wait_rollouts_s", "time_update_s",
    "time_weight_distribution_s", "time_checkpoint_s", "time_step_s", "workers_alive",
]

private func sampleMetrics(step: Int) -> StepMetrics {
    StepMetrics(step: step, policyVersion: UInt64(step), time: 1_700_000_000.5, meanCriteriaReward: 0.412,
                meanEvaluationReward: 0.533, pairwiseAccuracy: 0.78125, validFormatRate: 0.97, kl: 0.00123,
                loss: -0.0123, clipFraction: 0.021, entropy: 1.5, gradNorm: 0.75, fracZeroStd: 0.25,
                generatedTokens: 12345, tokensPerSecond: 1234.5, trajectories: 80, waitRolloutsSeconds: 12.3,
                updateSeconds: 4.5, weightDistributionSeconds: 0.8, checkpointSeconds: 0, stepSeconds: 17.6,
                workersAlive: 4)
}

private func lines(of path: String) throws -> [String] {
    try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
}

@Suite("Monitoring")
struct MonitoringTests {
    @Test func metricsLineParsesAndHasEveryDocumentedKey() throws {
        let line = try sampleMetrics(step: 12).jsonLine()
        #expect(!line.contains("\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(Set(object.keys) == documentedKeys)
        #expect(Set(StepMetrics.CodingKeys.allCases.map(\.rawValue)) == documentedKeys)
        #expect(object["step"] as? Int == 12)
        #expect(object["pairwise_accuracy"] as? Double == 0.78125)
        #expect(object["generated_tokens"] as? Int == 12345)
        #expect(try StepMetrics.parse(jsonLine: line) == sampleMetrics(step: 12))
    }

    @Test func nonFiniteNumbersAreWrittenAsStrings() throws {
        var metrics = sampleMetrics(step: 1)
        metrics.kl = .nan
        metrics.gradNorm = .infinity
        let line = try metrics.jsonLine()
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["kl"] as? String == "nan")
        #expect(object["grad_norm"] as? String == "inf")
        let back = try StepMetrics.parse(jsonLine: line)
        #expect(back.kl.isNaN)
        #expect(back.gradNorm == .infinity)
        #expect(metrics.tailLine().contains("kl nan "))
    }

    @Test func tailLineIsFixedWidth() {
        #expect(sampleMetrics(step: 12).tailLine()
            == "step     12 v12     | rew C +0.412 E +0.533 | acc 0.781 fmt 0.970 | kl 1.23e-03 loss -0.0123 clip 0.021 |  1234.5 tok/s | wait   12.3s upd    4.5s dist   0.8s ckpt   0.0s | workers  4")
        var later = sampleMetrics(step: 12_345)
        later.policyVersion = 12_345
        #expect(later.tailLine().count == sampleMetrics(step: 12).tailLine().count)

        // Values too wide for their column lose decimals, then switch to exponent form.
        var extreme = sampleMetrics(step: 12)
        extreme.tokensPerSecond = 1_279_541_417.1
        extreme.waitRolloutsSeconds = 12_345.6
        extreme.updateSeconds = .nan
        extreme.checkpointSeconds = 123_456
        #expect(extreme.tailLine().hasSuffix("| 1.3e+09 tok/s | wait  12346s upd    nans dist   0.8s ckpt 1e+05s | workers  4"))
        #expect(extreme.tailLine().count == sampleMetrics(step: 12).tailLine().count)
        #expect(StepMetrics.column(123_456.7, width: 7, decimals: 1) == " 123457")
        #expect(StepMetrics.column(99_999.9, width: 7, decimals: 1) == "99999.9")
        #expect(StepMetrics.column(-.infinity, width: 7, decimals: 1) == "   -inf")
    }

    @Test func loggerAppendsJSONAndTailLinesAndEvents() throws {
        let dir = try makeTemporaryDirectory("metrics")
        let sink = LogSink()
        defer { sink.detachFile() }
        let logger = try MetricsLogger(runDirectory: dir, sink: sink)
        var unstamped = sampleMetrics(step: 1)
        unstamped.time = 0
        try logger.record(unstamped)
        try logger.record(sampleMetrics(step: 2))
        logger.event(.workerJoined(worker: "w1", alive: 2))
        logger.event(.workerDied(worker: "w2", silentSeconds: 12.5, requeuedTasks: 3, alive: 1))
        logger.event(.tasksRequeued(count: 3, from: "w2"))
        logger.close()
        #expect(throws: CermError.self) { try logger.record(sampleMetrics(step: 3)) }

        let jsonLines = try lines(of: logger.metricsPath)
        #expect(jsonLines.count == 2)
        let parsed = try jsonLines.map(StepMetrics.parse(jsonLine:))
        #expect(parsed.map(\.step) == [1, 2])
        #expect(parsed[0].time > 1_700_000_000)  // stamped by the logger
        #expect(parsed[1] == sampleMetrics(step: 2))

        let log = try lines(of: logger.trainLogPath)
        #expect(log.count == 5)
        #expect(log[1].hasSuffix("INFO  [train] " + sampleMetrics(step: 2).tailLine()))
        #expect(log[2].hasSuffix("INFO  [train] event worker_joined worker=w1 alive=2"))
        #expect(log[3].hasSuffix("WARN  [train] event worker_died worker=w2 silent=12.5s requeued=3 alive=1"))
        #expect(log[4].hasSuffix("NOTE  [train] event tasks_requeued count=3 from=w2"))

        // A resumed run appends to the same files.
        let resumed = try MetricsLogger(runDirectory: dir, sink: sink)
        try resumed.record(sampleMetrics(step: 2))
        resumed.close()
        #expect(try lines(of: logger.metricsPath).count == 3)
        #expect(try lines(of: logger.trainLogPath).count == 6)
    }

    @Test func statusReadsLatestCheckpointAndLastCompleteLine() throws {
        let parent = try makeTemporaryDirectory("status")
        let dir = (parent as NSString).appendingPathComponent("default")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        #expect(throws: CermError.self) { _ = try RunStatus.collect(runDirectory: dir + "/absent") }
        // A directory without a run's files is not reported as a run that wrote nothing; the
        // checkpoint_dir (a common slip) names its run directories.
        let noRun = "not a run directory (no train.log, metrics.jsonl or step_<N>.h5 yet)"
        #expect(throws: CermError.io(path: dir, reason: noRun)) { _ = try RunStatus.collect(runDirectory: dir) }
        try Data().write(to: URL(fileURLWithPath: (dir as NSString).appendingPathComponent("metrics.jsonl")))
        #expect(throws: CermError.io(path: parent, reason: noRun + "; run directories in it: default")) {
            _ = try RunStatus.collect(runDirectory: parent)
        }
        let empty = try RunStatus.collect(runDirectory: dir)
        #expect(empty.latestCheckpoint == nil && empty.lastMetrics == nil && empty.trainLogBytes == nil)
        #expect(empty.render(now: Date(), trainLogGrowth: nil, watchedSeconds: 2)
            == "run \(dir)\ncheckpoint  none\nlast step   none (no metrics.jsonl lines yet)\ntrain.log   missing")

        let writer = CheckpointWriter(directory: dir, keepLast: 5)
        for step in [2, 10, 4] { try writer.write(sampleState(step: step)) }
        let metricsPath = (dir as NSString).appendingPathComponent("metrics.jsonl")
        // The last line is still being written (no newline): status must use the one before.
        let text = try sampleMetrics(step: 9).jsonLine() + "\n" + sampleMetrics(step: 10).jsonLine() + "\n{\"step\": 1"
        try Data(text.utf8).write(to: URL(fileURLWithPath: metricsPath))
        try Data("0123456789".utf8).write(to: URL(fileURLWithPath: (dir as NSString).appendingPathComponent("train.log")))

        let status = try RunStatus.collect(runDirectory: dir)
        #expect(status.checkpoints.map(\.step) == [2, 4, 10])
        #expect(status.latestCheckpoint?.path == (dir as NSString).appendingPathComponent("step_10.h5"))
        #expect(status.lastMetrics == sampleMetrics(step: 10))
        #expect(status.trainLogBytes == 10)
        let report = status.render(now: Date(), trainLogGrowth: 0, watchedSeconds: 2)
        #expect(report.contains("checkpoint  step 10 (step_10.h5, "))
        #expect(report.contains("last step   10 (policy v10)"))
        #expect(report.contains("train.log   10 bytes") && report.contains("NOT growing over 2s"))
        #expect(status.render(now: Date(), trainLogGrowth: 42, watchedSeconds: 2).contains("growing (+42 bytes in 2s)"))

        // A run_finished event is the last event: the run is done, not stalled. An event after
        // it (a resumed run) or a line still being written does not count.
        let trainLog = (dir as NSString).appendingPathComponent("train.log")
        let finished = """
            2026-11-22T03:20:01.123Z INFO  [train] event checkpoint_saved path=x/step_10.h5 seconds=0.01
            2026-11-22T03:20:01.124Z INFO  [train] event run_finished steps=10
            2026-11-22T03:20:01.125Z INFO  [cerm.coordinator] run finished policy_version=10 steps=10

            """
        try Data(finished.utf8).write(to: URL(fileURLWithPath: trainLog))
        let done = try RunStatus.collect(runDirectory: dir)
        #expect(done.ending == .finished(steps: 10))
        #expect(done.render(now: Date(), trainLogGrowth: 0, watchedSeconds: 2).hasSuffix(" ago; the run finished after 10 steps"))
        #expect(done.render(now: Date(), trainLogGrowth: 7, watchedSeconds: 2).hasSuffix(" ago; growing (+7 bytes in 2s)"))
        try Data((finished + "2026-11-22T03:25:00.000Z INFO  [train] event resumed path=x/step_10.h5 step=10\n").utf8)
            .write(to: URL(fileURLWithPath: trainLog))
        #expect(try RunStatus.collect(runDirectory: dir).ending == nil)
        // A stop request that ended the run says so too (a stopped run used to read as stalled).
        try Data((finished + "2026-11-22T03:25:00.000Z INFO  [train] event resumed path=x/step_10.h5 step=10\n"
                  + "2026-11-22T03:26:00.000Z INFO  [train] event run_stopped steps=12\n").utf8)
            .write(to: URL(fileURLWithPath: trainLog))
        let stopped = try RunStatus.collect(runDirectory: dir)
        #expect(stopped.ending == .stopped(steps: 12))
        #expect(stopped.render(now: Date(), trainLogGrowth: 0, watchedSeconds: 2)
                .hasSuffix(" ago; the run was stopped after 12 steps (continue it with --resume)"))

        try Data("not json\n".utf8).write(to: URL(fileURLWithPath: metricsPath))
        let broken = try RunStatus.collect(runDirectory: dir)
        #expect(broken.lastMetrics == nil)
        #expect(broken.lastMetricsProblem?.hasPrefix(metricsPath + ": last line is not a metrics object") == true)
    }

    @Test func safetensorsExportParsesBack() throws {
        let dir = try makeTemporaryDirectory("export")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Awkward tensors (NaN payloads, empty and scalar shapes) through the writer itself; the
        // export of a real model is HuggingFaceExportTests'.
        let state = sampleState(step: 7)
        let path = (dir as NSString).appendingPathComponent("model.safetensors")
        try SafetensorsFile.write(state.tensors.map { ($0.name, $0.shape, $0.values) },
                                  metadata: ["format": "pt", "cerm_step": "7", "cerm_policy_version": "107"], to: path)

        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let headerLength = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        #expect(headerLength % 8 == 0)
        let headerBytes = Array(bytes[8..<(8 + headerLength)])
        let header = try #require(try JSONSerialization.jsonObject(with: Data(headerBytes)) as? [String: Any])
        #expect(header["__metadata__"] as? [String: String] == ["format": "pt", "cerm_step": "7", "cerm_policy_version": "107"])
        let data = Array(bytes[(8 + headerLength)...])
        var expectedOffset = 0
        let sortedNames = state.tensors.map(\.name).sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        #expect(Set(header.keys) == Set(sortedNames + ["__metadata__"]))
        // Names appear in the header text in sorted order, and data follows the same order.
        let headerText = String(decoding: headerBytes, as: UTF8.self)
        let positions = sortedNames.map { headerText.range(of: "\"\($0)\"")!.lowerBound }
        #expect(positions == positions.sorted())
        for name in sortedNames {
            let tensor = try #require(state.tensors.first { $0.name == name })
            let entry = try #require(header[name] as? [String: Any])
            #expect(entry["dtype"] as? String == "F32")
            #expect(entry["shape"] as? [Int] == tensor.shape)
            let offsets = try #require(entry["data_offsets"] as? [Int])
            #expect(offsets == [expectedOffset, expectedOffset + 4 * tensor.values.count])
            let stored = stride(from: offsets[0], to: offsets[1], by: 4).map { at in
                UInt32(data[at]) | UInt32(data[at + 1]) << 8 | UInt32(data[at + 2]) << 16 | UInt32(data[at + 3]) << 24
            }
            #expect(stored == tensor.values.map(\.bitPattern))
            expectedOffset = offsets[1]
        }
        #expect(expectedOffset == data.count)
    }

    @Test func sftMetricsFileWritesOneLinePerStepAndStartsEmpty() throws {
        let directory = try makeTemporaryDirectory("sft-metrics")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let weights = (directory as NSString).appendingPathComponent("sft/model.h5")
        let path = SFTMetricsFile.path(forWeights: weights)
        #expect(path == (directory as NSString).appendingPathComponent("sft/model.metrics.jsonl"))
        // A curve of an earlier run is dropped: SFT trains from scratch.
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try "{\"step\":99}\n".write(toFile: path, atomically: true, encoding: .utf8)

        let file = try SFTMetricsFile(path: path)
        let first = SFTProgress(epoch: 1, epochs: 2, step: 1, totalSteps: 4, loss: 5.5, lossEMA: 5.5, learningRate: 0.5,
                                tokensPerSecond: 1000, elapsedSeconds: 0.25, etaSeconds: 0.75)
        var second = first
        second.step = 2
        second.loss = .nan
        try file.record(first)
        try file.record(second)
        file.close()
        #expect(throws: CermError.self) { try file.record(first) }

        let written = try lines(of: path)
        #expect(written.count == 2)
        #expect(written[0] == #"{"elapsed_s":0.25,"epoch":1,"epochs":2,"learning_rate":0.5,"loss":5.5,"loss_ema":5.5,"step":1,"tokens_per_second":1000,"total_steps":4}"#)
        #expect(written[1].contains(#""loss":"nan""#))
        #expect(written[1].contains(#""step":2"#))
        var late = first
        late.learningRate = 2e-4
        #expect(try late.jsonLine().contains(#""learning_rate":0.0002,"#))
    }
}
