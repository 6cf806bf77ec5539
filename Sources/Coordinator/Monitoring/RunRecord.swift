import Configuration
import Foundation
import Shared

/// What `cerm report` reads of one run directory: the steps of `metrics.jsonl`, the cluster
/// events of `train.log`, the run's config (from its newest checkpoint), the SFT curve and
/// `results.md` when there are any. docs/MONITORING.md ("cerm report") says where each comes from.
public struct RunRecord: Sendable {
    /// A `[train] event` line of `train.log`.
    public struct Event: Sendable, Equatable {
        /// Unix time of the line.
        public var time: Double
        /// `worker_joined`, `worker_died`, `tasks_requeued`, …
        public var name: String
        /// The `key=value` text after the name.
        public var fields: String
    }

    /// One step of the SFT curve (`<sft.output without .h5>.metrics.jsonl`).
    public struct SFTPoint: Sendable, Equatable, Decodable {
        public var step: Int
        public var loss: Double
        public var lossEMA: Double
        enum CodingKeys: String, CodingKey {
            case step, loss
            case lossEMA = "loss_ema"
        }
    }

    public var directory: String
    /// The run directory's name, as the report labels the run.
    public var name: String
    /// One entry per step, the last line of a step counting (a resume logs steps again).
    public var steps: [StepMetrics] = []
    public var events: [Event] = []
    /// How the run ended, when `train.log` says it did.
    public var ending: RunStatus.Ending?
    /// The effective config as stored in the newest readable checkpoint (`/meta/config_toml`).
    public var configText: String?
    /// Where `configText` came from, or why there is none.
    public var configSource: String
    public var sftCurve: [SFTPoint] = []
    public var sftCurvePath: String?
    /// `results.md` (the `cerm pipeline` table), verbatim.
    public var results: String?

    public static let metricsFileName = "metrics.jsonl"
    public static let trainLogFileName = "train.log"
    public static let resultsFileName = "results.md"

