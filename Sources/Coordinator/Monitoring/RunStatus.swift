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
    /// The steps of the `run_finished` event when it is the last event of `train.log` (the
    /// run ended at `run.steps`), nil otherwise.
    public var finishedSteps: Int?

    /// The newest checkpoint by step.
    public var latestCheckpoint: CheckpointFile? { checkpoints.last }

    /// Reads the status of `runDirectory`, which must exist.
    public static func collect(runDirectory: String) throws -> RunStatus {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: runDirectory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CermError.io(path: runDirectory, reason: "not a run directory (does not exist or is not a directory)")
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
            status.finishedSteps = try finishedSteps(inTrainLog: trainLogPath)
        }
        return status
    }

    /// The steps of the last `[train] event` line of the log's final 64 KiB when it is
    /// `run_finished`; nil when another event came after it (a resumed run) or there is none.
    static func finishedSteps(inTrainLog path: String) throws -> Int? {
        let marker = " [train] event "
        let finished = "run_finished steps="
        guard let last = try completeLines(of: path, window: 1 << 16).last(where: { $0.contains(marker) }),
              let range = last.range(of: marker) else { return nil }
        let event = last[range.upperBound...]
        guard event.hasPrefix(finished) else { return nil }
        return Int(event.dropFirst(finished.count).prefix { $0.isNumber })
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
            } else if let finishedSteps {
                // A finished run is expected to be quiet.
                log += "; the run finished after \(finishedSteps) steps"
            } else if trainLogGrowth != nil {
                log += String(format: "; NOT growing over %.0fs", watchedSeconds)
            }
            lines.append(log)
        } else {
            lines.append("train.log   missing")
        }
        return lines.joined(separator: "\n")
    }
}
