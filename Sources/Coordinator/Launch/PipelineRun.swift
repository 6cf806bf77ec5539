import Configuration
import Engine
import EngineConfiguration
import Foundation
import Logging
import Runtime
import Shared

/// `cerm pipeline`: the default run end to end, what `make run` does.
///
/// Synthetic data → held-out evaluation of the untrained model (a random init of
/// cerm's own, or the pretrained `model.source` zero-shot) and of the teacher → cold-start SFT →
/// curation of the RL pairs (`curation.enabled`) → CE-RM GRPO with a coordinator and local
/// workers over ZeroMQ → held-out evaluation of the SFT and RL models → one table. Finished
/// stages are reused when it runs again (``PipelineReuse``): the data files, the SFT weights
/// (`sft.output`, when they record the recipe this config would train them with, else moved
/// aside and trained anew: ``SFTProvenance``), the curated pairs (`curation.output`, removed
/// when SFT trains anew), and the RL run (resumed from its newest checkpoint, skipped when it
/// already reached `run.steps`).
/// SFT, curation and RL run as child processes of `executable` (`cerm sft`, `cerm curate`,
/// `cerm launch`).
public struct PipelineRun {
    /// A stop was requested (SIGINT/SIGTERM): the finished stages are kept for the next run.
    public struct Stopped: Error, Equatable {}

    /// The run's configuration, `[model]` resolved (``RunModel/resolve(_:)``).
    public var config: Config
    /// The run's model: the untrained judge of the first row (a random init of cerm's own
    /// model, or the pretrained model zero-shot) and the tokenizer every stage must share.
    public var runModel: RunModel
    /// The config file, as the stages run as child processes are given it.
    public var configPath: String
    /// Local workers for the RL stage (nil: `cluster.workers`).
    public var workers: Int?
    /// The `cerm` binary the stages run as children.
    public var executable: String
    /// Evaluates `judge` on held-out `files`; `reportSkipped` is false when the same files were
    /// evaluated (and their skipped lines reported) before.
    public var evaluate: (_ judge: JudgeSource, _ files: [String], _ reportSkipped: Bool) throws -> EvaluationReport

    public init(config: Config, runModel: RunModel, configPath: String, workers: Int?, executable: String,
                evaluate: @escaping (_ judge: JudgeSource, _ files: [String], _ reportSkipped: Bool) throws -> EvaluationReport) {
        self.config = config
        self.runModel = runModel
        self.configPath = configPath
        self.workers = workers
        self.executable = executable
        self.evaluate = evaluate
    }

