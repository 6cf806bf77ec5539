import ArgumentParser
import Configuration
import Coordinator
import Foundation
import Logging
import Runtime

/// `cerm pipeline`: the default run end to end, what `make run` does (``PipelineRun``). SFT
/// weights for another `[model]` are refused before any evaluation; an RL run that did not
/// start from the current SFT weights (`init_weights_fnv1a64`, docs/CHECKPOINT.md) is moved
/// aside and trained anew.
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
        let (cfg, runModel) = try loadRunConfigOrExit(config)
        let evalThreads = evalThreads
        do {
            let pipeline = PipelineRun(config: cfg, runModel: runModel, configPath: config, workers: workers,
                                       executable: try LaunchCommand.currentExecutable()) { judge, files, reportSkipped in
                try runEvaluation(judge: judge, files: files, config: cfg, eval: cfg.eval, limit: nil,
                                  threads: evalThreads, quiet: false, reportSkipped: reportSkipped)
            }
            try pipeline.run(stop: stop, logger: Logger(label: "pipeline")) { print($0) }
        } catch is PipelineRun.Stopped {
            try stopIfRequested(stop)
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
}
