import Foundation
import Shared

/// A snapshot of a run directory for `cerm status`: newest checkpoint, last metrics line and
/// how recently the logs changed. Reads only file metadata and the tail of `metrics.jsonl`.
public struct RunStatus: Sendable {
    /// A checkpoint file as listed (not opened).
    public struct CheckpointFile: Sendable, Equatable {
        public var step: Int
        public var path: String
        public var bytes: Int
        public var modified: Date
    }

    public var runDirectory: String
    /// Checkpoint files, oldest step first.
    public var checkpoints: [CheckpointFile]
    /// The last complete line of `metrics.jsonl`, parsed.
    public var lastMetrics: StepMetrics?
    /// Why the last line could not be parsed, when it could not (nil when there is no line).
    public var lastMetricsProblem: String?
    public var metricsModified: Date?
    /// Size of `train.log` in bytes, nil when absent.
    public var trainLogBytes: Int?
    public var trainLogModified: Date?
    /// How the run ended, when the last event of `train.log` says it did.
    public enum Ending: Sendable, Equatable {
        /// `run_finished`: the run reached `run.steps`.
        case finished(steps: Int)
        /// `run_stopped`: a stop request ended it after this many steps, saved.
        case stopped(steps: Int)
    }

    /// The ending the last event of `train.log` records; nil while the run goes on (or died
    /// without a word, or a resumed run has not ended yet).
    public var ending: Ending?

    /// The last report `cerm report` wrote about this run (its `report.path` note), nil without one.
    public var lastReport: String?

    /// The newest checkpoint by step.
    public var latestCheckpoint: CheckpointFile? { checkpoints.last }

    /// The files of a run directory `cerm status` reads, one of which a run directory holds.
    static func holdsRunFiles(_ directory: String) -> Bool {
        !CheckpointFormat.checkpointFiles(in: directory).isEmpty
            || ["train.log", "metrics.jsonl"].contains { FileManager.default.fileExists(atPath: (directory as NSString).appendingPathComponent($0)) }
    }

