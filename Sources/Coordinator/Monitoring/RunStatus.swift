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
        }
        return status
    }

    /// The last newline-terminated non-empty line of a file (a line still being written is
    /// ignored), reading at most the final 1 MiB.
    static func lastCompleteLine(of path: String) throws -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw CermError.io(path: path, reason: "cannot open for reading")
        }
        defer { try? handle.close() }
        let size = try handle.seekToEnd()
        let window: UInt64 = 1 << 20
        try handle.seek(toOffset: size > window ? size - window : 0)
        let bytes = [UInt8](try handle.readToEnd() ?? Data())
        guard let lastNewline = bytes.lastIndex(of: UInt8(ascii: "\n")) else { return nil }
        let complete = bytes[..<lastNewline]
        let lines = complete.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true)
        return lines.last.map { String(decoding: $0, as: UTF8.self) }
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
            if let growth = trainLogGrowth {
                log += growth > 0 ? String(format: "; growing (+%ld bytes in %.0fs)", growth, watchedSeconds)
                    : String(format: "; NOT growing over %.0fs", watchedSeconds)
            }
            lines.append(log)
        } else {
            lines.append("train.log   missing")
        }
        return lines.joined(separator: "\n")
    }
}