    /// Reads `directory`. `sftCurve` overrides where the SFT curve is looked for (else: a
    /// `*.metrics.jsonl` in the directory itself, then the one next to the config's `sft.output`).
    /// A missing directory, one without a run's files, or a malformed line is an error naming
    /// the file (and line); a line still being written (no newline yet) is left out.
    public static func load(directory: String, sftCurve: String? = nil) throws -> RunRecord {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CermError.io(path: directory, reason: "not a run directory (does not exist or is not a directory)")
        }
        let ownCurve = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
            .first { $0.hasSuffix(".metrics.jsonl") }.map { (directory as NSString).appendingPathComponent($0) }
        guard RunStatus.holdsRunFiles(directory) || ownCurve != nil || sftCurve != nil else {
            throw CermError.io(path: directory, reason: "not a run directory (no train.log, metrics.jsonl, step_<N>.h5 or SFT curve *.metrics.jsonl)")
        }
        func file(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }
        var record = RunRecord(directory: directory, name: ((directory as NSString).standardizingPath as NSString).lastPathComponent,
                               configSource: "")
        if FileManager.default.fileExists(atPath: file(metricsFileName)) {
            var byStep: [Int: StepMetrics] = [:]
            for line in try completeLines(of: file(metricsFileName)) {
                do {
                    let metrics = try StepMetrics.parse(jsonLine: line.text)
                    byStep[metrics.step] = metrics
                } catch {
                    throw CermError.invalid("\(file(metricsFileName)):\(line.number): not a metrics line (\(describe(error)))")
                }
            }
            record.steps = byStep.keys.sorted().compactMap { byStep[$0] }
        }
        if FileManager.default.fileExists(atPath: file(trainLogFileName)) {
            record.events = try events(inTrainLog: file(trainLogFileName))
            record.ending = try RunStatus.ending(inTrainLog: file(trainLogFileName))
        }
        let config = readConfig(directory: directory)
        record.configText = config.text
        record.configSource = config.source
        if let curve = sftCurve ?? ownCurve ?? config.text.flatMap({ sftCurveCandidate(configText: $0, runDirectory: directory) }) {
            record.sftCurvePath = curve
            for line in try completeLines(of: curve) {
                do { record.sftCurve.append(try StepMetrics.jsonDecoder().decode(SFTPoint.self, from: Data(line.text.utf8))) } catch {
                    throw CermError.invalid("\(curve):\(line.number): not an SFT curve line (\(describe(error)))")
                }
            }
        }
        if let results = try? String(contentsOfFile: file(resultsFileName), encoding: .utf8) { record.results = results }
        return record
    }

    /// The newline-terminated, non-blank lines of a file with their 1-based numbers.
    static func completeLines(of path: String) throws -> [(number: Int, text: String)] {
        if let problem = directoryInsteadOfFile(path) { throw CermError.io(path: path, reason: problem) }
        guard let data = FileManager.default.contents(atPath: path) else { throw CermError.io(path: path, reason: "cannot read") }
        var lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        // The part after the last newline is still being written (or empty).
        lines.removeLast()
        return lines.enumerated().compactMap { index, bytes in
            let text = String(decoding: bytes, as: UTF8.self)
            return text.allSatisfy(\.isWhitespace) ? nil : (index + 1, text)
        }
    }

    /// A decoding error in a few words (`missing key "kl"`), not Foundation's paragraph.
    static func describe(_ error: any Error) -> String {
        guard let decoding = error as? DecodingError else { return "\(error)" }
        func path(_ context: DecodingError.Context) -> String { context.codingPath.map(\.stringValue).joined(separator: ".") }
        switch decoding {
        case let .keyNotFound(key, _): return "missing key \"\(key.stringValue)\""
        case let .typeMismatch(type, context): return "key \"\(path(context))\" is not \(type)"
        case let .valueNotFound(type, context): return "key \"\(path(context))\" is null, expected \(type)"
        case .dataCorrupted: return "not a JSON object"
        @unknown default: return "\(error)"
        }
    }

    /// The `[train] event` lines of `train.log` since the current run started: a fresh run that
    /// moved an earlier run's `metrics.jsonl` aside (`run_superseded` naming it) starts anew.
    static func events(inTrainLog path: String) throws -> [Event] {
        let marker = " [train] event "
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var events: [Event] = []
        for line in try completeLines(of: path) {
            guard let range = line.text.range(of: marker),
                  let time = formatter.date(from: String(line.text.prefix { $0 != " " })) else { continue }
            let rest = line.text[range.upperBound...]
            let name = String(rest.prefix { $0 != " " })
            let event = Event(time: time.timeIntervalSince1970, name: name,
                              fields: rest.dropFirst(name.count).trimmingCharacters(in: .whitespaces))
            if name == "run_superseded", event.fields.contains(metricsFileName) { events.removeAll() }
            events.append(event)
        }
        return events
    }

    /// The config stored in the newest checkpoint that can be read (the run directory keeps it
    /// nowhere else), with where it came from; or nil with the reason.
    static func readConfig(directory: String) -> (text: String?, source: String) {
        let checkpoints = CheckpointFormat.checkpointFiles(in: directory).sorted { $0.step > $1.step }
        guard !checkpoints.isEmpty else {
            return (nil, "unknown: no checkpoint in \(directory) yet, and a run keeps its config only in its checkpoints (/\(CheckpointFormat.configDataset))")
        }
        var problems: [String] = []
        for checkpoint in checkpoints {
            do {
                let file = try CheckpointReader.open(checkpoint.path)
                defer { try? file.close() }
                let bytes = try file.root.read(CheckpointFormat.configDataset, as: UInt8.self).values
                guard let text = String(validating: bytes, as: UTF8.self) else {
                    throw CermError.io(path: checkpoint.path, reason: "/\(CheckpointFormat.configDataset) is not UTF-8")
                }
                return (text, "\((checkpoint.path as NSString).lastPathComponent) (/\(CheckpointFormat.configDataset))")
            } catch {
                problems.append("\((checkpoint.path as NSString).lastPathComponent): \(error)")
            }
        }
        return (nil, "unknown: no checkpoint's config could be read (\(problems.joined(separator: "; ")))")
    }

    /// The SFT curve next to the config's `sft.output`, when it exists: the path as given
    /// (relative to the working directory, as `cerm sft` resolved it) or relative to the run
    /// directory's grandparent (`Checkpoints/<run>` → the directory `cerm` ran in).
    static func sftCurveCandidate(configText: String, runDirectory: String) -> String? {
        guard let config = try? Config.parse(configText) else { return nil }
        let curve = SFTMetricsFile.path(forWeights: config.sft.output)
        if curve.hasPrefix("/") { return FileManager.default.fileExists(atPath: curve) ? curve : nil }
        let root = ((runDirectory as NSString).standardizingPath as NSString).deletingLastPathComponent
        let candidates = [curve, ((root as NSString).deletingLastPathComponent as NSString).appendingPathComponent(curve)]
        return candidates.first { FileManager.default.fileExists(atPath: $0) }
    }

    /// Mean tokens per trajectory of a step.
    static func meanOutputLength(_ step: StepMetrics) -> Double {
        step.trajectories > 0 ? Double(step.generatedTokens) / Double(step.trajectories) : .nan
    }

    /// Where an event falls on the step axis: interpolated between the starts and ends of the
    /// steps around its time (a step starts `time_step_s` before its line was written).
    func stepPosition(ofTime time: Double) -> Double {
        var anchors: [(time: Double, step: Double)] = []
        for step in steps where step.time > 0 {
            let start = step.time - max(0, step.stepSeconds.isFinite ? step.stepSeconds : 0)
            if let last = anchors.last, start < last.time { continue }
            anchors.append((start, Double(step.step - 1)))
            anchors.append((step.time, Double(step.step)))
        }
        guard let first = anchors.first, let last = anchors.last else { return .nan }
        if time <= first.time { return first.step }
        if time >= last.time { return last.step }
        for (a, b) in zip(anchors, anchors.dropFirst()) where time >= a.time && time <= b.time {
            return b.time > a.time ? a.step + (time - a.time) / (b.time - a.time) * (b.step - a.step) : b.step
        }
        return last.step
    }
}