    /// Reads the status of `runDirectory`, which must exist and hold a run's files; a directory
    /// without them (such as `run.checkpoint_dir` itself) is an error naming the run
    /// directories inside it.
    public static func collect(runDirectory: String) throws -> RunStatus {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: runDirectory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CermError.io(path: runDirectory, reason: "not a run directory (does not exist or is not a directory)")
        }
        guard holdsRunFiles(runDirectory) else {
            let inside = ((try? FileManager.default.contentsOfDirectory(atPath: runDirectory)) ?? []).sorted()
                .filter { holdsRunFiles((runDirectory as NSString).appendingPathComponent($0)) }
            let hint = inside.isEmpty ? "" : "; run directories in it: \(inside.joined(separator: ", "))"
            throw CermError.io(path: runDirectory, reason: "not a run directory (no train.log, metrics.jsonl or step_<N>.h5 yet)\(hint)")
        }
        let checkpoints = CheckpointFormat.checkpointFiles(in: runDirectory).compactMap { entry -> CheckpointFile? in
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: entry.path) else { return nil }
            return CheckpointFile(step: entry.step, path: entry.path,
                                  bytes: (attributes[.size] as? NSNumber)?.intValue ?? 0,
                                  modified: attributes[.modificationDate] as? Date ?? .distantPast)
        }
        let metricsPath = (runDirectory as NSString).appendingPathComponent("metrics.jsonl")
        let trainLogPath = (runDirectory as NSString).appendingPathComponent("train.log")
        var status = RunStatus(runDirectory: runDirectory, checkpoints: checkpoints)
        if let attributes = try? FileManager.default.attributesOfItem(atPath: metricsPath) {
            status.metricsModified = attributes[.modificationDate] as? Date
            if let line = try lastCompleteLine(of: metricsPath) {
                do { status.lastMetrics = try StepMetrics.parse(jsonLine: line) } catch {
                    status.lastMetricsProblem = "\(metricsPath): last line is not a metrics object (\(error))"
                }
            }
        }
        if let attributes = try? FileManager.default.attributesOfItem(atPath: trainLogPath) {
            status.trainLogBytes = (attributes[.size] as? NSNumber)?.intValue
            status.trainLogModified = attributes[.modificationDate] as? Date
            status.ending = try ending(inTrainLog: trainLogPath)
        }
        status.lastReport = RunReport.notedLocation(in: runDirectory)
        return status
    }

    /// The ending of the last `[train] event` line of the log's final 64 KiB when it is
    /// `run_finished` or `run_stopped`; nil when another event came after it (a resumed run)
    /// or there is none.
    static func ending(inTrainLog path: String) throws -> Ending? {
        let marker = " [train] event "
        guard let last = try completeLines(of: path, window: 1 << 16).last(where: { $0.contains(marker) }),
              let range = last.range(of: marker) else { return nil }
        let event = last[range.upperBound...]
        func steps(after prefix: String) -> Int? {
            guard event.hasPrefix(prefix) else { return nil }
            return Int(event.dropFirst(prefix.count).prefix { $0.isNumber })
        }
        if let finished = steps(after: "run_finished steps=") { return .finished(steps: finished) }
        if let stopped = steps(after: "run_stopped steps=") { return .stopped(steps: stopped) }
        return nil
    }

    /// The last newline-terminated non-empty line of a file (a line still being written is
    /// ignored), reading at most the final 1 MiB.
    static func lastCompleteLine(of path: String) throws -> String? {
        try completeLines(of: path, window: 1 << 20).last
    }

    /// The newline-terminated non-empty lines of the final `window` bytes of a file (the first
    /// may be cut by the window, a line still being written is left out).
    static func completeLines(of path: String, window: UInt64) throws -> [String] {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw CermError.io(path: path, reason: "cannot open for reading")
        }
        defer { try? handle.close() }
        let size = try handle.seekToEnd()
        try handle.seek(toOffset: size > window ? size - window : 0)
        let bytes = [UInt8](try handle.readToEnd() ?? Data())
        guard let lastNewline = bytes.lastIndex(of: UInt8(ascii: "\n")) else { return [] }
        let complete = bytes[..<lastNewline]
        return complete.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The report `cerm status` prints. `trainLogGrowth` is the byte growth of `train.log`
    /// observed over `watchedSeconds` (nil when not watched).
    public func render(now: Date, trainLogGrowth: Int?, watchedSeconds: Double) -> String {
        func ago(_ date: Date?) -> String {
            guard let date else { return "never" }
            let seconds = max(0, now.timeIntervalSince(date))
            if seconds < 120 { return String(format: "%.0fs ago", seconds) }
            if seconds < 7200 { return String(format: "%.0fm ago", seconds / 60) }
            return String(format: "%.1fh ago", seconds / 3600)
        }
        var lines = ["run \(runDirectory)"]
        if let latest = latestCheckpoint {
            lines.append("checkpoint  step \(latest.step) (\((latest.path as NSString).lastPathComponent), \(latest.bytes) bytes, written \(ago(latest.modified)); \(checkpoints.count) on disk)")
        } else {
            lines.append("checkpoint  none")
        }
        if let m = lastMetrics {
            lines.append("last step   \(m.step) (policy v\(m.policyVersion)), logged \(ago(m.time > 0 ? Date(timeIntervalSince1970: m.time) : metricsModified))")
            lines.append(String(format: "  reward    criteria %+.3f  evaluation %+.3f  accuracy %.3f  format %.3f",
                                m.meanCriteriaReward, m.meanEvaluationReward, m.pairwiseAccuracy, m.validFormatRate))
            lines.append(String(format: "  update    kl %.3e  loss %+.4f  clip %.3f  grad %.3f  entropy %.3f",
                                m.kl, m.loss, m.clipFraction, m.gradNorm, m.entropy))
            lines.append(String(format: "  speed     %.1f tok/s  step %.1fs (wait %.1fs, update %.1fs, weights %.1fs, ckpt %.1fs)  workers %ld",
                                m.tokensPerSecond, m.stepSeconds, m.waitRolloutsSeconds, m.updateSeconds,
                                m.weightDistributionSeconds, m.checkpointSeconds, m.workersAlive))
        } else if let problem = lastMetricsProblem {
            lines.append("last step   unknown: \(problem)")
        } else {
            lines.append("last step   none (no metrics.jsonl lines yet)")
        }
        if let bytes = trainLogBytes {
            var log = "train.log   \(bytes) bytes, last write \(ago(trainLogModified))"
            if let growth = trainLogGrowth, growth > 0 {
                log += String(format: "; growing (+%ld bytes in %.0fs)", growth, watchedSeconds)
            } else if let ending {
                // An ended run is expected to be quiet.
                switch ending {
                case let .finished(steps): log += "; the run finished after \(steps) steps"
                case let .stopped(steps): log += "; the run was stopped after \(steps) steps (continue it with --resume)"
                }
            } else if trainLogGrowth != nil {
                log += String(format: "; NOT growing over %.0fs", watchedSeconds)
            }
            lines.append(log)
        } else {
            lines.append("train.log   missing")
        }
        if let lastReport {
            let modified = (try? FileManager.default.attributesOfItem(atPath: lastReport))?[.modificationDate] as? Date
            lines.append("report      \(lastReport) (" + (modified.map { "written \(ago($0))" } ?? "missing") + ")")
        }
        return lines.joined(separator: "\n")
    }
}
