import Configuration
@testable import Coordinator
import Datasets
import Engine
import Foundation
import Method
import ModelFormats
import Shared
import TestSupport
import Testing

/// The `cerm` executable as a user runs it: messages and files of single commands.
@Suite struct CommandLineTests {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var stderrLines: [String] { stderr.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) }
    }

    /// Runs `cerm ARGUMENTS` in `directory`; nil (with an issue recorded) without a built binary.
    static func cerm(_ arguments: [String], in directory: String) throws -> Result? {
        guard let binary = TestCluster.cermBinary else {
            Issue.record("no cerm binary under .build/{debug,release}: run `swift build --build-tests` first")
            return nil
        }
        let out = (directory as NSString).appendingPathComponent(".stdout"), err = (directory as NSString).appendingPathComponent(".stderr")
        for path in [out, err] { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        // Files, not pipes: a full pipe would block the child before it exits.
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
        try process.run()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: try String(contentsOfFile: out, encoding: .utf8),
                      stderr: try String(contentsOfFile: err, encoding: .utf8))
    }

    /// Starts `cerm ARGUMENTS` in `directory` without waiting, its stderr going to a file (whose
    /// path is returned) and stdout discarded; nil (with an issue recorded) without a built binary.
    static func start(_ arguments: [String], in directory: String) throws -> (Process, stderr: String)? {
        guard let binary = TestCluster.cermBinary else {
            Issue.record("no cerm binary under .build/{debug,release}: run `swift build --build-tests` first")
            return nil
        }
        let err = (directory as NSString).appendingPathComponent(".stderr")
        _ = FileManager.default.createFile(atPath: err, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
        try process.run()
        return (process, err)
    }

    /// `text` with every run of whitespace as one space (help text is wrapped to the terminal).
    static func words(_ text: String) -> String {
        text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    static func directory(_ label: String, config: String = "") throws -> String {
        let dir = try makeTemporaryDirectory("cli-\(label)")
        try config.write(toFile: (dir as NSString).appendingPathComponent("c.toml"), atomically: true, encoding: .utf8)
        return dir
    }

    /// `cerm eval` without --data writes the synthetic task into data.dir when no data file exists,
    /// and says so (it used to do it silently); a second run finds the files and says nothing.
    @Test func evalLogsTheSyntheticTaskItGenerates() throws {
        let dir = try Self.directory("eval-generates", config: "[data]\nsynth_train = 6\nsynth_eval = 3\n")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        guard let first = try Self.cerm(["eval", "--teacher", "--config", "c.toml", "--threads", "1"], in: dir) else { return }
        #expect(first.status == 0)
        let generated = first.stderrLines.filter { $0.hasPrefix("generated ") }
        #expect(generated == ["generated data/synth/train.jsonl", "generated data/synth/eval.jsonl", "generated data/synth/bo4.jsonl"])
        for file in ["train", "eval", "bo4"] {
            #expect(FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent("data/synth/\(file).jsonl")))
        }
        let second = try #require(try Self.cerm(["eval", "--teacher", "--config", "c.toml", "--threads", "1"], in: dir))
        #expect(second.status == 0)
        #expect(!second.stderr.contains("generated "))

        let help = try #require(try Self.cerm(["eval", "--help"], in: dir))
        #expect(Self.words(help.stdout).contains("exists, the synthetic task (data.synth_train, data.synth_eval, data.synth_seed) is "
                                                 + "written into data.dir first, as `cerm sft` does, and each file written is logged to "
                                                 + "stderr as \"generated PATH\"; when only some exist it stops naming the missing ones, "
                                                 + "since an existing data file is never overwritten."))
    }

    /// With data.validation set, the synthetic task also writes the validation split, and
    /// `cerm eval --validation` evaluates it (pairs only, no Best-of-N); without it, it says
    /// there is no validation split and how to get one.
    @Test func evalValidationEvaluatesTheValidationSplit() throws {
        let dir = try Self.directory("eval-validation", config: """
            [data]
            validation = "data/synth/validation.jsonl"
            synth_train = 6
            synth_eval = 3
            synth_validation = 4

            """)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        guard let run = try Self.cerm(["eval", "--teacher", "--config", "c.toml", "--threads", "1", "--validation", "--json"], in: dir) else { return }
        #expect(run.status == 0)
        #expect(run.stderrLines.filter { $0.hasPrefix("generated ") } == [
            "generated data/synth/train.jsonl", "generated data/synth/eval.jsonl", "generated data/synth/bo4.jsonl",
            "generated data/synth/validation.jsonl"])
        let lines = try String(contentsOfFile: (dir as NSString).appendingPathComponent("data/synth/validation.jsonl"), encoding: .utf8)
        #expect(lines.split(separator: "\n").count == 4)
        #expect(run.stdout.contains("\"files\":[\"data/synth/validation.jsonl\"]"))

        try "[data]\nsynth_train = 6\nsynth_eval = 3\n".write(toFile: (dir as NSString).appendingPathComponent("none.toml"), atomically: true, encoding: .utf8)
        let none = try #require(try Self.cerm(["eval", "--teacher", "--config", "none.toml", "--validation"], in: dir))
        #expect(none.status == 2)
        #expect(none.stderr == "error: none.toml: data.validation is empty: there is no validation split (set data.validation, "
                + "e.g. to \"data/synth/validation.jsonl\", to have one generated)\n")
    }

    /// Synthetic files generated with other data.synth_* keys are not silently reused (a config
    /// whose synth_train went from 240 to 480 trained on the 240 old pairs): their
    /// synthetic.json names what they were generated with.
    @Test func syntheticFilesOfOtherKeysAreRefusedByName() throws {
        let dir = try Self.directory("synth-manifest")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var data = DataConfig()
        data.dir = (dir as NSString).appendingPathComponent("synth")
        (data.train, data.eval, data.bestOfN) = (data.dir + "/train.jsonl", data.dir + "/eval.jsonl", data.dir + "/bo4.jsonl")
        (data.synthTrain, data.synthEval) = (6, 3)
        #expect(try SFTData.ensureSynthetic(data) == [data.train, data.eval, data.bestOfN])
        let manifest = try #require(try SyntheticManifest.read(directory: data.dir))
        #expect(manifest == SyntheticManifest(seed: 7, train: 6, eval: 3, validation: 0, bestOfN: 4))
        #expect(manifest.jsonLine == #"{"bestOfN":4,"eval":3,"seed":7,"train":6,"validation":0}"#)
        #expect(try SFTData.ensureSynthetic(data) == [])
        // A validation split the config does not read is not compared.
        data.synthValidation = 50
        #expect(try SFTData.ensureSynthetic(data) == [])

        data.synthTrain = 8
        data.synthSeed = 9
        #expect(throws: CermError.invalid("\"\(data.dir)\" holds the synthetic task generated with data.synth_seed = 7 (this config: 9) "
            + "and data.synth_train = 6 (this config: 8); cerm never overwrites a data file: remove \"\(data.dir)\" to have the task "
            + "generated again (and train again what was trained on it, e.g. sft.output: `cerm pipeline` does), or set the keys back")) { try SFTData.ensureSynthetic(data) }
        try "{".write(toFile: data.dir + "/synthetic.json", atomically: true, encoding: .utf8)
        #expect(throws: CermError.self) { try SFTData.ensureSynthetic(data) }
    }

    /// The user's own data.train and data.eval with data.best_of_n missing: `cerm sft` used to
    /// regenerate the synthetic task over both and train on it. It now refuses, naming the
    /// missing key and what to do, and leaves the files as they were; so does `cerm eval` when
    /// data.train is mistyped.
    @Test func sftAndEvalNeverOverwriteTheUsersDataFiles() throws {
        let dir = try Self.directory("own-data", config: """
            [data]
            dir = "mine"
            train = "mine/train.jsonl"
            eval = "mine/eval.jsonl"
            best_of_n = "mine/bo4.jsonl"
            synth_train = 6
            synth_eval = 3

            """)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let mine = (dir as NSString).appendingPathComponent("mine")
        try FileManager.default.createDirectory(atPath: mine, withIntermediateDirectories: true)
        let own = ["train": PreferencePair(id: "mine-t", query: "What is 2+2?", chosen: "4", rejected: "5"),
                   "eval": PreferencePair(id: "mine-e", query: "What is 3+3?", chosen: "6", rejected: "7")]
        for (name, pair) in own { try (pair.jsonLine + "\n").write(toFile: "\(mine)/\(name).jsonl", atomically: true, encoding: .utf8) }
        func unchanged() throws {
            for (name, pair) in own {
                #expect(try Data(contentsOf: URL(fileURLWithPath: "\(mine)/\(name).jsonl")) == Data((pair.jsonLine + "\n").utf8))
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: mine).sorted() == ["eval.jsonl", "train.jsonl"])
        }

        guard let sft = try Self.cerm(["sft", "--config", "c.toml"], in: dir) else { return }
        #expect(sft.status == 2)
        #expect(sft.stderr == """
            error: missing data file: data.best_of_n = "mine/bo4.jsonl" (data.train and data.eval exist); cerm generates the \
            synthetic task only when none of the data files exists and never overwrites one: point data.best_of_n at an existing \
            file, set data.best_of_n = "" to skip Best-of-N, or remove "mine/train.jsonl" and "mine/eval.jsonl" to have the \
            synthetic task generated into "mine"

            """)
        try unchanged()

        try "[data]\ndir = \"mine\"\ntrain = \"mine/trian.jsonl\"\neval = \"mine/eval.jsonl\"\nbest_of_n = \"\"\n"
            .write(toFile: (dir as NSString).appendingPathComponent("typo.toml"), atomically: true, encoding: .utf8)
        let eval = try #require(try Self.cerm(["eval", "--teacher", "--config", "typo.toml", "--threads", "1"], in: dir))
        #expect(eval.status == 2)
        #expect(eval.stderr == """
            error: missing data file: data.train = "mine/trian.jsonl" (data.eval exists); cerm generates the synthetic task only \
            when none of the data files exists and never overwrites one: point data.train at an existing file

            """)
        try unchanged()
    }

    /// `cerm data synth` into a directory that holds the task's files refuses before writing any.
    @Test func synthNeverOverwrites() throws {
        let dir = try Self.directory("synth-twice")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: (dir as NSString).appendingPathComponent("d"), withIntermediateDirectories: true)
        let own = (dir as NSString).appendingPathComponent("d/eval.jsonl")
        try "mine\n".write(toFile: own, atomically: true, encoding: .utf8)
        guard let result = try Self.cerm(["data", "synth", "--out", "d", "--train", "3", "--eval", "2"], in: dir) else { return }
        #expect(result.status == 2)
        #expect(result.stderr == "error: d/eval.jsonl: exists; cerm does not overwrite a data file (remove it, or write the synthetic task elsewhere)\n")
        #expect(try String(contentsOfFile: own, encoding: .utf8) == "mine\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: (dir as NSString).appendingPathComponent("d")) == ["eval.jsonl"])
    }

    /// A directory where a config or data file is expected is named as such, not as
    /// Foundation's "NSCocoaErrorDomain error 256".
    @Test func directoryGivenAsAFile() throws {
        let dir = try Self.directory("directory-as-file")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: (dir as NSString).appendingPathComponent("sub"), withIntermediateDirectories: true)
        guard let config = try Self.cerm(["config", "check", "sub"], in: dir) else { return }
        #expect(config.status == 2)
        #expect(config.stderr == "error: sub: is a directory, not a file\n")
        let data = try #require(try Self.cerm(["data", "check", "sub"], in: dir))
        #expect(data.status == 1)
        #expect(data.stderr == "error: sub: is a directory, not a file\n")
    }

    /// `cerm data check --config` refuses a pair whose prompts cannot fit model.max_seq_len, as
    /// the coordinator's data load does; without --config it accepts it and says that prompt
    /// lengths were not checked.
    @Test func dataCheckWithConfigChecksPromptLengths() throws {
        let dir = try Self.directory("check-fit", config: "[model]\nmax_seq_len = 128\n")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let long = String(repeating: "x", count: 200)
        let pairs = [PreferencePair(id: "a", query: "fine", chosen: "good", rejected: "bad"),
                     PreferencePair(id: "b", query: long, chosen: "good", rejected: "bad")]
        try (pairs.map(\.jsonLine).joined(separator: "\n") + "\n").write(toFile: (dir as NSString).appendingPathComponent("long.jsonl"), atomically: true, encoding: .utf8)
        try (pairs[0].jsonLine + "\n").write(toFile: (dir as NSString).appendingPathComponent("clean.jsonl"), atomically: true, encoding: .utf8)
        let tooLong = "long.jsonl:2: query: the criteria prompt needs 216 tokens, model.max_seq_len is 128"
        #expect(CompactFormat().criteriaPrompt(query: long).count == 216)

        guard let refused = try Self.cerm(["data", "check", "long.jsonl", "--config", "c.toml"], in: dir) else { return }
        #expect(refused.status == 1)
        #expect(refused.stdout == "")
        #expect(refused.stderr == "error: \(tooLong)\n")

        let skipping = try #require(try Self.cerm(["data", "check", "long.jsonl", "--config", "c.toml", "--skip-bad"], in: dir))
        #expect(skipping.status == 0)
        #expect(skipping.stdout == """
            long.jsonl: format canonical, 1 records, 1 skipped, 0 blank lines
              (none): 1
            skipped \(tooLong)
            prompt lengths checked against model.max_seq_len 128 (c.toml)

            """)

        let clean = try #require(try Self.cerm(["data", "check", "clean.jsonl", "--config", "c.toml"], in: dir))
        #expect(clean.status == 0)
        #expect(clean.stdout == """
            clean.jsonl: format canonical, 1 records, 0 skipped, 0 blank lines
              (none): 1
            prompt lengths checked against model.max_seq_len 128 (c.toml)

            """)

        let unchecked = try #require(try Self.cerm(["data", "check", "long.jsonl"], in: dir))
        #expect(unchecked.status == 0)
        #expect(unchecked.stdout == """
            long.jsonl: format canonical, 2 records, 0 skipped, 0 blank lines
              (none): 2
            prompt lengths not checked (pass --config to check them against model.max_seq_len)

            """)
    }

    /// A bad `--kind-rate` names the option, lowercase `error:` like every other command's
    /// errors, and the usage-error status; it is refused before any data is read.
    @Test(arguments: ["teacher", "sft-traces"])
    func badKindRateNamesTheOption(subcommand: String) throws {
        let dir = try Self.directory("kind-rate")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var arguments = ["data", subcommand, "--data", "missing.jsonl", "--kind-rate", "count=0.5", "--kind-rate", "bogus=1"]
        if subcommand == "sft-traces" { arguments += ["--out", "traces.jsonl"] }
        guard let result = try Self.cerm(arguments, in: dir) else { return }
        #expect(result.status == 64)
        #expect(result.stderr == "error: --kind-rate \"bogus=1\": unknown kind bogus; "
                + "kinds: count case separator topic distinct arithmetic format transform length\n")
        #expect(result.stdout.isEmpty)

        // --error-rate scales the kinds' miss rates: the range of data.teacher_error_rate, said like a kind's.
        arguments = ["data", subcommand, "--data", "missing.jsonl", "--error-rate", "5"]
        if subcommand == "sft-traces" { arguments += ["--out", "traces.jsonl"] }
        let rate = try #require(try Self.cerm(arguments, in: dir))
        #expect(rate.status == 64)
        #expect(rate.stderr == "error: --error-rate 5.0: the rate must be a number in 0…1\n")
        #expect(rate.stdout.isEmpty)
    }

    /// `cerm data synth --config F` takes data.dir and data.synth_* from F, as `cerm sft` and
    /// `cerm eval` generate them; an option overrides its key; without --config the built-in
    /// defaults apply.
    @Test func synthTakesItsDefaultsFromTheConfig() throws {
        let dir = try Self.directory("synth-config", config: "[data]\ndir = \"mine\"\nsynth_train = 5\nsynth_eval = 2\nsynth_seed = 9\n")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        guard let fromConfig = try Self.cerm(["data", "synth", "--config", "c.toml"], in: dir) else { return }
        #expect(fromConfig.status == 0)
        #expect(fromConfig.stdout == """
            train: 5 pairs, eval: 2 pairs, best-of-4: 2 items (seed 9)
            wrote mine/train.jsonl
            wrote mine/eval.jsonl
            wrote mine/bo4.jsonl

            """)
        // The same files `cerm sft`/`cerm eval` generate for this config.
        var data = try Config.load(path: (dir as NSString).appendingPathComponent("c.toml")).data
        data.dir = (dir as NSString).appendingPathComponent("by-sft")
        (data.train, data.eval, data.bestOfN) = (data.dir + "/train.jsonl", data.dir + "/eval.jsonl", data.dir + "/bo4.jsonl")
        #expect(try SFTData.ensureSynthetic(data) == [data.train, data.eval, data.bestOfN])
        for name in ["train", "eval", "bo4"] {
            let bySynth = try Data(contentsOf: URL(fileURLWithPath: (dir as NSString).appendingPathComponent("mine/\(name).jsonl")))
            #expect(try Data(contentsOf: URL(fileURLWithPath: data.dir + "/\(name).jsonl")) == bySynth)
        }

        let overridden = try #require(try Self.cerm(["data", "synth", "--config", "c.toml", "--train", "3", "--seed", "7", "--out", "other"], in: dir))
        #expect(overridden.stdout.hasPrefix("train: 3 pairs, eval: 2 pairs, best-of-4: 2 items (seed 7)\nwrote other/train.jsonl\n"))

        let bad = try #require(try Self.cerm(["data", "synth", "--config", "missing.toml"], in: dir))
        #expect(bad.status == 2 && bad.stderr.hasPrefix("error: missing.toml: cannot read file"))
    }

    /// DATA.md's example: with seed 7 and the default --eval 200, the first train pair.
    @Test func synthDocumentedFirstTrainPair() throws {
        let dir = try Self.directory("synth-example")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        guard let result = try Self.cerm(["data", "synth", "--out", "d", "--train", "1"], in: dir) else { return }
        #expect(result.stdout.hasPrefix("train: 1 pairs, eval: 200 pairs, best-of-4: 200 items (seed 7)\n"))
        let first = try String(contentsOfFile: (dir as NSString).appendingPathComponent("d/train.jsonl"), encoding: .utf8)
        #expect(first == #"{"id":"train-0","query":"List 4 tools in uppercase, separated by \"/\".","chosen":"CHISEL/SAW/AXE/SPADE","rejected":"CHISEL/Saw/AXE/SPADE","task_type":"list"}"# + "\n")
    }

    /// With a large N some eval queries cannot have N distinct responses: the count of those
    /// left out is printed (it used to be silent).
    @Test func synthSaysWhichQueriesGotNoBestOfNItem() throws {
        let dir = try Self.directory("synth-bon8")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        guard let result = try Self.cerm(["data", "synth", "--out", "d", "--train", "10", "--eval", "20", "--bon-n", "8"], in: dir) else { return }
        #expect(result.stdout.hasPrefix("train: 10 pairs, eval: 20 pairs, best-of-8: 13 items; 7 eval queries have fewer than 8 "
                                        + "distinct responses and got no item (seed 7)\n"), "\(result.stdout)")
    }

    /// `cerm export` prints the number of tensors model.safetensors holds (not the checkpoint's
    /// reference.* tensors too); `inspect` and `export` take SFT weights files as well.
    /// `cerm eval --config` and `cerm curate` refuse weights of another architecture than the
    /// config's [model], as the coordinator does, naming each differing key.
    @Test func evalAndCurateRefuseWeightsOfAnotherModel() throws {
        let dir = try Self.directory("other-model")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = HuggingFaceExportTests.tinyConfig(.qwen3)
        try ModelWeights(config: config, seed: 3, initStd: 0.1).save(to: (dir as NSString).appendingPathComponent("model.h5"))
        try "[run]\nname = \"x\"\n".write(toFile: (dir as NSString).appendingPathComponent("run.toml"), atomically: true, encoding: .utf8)
        let keys = config.changes(to: TransformerConfig(Config().model)).mismatches(labelled: "weights")
        let expected = "error: model.h5: the weights were built for another [model] than run.toml's (\(keys)); "
            + "give weights of this [model], or the config they were trained with\n"
        guard let eval = try Self.cerm(["eval", "--checkpoint", "model.h5", "--config", "run.toml"], in: dir) else { return }
        #expect(eval.status == 2)
        #expect(eval.stderr == expected)
        let curate = try #require(try Self.cerm(["curate", "--config", "run.toml", "--weights", "model.h5"], in: dir))
        #expect(curate.status == 2)
        #expect(curate.stderr == expected)
    }

    @Test func exportAndInspectOfCheckpointsAndSFTWeights() throws {
        let dir = try Self.directory("export-inspect")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = HuggingFaceExportTests.tinyConfig(.qwen3)
        let policy = ModelWeights(config: config, seed: 3, initStd: 0.1)
        let named = { (prefix: String) in
            try policy.layout.tensors(of: policy.values).map { NamedTensor(name: prefix + $0.name, shape: $0.shape, values: $0.values) }
        }
        let parameters = policy.layout.specs.count
        try CheckpointWriter(directory: dir, keepLast: 1).write(TrainingState(
            step: 5, policyVersion: 5, tensors: try named("") + named(GRPOLearner.referencePrefix), modelConfigJSON: config.jsonString()))
        try policy.save(to: (dir as NSString).appendingPathComponent("model.h5"))

        guard let checkpoint = try Self.cerm(["export", "step_5.h5", "--out", "hf"], in: dir) else { return }
        #expect(checkpoint.status == 0)
        #expect(checkpoint.stdout == "exported step 5 (\(parameters) tensors) from step_5.h5\n  hf/model.safetensors\n  hf/config.json\n")
        let sft = try #require(try Self.cerm(["export", "model.h5", "--out", "hf-sft"], in: dir))
        #expect(sft.status == 0)
        #expect(sft.stdout == "exported SFT weights (\(parameters) tensors) from model.h5\n  hf-sft/model.safetensors\n  hf-sft/config.json\n")
        let configJSON = try HuggingFaceExport.configJSON(for: config, source: "")
        #expect(try String(contentsOfFile: (dir as NSString).appendingPathComponent("hf/config.json"), encoding: .utf8) == configJSON)
        #expect(try String(contentsOfFile: (dir as NSString).appendingPathComponent("hf-sft/config.json"), encoding: .utf8) == configJSON)

        let inspected = try #require(try Self.cerm(["inspect", "model.h5"], in: dir))
        #expect(inspected.status == 0)
        let lines = inspected.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 4 + parameters + 3)
        #expect(lines.first?.hasPrefix("file             model.h5 (") == true)
        #expect(Array(lines[1...3]) == ["format           SFT weights file (no step, optimizer state or data cursor)",
                                        "checksum         \(CheckpointFormat.hex(policy.checksum)) OK",
                                        "model tensors    \(parameters) (\(policy.values.count) values)"])
        #expect(lines.suffix(3) == ["tokenizer        \(ByteTokenizer().description)", "model config     \(config.jsonString())",
                                    "provenance       none recorded (written before cerm sft recorded it, or by cerm import)"])

        let resumed = try #require(try Self.cerm(["export", "nothing.h5", "--out", "x"], in: dir))
        #expect(resumed.status == 2 && resumed.stderr == "error: checkpoint nothing.h5: no such file\n")
    }

    /// `cerm worker --connect` is checked like `cluster.endpoint`, instead of retrying for ever
    /// on a port that cannot exist or failing in libzmq on a missing scheme. (An out-of-range
    /// port is the same check as ConfigTests' `tcp://127.0.0.1:65536`; not run here, because
    /// without the check the worker retries for ever and the test would hang, not fail.)
    @Test(arguments: [
        ("127.0.0.1:5599", #"expected tcp://HOST:PORT, ipc://PATH or inproc://NAME, got "127.0.0.1:5599""#),
        ("tcp://127.0.0.1:*", #"cannot connect to a wildcard host or port, got "tcp://127.0.0.1:*" (expected the coordinator's tcp://HOST:PORT)"#),
    ])
    func workerConnectIsValidated(endpoint: String, problem: String) throws {
        let dir = try Self.directory("worker-connect")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let result = try #require(try Self.cerm(["worker", "--connect", endpoint, "--config", "c.toml"], in: dir))
        #expect(result.status == 64)
        #expect(result.stderrLines.first == "Error: --connect: \(problem)")
    }

    /// A name longer than HELLO allows is refused at once: the coordinator dropped such a HELLO
    /// as malformed and the worker retried for ever without being told.
    @Test func workerNameLongerThanHelloAllowsIsRefused() throws {
        let dir = try Self.directory("worker-name")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let long = String(repeating: "n", count: 300)
        let result = try #require(try Self.cerm(["worker", "--connect", "tcp://127.0.0.1:1", "--config", "c.toml", "--name", long], in: dir))
        #expect(result.status == 64)
        #expect(result.stderrLines.first == "Error: --name is 300 bytes; a worker name is at most 256 (the protocol's HELLO limit)")
    }

    /// The coordinator reads its key files and checks the bind is allowed before it loads data
    /// and model: `data.train` is missing here, and the key is reported, not the data.
    @Test(arguments: [
        ("curve_secret_key_file = \"missing.key\"\nauthorized_keys_file = \"workers\"",
         "cluster.curve_secret_key_file: missing.key: cannot read file"),
        // A config for workers (their keys only) cannot serve as the coordinator's on the network.
        ("endpoint = \"tcp://0.0.0.0:5599\"\nworker_secret_key_file = \"w.key\"\nserver_public_key_file = \"c.pub\"",
         "refusing to bind tcp://0.0.0.0:5599 without CURVE keys: set cluster.curve_secret_key_file and cluster.authorized_keys_file "
            + "(see `cerm keygen`), bind a loopback address, or set cluster.allow_insecure = true"),
    ])
    func coordinatorChecksKeysAndBindBeforeLoading(cluster: String, message: String) throws {
        let dir = try Self.directory("coordinator-keys", config: "[cluster]\n\(cluster)\n[data]\ntrain = \"missing.jsonl\"\n")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let result = try #require(try Self.cerm(["coordinator", "--config", "c.toml"], in: dir))
        #expect(result.status != 0)
        #expect(result.stderr == "error: \(message)\n")
    }

    /// With the endpoint's port taken (here by a plain TCP listener, in the walkthrough by
    /// another run's coordinator), `cerm launch` starts no worker: they would join whoever
    /// listens there. It fails with the coordinator's bind error instead.
    @Test func launchStartsNoWorkerWhenItsCoordinatorCannotBind() throws {
        let dir = try Self.directory("launch-port-taken")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (fd, port) = try TestCluster.loopbackSocket(listening: true)
        defer { close(fd) }
        let config = try TestCluster.writeRun(directory: dir, port: port, steps: 1)
        let result = try #require(try Self.cerm(["launch", "--config", config], in: dir))
        #expect(result.status != 0)
        #expect(result.stderr.contains("the coordinator exited with status \(result.status) before binding tcp://127.0.0.1:\(port); "
                                       + "no worker started"), "\(result.stderr)")
        #expect(result.stderr.contains("Address already in use"), "\(result.stderr)")
        #expect(!result.stderr.contains("started worker-"), "\(result.stderr)")
    }

    /// `dir/run` holding valid checkpoints of steps 1 and 2, and their paths.
    /// `cerm import` of a GGUF file and of a Hugging Face directory (the ModelFormats fixtures):
    /// the weights file holds what ModelImport reads, stderr the summary; a bad source is an error.
    @Test func importWritesTheModelAsAWeightsFile() throws {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("ModelFormatsTests/Fixtures").path
        let dir = try Self.directory("import")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The fixtures have no usable tokenizer: the GGUF's merges use tokens it lacks, the directory has no tokenizer.json.
        for (source, family, tokenizerError) in [("llama_tiny.gguf", "llama", "merge 0 \"t 1\" uses a token that is not in the vocabulary"),
                                                 ("qwen2_tiny", "qwen2", "has no tokenizer.json (cerm reads the fast tokenizer's tokenizer.json)")] {
            let path = (fixtures as NSString).appendingPathComponent(source)
            guard let refused = try Self.cerm(["import", path, "--out", "out/\(family).h5"], in: dir) else { return }
            #expect(refused.status == 2)
            #expect(refused.stderr == "error: \(path): \(tokenizerError) (--without-tokenizer imports the weights alone)\n")
            guard let result = try Self.cerm(["import", path, "--out", "out/\(family).h5", "--without-tokenizer"], in: dir) else { return }
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout == "")
            let imported = try ModelImport.load(path: path)
            let saved = try ModelWeights.load(path: (dir as NSString).appendingPathComponent("out/\(family).h5"))
            #expect(saved == imported.weights)
            #expect(result.stderrLines.first == "imported \(imported.source): \(saved.layout.specs.count) tensors, \(saved.values.count) parameters")
            #expect(result.stderrLines.contains("  model.family = \(family)"))
            #expect(result.stderrLines.contains("wrote out/\(family).h5"))
            #expect(result.stderrLines.contains("  tokenizer: none stored (--without-tokenizer)"))
        }
        let bad = try #require(try Self.cerm(["import", "absent.gguf", "--out", "x.h5"], in: dir))
        #expect(bad.status == 2)
        #expect(bad.stderr == "error: absent.gguf: does not exist (expected a GGUF file or a Hugging Face model directory)\n")
        #expect(!FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent("x.h5")))
    }

    static func runOfTwoCheckpoints(in dir: String) throws -> (run: String, step1: String, step2: String) {
        let run = (dir as NSString).appendingPathComponent("run")
        let writer = CheckpointWriter(directory: run, keepLast: 10)
        for step in [1, 2] { try writer.write(sampleState(step: step)) }
        return (run, (run as NSString).appendingPathComponent("step_1.h5"), (run as NSString).appendingPathComponent("step_2.h5"))
    }

    /// A checkpoint that crashes libhdf5 (a corrupt global heap, `corruptFormatHeapObject`) is
    /// read by a child first: `cerm inspect`, `cerm status --verify` and `cerm coordinator
    /// --resume` name it and go on or fail with a message instead of dying by SIGSEGV.
    @Test func aCheckpointThatCrashesLibHDF5IsAnErrorNotADeath() throws {
        let dir = try Self.directory("crash-probe")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (run, step1, step2) = try Self.runOfTwoCheckpoints(in: dir)
        try corruptFormatHeapObject(in: step2)
        let crashed = "\(step2): \(CheckpointProbeTests.crashMessage)"

        // The file really crashes this build's reader: the probe itself dies by SIGSEGV.
        guard let probe = try Self.cerm(["checkpoint-probe", step2], in: dir) else { return }
        #expect(probe.status == SIGSEGV)
        let good = try #require(try Self.cerm(["checkpoint-probe", step1], in: dir))
        #expect(good.status == 0 && good.stderr.isEmpty)

        let inspected = try #require(try Self.cerm(["inspect", step2], in: dir))
        #expect(inspected.status == 2)
        #expect(inspected.stdout.isEmpty)
        #expect(inspected.stderr == "error: \(crashed)\n")

        let status = try #require(try Self.cerm(["status", run, "--verify", "--watch", "0"], in: dir))
        #expect(status.status == 0)
        let lines = status.stdout.split(separator: "\n").map(String.init)
        #expect(lines.suffix(2) == ["skipped     step_2.h5: \(CheckpointProbeTests.crashMessage)",
                                    "resume from \(step1) (step 1, checksum OK)"])

        // A probe whose waiting parent is killed dies with it rather than read on, orphaned, a
        // file libhdf5 loops on (the first byte of the same size field set to 0xff).
        let hangs = (dir as NSString).appendingPathComponent("hangs.h5")
        try FileManager.default.copyItem(atPath: step1, toPath: hangs)
        try corruptFormatHeapObject(in: hangs, byte: 0, value: 0xff)
        let pidFile = (dir as NSString).appendingPathComponent("probe.pid")
        // The shell is spawned and waited for with waitpid, not Foundation's Process, whose
        // wait can also hinge on descriptors an orphan inherited.
        let binary = try #require(TestCluster.cermBinary)
        let script = "'\(binary)' checkpoint-probe --parent-pid $$ '\(hangs)' & echo $! > '\(pidFile)'; sleep 1; kill -0 $! && kill -9 $$"
        let shell = try spawnChild(executable: "/bin/sh", arguments: ["-c", script],
                                   environment: ProcessInfo.processInfo.environment, silenced: true).get()
        var shellStatus: Int32 = 0
        while waitpid(shell, &shellStatus, 0) == -1, errno == EINTR {}
        // Killed by its own SIGKILL: the probe was still reading the file a second later.
        #expect(shellStatus & 0x7f == SIGKILL)
        let probePID = try #require(Int32(try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        /// Exited: no such process, or a zombie nobody reaps (a container's PID 1 may not).
        func exited() -> Bool {
            guard kill(probePID, 0) == 0 else { return true }
            let stat = (try? String(contentsOfFile: "/proc/\(probePID)/stat", encoding: .utf8)) ?? ""
            return stat.split(separator: ")").last?.split(separator: " ").first == "Z"
        }
        var gone = false
        for _ in 0..<100 where !gone {
            gone = exited()
            if !gone { usleep(50_000) }
        }
        if !gone { kill(probePID, SIGKILL) }
        #expect(gone, "the probe outlived its parent")

        // --resume FILE has no fallback: an error naming the file.
        let named = try #require(try Self.cerm(["coordinator", "--config", "c.toml", "--resume", step2], in: dir))
        #expect(named.status == 2)
        #expect(named.stderr == "error: \(crashed)\n")
        // Every other command that reads a weights file probes it too.
        for command in [["eval", "--checkpoint", step2, "--data", "none.jsonl"], ["export", step2, "--out", "x"],
                        ["curate", "--config", "c.toml", "--weights", step2],
                        ["coordinator", "--config", "c.toml", "--init", step2]] {
            let result = try #require(try Self.cerm(command, in: dir))
            #expect(result.status == 2, "\(command)")
            #expect(result.stderr == "error: \(crashed)\n", "\(command)")
        }
        // A directory whose only checkpoint crashes: the "none loads" error names it.
        try FileManager.default.removeItem(atPath: step1)
        let none = try #require(try Self.cerm(["coordinator", "--config", "c.toml", "--resume", run], in: dir))
        #expect(none.status == 2)
        #expect(none.stderr == "error: no checkpoint to resume: every step_<N>.h5 file of \(run) failed to load: "
                + "step_2.h5: \(CheckpointProbeTests.crashMessage)\n")
    }

    /// Ctrl-C during `cerm sft` ends training before the next step and keeps the weights so far
    /// beside `sft.output`, never as `sft.output` (which `cerm pipeline` would reuse as a
    /// finished stage); it used to kill the process and lose them.
    @Test func ctrlCDuringSFTKeepsThePartialWeightsAside() throws {
        let dir = try Self.directory("sft-ctrl-c", config: """
            \(TestCluster.tinyModelTOML)
            [data]
            synth_train = 40
            synth_eval = 4
            [sft]
            epochs = 10000
            batch_size = 2
            output = "sft.h5"
            """)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        guard let (sft, err) = try Self.start(["sft", "--config", "c.toml", "--skip-eval", "--threads", "1"], in: dir) else { return }
        // Training has begun once the curve has a line.
        let curve = (dir as NSString).appendingPathComponent("sft.metrics.jsonl")
        for _ in 0..<1200 where sft.isRunning && ((try? String(contentsOfFile: curve, encoding: .utf8)) ?? "").isEmpty {
            usleep(50_000)
        }
        sft.interrupt()
        let interrupted = Date()
        while sft.isRunning, Date().timeIntervalSince(interrupted) < 60 { usleep(20_000) }
        guard !sft.isRunning else {
            kill(sft.processIdentifier, SIGKILL)
            sft.waitUntilExit()
            Issue.record("cerm sft still ran 60 s after Ctrl-C")
            return
        }
        let stderr = try String(contentsOfFile: err, encoding: .utf8)
        #expect(sft.terminationReason == .exit && sft.terminationStatus == 130, "\(stderr)")
        #expect(stderr.contains("SFT stopped by SIGINT after "), "\(stderr)")
        #expect(stderr.contains("to sft.partial.h5 (checksum "), "\(stderr)")
        #expect(stderr.contains("not to sft.h5: SFT starts from scratch when run again"), "\(stderr)")
        #expect(!FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent("sft.h5")))
        #expect(FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent("sft.partial.h5")))
    }

    /// Ctrl-C while a child reads a checkpoint libhdf5 loops on: the coordinator kills the child
    /// and stops at once, saying why, instead of waiting out the child's minute and then reading
    /// the file itself or resuming from an older one.
    @Test func ctrlCWhileAChildReadsACheckpointStopsTheCoordinator() throws {
        let dir = try Self.directory("probe-ctrl-c")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (run, _, step2) = try Self.runOfTwoCheckpoints(in: dir)
        try corruptFormatHeapObject(in: step2, byte: 0, value: 0xff)
        guard let (coordinator, err) = try Self.start(["coordinator", "--config", "c.toml", "--resume", run], in: dir) else { return }
        let parent = coordinator.processIdentifier

        /// The pid of the coordinator's `checkpoint-probe` child, once it runs.
        func probeChild() -> Int32? {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
            for entry in entries {
                guard let pid = Int32(entry),
                      let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                      let fields = stat.split(separator: ")").last?.split(separator: " "), fields.count > 1,
                      Int32(fields[1]) == parent,
                      let command = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
                      String(decoding: command, as: UTF8.self).contains(ChildProcessCheckpointProbe.subcommand) else { continue }
                return pid
            }
            return nil
        }
        var child: Int32?
        for _ in 0..<600 where child == nil && coordinator.isRunning {
            child = probeChild()
            if child == nil { usleep(50_000) }
        }
        guard let probePID = child else {
            if coordinator.isRunning { kill(parent, SIGKILL) }
            coordinator.waitUntilExit()
            Issue.record("no probe child appeared: \((try? String(contentsOfFile: err, encoding: .utf8)) ?? "")")
            return
        }
        // The newest file is the looping one: the child reads on until stopped.
        usleep(300_000)
        #expect(kill(probePID, 0) == 0)
        coordinator.interrupt()
        let interrupted = Date()
        while coordinator.isRunning, Date().timeIntervalSince(interrupted) < 30 { usleep(20_000) }
        #expect(Date().timeIntervalSince(interrupted) < 10, "the coordinator waited on after Ctrl-C")
        guard !coordinator.isRunning else {
            Issue.record("the coordinator still ran 30 s after Ctrl-C")
            kill(parent, SIGKILL)
            coordinator.waitUntilExit()
            return
        }
        #expect(coordinator.terminationReason == .exit && coordinator.terminationStatus == 0)
        let stderr = try String(contentsOfFile: err, encoding: .utf8)
        #expect(stderr.contains("run stopped before training: stopped by SIGINT while a child process read \(step2) first; the file was not loaded"),
                "\(stderr)")
        #expect(!stderr.contains("step_1.h5"), "resumed from the older checkpoint: \(stderr)")
        #expect(kill(probePID, 0) != 0 || (try? String(contentsOfFile: "/proc/\(probePID)/stat", encoding: .utf8))?
            .split(separator: ")").last?.split(separator: " ").first == "Z", "the probe outlived the stop")
    }
}
