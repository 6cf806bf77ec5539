import Configuration
@testable import Coordinator
import Engine
import EngineConfiguration
import Foundation
import Runtime
import Shared
import TestSupport
import Testing

/// A run that starts from step N moves the run directory's later checkpoints (a fresh run: all
/// of them and metrics.jsonl) into `superseded-<UTC time>/`, so the next `--resume` continues
/// it; a resume with a changed [model] is refused up front; the pipeline's reuse decisions.
@Suite(.serialized) struct SupersedeTests {
    static let noon = Date(timeIntervalSince1970: 1_796_212_800)  // 2026-12-02 12:00:00 UTC

    static func names(_ directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
    }

    @Test func laterCheckpointsMoveAsideUnreadAndNothingIsDeleted() throws {
        let run = try makeTemporaryDirectory("supersede")
        defer { try? FileManager.default.removeItem(atPath: run) }
        let writer = CheckpointWriter(directory: run, keepLast: 10)
        for step in 1...4 { try writer.write(sampleState(step: step)) }
        // A corrupt later file moves too: it is never opened.
        try Data("not hdf5".utf8).write(to: URL(fileURLWithPath: run + "/step_10.h5"))
        try Data("{\"step\":1}\n".utf8).write(to: URL(fileURLWithPath: run + "/metrics.jsonl"))

        let moved = try #require(try SupersededFiles.moveAside(in: run, startStep: 2, fresh: false, now: Self.noon))
        #expect(moved == SupersededFiles(destination: run + "/superseded-20261202T120000Z",
                                         names: ["step_3.h5", "step_4.h5", "step_10.h5"]))
        #expect(Self.names(run) == ["metrics.jsonl", "step_1.h5", "step_2.h5", "superseded-20261202T120000Z"])
        #expect(Self.names(moved.destination) == ["step_10.h5", "step_3.h5", "step_4.h5"])
        #expect(try CheckpointReader.load(path: moved.destination + "/step_4.h5").isBitIdentical(to: sampleState(step: 4)))
        // Resume and retention see only the run directory's own files.
        #expect(try CheckpointReader.findResumeCheckpoint(runDir: run)?.state.step == 2)
        let retention = CheckpointWriter(directory: run, keepLast: 1)
        try retention.write(sampleState(step: 3))
        #expect(Self.names(run) == ["metrics.jsonl", "step_3.h5", "superseded-20261202T120000Z"])
        #expect(Self.names(moved.destination) == ["step_10.h5", "step_3.h5", "step_4.h5"])

        // Nothing later: nothing moves, no directory.
        #expect(try SupersededFiles.moveAside(in: run, startStep: 3, fresh: false, now: Self.noon) == nil)
        // A fresh start takes every checkpoint and metrics.jsonl; the same second gets "-2".
        let fresh = try #require(try SupersededFiles.moveAside(in: run, startStep: 0, fresh: true, now: Self.noon))
        #expect(fresh == SupersededFiles(destination: run + "/superseded-20261202T120000Z-2", names: ["step_3.h5", "metrics.jsonl"]))
        #expect(Self.names(run) == ["superseded-20261202T120000Z", "superseded-20261202T120000Z-2"])
    }

    /// Corrupt files only (what `cerm pipeline` then launches without --resume on): moved aside.
    @Test func aFreshStartMovesCorruptCheckpointsAside() throws {
        let run = try makeTemporaryDirectory("supersede-corrupt")
        defer { try? FileManager.default.removeItem(atPath: run) }
        for step in [5, 7] { try Data("garbage \(step)".utf8).write(to: URL(fileURLWithPath: run + "/step_\(step).h5")) }
        _ = FileManager.default.createFile(atPath: run + "/metrics.jsonl", contents: nil)
        let moved = try #require(try SupersededFiles.moveAside(in: run, startStep: 0, fresh: true, now: Self.noon))
        // An empty metrics.jsonl stays: it holds no earlier run.
        #expect(moved.names == ["step_5.h5", "step_7.h5"])
        #expect(try String(contentsOfFile: moved.destination + "/step_7.h5", encoding: .utf8) == "garbage 7")
        #expect(Self.names(run) == ["metrics.jsonl", "superseded-20261202T120000Z"])
    }

    /// The user walkthrough: `--resume step_2.h5 --steps 3` among step_1..4, then a fresh run.
    @Test func resumingAnOlderCheckpointThenStartingFreshSetsTheOldRunsAside() throws {
        guard let binary = TestCluster.cermBinary else {
            Issue.record("no cerm binary under .build/{debug,release}: run `swift build --build-tests` first")
            return
        }
        let dir = try makeTemporaryDirectory("supersede-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = try TestCluster.freePort()
        let config = try TestCluster.writeRun(directory: dir, port: port, steps: 4)
        let run = dir + "/Checkpoints/chaos"
        let first = try TestCluster.launch(binary, config: config, log: dir + "/launch.log")
        first.waitUntilExit()
        #expect(first.terminationStatus == 0)
        #expect(Self.names(run) == ["coordinator.lock", "metrics.jsonl", "metrics.prom", "step_1.h5", "step_2.h5", "step_3.h5", "step_4.h5", "train.log"])

        /// `cerm coordinator ARGS` with one worker; the coordinator's stderr.
        func coordinator(_ arguments: [String], log: String) throws -> (status: Int32, stderr: String) {
            let coordinator = Process()
            coordinator.executableURL = URL(fileURLWithPath: binary)
            coordinator.arguments = ["coordinator", "--config", config] + arguments
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            coordinator.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            coordinator.standardOutput = FileHandle.nullDevice
            try coordinator.run()
            let worker = Process()
            worker.executableURL = URL(fileURLWithPath: binary)
            worker.arguments = ["worker", "--connect", "tcp://127.0.0.1:\(port)", "--config", config, "--name", "w"]
            worker.standardOutput = FileHandle.nullDevice
            worker.standardError = FileHandle.nullDevice
            try worker.run()
            coordinator.waitUntilExit()
            if !TestCluster.waitUntil(timeout: 20, { !worker.isRunning }) { worker.terminate() }
            worker.waitUntilExit()
            return (coordinator.terminationStatus, try String(contentsOfFile: log, encoding: .utf8))
        }

        let resumed = try coordinator(["--resume", run + "/step_2.h5", "--steps", "3"], log: dir + "/resume.log")
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let aside = try #require(Self.names(run).first { $0.hasPrefix("superseded-") })
        #expect(aside.count == "superseded-20261202T120000Z".count)
        #expect(Self.names(run) == ["coordinator.lock", "metrics.jsonl", "metrics.prom", "step_1.h5", "step_2.h5", "step_3.h5", aside, "train.log"])
        #expect(Self.names(run + "/" + aside) == ["step_3.h5", "step_4.h5"])
        let warning = "resuming from step 2 (\(run)/step_2.h5) abandons the later checkpoints of \(run): moved step_3.h5, step_4.h5 "
            + "to \(run)/\(aside) (nothing deleted), so that the next --resume continues this run"
        let event = "event run_superseded moved=step_3.h5,step_4.h5 to=\(run)/\(aside)"
        let trainLog = try String(contentsOfFile: run + "/train.log", encoding: .utf8)
        #expect(trainLog.contains(warning) && trainLog.contains(event), "\(trainLog)")
        #expect(resumed.stderr.contains(warning))
        let status = try #require(try CommandLineTests.cerm(["status", run, "--verify", "--watch", "0"], in: dir))
        #expect(status.stdout.hasSuffix("resume from \(run)/step_3.h5 (step 3, checksum OK)\n"), "\(status.stdout)")

        // A fresh run (no --resume) in the same directory: every checkpoint and metrics.jsonl go.
        let metricsBefore = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8)
        let fresh = try coordinator(["--steps", "1"], log: dir + "/fresh.log")
        #expect(fresh.status == 0, "\(fresh.stderr)")
        let second = try #require(Self.names(run).first { $0.hasPrefix("superseded-") && $0 != aside })
        #expect(Self.names(run) == ["coordinator.lock", "metrics.jsonl", "metrics.prom", "step_1.h5", aside, second, "train.log"].sorted())
        // metrics.prom stays in place (it describes the latest step, whichever run wrote it).
        #expect(try String(contentsOfFile: run + "/metrics.prom", encoding: .utf8).contains("\ncerm_step{run=\"chaos\"} 1\n"))
        #expect(Self.names(run + "/" + second) == ["metrics.jsonl", "step_1.h5", "step_2.h5", "step_3.h5"])
        #expect(try String(contentsOfFile: run + "/\(second)/metrics.jsonl", encoding: .utf8) == metricsBefore)
        let metrics = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(metrics.count == 1 && metrics[0].contains("\"step\":1"), "\(metrics)")
        let freshWarning = "starting a new run (no --resume) in \(run), which holds an earlier run: moved its step_1.h5, step_2.h5, "
            + "step_3.h5, metrics.jsonl to \(run)/\(second) (nothing deleted; pass --resume to continue that run instead)"
        let log = try String(contentsOfFile: run + "/train.log", encoding: .utf8)
        // train.log is appended to: the earlier runs' lines are still there.
        #expect(log.hasPrefix(trainLog))
        #expect(log.contains(freshWarning), "\(log)")
        #expect(log.contains("event run_superseded moved=step_1.h5,step_2.h5,step_3.h5,metrics.jsonl to=\(run)/\(second)"))

        // --init with --resume: the checkpoint wins; weights other than those it started from
        // are named, not ignored silently.
        let other = dir + "/other.h5"
        try ModelWeights(config: TransformerConfig(try Config.load(path: config).model), seed: 99, initStd: 0.1).save(to: other)
        let ignored = try coordinator(["--resume", "--init", other, "--steps", "1"], log: dir + "/init.log")
        #expect(ignored.status == 0, "\(ignored.stderr)")
        #expect(ignored.stderr.contains("--init \(other) is ignored: the run resumes from \(run)/step_1.h5, which started from other weights (checksum "),
                "\(ignored.stderr)")
    }

    /// A second coordinator of a live run is refused by the run directory's lock before it
    /// moves, writes or loads anything (issue 27: it used to supersede the live run's files).
    @Test func aSecondCoordinatorOfALiveRunIsRefusedBeforeTouchingIt() throws {
        let dir = try makeTemporaryDirectory("second-coordinator")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let configPath = try TestCluster.writeRun(directory: dir, port: try TestCluster.freePort(), steps: 4)
        let config = try Config.load(path: configPath)
        let runDirectory = config.run.runDirectory  // absolute: TestCluster writes checkpoint_dir inside `dir`
        try CheckpointWriter(directory: runDirectory, keepLast: 2)
            .write(try GRPOLearner(config: config).trainingState(step: 1, dataCursor: DataCursor()))
        let live = try DirectoryLock(directory: runDirectory, name: "coordinator.lock", role: "cerm coordinator")
        defer { live.release() }
        let before = try FileManager.default.contentsOfDirectory(atPath: runDirectory).sorted()
        let holder = try String(contentsOfFile: live.path, encoding: .utf8).trimmingCharacters(in: .newlines)

        let result = try #require(try CommandLineTests.cerm(["coordinator", "--config", configPath], in: dir))
        #expect(result.status == 2)
        #expect(result.stderr.contains("error: \(runDirectory) is in use by \(holder) (lock \(runDirectory)/coordinator.lock): "
                                       + "wait for it to end or stop it"), "\(result.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: runDirectory).sorted() == before)
    }

    /// A resume whose [model] differs is refused before train.log is opened or a change logged.
    @Test func aChangedModelIsRefusedBeforeTheRunOpens() throws {
        let dir = try makeTemporaryDirectory("model-changed")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let configPath = try TestCluster.writeRun(directory: dir, port: try TestCluster.freePort(), steps: 4)
        let config = try Config.load(path: configPath)
        let checkpoint = dir + "/kept/step_5.h5"
        try CheckpointWriter(directory: dir + "/kept", keepLast: 1)
            .write(try GRPOLearner(config: config).trainingState(step: 5, dataCursor: DataCursor()))
        let text = try String(contentsOfFile: configPath, encoding: .utf8)
        try text.replacingOccurrences(of: "layers = 1", with: "layers = 2")
            .replacingOccurrences(of: "ffn_size = 32", with: "ffn_size = 48").write(toFile: configPath, atomically: true, encoding: .utf8)

        let result = try #require(try CommandLineTests.cerm(["coordinator", "--config", configPath, "--resume", checkpoint], in: dir))
        #expect(result.status == 2)
        #expect(result.stderr == "error: cannot resume from \(checkpoint): its model differs from the config's [model] "
                + "(model.layers: 1 (checkpoint) ≠ 2 (config); model.ffn_size: 32 (checkpoint) ≠ 48 (config)); a run continues "
                + "only with the model it was trained with: restore the [model] section, or start a new run under another run.name\n")
        #expect(!FileManager.default.fileExists(atPath: dir + "/Checkpoints/chaos/train.log"))
    }

    /// Checkpoints record the weights the run started from, kept across a resume; the pipeline
    /// reuses or resumes a run only when they are the current SFT weights.
    @Test func checkpointsRecordTheInitWeightsAndThePipelineComparesThem() throws {
        let dir = try makeTemporaryDirectory("init-weights")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try Config.load(path: try TestCluster.writeRun(directory: dir, port: 5999, steps: 4))
        let old = ModelWeights(config: TransformerConfig(config.model), seed: 1, initStd: 0.1)
        let new = ModelWeights(config: TransformerConfig(config.model), seed: 2, initStd: 0.1)
        let state = try GRPOLearner(config: config, initialWeights: old).trainingState(step: 4, dataCursor: DataCursor())
        #expect(state.extra[TrainingState.initWeightsChecksumKey] == CheckpointFormat.hex(old.checksum))
        #expect(state.initWeightsChecksum == old.checksum)
        // Resumed by a learner given other --init weights: the record follows the checkpoint.
        let resumed = try GRPOLearner(config: config, initialWeights: new)
        try resumed.restore(from: state)
        #expect(try resumed.trainingState(step: 4, dataCursor: DataCursor()).initWeightsChecksum == old.checksum)
        // Written before the key existed: the reference tensors tell.
        var legacy = state
        legacy.extra[TrainingState.initWeightsChecksumKey] = nil
        #expect(legacy.initWeightsChecksum == old.checksum)
        legacy.tensors = legacy.policyTensors
        #expect(legacy.initWeightsChecksum == nil)

        #expect(RLRunReuse.decide(existing: nil, sftChecksum: new.checksum, steps: 4) == .fresh)
        #expect(RLRunReuse.decide(existing: state, sftChecksum: old.checksum, steps: 4) == .reuse)
        #expect(RLRunReuse.decide(existing: state, sftChecksum: old.checksum, steps: 6) == .resume)
        #expect(RLRunReuse.decide(existing: state, sftChecksum: new.checksum, steps: 4) == .stale(recorded: old.checksum))
        #expect(RLRunReuse.decide(existing: legacy, sftChecksum: old.checksum, steps: 4) == .stale(recorded: nil))
    }

    /// `cerm pipeline` with SFT weights of another [model]: an error before any evaluation.
    @Test func thePipelineRefusesSFTWeightsOfAnotherModelBeforeEvaluating() throws {
        let dir = try makeTemporaryDirectory("pipeline-sft-model")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let configPath = try TestCluster.writeRun(directory: dir, port: try TestCluster.freePort(), steps: 2)
        let sft = dir + "/sft.h5"
        var text = try String(contentsOfFile: configPath, encoding: .utf8)
        text = text.replacingOccurrences(of: "[data]\n", with: "[data]\neval = \"\(dir)/pairs.jsonl\"\nbest_of_n = \"\"\n")
            + "\n[sft]\noutput = \"\(sft)\"\n"
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
        var other = try Config.load(path: configPath).model
        other.layers = 2
        try ModelWeights(config: TransformerConfig(other), seed: 1, initStd: 0.1).save(to: sft)

        let result = try #require(try CommandLineTests.cerm(["pipeline", "--config", configPath], in: dir))
        #expect(result.status == 2)
        #expect(result.stderrLines.dropLast().last == "error: cannot reuse the SFT weights \(sft): they were trained for another "
                + "[model] (model.layers: 2 (weights) ≠ 1 (config)); delete \(sft) to train SFT again with this config, "
                + "or restore the [model] section", "\(result.stderr)")
        #expect(!result.stderr.contains("evaluating"))
        #expect(FileManager.default.fileExists(atPath: sft))
    }

    /// `cerm sft` records how it trained (`provenance_json`), and the pipeline's own account of
    /// what SFT would do with the same config matches it, so finished SFT is reused; another
    /// `[sft]` value or another data line is named, and the stale weights move aside whole.
    @Test func sftWeightsRecordTheirRecipeAndThePipelineReusesThemOnlyForTheSameOne() throws {
        let dir = try makeTemporaryDirectory("sft-provenance")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let synth = dir + "/synth", sft = dir + "/sft.h5"
        try """
            \(TestCluster.tinyModelTOML)
            [data]
            dir = "\(synth)"
            train = "\(synth)/train.jsonl"
            eval = "\(synth)/eval.jsonl"
            best_of_n = ""
            synth_train = 8
            synth_eval = 2
            [sft]
            epochs = 1
            batch_size = 4
            output = "\(sft)"
            """.write(toFile: dir + "/c.toml", atomically: true, encoding: .utf8)
        guard let result = try CommandLineTests.cerm(["sft", "--config", "c.toml", "--skip-eval", "--threads", "1"], in: dir) else { return }
        #expect(result.status == 0, "\(result.stderr)")
        var config = try Config.load(path: dir + "/c.toml")
        let runModel = try RunModel.resolve(&config)
        let initial = try runModel.initialWeights(config: config)
        let trained = try PipelineReuse.sftWeights(path: sft, config: config, runModel: runModel, probe: nil)
        let recorded = try SFTProvenance.parse(try #require(trained.provenance), path: sft)
        #expect(recorded.steps == recorded.totalSteps && recorded.steps > 0)
        #expect(recorded.traces == nil)
        #expect(recorded.initWeightsFNV1a64 == CheckpointFormat.hex(initial.checksum))

        let wanted = try PipelineReuse.sftProvenance(config: config, runModel: runModel, initial: initial)
        #expect(recorded.differences(to: wanted, path: sft) == [])
        guard case .reuse(_, unrecorded: false) = try PipelineReuse.sftDecision(trained, path: sft, wanted: wanted) else {
            Issue.record("the weights SFT just wrote were not reused")
            return
        }

        // Another learning rate and seed: named, the file's value first.
        var changed = config
        changed.sft.learningRate = 1e-5
        changed.run.seed = 8
        let keys = config.changes(to: changed).map { "\($0.key) = \($0.old), now \($0.new)" }
        #expect(keys.count == 2)
        let other = SFTProvenance(config: changed, sequences: [], initWeightsChecksum: initial.checksum, traces: "mine.jsonl",
                                  steps: 1, totalSteps: 1)
        let seed = try #require(keys.first { $0.hasPrefix("run.seed = ") })
        #expect(recorded.differences(to: other, path: sft) == keys + [
            "the built-in teacher's traces, now --traces mine.jsonl",
            "the training sequences (\(seed); checksum \(recorded.sequencesFNV1a64), now \(other.sequencesFNV1a64))"])
        // One record less in data.train: the sequences say so, no key does.
        let train = try String(contentsOfFile: synth + "/train.jsonl", encoding: .utf8)
        try (train.split(separator: "\n").dropLast().joined(separator: "\n") + "\n").write(toFile: synth + "/train.jsonl", atomically: true, encoding: .utf8)
        let fewer = try PipelineReuse.sftProvenance(config: config, runModel: runModel, initial: initial)
        guard case let .stale(reasons) = try PipelineReuse.sftDecision(trained, path: sft, wanted: fewer) else {
            Issue.record("weights trained on other data were reused")
            return
        }
        #expect(reasons == ["the training sequences (data.train's content; checksum \(recorded.sequencesFNV1a64), now \(fewer.sequencesFNV1a64))"])
        // Other starting weights (a replaced model.source).
        let reinitialised = SFTProvenance(config: config, sequences: [], initWeightsChecksum: 1, traces: nil, steps: 0, totalSteps: 0)
        #expect(recorded.differences(to: reinitialised, path: sft).last
                == "the starting weights (checksum \(recorded.initWeightsFNV1a64), now 0000000000000001)")

        let moved = try #require(try PipelineReuse.moveSFTWeightsAside(path: sft))
        #expect(moved.names == ["sft.h5", "sft.metrics.jsonl"])
        #expect(moved.destination.hasPrefix(dir + "/superseded-"))
        #expect(Self.names(moved.destination) == ["sft.h5", "sft.metrics.jsonl"])
        #expect(!FileManager.default.fileExists(atPath: sft))

        // A file recording nothing (an older build's) is reused, flagged; a record of another
        // version or none at all is an error naming the file.
        try initial.save(to: sft)
        let unrecorded = try PipelineReuse.sftWeights(path: sft, config: config, runModel: runModel, probe: nil)
        guard case .reuse(_, unrecorded: true) = try PipelineReuse.sftDecision(unrecorded, path: sft, wanted: wanted) else {
            Issue.record("weights without a record were not reused as unrecorded")
            return
        }
        let future = try recorded.json().replacingOccurrences(of: "\"version\":1", with: "\"version\":2")
        #expect(throws: CermError.io(path: sft, reason: "attribute provenance_json is cerm-sft-provenance version 2; "
                                     + "this build reads cerm-sft-provenance version 1")) { try SFTProvenance.parse(future, path: sft) }
        #expect(throws: CermError.self) { try SFTProvenance.parse("{", path: sft) }
    }
}
