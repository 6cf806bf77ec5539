import ArgumentParser
import Configuration
import Coordinator
import Datasets
import Engine
import EngineConfiguration
import Foundation
import Logging
import Runtime
import Shared

/// `cerm pipeline`: the default run end to end, what `make run` does.
///
/// Synthetic data → held-out evaluation of a random model and of the teacher → cold-start SFT →
/// curation of the RL pairs (`curation.enabled`) → CE-RM GRPO with a coordinator and local
/// workers over ZeroMQ → held-out evaluation of the SFT and RL models → one table. Finished
/// stages are reused when it runs again: the data files, the SFT weights (`sft.output`), the
/// curated pairs (`curation.output`, removed when SFT trains anew), and the RL run (resumed
/// from its newest checkpoint, skipped when it already reached `run.steps`). SFT weights for
/// another `[model]` are refused before any evaluation; an RL run that did not start from the
/// current SFT weights (`init_weights_fnv1a64`, docs/CHECKPOINT.md) is moved aside and trained anew.
struct PipelineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "Synthetic data → SFT → (curation) → CE-RM GRPO on a local cluster → evaluation table (reuses finished stages).")

    @Option(help: "The run's config file.")
    var config: String = "cluster.toml"

    @Option(help: "Local workers for the RL stage (default cluster.workers).")
    var workers: Int?

    @Option(help: "Threads for the evaluations (one generator each).")
    var evalThreads: Int = 2

    func validate() throws {
        if let workers, workers < 1 { throw ValidationError("--workers must be at least 1, got \(workers)") }
        if evalThreads < 1 { throw ValidationError("--eval-threads must be at least 1, got \(evalThreads)") }
    }

    func run() throws {
        let stop = StopSignal.install()
        let cfg = try loadConfigOrExit(config)
        let logger = Logger(label: "pipeline")
        let started = Date()
        var timings: [(String, Double)] = []
        func timed<T>(_ stage: String, _ body: () throws -> T) rethrows -> T {
            let t0 = Date()
            defer { timings.append((stage, Date().timeIntervalSince(t0))) }
            return try body()
        }
        do {
            try FileManager.default.createDirectory(atPath: cfg.run.runDirectory, withIntermediateDirectories: true)
            for path in try timed("data", { try SFTData.ensureSynthetic(cfg.data) }) { logger.info("generated \(path)") }
            let files = [cfg.data.eval] + (cfg.data.bestOfN.isEmpty ? [] : [cfg.data.bestOfN])
            var rows: [(String, EvaluationReport)] = []
            func evaluate(_ name: String, _ judge: JudgeSource) throws -> EvaluationReport {
                logger.info("evaluating \(name) on \(files.joined(separator: " + "))")
                return try timed("eval \(name)") {
                    // The same files each time: their skipped lines are reported by the first evaluation only.
                    try runEvaluation(judge: judge, files: files, config: cfg, eval: cfg.eval, limit: nil,
                                      threads: evalThreads, quiet: false, reportSkipped: rows.isEmpty)
                }
            }
            let probe = ChildProcessCheckpointProbe(stop: stop, logger: logger)
            // Existing SFT weights are checked before anything is evaluated: weights for another
            // [model] would be evaluated as "after SFT" and only refused by the RL launch.
            var sftWeights: ModelWeights?
            if FileManager.default.fileExists(atPath: cfg.sft.output) {
                sftWeights = try PipelineReuse.sftWeights(path: cfg.sft.output, config: cfg, probe: probe)
            }
            let random = ModelWeights(initialFor: cfg)
            rows.append(("random init", try evaluate("random init", .model(random))))
            rows.append(("teacher", try evaluate("teacher", .teacher(SFTData.teacher(cfg)))))
            try stopIfRequested(stop)

            let executable = try LaunchCommand.currentExecutable()
            if sftWeights != nil {
                logger.info("reusing SFT weights \(cfg.sft.output) (delete the file to train them again)")
            } else {
                // Pairs curated with an earlier SFT model do not describe the new one.
                if cfg.curation.enabled, FileManager.default.fileExists(atPath: cfg.curation.output) {
                    try FileManager.default.removeItem(atPath: cfg.curation.output)
                }
                try timed("sft") {
                    try runChild("sft", executable, ["sft", "--config", config, "--skip-eval"], stop: stop, logger: logger)
                }
            }
            let sft = try sftWeights ?? WeightsFile.load(path: cfg.sft.output, probe: probe).weights
            rows.append(("after SFT", try evaluate("after SFT", .model(sft))))
            try stopIfRequested(stop)

            if cfg.curation.enabled {
                if FileManager.default.fileExists(atPath: cfg.curation.output) {
                    logger.info("reusing the curated pairs \(cfg.curation.output) (delete the file to curate again)")
                } else {
                    try timed("curation") {
                        try runChild("curate", executable, ["curate", "--config", config], stop: stop, logger: logger)
                    }
                }
            }

            let (decision, existing) = try PipelineReuse.rlRun(config: cfg, sft: sft, probe: probe, logger: logger)
            if decision == .reuse, let existing {
                logger.info("reusing the RL run: \(existing.path) is at step \(existing.state.step) of \(cfg.run.steps)")
            } else {
                var arguments = ["launch", "--config", config, "--init", cfg.sft.output]
                if let workers { arguments += ["--workers", String(workers)] }
                if decision == .resume { arguments.append("--resume") }
                try timed("rl") { try runChild("launch", executable, arguments, stop: stop, logger: logger) }
            }
            guard let final = try CheckpointReader.findResumeCheckpoint(runDir: cfg.run.runDirectory, probe: probe, logger: logger) else {
                throw CermError.invalid("\(cfg.run.runDirectory): the RL stage left no valid checkpoint")
            }
            rows.append(("after RL (step \(final.state.step))", try evaluate("after RL", .model(try WeightsFile.load(path: final.path).weights))))

            let table = EvaluationReport.pipelineTable(rows, timings: timings, total: Date().timeIntervalSince(started))
            print(table)
            let resultsPath = (cfg.run.runDirectory as NSString).appendingPathComponent("results.md")
            try table.write(toFile: resultsPath, atomically: true, encoding: .utf8)
            logger.info("results written to \(resultsPath)")
        } catch let error as ExitCode {
            throw error
        } catch is CheckpointReadInterrupted {
            try stopIfRequested(stop)
        } catch {
            throw exitWithError(error)
        }
    }

    private func stopIfRequested(_ stop: StopSignal) throws {
        if stop.isRequested {
            FileHandle.standardError.write(Data("stopped; run `cerm pipeline --config \(config)` again (`make run` for the repository's cluster.toml) to continue from the finished stages\n".utf8))
            throw ExitCode(130)
        }
    }

    /// Runs one `cerm` subcommand as a child, forwarding SIGINT/SIGTERM; fails on a non-zero exit.
    private func runChild(_ name: String, _ executable: String, _ arguments: [String], stop: StopSignal, logger: Logger) throws {
        let supervisor = ProcessSupervisor(logger: logger)
        try supervisor.spawn(name: name, executable: executable, arguments: arguments)
        let status = supervisor.waitForPrimary(name, stop: stop)
        try stopIfRequested(stop)
        guard status == 0 else {
            throw CermError.invalid("`cerm \(arguments.joined(separator: " "))` exited with status \(status)")
        }
    }
}
