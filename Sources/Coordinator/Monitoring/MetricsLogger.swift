import Foundation
import Logging
import Runtime
import Shared

/// Something that happened in the cluster, worth a line in `train.log`.
public enum ClusterEvent: Sendable, Equatable {
    /// A worker registered (first contact or reconnect).
    case workerJoined(worker: String, alive: Int)
    /// A worker said goodbye.
    case workerLeft(worker: String, alive: Int)
    /// A worker was silent past the heartbeat timeout and was declared dead.
    case workerDied(worker: String, silentSeconds: Double, requeuedTasks: Int, alive: Int)
    /// Tasks went back to the queue (`from`: the worker that had them, or why).
    case tasksRequeued(count: Int, from: String)
    /// A result arrived for a task that was already re-queued or done; it was dropped.
    case lateResultDropped(task: UInt64, worker: String)
    /// The learner applied step `step`'s update to the rollouts of these pairs (data-file pair
    /// ids, ascending). A step trained again after a coordinator restart logs it again; the
    /// last line of a step is the one the run's weights contain (scripts/chaos.sh checks that
    /// the steps' pairs are those of an undisturbed run: none lost, none trained twice).
    case stepTrained(step: Int, pairs: [UInt64])
    /// A checkpoint was written.
    case checkpointSaved(path: String, seconds: Double)
    /// The run continued from a checkpoint.
    case resumed(path: String, step: Int)
    /// A checkpoint was found invalid and skipped when resuming.
    case checkpointSkipped(path: String, reason: String)
    /// The run resumed with a config key whose value differs from the checkpoint's.
    case configChanged(key: String, checkpoint: String, config: String)
    /// Before training, files an earlier line of training left in the run directory (later
    /// checkpoints, or a fresh run's predecessor's checkpoints and `metrics.jsonl`) were moved
    /// into `destination` (``SupersededFiles``).
    case runSuperseded(files: [String], destination: String)
    /// The run reached `run.steps` (also when a resumed run was already there); `cerm status`
    /// reads it to tell a finished run from a stalled one.
    case runFinished(steps: Int)
    /// A stop request (Ctrl-C, SIGTERM) ended the run after `completedSteps`, saved; `cerm
    /// status` reads it to tell a stopped run from a stalled one.
    case runStopped(completedSteps: Int)

    /// `event <name> key=value ...`, the text of the log line.
    public var line: String {
        switch self {
        case let .workerJoined(worker, alive): return "event worker_joined worker=\(worker) alive=\(alive)"
        case let .workerLeft(worker, alive): return "event worker_left worker=\(worker) alive=\(alive)"
        case let .workerDied(worker, silent, requeued, alive):
            return "event worker_died worker=\(worker) silent=\(String(format: "%.1f", silent))s requeued=\(requeued) alive=\(alive)"
        case let .tasksRequeued(count, from): return "event tasks_requeued count=\(count) from=\(from)"
        case let .lateResultDropped(task, worker): return "event late_result_dropped task=\(task) worker=\(worker)"
        case let .stepTrained(step, pairs):
            return "event step_trained step=\(step) pairs=" + pairs.map(String.init).joined(separator: ",")
        case let .checkpointSaved(path, seconds):
            return "event checkpoint_saved path=\(path) seconds=\(String(format: "%.2f", seconds))"
        case let .resumed(path, step): return "event resumed path=\(path) step=\(step)"
        case let .checkpointSkipped(path, reason): return "event checkpoint_skipped path=\(path) reason=\(reason)"
        case let .configChanged(key, checkpoint, config):
            return "event config_changed key=\(key) checkpoint=\(checkpoint) config=\(config)"
        case let .runSuperseded(files, destination):
            return "event run_superseded moved=\(files.joined(separator: ",")) to=\(destination)"
        case let .runFinished(steps): return "event run_finished steps=\(steps)"
        case let .runStopped(steps): return "event run_stopped steps=\(steps)"
        }
    }

