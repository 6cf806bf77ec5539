import ArgumentParser
import Configuration
import Coordinator
import Logging
import Runtime

/// `cerm coordinator`: serves rollout tasks to workers and trains the policy with GRPO
/// (docs/PROTOCOL.md §7). Stops after `run.steps` or on SIGINT/SIGTERM (abandoning the step in
/// progress and saving a checkpoint of the last completed one); both exit with status 0.
struct CoordinatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Run the coordinator: schedule rollouts over ZeroMQ and train with GRPO.",
        discussion: """
            --resume alone continues from the newest valid checkpoint of Checkpoints/<run.name>; \
            --resume PATH continues from that checkpoint file or run directory. \
            Before training, later checkpoints of the run directory (without --resume: all of \
            them and metrics.jsonl) are moved into a superseded-<UTC time> subdirectory.
            """)

    @Option(help: "The run's config file.")
    var config: String = "cluster.toml"

    @Option(name: .customLong("init"), help: "SFT weights file (HDF5) the policy and reference start from; random init from [model] when absent.")
    var initPath: String?

    @Flag(help: "Continue from a checkpoint (the newest of the run directory, or the PATH given after it).")
    var resume = false

    @Argument(help: "With --resume: a checkpoint file or run directory.")
    var resumePath: String?

    @Option(help: "Override run.steps (total optimizer steps, counting restored ones).")
    var steps: Int?

    /// Set by `cerm launch`: the coordinator stops (gracefully, with a checkpoint) when the launcher dies.
    @Option(help: .hidden)
    var parentPid: Int32?

    /// Set by `cerm launch`: a file the coordinator writes its endpoint to once it has bound
    /// it, the launcher's signal to start the workers.
    @Option(help: .hidden)
    var boundFile: String?

    func validate() throws {
        if resumePath != nil, !resume { throw ValidationError("a checkpoint path is only accepted after --resume") }
        if let steps, steps < 0 { throw ValidationError("--steps must be ≥ 0") }
    }

    func run() throws {
        // Handlers first: the parent-death SIGTERM then becomes a graceful stop.
        let stop = StopSignal.install()
        if let parentPid { ParentDeathSignal.arm(expectedParent: parentPid) }
        var (config, runModel) = try loadRunConfigOrExit(self.config)
        if let steps { config.run.steps = steps }
        let source: CoordinatorRun.ResumeSource? = resume ? resumePath.map { .path($0) } ?? .runDirectory : nil
        let report: CoordinatorReport?
        do {
            let run = CoordinatorRun(config: config, runModel: runModel, initPath: initPath, resume: source, boundFile: boundFile)
            report = try run.run(stop: stop, logger: Logger(label: "cerm.coordinator"))
        } catch {
            throw exitWithError(error)
        }
        if let report, report.outcome.exitCode != 0 { throw ExitCode(report.outcome.exitCode) }
    }
}
