import ArgumentParser
import Configuration
import Coordinator
import Datasets
import Foundation
import Method
import Shared

extension DataFormat: ExpressibleByArgument {}
extension PromptFormatName: ExpressibleByArgument {}

/// `cerm data …`: the synthetic task, file checks and the programmatic teacher (docs/DATA.md).
struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Preference data: generate the synthetic task, check files, run the teacher.",
        subcommands: [Synth.self, Check.self, TeacherCommand.self, SFTTraces.self])

    struct Synth: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the synthetic task: train.jsonl, eval.jsonl (held-out queries), bo<N>.jsonl and validation.jsonl.",
            discussion: """
            Sizes, seed and directory default to the [data] section of --config (data.dir, \
            data.synth_train, data.synth_eval, data.synth_seed, and data.synth_validation when \
            data.validation is set), the files `cerm sft` and `cerm eval` generate for that \
            config; without --config to the built-in defaults (data/synth, 16000, 200, 7, no \
            validation split). An option given overrides its key. Validation pairs, for choosing \
            settings, have queries found in neither train nor eval.
            """)

        @Option(help: "The run configuration whose [data] keys give the defaults below.")
        var config: String?
        @Option(help: "Output directory (default data.dir).")
        var out: String?
        @Option(help: "Training pairs (default data.synth_train).")
        var train: Int?
        @Option(help: "Held-out evaluation pairs and Best-of-N items (default data.synth_eval).")
        var eval: Int?
        @Option(help: "Validation pairs, written to validation.jsonl when > 0 (default data.synth_validation when data.validation is set, else 0).")
        var validation: Int?
        @Option(help: "Generation seed (default data.synth_seed).")
        var seed: UInt64?
        @Option(name: .customLong("bon-n"), help: "Responses per Best-of-N item (0 or 1: no Best-of-N file); queries without that many distinct responses get no item.")
        var bestOfN: Int = 4

        func validate() throws {
            guard (train ?? 0) >= 0, (eval ?? 0) >= 0, (validation ?? 0) >= 0 else { throw ValidationError("--train, --eval and --validation must be ≥ 0") }
            guard (0...16).contains(bestOfN) else { throw ValidationError("--bon-n must be in 0…16") }
        }

        func run() throws {
            let data = try config.map { try loadConfigOrExit($0).data } ?? DataConfig()
            let (out, train, eval, seed) = (out ?? data.dir, train ?? data.synthTrain, eval ?? data.synthEval, seed ?? data.synthSeed)
            let validation = validation ?? (data.validation.isEmpty ? 0 : data.synthValidation)
            let dataset = SyntheticTask.generate(trainCount: train, evalCount: eval, seed: seed, bestOfN: bestOfN, validationCount: validation)
            let paths: [String]
            let manifest = SyntheticManifest(seed: seed, train: train, eval: eval, validation: validation, bestOfN: bestOfN >= 2 ? bestOfN : 0)
            do { paths = try SyntheticTask.write(dataset, to: out, bestOfN: bestOfN, manifest: manifest) } catch { throw exitWithError(error) }
            // An eval query with fewer than bestOfN distinct responses gets no Best-of-N item.
            let skipped = bestOfN >= 2 ? dataset.eval.count - dataset.bestOfN.count : 0
            let note = skipped > 0 ? "; \(skipped) eval queries have fewer than \(bestOfN) distinct responses and got no item" : ""
            let validationNote = validation > 0 ? ", validation: \(dataset.validation.count) pairs" : ""
            print("train: \(dataset.train.count) pairs, eval: \(dataset.eval.count) pairs, best-of-\(bestOfN): \(dataset.bestOfN.count) items\(validationNote)\(note) (seed \(seed))")
            paths.forEach { print("wrote \($0)") }
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a preference file and print counts per task type.",
            discussion: """
            With --config, every prompt of a record (criteria, evaluation, judgment or \
            comparison, by reward.mode and rollout.format) must fit model.max_seq_len, as the \
            coordinator's data load requires, and the config's data.format applies unless \
            --format is given. Without it prompt lengths are not checked, and the output says so.
            """)

        @Argument(help: "The JSON Lines file.")
        var file: String
        @Option(help: "auto, canonical, skywork, rewardbench or bon (default data.format of --config, else auto).")
        var format: DataFormat?
        @Flag(help: "Report and count bad lines instead of stopping at the first.")
        var skipBad = false
        @Option(help: "A run configuration: check that every prompt fits its model.max_seq_len.")
        var config: String?

        func run() throws {
            // Prompts are measured in the tokens of the config's model (model.source's tokenizer).
            let run = try config.map { try loadRunConfigOrExit($0) }
            let cfg = run?.0
            let loader = PreferenceLoader(format: format ?? cfg?.data.format ?? .auto, skipBad: skipBad,
                                          recordCheck: run.map { DatasetPairSource.promptFitCheck(config: $0.0, chat: $0.1.chat) })
            let report = try loadOrExit { try loader.stream(path: file) { _ in } }
            print("\(file): format \(report.format?.rawValue ?? "none"), \(report.records) records, \(report.skipped.count) skipped, \(report.blankLines) blank lines")
            for (type, count) in report.countsByTaskType.sorted(by: { $0.key < $1.key }) { print("  \(type): \(count)") }
            for error in report.skipped { print("skipped \(error)") }
            if let cfg {
                print("prompt lengths checked against model.max_seq_len \(cfg.model.maxSeqLen) (\(config ?? ""))")
            } else {
                print("prompt lengths not checked (pass --config to check them against model.max_seq_len)")
            }
            if report.records == 0 {
                FileHandle.standardError.write(Data("error: \(file): no records\n".utf8))
                throw ExitCode(1)
            }
        }
    }

    struct TeacherCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "teacher",
            abstract: "Accuracy of the programmatic teacher: pairwise and Best-of-N, overall and per task type.")

        @Option(help: "Pairs (or Best-of-N items) to judge, e.g. the eval split.")
        var data: String = DataConfig().eval
        @Option(help: "Best-of-N file (default: bo4.jsonl beside --data, when it exists; '' for none).")
        var bon: String?
        @Option(help: "Teacher seed (fixes its mistakes).")
        var seed: UInt64 = 0
        @Option(help: "Teacher error rate in 0…1 (data.teacher_error_rate): 0 is a perfect teacher.")
        var errorRate: Double = DataConfig().teacherErrorRate
        @Option(name: .customLong("kind-rate"), help: "Override one criterion kind's miss rate, e.g. count=0.5 (repeatable).")
        var kindRates: [String] = []
        @Option(help: "auto, canonical, skywork, rewardbench or bon.")
        var format: DataFormat = .auto

        func run() throws {
            let teacher = Teacher(errors: try teacherErrorProfile(errorRate: errorRate, kindRates: kindRates), seed: seed)
            let loader = PreferenceLoader(format: format)
            var pairs: [PreferencePair] = []
            var items: [BestOfNItem] = []
            try loadOrExit {
                try loader.stream(path: data) { record in
                    switch record {
                    case let .pair(p): pairs.append(p)
                    case let .bestOfN(b): items.append(b)
                    }
                }
            }
            let bonPath = bon ?? ((data as NSString).deletingLastPathComponent as NSString).appendingPathComponent("bo4.jsonl")
            if !bonPath.isEmpty, bonPath != data, bon != nil || FileManager.default.fileExists(atPath: bonPath) {
                items += try loadOrExit { try PreferenceLoader(format: .auto).loadBestOfN(path: bonPath).items }
            }
            print("teacher (error rate \(errorRate), seed \(seed)) on \(data)\(items.isEmpty ? "" : " + \(bonPath)")")
            print(teacher.measure(pairs: pairs, bestOfN: items).summary)
        }
    }

    struct SFTTraces: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sft-traces",
            abstract: "Write the teacher's SFT examples (query, criteria, response, evaluation) for every response.")

        @Option(help: "Pairs or Best-of-N items, e.g. the train split.")
        var data: String = DataConfig().train
        @Option(help: "Output JSON Lines file.")
        var out: String
        @Option(help: "Teacher seed (fixes its mistakes).")
        var seed: UInt64 = 0
        @Option(help: "Teacher error rate in 0…1 (data.teacher_error_rate).")
        var errorRate: Double = DataConfig().teacherErrorRate
        @Option(name: .customLong("kind-rate"), help: "Override one criterion kind's miss rate, e.g. count=0.5 (repeatable).")
        var kindRates: [String] = []
        @Option(help: "Evaluation samples per response (different mistakes, same criteria).")
        var samples: Int = 1
        @Option(help: "Prompt format the traces are written in (rollout.format): compact or cerm.")
        var format: PromptFormatName = .compact

        func validate() throws {
            guard samples >= 1 else { throw ValidationError("--samples must be ≥ 1") }
        }

        func run() throws {
            let teacher = Teacher(errors: try teacherErrorProfile(errorRate: errorRate, kindRates: kindRates), seed: seed)
            var records: [PreferenceRecord] = []
            try loadOrExit { try PreferenceLoader().stream(path: data) { records.append($0) } }
            let (traces, unsupported) = teacher.sftTraces(for: records, samples: samples, format: makePromptFormat(format))
            let lines = traces.map(\.jsonLine)
            do {
                try lines.map { $0 + "\n" }.joined().write(toFile: out, atomically: true, encoding: .utf8)
            } catch {
                throw CermError.io(path: out, reason: "cannot write (\(error.localizedDescription))")
            }
            print("wrote \(lines.count) SFT traces to \(out)\(unsupported > 0 ? " (\(unsupported) responses with unknown queries skipped)" : "")")
        }
    }
}

