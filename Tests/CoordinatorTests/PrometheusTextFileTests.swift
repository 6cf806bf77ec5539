import Foundation
import Runtime
import TestSupport
import Shared
import Testing
@testable import Coordinator

/// `metrics.prom` (docs/MONITORING.md): written by ``MetricsLogger`` after every step, atomically,
/// and read back with the reference parser of the format (`prometheus_client.parser`).
@Suite("Prometheus text file")
struct PrometheusTextFileTests {
    static func step(_ step: Int, kl: Double = 0.00123) -> StepMetrics {
        StepMetrics(step: step, policyVersion: UInt64(step - 1), time: 1_700_000_000.25 + Double(step), meanCriteriaReward: 0.412,
                    meanEvaluationReward: -0.5, pairwiseAccuracy: 0.75, validFormatRate: 0.97, kl: kl,
                    loss: -0.0123, clipFraction: 0.021, entropy: 1.5, gradNorm: 0.75, fracZeroStd: 0.25,
                    generatedTokens: 1000, tokensPerSecond: 1234.5, trajectories: 80, waitRolloutsSeconds: 12.3,
                    updateSeconds: 4.5, weightDistributionSeconds: 0.8, checkpointSeconds: 0.2, stepSeconds: 17.8,
                    workersAlive: 3)
    }

    /// A run directory whose name needs escaping in a label value, after two steps and events.
    static func writtenRun() throws -> (directory: String, logger: MetricsLogger, sink: LogSink) {
        let parent = try makeTemporaryDirectory("prom")
        let directory = (parent as NSString).appendingPathComponent("run \"a\\b\"")
        let sink = LogSink()
        let logger = try MetricsLogger(runDirectory: directory, sink: sink)
        logger.event(.workerJoined(worker: "w1", alive: 1))
        logger.event(.workerJoined(worker: "w2", alive: 2))
        try logger.record(step(1))
        logger.event(.workerDied(worker: "w2", silentSeconds: 11, requeuedTasks: 2, alive: 1))
        logger.event(.tasksRequeued(count: 2, from: "w2"))
        logger.event(.tasksRequeued(count: 1, from: "w1 (task 7 timed out)"))
        logger.event(.checkpointSaved(path: (directory as NSString).appendingPathComponent("step_2.h5"), seconds: 0.2))
        try logger.record(step(2, kl: .nan))
        return (directory, logger, sink)
    }

    @Test func theReferenceParserReadsEveryDocumentedMetric() throws {
        guard let python = ExternalTools.python(importing: "prometheus_client") else {
            try ExternalTools.skip("no Python with prometheus_client (pip install prometheus-client; or set CERM_REFERENCE_PYTHON, or make .venv-ref)")
        }
        let (directory, logger, sink) = try Self.writtenRun()
        defer { logger.close(); sink.detachFile() }
        let script = """
            import json, math, sys
            from prometheus_client.parser import text_string_to_metric_families
            out = []
            for family in text_string_to_metric_families(open(sys.argv[1]).read()):
                out.append({"name": family.name, "type": family.type, "help": family.documentation,
                            "samples": [{"name": s.name, "labels": s.labels,
                                         "value": "nan" if math.isnan(s.value) else s.value} for s in family.samples]})
            print(json.dumps(out))
            """
        let result = try ExternalTools.run(python, ["-c", script, (directory as NSString).appendingPathComponent("metrics.prom")])
        try #require(result.status == 0, "prometheus_client refused the file: \(result.stderr)")
        struct Family: Decodable {
            struct Sample: Decodable {
                var name: String
                var labels: [String: String]
                var value: Value
            }
            enum Value: Decodable, Equatable {
                case number(Double), nan
                init(from decoder: any Decoder) throws {
                    let container = try decoder.singleValueContainer()
                    if let number = try? container.decode(Double.self) { self = .number(number) } else { self = .nan }
                }
            }
            var name: String
            var type: String
            var help: String
            var samples: [Sample]
        }
        let families = try JSONDecoder().decode([Family].self, from: Data(result.stdout.utf8))
        let byName = Dictionary(uniqueKeysWithValues: families.map { ($0.name, $0) })
        func value(_ sample: String, _ labels: [String: String] = [:]) -> Family.Value? {
            families.flatMap(\.samples).first { $0.name == sample && $0.labels == labels.merging(["run": "run \"a\\b\""]) { a, _ in a } }?.value
        }
        // The documented names and types (docs/MONITORING.md, "metrics.prom"); the parser names a
        // counter family without its `_total` suffix.
        let documented: [String: String] = [
            "cerm_step": "gauge", "cerm_policy_version": "gauge", "cerm_last_step_timestamp_seconds": "gauge",
            "cerm_steps": "counter", "cerm_step_duration_seconds": "gauge", "cerm_generated_tokens_per_second": "gauge",
            "cerm_generated_tokens": "counter", "cerm_reward_mean": "gauge", "cerm_rollout_pairwise_accuracy_ratio": "gauge",
            "cerm_valid_format_ratio": "gauge", "cerm_kl_to_reference": "gauge", "cerm_loss": "gauge", "cerm_entropy": "gauge",
            "cerm_grad_norm": "gauge", "cerm_clipped_tokens_ratio": "gauge", "cerm_zero_std_groups_ratio": "gauge",
            "cerm_workers_alive": "gauge", "cerm_tasks_requeued": "counter", "cerm_worker_joins": "counter",
            "cerm_worker_deaths": "counter", "cerm_last_checkpoint_step": "gauge",
            "cerm_last_checkpoint_timestamp_seconds": "gauge", "cerm_last_checkpoint_age_seconds": "gauge",
        ]
        #expect(byName.mapValues(\.type) == documented)
        #expect(families.allSatisfy { !$0.help.isEmpty && $0.samples.allSatisfy { $0.labels["run"] == "run \"a\\b\"" } })
        #expect(value("cerm_step") == .number(2))
        #expect(value("cerm_policy_version") == .number(1))
        #expect(value("cerm_steps_total") == .number(2))
        #expect(value("cerm_generated_tokens_total") == .number(2000))
        #expect(value("cerm_tasks_requeued_total") == .number(3))
        #expect(value("cerm_worker_joins_total") == .number(2))
        #expect(value("cerm_worker_deaths_total") == .number(1))
        #expect(value("cerm_workers_alive") == .number(3))
        #expect(value("cerm_kl_to_reference") == .nan)
        #expect(value("cerm_reward_mean", ["trajectory": "evaluation"]) == .number(-0.5))
        #expect(value("cerm_step_duration_seconds", ["phase": "wait_rollouts"]) == .number(12.3))
        #expect(value("cerm_generated_tokens_per_second") == .number(1234.5))
        #expect(value("cerm_last_checkpoint_step") == .number(2))
        #expect(value("cerm_last_step_timestamp_seconds") == .number(1_700_000_002.25))
        if case let .number(age)? = value("cerm_last_checkpoint_age_seconds") { #expect(age >= 0 && age < 60) } else {
            Issue.record("no checkpoint age")
        }
    }

