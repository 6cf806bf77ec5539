import Foundation
import Shared

/// The inputs of a cold-start SFT run, from a run's configuration.
public enum SFTData {
    /// Writes the synthetic task (`data.synth_*` keys) into `data.dir` when any of the files
    /// the config reads from that directory is missing. Returns the paths written (empty when
    /// nothing was missing). Files outside `data.dir` are never generated: a missing external
    /// file is the user's to provide, and loading it reports the error.
    @discardableResult
    public static func ensureSynthetic(_ data: DataConfig) throws -> [String] {
        let directory = (data.dir as NSString).standardizingPath
        let wanted = [data.train, data.eval, data.bestOfN].filter { !$0.isEmpty }
        let generated = wanted.filter { ((($0 as NSString).deletingLastPathComponent) as NSString).standardizingPath == directory }
        guard generated.contains(where: { !FileManager.default.fileExists(atPath: $0) }) else { return [] }
        let dataset = SyntheticTask.generate(trainCount: data.synthTrain, evalCount: data.synthEval, seed: data.synthSeed, bestOfN: 4)
        return try SyntheticTask.write(dataset, to: data.dir, bestOfN: 4)
    }

    /// All records of a preference file (pairs and Best-of-N items) under the config's format rules.
    public static func records(path: String, data: DataConfig) throws -> (records: [PreferenceRecord], report: LoadReport) {
        var records: [PreferenceRecord] = []
        let report = try PreferenceLoader(format: data.format, skipBad: data.skipBad).stream(path: path) { records.append($0) }
        return (records, report)
    }

    /// The teacher of a run: `data.teacher_error_rate`, seeded by the run seed so its mistakes
    /// are fixed for the run.
    public static func teacher(_ config: Config) -> Teacher {
        Teacher(errorRate: config.data.teacherErrorRate, seed: config.run.seed)
    }

    /// The teacher's traces for every response of `data.train`, in `rollout.format`; throws when the file has no
    /// query the teacher knows. `log` gets the lines `data.skip_bad` skipped
    /// (``LoadReport/skippedLinesReport(rest:limit:)``).
    public static func traces(_ config: Config, log: (String) -> Void) throws -> (traces: [SFTTrace], unsupported: Int) {
        let (records, report) = try records(path: config.data.train, data: config.data)
        report.skippedLinesReport(rest: "SFT uses the teacher's traces of the other \(report.records) records").forEach(log)
        let result = teacher(config).sftTraces(for: records, format: makePromptFormat(config.rollout.format))
        guard !result.traces.isEmpty else {
            throw CermError.invalid("\(config.data.train): no record has a query the synthetic-task teacher knows (\(result.unsupported) unsupported); SFT needs teacher traces")
        }
        return result
    }

    /// The traces of an SFT trace file (docs/DATA.md, "SFT traces"), their criteria and
    /// evaluations checked with the parsers of `format` (the run's `rollout.format`); throws
    /// when it has none.
    public static func traces(path: String, format: any PromptFormat) throws -> [SFTTrace] {
        let traces = try SFTTrace.load(path: path, format: format)
        guard !traces.isEmpty else { throw CermError.invalid("\(path): no SFT traces") }
        return traces
    }
}