    var level: Logger.Level {
        switch self {
        case .workerDied, .checkpointSkipped, .configChanged, .runSuperseded: return .warning
        case .tasksRequeued, .lateResultDropped: return .notice
        default: return .info
        }
    }
}

/// Writes a run's monitoring output: one JSON object per step appended to
/// `<runDir>/metrics.jsonl` (written and flushed per line), and one human line per step and per
/// event on stderr and `<runDir>/train.log` through the shared ``LogSink``; after each step also
/// `<runDir>/metrics.prom` (``PrometheusTextFile``).
public final class MetricsLogger: @unchecked Sendable {
    public let runDirectory: String
    /// `<runDir>/metrics.jsonl`.
    public let metricsPath: String
    /// `<runDir>/train.log`.
    public let trainLogPath: String
    private let logger: Logger
    private let lock = NSLock()
    private var metricsFile: FileHandle?
    private let prometheus: PrometheusTextFile
    /// Whether the last `metrics.prom` write failed: warned once per run of failures.
    private var prometheusFailing = false

    /// Opens `metrics.jsonl` for appending and attaches `train.log` to `sink`, creating the run
    /// directory when missing. After a resume, steps after the checkpoint appear twice; the last
    /// line of a step is the one that counts.
    public init(runDirectory: String, sink: LogSink = .shared) throws {
        self.runDirectory = runDirectory
        metricsPath = (runDirectory as NSString).appendingPathComponent("metrics.jsonl")
        trainLogPath = (runDirectory as NSString).appendingPathComponent("train.log")
        do {
            try FileManager.default.createDirectory(atPath: runDirectory, withIntermediateDirectories: true)
        } catch {
            throw CermError.io(path: runDirectory, reason: "cannot create run directory: \(error.localizedDescription)")
        }
        if !FileManager.default.fileExists(atPath: metricsPath),
           !FileManager.default.createFile(atPath: metricsPath, contents: nil) {
            throw CermError.io(path: metricsPath, reason: "cannot create metrics file")
        }
        guard let handle = FileHandle(forWritingAtPath: metricsPath) else {
            throw CermError.io(path: metricsPath, reason: "cannot open for appending")
        }
        _ = try? handle.seekToEnd()
        metricsFile = handle
        prometheus = PrometheusTextFile(runDirectory: runDirectory)
        try sink.attachFile(trainLogPath)
        logger = Logger(label: "train") { CermLogHandler(label: $0, sink: sink) }
    }

    /// Appends `metrics` to `metrics.jsonl` (stamping `time` when 0) and logs its tail line.
    public func record(_ metrics: StepMetrics) throws {
        var stamped = metrics
        if stamped.time == 0 { stamped.time = Date().timeIntervalSince1970 }
        let line = try stamped.jsonLine() + "\n"
        lock.lock(); defer { lock.unlock() }
        guard let metricsFile else { throw CermError.io(path: metricsPath, reason: "metrics logger is closed") }
        do { try metricsFile.write(contentsOf: Data(line.utf8)) } catch {
            throw CermError.io(path: metricsPath, reason: "append failed: \(error.localizedDescription)")
        }
        logger.info("\(stamped.tailLine())")
        // A monitoring file must never stop the run: warn (once until it works again) and go on.
        do {
            try prometheus.write(after: stamped)
            prometheusFailing = false
        } catch {
            if !prometheusFailing { logger.warning("cannot update \(prometheus.path), training goes on: \(error)") }
            prometheusFailing = true
        }
    }

    /// Logs one event line.
    public func event(_ event: ClusterEvent) {
        prometheus.observe(event)
        logger.log(level: event.level, "\(event.line)")
    }

    /// A free-form progress line (SFT, curation, evaluation).
    public func progress(_ message: String) {
        logger.info("\(message)")
    }

    /// Closes `metrics.jsonl`; later `record` calls throw.
    public func close() {
        lock.lock(); defer { lock.unlock() }
        try? metricsFile?.close()
        metricsFile = nil
    }

    deinit { try? metricsFile?.close() }
}