    @Test func theFileIsReplacedWholeAfterEveryStep() throws {
        let (directory, logger, sink) = try Self.writtenRun()
        defer { logger.close(); sink.detachFile() }
        let path = (directory as NSString).appendingPathComponent("metrics.prom")
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.hasSuffix("\n"))
        #expect(text.contains("\ncerm_step{run=\"run \\\"a\\\\b\\\"\"} 2\n"))
        // No temporary file left where the textfile collector would look.
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.contains("prom") }
        #expect(names == ["metrics.prom"])
        try logger.record(Self.step(3))
        #expect(try String(contentsOfFile: path, encoding: .utf8).contains("\ncerm_step{run=\"run \\\"a\\\\b\\\"\"} 3\n"))
        // A resumed run's coordinator starts from the checkpoint on disk.
        let checkpoint = (directory as NSString).appendingPathComponent("step_5.h5")
        try Data([1]).write(to: URL(fileURLWithPath: checkpoint))
        let resumed = PrometheusTextFile(runDirectory: directory)
        try resumed.write(after: Self.step(6))
        #expect(try String(contentsOfFile: path, encoding: .utf8).contains("\ncerm_last_checkpoint_step{run=\"run \\\"a\\\\b\\\"\"} 5\n"))
    }

    @Test func aFileThatCannotBeWrittenWarnsOnceAndTheRunGoesOn() throws {
        let directory = try makeTemporaryDirectory("prom-fails")
        // A non-empty directory where the file goes: the rename over it fails.
        try FileManager.default.createDirectory(atPath: directory + "/metrics.prom/inside", withIntermediateDirectories: true)
        let sink = LogSink()
        defer { sink.detachFile() }
        let logger = try MetricsLogger(runDirectory: directory, sink: sink)
        try logger.record(Self.step(1))
        try logger.record(Self.step(2))
        logger.close()
        #expect(try String(contentsOfFile: logger.metricsPath, encoding: .utf8).split(separator: "\n").count == 2)
        let warnings = try String(contentsOfFile: logger.trainLogPath, encoding: .utf8).split(separator: "\n")
            .filter { $0.contains("WARN") && $0.contains("metrics.prom") }
        #expect(warnings.count == 1)
        #expect(warnings.first?.contains("cannot update \(directory)/metrics.prom, training goes on") == true)
        #expect(!FileManager.default.fileExists(atPath: directory + "/.metrics.prom.tmp"))
    }

    @Test func numbersFollowTheFormat() {
        #expect(PrometheusTextFile.number(3) == "3")
        #expect(PrometheusTextFile.number(-0.5) == "-0.5")
        #expect(PrometheusTextFile.number(.nan) == "NaN")
        #expect(PrometheusTextFile.number(.infinity) == "+Inf")
        #expect(PrometheusTextFile.number(-.infinity) == "-Inf")
        #expect(PrometheusTextFile.escapeLabelValue("a\"b\\c\nd") == "a\\\"b\\\\c\\nd")
    }
}
