import Configuration
import EngineConfiguration
import Foundation
import Logging
import Runtime
import Shared
import WireProtocol

/// One run of the coordinator as `cerm coordinator` starts it: the checks that can fail fast,
/// the resume point, the learner and its BLAS threads, the data, the files an earlier line of
/// training left aside, `train.log`, then the service until `run.steps` or a stop.
public struct CoordinatorRun {
    /// Where `--resume` continues from.
    public enum ResumeSource: Sendable, Equatable {
        /// The newest valid checkpoint of the run directory.
        case runDirectory
        /// A checkpoint file or run directory.
        case path(String)
    }

    /// The run's configuration, `[model]` resolved (``RunModel/resolve(_:)``).
    public var config: Config
    /// The run's model: its tokenizer and template render every prompt.
    public var runModel: RunModel
    /// SFT weights the policy and reference start from (`--init`); the run model's initial
    /// weights when nil (``RunModel/initialWeights(config:)``).
    public var initPath: String?
    /// Nil for a new run.
    public var resume: ResumeSource?
    /// A file the coordinator writes its endpoint to once it has bound it (`cerm launch`'s
    /// signal to start the workers).
    public var boundFile: String?

    public init(config: Config, runModel: RunModel, initPath: String? = nil, resume: ResumeSource? = nil, boundFile: String? = nil) {
        self.config = config
        self.runModel = runModel
        self.initPath = initPath
        self.resume = resume
        self.boundFile = boundFile
    }

    /// Trains until `run.steps` or a request on `stop`; nil when the stop came while a child
    /// read a checkpoint, before training. Throws what keeps the run from starting or going on.
    public func run(stop: StopSignal, logger: Logger) throws -> CoordinatorReport? {
        do {
            let report = try start(stop: stop, logger: logger)
            switch report.outcome {
            case let .finished(steps):
                logger.info("run finished", metadata: ["steps": "\(steps)", "policy_version": "\(report.policyVersion)"])
            case let .stopped(completed):
                logger.notice("run stopped", metadata: ["completed_steps": "\(completed)", "policy_version": "\(report.policyVersion)"])
            }
            return report
        } catch let interrupted as CheckpointReadInterrupted {
            // Ctrl-C while a child read a checkpoint first (for up to a minute when libhdf5
            // loops on the file): a stop before training, not an error.
            logger.notice("run stopped before training: \(interrupted)")
            return nil
        }
    }

    private func start(stop: StopSignal, logger: Logger) throws -> CoordinatorReport {
        // Key files read and the bind allowed before the checkpoint, model and data are
        // loaded: a missing key file or a refused endpoint is reported (naming its config
        // key) at once, not after minutes of loading.
        let settings = try CoordinatorSettings(config: config, runModel: runModel)
        try settings.checkBindAllowed()
        for warning in CurveKeyFiles.exposureWarnings(of: config.cluster) { logger.warning("\(warning)") }
        // One coordinator per run directory, before anything in it is read, moved or written:
        // a second one would supersede the live run's checkpoints. Held until this returns.
        let lock = try DirectoryLock(directory: config.run.runDirectory, name: "coordinator.lock", role: "cerm coordinator")
        defer { lock.release() }
        var resumePoint = try loadResumePoint(stop: stop, logger: logger)
        // A changed [model] cannot be restored: refused here, before train.log is opened or
        // any config change is reported as if the resume went ahead.
        if let loaded = resumePoint {
            try ResumePoint.refuseModelChange(in: loaded.state, path: loaded.path, config: config)
            try runModel.checkTokenizer(loaded.state.tokenizer, of: loaded.path)
        }
        let threads = GRPOLearner.claimProcessors(shards: config.grpo.gradientShards)
        // The SFT weights are read by a child first, as resume candidates are.
        if let initPath { try CheckpointReader.probeFirst(path: initPath, with: ChildProcessCheckpointProbe(stop: stop, logger: logger)) }
        let learner = try GRPOLearner(config: config, runModel: runModel, initPath: initPath, threads: threads)
        // A resumed run continues from its checkpoint whatever --init says (`cerm pipeline`
        // passes both); say so when they disagree, instead of ignoring --init silently.
        if let initPath, let loaded = resumePoint, let recorded = loaded.state.initWeightsChecksum,
           recorded != learner.reference.checksum {
            let checksums = "checksum \(CheckpointFormat.hex(recorded)), not \(CheckpointFormat.hex(learner.reference.checksum))"
            logger.warning("--init \(initPath) is ignored: the run resumes from \(loaded.path), which started from other weights (\(checksums))")
        }
        let pairs = try DatasetPairSource(config: config, chat: runModel.chat)
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
            "data": "\(pairs.source)", "blas": "\(BLAS.coreName)", "model": "\(runModel.description)",
        ])
        if let boundFile { announceEndpoint(of: service, in: boundFile, logger: logger) }
        return try service.run()
    }

    /// Writes the endpoint to `file` from another thread once `service` has bound it:
    /// ``CoordinatorService/run()`` blocks the calling thread, which becomes the socket thread.
    private func announceEndpoint(of service: CoordinatorService, in file: String, logger: Logger) {
        let notifier = Thread {
            guard let endpoint = service.waitForEndpoint(timeout: 366 * 86400) else { return }
            do {
                try endpoint.write(toFile: file, atomically: true, encoding: .utf8)
            } catch {
                logger.error("cannot tell the launcher the endpoint is bound: \(error)")
            }
        }
        notifier.name = "cerm-bound-file"
        notifier.start()
    }

    /// The checkpoint `--resume` names, or nil without `--resume`. Checkpoints skipped on the
    /// way are not logged here but handed to the service, which logs them once `train.log` is
    /// open (`checkpoint_skipped` events); when none loads, the error lists them.
    private func loadResumePoint(stop: StopSignal, logger: Logger) throws -> ResumePoint? {
        guard let resume else { return nil }
        var skipped: [CheckpointError] = []
        var quiet = logger
        quiet.logLevel = .error
        let location: String, isRunDirectory: Bool
        switch resume {
        case .runDirectory: (location, isRunDirectory) = (config.run.runDirectory, true)
        case let .path(path): (location, isRunDirectory) = (path, false)
        }
        // Each candidate is read by a child first: a file that crashes libhdf5 is skipped (or,
        // named alone, refused) instead of killing the coordinator on every retry.
        let loaded = try CheckpointReader.resume(from: location, isRunDirectory: isRunDirectory,
                                                 probe: ChildProcessCheckpointProbe(stop: stop, logger: logger), logger: quiet) { skipped.append($0) }
        return ResumePoint(state: loaded.state, path: loaded.path, skipped: skipped)
    }
}
