import ArgumentParser
import Configuration
import Coordinator
import Foundation
import Logging
import Runtime
import Shared

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
        var config = try loadConfigOrExit(self.config)
        if let steps { config.run.steps = steps }
        let logger = Logger(label: "cerm.coordinator")
        let report: CoordinatorReport
        do {
            // Key files read and the bind allowed before the checkpoint, model and data are
            // loaded: a missing key file or a refused endpoint is reported (naming its config
            // key) at once, not after minutes of loading.
            let settings = try CoordinatorSettings(config: config)
            if settings.curve == nil {
                try EndpointSecurity.checkInsecureBind(settings.endpoint, allowInsecure: settings.allowInsecure)
            }
            var resumePoint = try loadResumePoint(config: config, stop: stop, logger: logger)
            // A changed [model] cannot be restored: refused here, before train.log is opened or
            // any config change is reported as if the resume went ahead.
            if let loaded = resumePoint { try ResumePoint.refuseModelChange(in: loaded.state, path: loaded.path, config: config) }
            // The learner's data shards run in parallel with one BLAS thread each: at the
            // default model size that is ~1.8x faster than one shard on all BLAS threads.
            let threads = min(ProcessInfo.processInfo.activeProcessorCount, GRPOLearner.dataShards)
            BLAS.setThreads(max(1, ProcessInfo.processInfo.activeProcessorCount / threads))
            // The SFT weights are read by a child first, as resume candidates are.
            if let initPath { try CheckpointReader.probeFirst(path: initPath, with: ChildProcessCheckpointProbe(stop: stop, logger: logger)) }
            let learner = try GRPOLearner(config: config, initPath: initPath, threads: threads)
            // A resumed run continues from its checkpoint whatever --init says (`cerm pipeline`
            // passes both); say so when they disagree, instead of ignoring --init silently.
            if let initPath, let loaded = resumePoint, let recorded = loaded.state.initWeightsChecksum,
               recorded != learner.reference.checksum {
                let checksums = "checksum \(CheckpointFormat.hex(recorded)), not \(CheckpointFormat.hex(learner.reference.checksum))"
                logger.warning("--init \(initPath) is ignored: the run resumes from \(loaded.path), which started from other weights (\(checksums))")
            }
            let pairs = try DatasetPairSource(config: config)
            // Only once the run can start (weights and data load): the files an earlier line of
            // training left that this run would mix with its own go aside, so that the next
            // --resume continues this run. Before MetricsLogger, which appends to metrics.jsonl.
            let startStep = resumePoint?.state.step ?? 0
            let superseded = config.run.steps > startStep
                ? try SupersededFiles.moveAside(in: config.run.runDirectory, startStep: startStep, fresh: resumePoint == nil)
                : nil
            // train.log from here on: every later line (and the skipped checkpoints and config
            // changes the service reports) lands in it.
            let metrics = try MetricsLogger(runDirectory: config.run.runDirectory)
            defer { metrics.close() }
            if let superseded {
                let files = superseded.names.joined(separator: ", ")
                if let resumePoint {
                    logger.warning("resuming from step \(startStep) (\(resumePoint.path)) abandons the later checkpoints of \(config.run.runDirectory): moved \(files) to \(superseded.destination) (nothing deleted), so that the next --resume continues this run")
                } else {
                    logger.warning("starting a new run (no --resume) in \(config.run.runDirectory), which holds an earlier run: moved its \(files) to \(superseded.destination) (nothing deleted; pass --resume to continue that run instead)")
                }
                metrics.event(.runSuperseded(files: superseded.names, destination: superseded.destination))
            }
            if let loaded = resumePoint {
                do {
                    resumePoint?.configChanges = try ResumePoint.configChanges(from: loaded.state, path: loaded.path, to: config)
                } catch {
                    logger.warning("cannot compare the config with the checkpoint's: \(error)")
                }
            }
            for line in pairs.skippedLinesReport() { logger.warning("\(line)") }
            let service = CoordinatorService(
                settings: settings, learner: learner, pairs: pairs, resume: resumePoint,
                stop: stop, clock: SystemClock(), checkpoints: CheckpointWriter(config: config),
                metrics: metrics, logger: logger)
            logger.info("coordinator starting", metadata: [
                "run": "\(config.run.name)", "steps": "\(config.run.steps)", "pairs": "\(pairs.pairs.count)",
                // A resumed policy starts from the checkpoint, whatever --init says.
                "init": "\(resumePoint?.path ?? initPath ?? "random")", "resume": "\(resumePoint?.path ?? "no")",
                "data": "\(pairs.source)", "blas": "\(BLAS.coreName)",
            ])
            if let boundFile {
                // Written from another thread: run() blocks this one, which becomes the socket thread.
                let notifier = Thread {
                    guard let endpoint = service.waitForEndpoint(timeout: 366 * 86400) else { return }
                    do {
                        try endpoint.write(toFile: boundFile, atomically: true, encoding: .utf8)
                    } catch {
                        logger.error("cannot tell the launcher the endpoint is bound: \(error)")
                    }
                }
                notifier.name = "cerm-bound-file"
                notifier.start()
            }
            report = try service.run()
        } catch let interrupted as CheckpointReadInterrupted {
            // Ctrl-C while a child read a checkpoint first (for up to a minute when libhdf5
            // loops on the file): a stop before training, not an error.
            logger.notice("run stopped before training: \(interrupted)")
            return
        } catch {
            throw exitWithError(error)
        }
        switch report.outcome {
        case let .finished(steps):
            logger.info("run finished", metadata: ["steps": "\(steps)", "policy_version": "\(report.policyVersion)"])
        case let .stopped(completed):
            logger.notice("run stopped", metadata: ["completed_steps": "\(completed)", "policy_version": "\(report.policyVersion)"])
        }
        if report.outcome.exitCode != 0 { throw ExitCode(report.outcome.exitCode) }
    }

    /// The checkpoint `--resume` names, or nil without `--resume`. Checkpoints skipped on the
    /// way are not logged here but handed to the service, which logs them once `train.log` is
    /// open (`checkpoint_skipped` events); when none loads, the error lists them.
    private func loadResumePoint(config: Config, stop: StopSignal, logger: Logger) throws -> ResumePoint? {
        guard resume else { return nil }
        var skipped: [CheckpointError] = []
        var quiet = logger
        quiet.logLevel = .error
        // Each candidate is read by a child first: a file that crashes libhdf5 is skipped (or,
        // named alone, refused) instead of killing the coordinator on every retry.
        let loaded = try CheckpointReader.resume(from: resumePath ?? config.run.runDirectory, isRunDirectory: resumePath == nil,
                                                 probe: ChildProcessCheckpointProbe(stop: stop, logger: logger), logger: quiet) { skipped.append($0) }
        return ResumePoint(state: loaded.state, path: loaded.path, skipped: skipped)
    }
}