/// The teacher's error profile for `--error-rate` and the `--kind-rate` overrides; a bad
/// override is printed as `error: --kind-rate "bogus=1": unknown kind bogus; kinds: …`, an
/// `--error-rate` outside 0…1 (the range of `data.teacher_error_rate`) as `error: --error-rate 5.0:
/// the rate must be a number in 0…1`; both exit with status 64, the status of the argument
/// parser's own usage errors.
func teacherErrorProfile(errorRate: Double, kindRates: [String]) throws -> TeacherErrorProfile {
    // `scaled` caps each kind's rate at 1, so 5 would quietly mean a teacher that misses every flaw.
    guard (0...1).contains(errorRate) else {
        FileHandle.standardError.write(Data("error: --error-rate \(errorRate): the rate must be a number in 0…1\n".utf8))
        throw ExitCode.validationFailure
    }
    do {
        return try TeacherErrorProfile.scaled(errorRate).applying(overrides: kindRates)
    } catch {
        FileHandle.standardError.write(Data("error: --kind-rate \(error)\n".utf8))
        throw ExitCode.validationFailure
    }
}

/// Runs a load, printing a ``DataError`` as `error: FILE:LINE: FIELD: message` and exiting with status 1.
@discardableResult
func loadOrExit<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as DataError {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode(1)
    }
}
