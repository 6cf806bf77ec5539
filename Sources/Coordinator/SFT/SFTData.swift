import Configuration
import Datasets
import Foundation
import Method
import Shared

/// The inputs of a cold-start SFT run, from a run's configuration.
public enum SFTData {
    /// Writes the synthetic task (`data.synth_*` keys) into `data.dir` when none of the data
    /// files the config names (`data.train`, `data.eval`, `data.best_of_n` and `data.validation`
    /// unless empty)
    /// exists, and each is the synthetic task's file of its kind in `data.dir`. Returns the
    /// paths written (empty when all exist). A user's data file is never overwritten: when
    /// some exist and others are missing, or a missing one is not a file the synthetic task
    /// writes, it throws naming the missing keys and paths and what to do.
    @discardableResult
    public static func ensureSynthetic(_ data: DataConfig) throws -> [String] {
        func standard(_ path: String) -> String { (path as NSString).standardizingPath }
        func synthetic(_ name: String) -> String { (data.dir as NSString).appendingPathComponent(name) }
        let files = [("data.train", data.train, synthetic("train.jsonl")), ("data.eval", data.eval, synthetic("eval.jsonl")),
                     ("data.best_of_n", data.bestOfN, synthetic("bo4.jsonl")),
                     ("data.validation", data.validation, synthetic("validation.jsonl"))].filter { !$0.1.isEmpty }
        let missing = files.filter { !FileManager.default.fileExists(atPath: $0.1) }
        guard !missing.isEmpty else {
            if files.allSatisfy({ standard($0.1) == standard($0.2) }) { try checkManifest(data) }
            return []
        }
        let present = files.filter { FileManager.default.fileExists(atPath: $0.1) }
        let foreign = missing.filter { standard($0.1) != standard($0.2) }
        if present.isEmpty && foreign.isEmpty {
            let manifest = expectedManifest(data)
            let dataset = SyntheticTask.generate(trainCount: manifest.train, evalCount: manifest.eval, seed: manifest.seed,
                                                 bestOfN: manifest.bestOfN, validationCount: manifest.validation)
            return try SyntheticTask.write(dataset, to: data.dir, bestOfN: manifest.bestOfN, manifest: manifest)
        }
        let noun = missing.count == 1 ? "file" : "files"
        var message = "missing data \(noun): " + missing.map { "\($0.0) = \(JSONWriter.quote($0.1))" }.joined(separator: ", ")
        var remedies = ["point \(listed(missing.map(\.0))) at \(missing.count == 1 ? "an existing file" : "existing files")"]
        if missing.contains(where: { $0.0 == "data.best_of_n" }) { remedies.append("set data.best_of_n = \"\" to skip Best-of-N") }
        if missing.contains(where: { $0.0 == "data.validation" }) { remedies.append("set data.validation = \"\" to have no validation split") }
        if !present.isEmpty {
            message += " (\(listed(present.map(\.0))) \(present.count == 1 ? "exists" : "exist")); cerm generates the synthetic task "
                + "only when none of the data files exists and never overwrites one"
            if foreign.isEmpty {
                remedies.append("remove \(listed(present.map { JSONWriter.quote($0.1) })) to have the synthetic task generated into \(JSONWriter.quote(data.dir))")
            }
        } else {
            // Generating would leave these still missing: the synthetic task writes fixed names.
            message += "; the synthetic task generated into data.dir would write "
                + listed(foreign.map { "\(JSONWriter.quote($0.2)) for \($0.0)" }) + " instead"
            remedies.append("point \(listed(foreign.map(\.0))) at \(foreign.count == 1 ? "that file" : "those files") to have it generated")
        }
        throw CermError.invalid(message + ": " + remedies.dropLast().joined(separator: ", ") + (remedies.count > 1 ? ", or " : "") + remedies.last!)
    }

    /// What the synthetic task generated for `data` is made of.
    static func expectedManifest(_ data: DataConfig) -> SyntheticManifest {
        SyntheticManifest(seed: data.synthSeed, train: data.synthTrain, eval: data.synthEval,
                          validation: data.validation.isEmpty ? 0 : data.synthValidation, bestOfN: 4)
    }

    /// Existing synthetic files generated with other `data.synth_*` keys than `data` has (their
    /// `synthetic.json` says so) are an error naming the keys: reused, they would train and
    /// evaluate on the old task. A key whose file the config does not read is not compared.
    private static func checkManifest(_ data: DataConfig) throws {
        guard let found = try SyntheticManifest.read(directory: data.dir) else { return }
        let expected = expectedManifest(data)
        var differences: [(key: String, found: String, expected: String)] = []
        if found.seed != expected.seed { differences.append(("data.synth_seed", "\(found.seed)", "\(expected.seed)")) }
        if found.train != expected.train { differences.append(("data.synth_train", "\(found.train)", "\(expected.train)")) }
        if found.eval != expected.eval { differences.append(("data.synth_eval", "\(found.eval)", "\(expected.eval)")) }
        if !data.validation.isEmpty, found.validation != expected.validation {
            differences.append(("data.synth_validation", "\(found.validation)", "\(expected.validation)"))
        }
        guard !differences.isEmpty else { return }
        throw CermError.invalid("\(JSONWriter.quote(data.dir)) holds the synthetic task generated with "
            + listed(differences.map { "\($0.key) = \($0.found) (this config: \($0.expected))" })
            + "; cerm never overwrites a data file: remove \(JSONWriter.quote(data.dir)) to have the task generated again "
            + "(and train again what was trained on it, e.g. sft.output: `cerm pipeline` does), or set the keys back")
    }

