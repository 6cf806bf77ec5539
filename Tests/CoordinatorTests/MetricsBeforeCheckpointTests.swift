@testable import Coordinator
import Foundation
import Runtime
import TestSupport
@testable import Shared
import Testing

/// A step's `metrics.jsonl` line is written before its checkpoint. Found by scripts/chaos.sh
/// (coordinator-kills): a coordinator killed with SIGKILL after `step_16.h5` was renamed into
/// place but before step 16's line was appended resumed from step 16, so that line was never
/// written and the run's metrics lacked a step. Now the line comes first: a kill between the two
/// leaves a line whose step the resume trains again (the last line of a step counts).
@Suite(.serialized) struct MetricsBeforeCheckpointTests {
    /// Lines in metrics.jsonl whenever a checkpoint is about to be renamed into place.
    final class LineCounts: @unchecked Sendable {
        private let lock = NSLock()
        private var counts: [Int] = []
        var values: [Int] { lock.withLock { counts } }
        func append(_ count: Int) { lock.withLock { counts.append(count) } }
    }

    @Test func eachStepsLineIsInMetricsBeforeItsCheckpointIsRenamedIntoPlace() throws {
        let directory = try makeTemporaryDirectory("runtime")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let sink = LogSink()
        let metrics = try MetricsLogger(runDirectory: directory, sink: sink)
        defer { sink.detachFile() }
        let seen = LineCounts()
        let metricsPath = metrics.metricsPath
        let writer = CheckpointWriter(directory: directory, keepLast: 5) { stage in
            guard stage == .beforeRename else { return }
            let text = (try? String(contentsOfFile: metricsPath, encoding: .utf8)) ?? ""
            seen.append(text.split(separator: "\n").count)
        }
        let service = CoordinatorService(settings: RuntimeTests.coordinatorSettings(steps: 3, saveEvery: 1), learner: FakeLearner(),
                                         pairs: FakePairs(count: RuntimeTests.pairCount), checkpoints: writer, metrics: metrics,
                                         logger: RuntimeTests.quiet("coordinator"))
        let (coordinator, endpoint) = try RuntimeTests.startCoordinator(service)
        let worker = RuntimeTests.startWorker(endpoint, name: "w", executor: FakeExecutor())
        #expect(try coordinator.value().outcome == .finished(steps: 3))
        _ = try worker.value()
        metrics.close()
        // Step k's checkpoint is renamed into place when metrics.jsonl already holds k lines.
        #expect(seen.values == [1, 2, 3], "metrics.jsonl lines when each checkpoint was renamed into place")
        let lines = try String(contentsOfFile: metricsPath, encoding: .utf8).split(separator: "\n")
        let steps = try lines.map { try StepMetrics.parse(jsonLine: String($0)) }
        #expect(steps.map(\.step) == [1, 2, 3])
        // The checkpoint time of step k is in step k+1's line.
        #expect(steps[0].checkpointSeconds == 0)
        #expect(steps[1].checkpointSeconds > 0 && steps[2].checkpointSeconds > 0)
    }
}
