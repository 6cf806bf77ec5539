import Foundation
import Shared

/// `<runDir>/metrics.prom`: the run's latest numbers in the Prometheus text exposition format
/// (version 0.0.4), rewritten atomically after every step so that node_exporter's textfile
/// collector (or anything that scrapes a file) never reads half a file. The metric names, types
/// and labels are documented in docs/MONITORING.md ("metrics.prom").
///
/// Steps come from the learner thread, cluster events from the socket thread: both under `lock`.
public final class PrometheusTextFile: @unchecked Sendable {
    /// The last checkpoint the run has: its step and when it was written.
    public struct CheckpointMark: Sendable, Equatable {
        public var step: Int
        public var time: Double
        public init(step: Int, time: Double) {
            self.step = step
            self.time = time
        }
    }

    /// Counters since this coordinator process started (Prometheus handles the reset to 0 when
    /// a run is resumed by a new process).
    public struct Counters: Sendable, Equatable {
        public var tasksRequeued = 0
        public var workerJoins = 0
        public var workerDeaths = 0
        public var generatedTokens = 0
        public var steps = 0
        public init() {}
    }

    public static let fileName = "metrics.prom"

    public let path: String
    /// The value of the `run` label on every sample: the run directory's name.
    public let runLabel: String
    private let lock = NSLock()
    private var counters = Counters()
    private var lastCheckpoint: CheckpointMark?

    /// Starts from the newest checkpoint already in `runDirectory` (a resumed run), dated by its
    /// modification time.
    public init(runDirectory: String) {
        path = (runDirectory as NSString).appendingPathComponent(Self.fileName)
        runLabel = ((runDirectory as NSString).standardizingPath as NSString).lastPathComponent
        if let newest = CheckpointFormat.checkpointFiles(in: runDirectory).max(by: { $0.step < $1.step }),
           let modified = (try? FileManager.default.attributesOfItem(atPath: newest.path))?[.modificationDate] as? Date {
            lastCheckpoint = CheckpointMark(step: newest.step, time: modified.timeIntervalSince1970)
        }
    }

    /// Counts re-queues, joins and deaths, and remembers checkpoints, from the run's events.
    public func observe(_ event: ClusterEvent, at time: Date = Date()) {
        lock.lock(); defer { lock.unlock() }
        switch event {
        case let .tasksRequeued(count, _): counters.tasksRequeued += count
        case .workerJoined: counters.workerJoins += 1
        case .workerDied: counters.workerDeaths += 1
        case let .checkpointSaved(path, _):
            if let step = CheckpointFormat.step(ofFileName: (path as NSString).lastPathComponent) {
                lastCheckpoint = CheckpointMark(step: step, time: time.timeIntervalSince1970)
            }
        case let .resumed(_, step):
            if lastCheckpoint?.step != step { lastCheckpoint = CheckpointMark(step: step, time: time.timeIntervalSince1970) }
        default: break
        }
    }

    /// Adds `metrics` to the counters and rewrites the file (temporary file, then rename).
    public func write(after metrics: StepMetrics, now: Date = Date()) throws {
        let text: String
        do {
            lock.lock(); defer { lock.unlock() }
            counters.steps += 1
            counters.generatedTokens += metrics.generatedTokens
            text = Self.render(metrics, counters: counters, lastCheckpoint: lastCheckpoint, run: runLabel, now: now)
        }
        // The temporary name does not end in `.prom`: the textfile collector reads only those.
        let temporary = (path as NSString).deletingLastPathComponent + "/.\(Self.fileName).tmp"
        do { try Data(text.utf8).write(to: URL(fileURLWithPath: temporary)) } catch {
            throw CermError.io(path: temporary, reason: "cannot write the Prometheus metrics file: \(error.localizedDescription)")
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(atPath: temporary)
            throw CermError.io(path: path, reason: "cannot rename \(temporary) over it: \(reason)")
        }
    }

    /// One metric family: name, type, help and its samples (label set → value).
    struct Family {
        var name: String
        var type: String
        var help: String
        var samples: [(labels: [(String, String)], value: Double)]
    }