    /// `a`, `a and b`, `a, b and c`.
    private static func listed(_ items: [String]) -> String {
        items.count < 2 ? items.joined() : items.dropLast().joined(separator: ", ") + " and " + items.last!
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

    /// What `cerm sft` trains on: the traces of the trace file `tracesPath` (nil: the built-in
    /// teacher's traces of `data.train`) in `format`, as sequences of `sft.criteria_turn`, with
    /// the number of traces and of records the teacher does not know. `cerm pipeline` computes
    /// them too, to tell whether existing SFT weights were trained on them (``SFTProvenance``).
    public static func sequences(_ config: Config, format: any PromptFormat, tracesPath: String?, log: (String) -> Void) throws
        -> (sequences: [SFTSequence], traces: Int, unsupported: Int) {
        let (found, unsupported) = try tracesPath.map { (try Self.traces(path: $0, format: format, maxSeqLen: config.model.maxSeqLen), 0) }
            ?? Self.traces(config, format: format, log: log)
        return (SFTSequenceBuilder.sequences(for: found, format: format, criteria: config.sft.criteriaTurn), found.count, unsupported)
    }

    /// The teacher's traces, in `format` (the run's `rollout.format` through its model's chat),
    /// for every response of `data.train`; throws
    /// when the file has no query the teacher knows. A record with a response whose trace makes
    /// an SFT sequence longer than `model.max_seq_len` is a bad line,
    /// `FILE:LINE: chosen: the teacher's SFT sequence has N tokens; model.max_seq_len is M`
    /// (field `rejected` or `responses[k]` for the other responses), skipped under
    /// `data.skip_bad`. `log` gets the lines `data.skip_bad` skipped
    /// (``LoadReport/skippedLinesReport(rest:limit:)``).
    public static func traces(_ config: Config, format: any PromptFormat, log: (String) -> Void) throws -> (traces: [SFTTrace], unsupported: Int) {
        let teacher = teacher(config)
        let maxSeqLen = config.model.maxSeqLen
        // Checked per record while loading, so the error names the line; the traces are
        // cheap to compute again below.
        let fits: @Sendable (PreferenceRecord) -> (field: String, message: String)? = { record in
            let fields = switch record {
            case .pair: ["chosen", "rejected"]
            case let .bestOfN(item): item.responses.indices.map { "responses[\($0)]" }
            }
            for (field, trace) in zip(fields, teacher.sftTraces(for: [record], format: format).traces) {
                if let problem = tooLong(trace, format: format, maxSeqLen: maxSeqLen) { return (field, "the teacher's " + problem) }
            }
            return nil
        }
        var records: [PreferenceRecord] = []
        let report = try PreferenceLoader(format: config.data.format, skipBad: config.data.skipBad, recordCheck: fits)
            .stream(path: config.data.train) { records.append($0) }
        report.skippedLinesReport(rest: "SFT uses the teacher's traces of the other \(report.records) records").forEach(log)
        let result = teacher.sftTraces(for: records, format: format)
        guard !result.traces.isEmpty else {
            throw CermError.invalid("\(config.data.train): no record has a query the synthetic-task teacher knows (\(result.unsupported) unsupported); SFT needs teacher traces")
        }
        return result
    }

    /// The traces of an SFT trace file (docs/DATA.md, "SFT traces"), their criteria and
    /// evaluations checked with the parsers of `format` (the run's `rollout.format`); throws
    /// when it has none, or with `maxSeqLen` at the first trace whose SFT sequence is longer
    /// than that: `FILE:LINE: trace "ID": its SFT sequence has N tokens; model.max_seq_len is M`.
    public static func traces(path: String, format: any PromptFormat, maxSeqLen: Int? = nil) throws -> [SFTTrace] {
        var traces: [SFTTrace] = []
        try SFTTrace.streamNumbered(path: path, format: format) { line, trace in
            if let maxSeqLen, let problem = tooLong(trace, format: format, maxSeqLen: maxSeqLen) {
                throw CermError.invalid("\(path):\(line): trace \(JSONWriter.quote(trace.id)): its \(problem)")
            }
            traces.append(trace)
        }
        guard !traces.isEmpty else { throw CermError.invalid("\(path): no SFT traces") }
        return traces
    }

    /// Why `trace` cannot train a model of `maxSeqLen` positions, or nil when it fits. Its
    /// evaluation sequence is its longest under either `sft.criteria_turn` (it holds the
    /// criteria turn as its prefix); `maxSeqLen + 1` tokens still fit, the last one being a
    /// target only.
    static func tooLong(_ trace: SFTTrace, format: any PromptFormat, maxSeqLen: Int) -> String? {
        let tokens = SFTSequenceBuilder.sequences(for: [trace], format: format, criteria: .separate).map(\.tokens.count).max() ?? 0
        return tokens > maxSeqLen + 1 ? "SFT sequence has \(tokens) tokens; model.max_seq_len is \(maxSeqLen)" : nil
    }
}