    /// Runs every stage not finished yet, hands the results table to `present`, and writes it
    /// to `results.md` in the run directory. Throws ``Stopped`` after a stop request.
    public func run(stop: StopSignal, logger: Logger, present: (String) -> Void) throws {
        let cfg = config
        let started = Date()
        var timings: [(String, Double)] = []
        func timed<T>(_ stage: String, _ body: () throws -> T) rethrows -> T {
            let t0 = Date()
            defer { timings.append((stage, Date().timeIntervalSince(t0))) }
            return try body()
        }
        try FileManager.default.createDirectory(atPath: cfg.run.runDirectory, withIntermediateDirectories: true)
        // One pipeline per run directory (its stages' children take their own locks: the
        // coordinator's in the same directory, SFT's beside its output).
        let lock = try DirectoryLock(directory: cfg.run.runDirectory, name: "pipeline.lock", role: "cerm pipeline")
        defer { lock.release() }
        for path in try timed("data", { try SFTData.ensureSynthetic(cfg.data) }) { logger.info("generated \(path)") }
        let files = [cfg.data.eval] + (cfg.data.bestOfN.isEmpty ? [] : [cfg.data.bestOfN])
        var rows: [(String, EvaluationReport)] = []
        func evaluate(_ name: String, _ judge: JudgeSource) throws -> EvaluationReport {
            logger.info("evaluating \(name) on \(files.joined(separator: " + "))")
            return try timed("eval \(name)") {
                // The same files each time: their skipped lines are reported by the first evaluation only.
                try self.evaluate(judge, files, rows.isEmpty)
            }
        }
        let probe = ChildProcessCheckpointProbe(stop: stop, logger: logger)
        let initial = try runModel.initialWeights(config: cfg)
        // Existing SFT weights are checked before anything is evaluated: weights for another
        // [model] would be evaluated as "after SFT" and only refused by the RL launch.
        var sftWeights: ModelWeights?
        if FileManager.default.fileExists(atPath: cfg.sft.output) {
            let found = try PipelineReuse.sftWeights(path: cfg.sft.output, config: cfg, runModel: runModel, probe: probe)
            let wanted = try PipelineReuse.sftProvenance(config: cfg, runModel: runModel, initial: initial)
            switch try PipelineReuse.sftDecision(found, path: cfg.sft.output, wanted: wanted) {
            case let .reuse(weights, unrecorded):
                sftWeights = weights
                logger.info("reusing SFT weights \(cfg.sft.output) (delete the file to train them again)")
                if unrecorded {
                    let message = "\(cfg.sft.output) does not record how it was trained (SFT weights of an older build, or an RL "
                        + "checkpoint): reused without checking it against [sft], run.seed and the data; delete it to train SFT again"
                    logger.warning("\(message)")
                }
            case let .stale(reasons):
                let moved = try PipelineReuse.moveSFTWeightsAside(path: cfg.sft.output)
                let message = "the SFT weights \(cfg.sft.output) were trained otherwise than this config trains them (\(reasons.joined(separator: "; "))): "
                    + "moved \(moved?.names.joined(separator: ", ") ?? "nothing") to \(moved?.destination ?? "-") (nothing deleted); training SFT anew"
                logger.warning("\(message)")
            }
        }
        let untrained = runModel.source == nil ? "random init" : "zero-shot"
        rows.append((untrained, try evaluate(untrained, .model(initial, chat: runModel.chat))))
        rows.append(("teacher", try evaluate("teacher", .teacher(SFTData.teacher(cfg)))))
        try stopIfRequested(stop)

        if sftWeights == nil {
            // Pairs curated with an earlier SFT model do not describe the new one.
            if cfg.curation.enabled, FileManager.default.fileExists(atPath: cfg.curation.output) {
                try FileManager.default.removeItem(atPath: cfg.curation.output)
            }
            try timed("sft") {
                try runChild("sft", ["sft", "--config", configPath, "--skip-eval"], stop: stop, logger: logger)
            }
        }
        let sft = try sftWeights ?? PipelineReuse.sftWeights(path: cfg.sft.output, config: cfg, runModel: runModel, probe: probe).weights
        rows.append(("after SFT", try evaluate("after SFT", .model(sft, chat: runModel.chat))))
        try stopIfRequested(stop)

        if cfg.curation.enabled {
            if FileManager.default.fileExists(atPath: cfg.curation.output) {
                logger.info("reusing the curated pairs \(cfg.curation.output) (delete the file to curate again)")
            } else {
                try timed("curation") {
                    try runChild("curate", ["curate", "--config", configPath], stop: stop, logger: logger)
                }
            }
        }

        let (decision, existing) = try PipelineReuse.rlRun(config: cfg, sft: sft, probe: probe, logger: logger)
        if decision == .reuse, let existing {
            logger.info("reusing the RL run: \(existing.path) is at step \(existing.state.step) of \(cfg.run.steps)")
        } else {
            var arguments = ["launch", "--config", configPath, "--init", cfg.sft.output]
            if let workers { arguments += ["--workers", String(workers)] }
            if decision == .resume { arguments.append("--resume") }
            try timed("rl") { try runChild("launch", arguments, stop: stop, logger: logger) }
        }
        guard let final = try CheckpointReader.findResumeCheckpoint(runDir: cfg.run.runDirectory, probe: probe, logger: logger) else {
            throw CermError.invalid("\(cfg.run.runDirectory): the RL stage left no valid checkpoint")
        }
        try runModel.checkTokenizer(final.state.tokenizer, of: final.path)
        let rl = try WeightsFile.policyWeights(of: final.state, path: final.path)
        rows.append(("after RL (step \(final.state.step))", try evaluate("after RL", .model(rl, chat: runModel.chat))))

        let table = EvaluationReport.pipelineTable(rows, timings: timings, total: Date().timeIntervalSince(started))
        present(table)
        let resultsPath = (cfg.run.runDirectory as NSString).appendingPathComponent("results.md")
        try table.write(toFile: resultsPath, atomically: true, encoding: .utf8)
        logger.info("results written to \(resultsPath)")
    }

    private func stopIfRequested(_ stop: StopSignal) throws {
        if stop.isRequested { throw Stopped() }
    }

    /// Runs one `cerm` subcommand as a child, forwarding SIGINT/SIGTERM; fails on a non-zero exit.
    private func runChild(_ name: String, _ arguments: [String], stop: StopSignal, logger: Logger) throws {
        let supervisor = ProcessSupervisor(logger: logger)
        try supervisor.spawn(name: name, executable: executable, arguments: arguments)
        let status = supervisor.waitForPrimary(name, stop: stop)
        try stopIfRequested(stop)
        guard status == 0 else {
            throw CermError.invalid("`cerm \(arguments.joined(separator: " "))` exited with status \(status)")
        }
    }
}