    /// The file's text for the last step `metrics`.
    static func render(_ metrics: StepMetrics, counters: Counters, lastCheckpoint: CheckpointMark?, run: String, now: Date) -> String {
        func gauge(_ name: String, _ help: String, _ value: Double) -> Family {
            Family(name: name, type: "gauge", help: help, samples: [([], value)])
        }
        func counter(_ name: String, _ help: String, _ value: Int) -> Family {
            Family(name: name, type: "counter", help: help, samples: [([], Double(value))])
        }
        var families = [
            gauge("cerm_step", "Last completed optimizer step.", Double(metrics.step)),
            gauge("cerm_policy_version", "Policy version the last step's rollouts were sampled with.", Double(metrics.policyVersion)),
            gauge("cerm_last_step_timestamp_seconds", "Unix time the last step's metrics were logged.", metrics.time),
            counter("cerm_steps_total", "Steps completed by this coordinator process.", counters.steps),
            Family(name: "cerm_step_duration_seconds", type: "gauge",
                   help: "Wall seconds of the last step, in total and by phase.",
                   samples: [([("phase", "total")], metrics.stepSeconds),
                             ([("phase", "wait_rollouts")], metrics.waitRolloutsSeconds),
                             ([("phase", "update")], metrics.updateSeconds),
                             ([("phase", "weight_distribution")], metrics.weightDistributionSeconds),
                             ([("phase", "checkpoint")], metrics.checkpointSeconds)]),
            gauge("cerm_generated_tokens_per_second", "Generated tokens per second of the last step (docs/MONITORING.md, tokens_per_second).",
                  metrics.tokensPerSecond),
            counter("cerm_generated_tokens_total", "Tokens generated by the workers since this coordinator process started.",
                    counters.generatedTokens),
            Family(name: "cerm_reward_mean", type: "gauge", help: "Mean reward of the last step's trajectories, by kind.",
                   samples: [([("trajectory", "criteria")], metrics.meanCriteriaReward),
                             ([("trajectory", "evaluation")], metrics.meanEvaluationReward)]),
            gauge("cerm_rollout_pairwise_accuracy_ratio", "Fraction of the last step's pairs its rollouts ranked correctly.",
                  metrics.pairwiseAccuracy),
            gauge("cerm_valid_format_ratio", "Fraction of the last step's trajectories in the required format.", metrics.validFormatRate),
            gauge("cerm_kl_to_reference", "KL estimate of the policy to the reference model (token mean, nats).", metrics.kl),
            gauge("cerm_loss", "GRPO loss of the last step (mean over mini-batches).", metrics.loss),
            gauge("cerm_entropy", "Mean token entropy of the policy on the last step's trajectories (nats).", metrics.entropy),
            gauge("cerm_grad_norm", "Gradient norm before clipping (mean over mini-batches).", metrics.gradNorm),
            gauge("cerm_clipped_tokens_ratio", "Fraction of the last step's tokens whose probability ratio was clipped.",
                  metrics.clipFraction),
            gauge("cerm_zero_std_groups_ratio", "Fraction of the last step's groups whose rewards were all equal.", metrics.fracZeroStd),
            gauge("cerm_workers_alive", "Workers alive at the end of the last step.", Double(metrics.workersAlive)),
            counter("cerm_tasks_requeued_total", "Tasks put back in the queue (dead, restarted or refused worker, timeout, dropped result).",
                    counters.tasksRequeued),
            counter("cerm_worker_joins_total", "Worker registrations (first contact or reconnect).", counters.workerJoins),
            counter("cerm_worker_deaths_total", "Workers declared dead after the heartbeat timeout.", counters.workerDeaths),
        ]
        if let lastCheckpoint {
            families += [
                gauge("cerm_last_checkpoint_step", "Step of the newest checkpoint.", Double(lastCheckpoint.step)),
                gauge("cerm_last_checkpoint_timestamp_seconds", "Unix time the newest checkpoint was written.", lastCheckpoint.time),
                gauge("cerm_last_checkpoint_age_seconds",
                      "Seconds since the newest checkpoint was written, when this file was (time() - cerm_last_checkpoint_timestamp_seconds is the live age).",
                      max(0, now.timeIntervalSince1970 - lastCheckpoint.time)),
            ]
        }
        var lines: [String] = []
        for family in families {
            lines.append("# HELP \(family.name) \(escapeHelp(family.help))")
            lines.append("# TYPE \(family.name) \(family.type)")
            for sample in family.samples {
                let labels = ([("run", run)] + sample.labels).map { "\($0.0)=\"\(escapeLabelValue($0.1))\"" }.joined(separator: ",")
                lines.append("\(family.name){\(labels)} \(number(sample.value))")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A sample value: integers without a fraction, others in Swift's shortest round-trip form,
    /// non-finite ones as the format's `NaN`, `+Inf`, `-Inf`.
    static func number(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }

    /// HELP text escapes backslash and line feed.
    static func escapeHelp(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }

    /// Label values also escape the double quote.
    static func escapeLabelValue(_ text: String) -> String {
        escapeHelp(text).replacingOccurrences(of: "\"", with: "\\\"")
    }
}
