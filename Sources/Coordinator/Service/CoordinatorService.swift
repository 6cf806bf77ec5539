import Configuration
import Foundation
import Logging
import PolicyGradient
import Runtime
import Shared
import WireProtocol

/// How a coordinator run ended.
public enum CoordinatorOutcome: Sendable, Equatable {
    /// `run.steps` optimizer steps are done (counting steps restored from a checkpoint).
    case finished(steps: Int)
    /// A ``StopSignal`` arrived; steps after `completedSteps` were abandoned and a checkpoint of
    /// `completedSteps` exists.
    case stopped(completedSteps: Int)

    /// The process exit status: both endings are clean.
    public var exitCode: Int32 { 0 }
}

/// What a coordinator run did, for the command's last log line and for tests.
public struct CoordinatorReport: Sendable {
    public var outcome: CoordinatorOutcome
    public var policyVersion: UInt64
    public var statistics: SchedulerStatistics
    /// Messages dropped because they failed protocol validation.
    public var droppedMalformed: Int
    /// Checkpoint files written by this run, in order.
    public var checkpoints: [String]
}

/// The coordinator's runtime: a ROUTER socket served by the thread that calls ``run()`` and a
/// learner thread that drives the steps (docs/PROTOCOL.md, docs/DESIGN.md §5–7).
///
/// The socket thread handles handshakes, READY credit, task dispatch, results, heartbeats both
/// ways, dead-worker expiry and weight chunks; it never waits for the learner, so a long GRPO
/// update never makes workers think the coordinator died. The learner thread opens a step with
/// `pairs_per_batch` pairs, waits until the socket thread reports it complete, runs
/// ``Learner/update(step:pairs:rollouts:)``, publishes the new version, writes a checkpoint
/// when due and the metrics line, until `run.steps`. The two threads meet only in a locked
/// mailbox (commands one way, completed steps the other).
///
/// Graceful stop (``StopSignal``): the step in progress is *abandoned* — its rollouts are
/// discarded and the data cursor rewinds to its start — because finishing it can take minutes
/// while a SIGTERM usually comes with a short grace period. An update already running finishes
/// first. Then a checkpoint of the last completed step is written (unless one exists), every
/// worker gets GOODBYE and ``run()`` returns ``CoordinatorOutcome/stopped(completedSteps:)``.
/// Resuming from that checkpoint gives the same weights as a run that never stopped.
///
/// Async mode (`cluster.mode = "async"`, `max_staleness` ≥ 1) keeps one step ahead: step k+1
/// is open (and sampled with the version of the moment) while step k's rollouts finish and the
/// learner updates; the scheduler drops results beyond the staleness bound. Async runs are not
/// bitwise reproducible (which version samples a task depends on timing); with
/// `max_staleness = 0` async behaves as sync. Fixed-lag mode (`cluster.mode = "fixed-lag"`)
/// keeps `max_staleness` steps ahead and opens each with the version it must sample with
/// (``FixedLag``): the overlap of async, the bits of sync.
public final class CoordinatorService: @unchecked Sendable {
    public let settings: CoordinatorSettings
    private let learner: any Learner
    private let pairSource: any PairSource
    private let resume: ResumePoint?
    private let stop: StopSignal
    private let clock: any Clock
    private let checkpoints: CheckpointWriter?
    private let metrics: MetricsLogger?
    private let onStep: (@Sendable (StepMetrics) -> Void)?
    private let logger: Logger
    private let mailbox = CoordinatorMailbox()

    /// - Parameters:
    ///   - learner: called from the learner thread only.
    ///   - pairs: the data; restored to the checkpoint's cursor when resuming.
    ///   - resume: continue after `resume.state.step` steps (learner, data cursor, version); the
    ///     checkpoints it skipped are logged as `checkpoint_skipped` events, its config changes
    ///     as warnings and `config_changed` events.
    ///   - stop: polled by both threads; request it (or install it for SIGINT/SIGTERM) to stop.
    ///   - clock: times liveness and the metrics' time split (``SystemClock`` in production).
    ///   - checkpoints: nil writes no checkpoints.
    ///   - metrics: step lines and cluster events; nil logs events through `logger` only.
    ///   - onStep: called on the learner thread after each step's metrics line.
    public init(settings: CoordinatorSettings, learner: any Learner, pairs: any PairSource, resume: ResumePoint? = nil,
                stop: StopSignal = StopSignal(), clock: any Clock = SystemClock(), checkpoints: CheckpointWriter? = nil,
                metrics: MetricsLogger? = nil, onStep: (@Sendable (StepMetrics) -> Void)? = nil,
                logger: Logger = Logger(label: "cerm.coordinator")) {
        self.settings = settings
        self.learner = learner
        self.pairSource = pairs
        self.resume = resume
        self.stop = stop
        self.clock = clock
        self.checkpoints = checkpoints
        self.metrics = metrics
        self.onStep = onStep
        self.logger = logger
    }

    /// The endpoint actually bound (a `*` port resolved), once ``run()`` has bound it; nil if
    /// binding failed or `timeout` seconds passed. For callers that start ``run()`` on another
    /// thread (tests, `cerm launch`).
    public func waitForEndpoint(timeout: Double) -> String? { mailbox.waitForEndpoint(timeout: timeout) }

    /// Binds, serves and trains until `run.steps` or a stop; blocks the calling thread, which
    /// becomes the socket thread. Call it once per service. Throws when the endpoint may not or cannot be bound, or when
    /// the learner, the data or a checkpoint write fails (workers are told GOODBYE first).
    public func run() throws -> CoordinatorReport {
        let router: RouterChannel
        let authenticator: ZAPAuthenticator?
        // One limiter for every warning a peer can trigger at will, on the service's clock.
        let warnings = PeerWarningLimiter(clock: clock, logger: logger)
        do {
            try settings.checkBindAllowed()
            let context = try ZMQContext()
            if let curve = settings.curve {
                let log = logger
                let zap = try ZAPAuthenticator(context: context, authorizedKeys: curve.authorizedKeys) { key, address, admitted in
                    if !admitted, warnings.admit("CURVE client refused", from: "address \(address)") {
                        log.warning("CURVE client refused", metadata: ["key": "\(key)", "address": "\(address)"])
                    }
                }
                // libzmq admits every client while no ZAP handler is bound: start it first.
                try zap.start()
                authenticator = zap
            } else {
                authenticator = nil
            }
            do {
                router = try RouterChannel(context: context, bind: settings.endpoint, codec: MessageCodec(limits: settings.limits),
                                           security: settings.curve.map { .curveServer(secretKey: $0.secretKey) } ?? .none,
                                           logger: logger, warnings: warnings)
            } catch {
                authenticator?.stop()
                throw error
            }
        } catch {
            mailbox.bindFailed()
            throw error
        }
        defer { authenticator?.stop() }
        mailbox.bound(router.endpoint)
        logger.info("coordinator listening", metadata: ["endpoint": "\(router.endpoint)", "curve": "\(settings.curve != nil)"])

        if settings.distributedUpdate {
            do { try learner.distributeGradients(to: WorkerGradients(mailbox: mailbox, stop: stop, chunkBytes: settings.weightChunkBytes)) } catch {
                mailbox.bindFailed()
                router.socket.close()
                throw error
            }
        }
        let driver = StepDriver(settings: settings, learner: learner, pairs: pairSource, resume: resume, stop: stop, clock: clock,
                                checkpoints: checkpoints, metrics: metrics, onStep: onStep, mailbox: mailbox, logger: logger)
        let learnerThread = Thread { driver.run() }
        learnerThread.name = "cerm-learner"
        learnerThread.stackSize = 8 << 20
        learnerThread.start()

        let loop = SocketLoop(settings: settings, router: router, mailbox: mailbox, clock: clock, metrics: metrics,
                              warnings: warnings, logger: logger)
        let end = loop.serve()
        router.socket.close()
        // After the socket is gone no more can come: the counts of windows still open are due now.
        warnings.flush(all: true)

        switch end.result {
        case let .failure(error): throw error
        case let .success(outcome):
            return CoordinatorReport(outcome: outcome, policyVersion: loop.scheduler.policyVersion,
                                     statistics: loop.scheduler.statistics, droppedMalformed: router.droppedMalformed,
                                     checkpoints: end.checkpoints)
        }
    }
}

/// How the learner thread ended, handed to the socket thread.
struct DriverEnd: Sendable {
    var result: Result<CoordinatorOutcome, any Error>
    var checkpoints: [String]
}

/// The only state the socket thread and the learner thread share.
final class CoordinatorMailbox: @unchecked Sendable {
    enum Command: Sendable {
        /// `version`: fixed-lag mode's version for the step (nil: the newest).
        case open(step: UInt64, pairs: [TaskPair], version: UInt64?)
        case publish(PublishedWeights)
        /// A mini-batch's gradient tasks (distributed update).
        case gradients(GradientRequest)
        /// The learner computes the round itself (a stop arrived): drop its tasks.
        case cancelGradients(GradientRoundKey)
    }

    private let condition = NSCondition()
    /// Signalled with every command and at the end, so that the socket thread, blocked on its
    /// socket, takes them at once.
    let wakeup = Wakeup()
    private var commands: [Command] = []
    private var completed: [UInt64: StepRollouts] = [:]
    private var completedGradients: [GradientRoundKey: [ShardGradient]] = [:]
    private var workersAlive = 0
    private var finalChunkServedAt: [UInt64: Double] = [:]
    private var driverEnd: DriverEnd?
    private var endpoint: String?
    private var bindFinished = false
    private var aborted = false

    /// The socket thread cannot serve any more: the learner thread stops as if signalled.
    func abort() {
        condition.lock(); defer { condition.unlock() }
        aborted = true
        condition.broadcast()
    }

    /// Whether the run must stop: a stop was requested or the socket thread failed.
    func shouldStop(_ stop: StopSignal) -> Bool {
        condition.lock(); defer { condition.unlock() }
        return aborted || stop.isRequested
    }

    // Binding (socket thread → starter).
    func bound(_ endpoint: String) {
        condition.lock(); defer { condition.unlock() }
        self.endpoint = endpoint
        bindFinished = true
        condition.broadcast()
    }

    func bindFailed() {
        condition.lock(); defer { condition.unlock() }
        bindFinished = true
        condition.broadcast()
    }

    func waitForEndpoint(timeout: Double) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock(); defer { condition.unlock() }
        while !bindFinished { if !condition.wait(until: deadline) { break } }
        return endpoint
    }

    // Learner thread → socket thread.
    func post(_ command: Command) {
        condition.lock()
        commands.append(command)
        condition.unlock()
        wakeup.signal()
    }

    func takeCommands() -> [Command] {
        condition.lock(); defer { condition.unlock() }
        defer { commands = [] }
        return commands
    }

    func finish(_ end: DriverEnd) {
        condition.lock()
        driverEnd = end
        condition.broadcast()
        condition.unlock()
        wakeup.signal()
    }

    var end: DriverEnd? {
        condition.lock(); defer { condition.unlock() }
        return driverEnd
    }

    // Socket thread → learner thread.
    func complete(_ rollouts: StepRollouts) {
        condition.lock(); defer { condition.unlock() }
        completed[rollouts.step] = rollouts
        condition.broadcast()
    }

    func setWorkersAlive(_ count: Int) {
        condition.lock(); defer { condition.unlock() }
        workersAlive = count
    }

    var aliveWorkers: Int {
        condition.lock(); defer { condition.unlock() }
        return workersAlive
    }

    func servedFinalChunk(version: UInt64, at time: Double) {
        condition.lock(); defer { condition.unlock() }
        finalChunkServedAt[version] = time
    }

    func finalChunkServed(version: UInt64) -> Double? {
        condition.lock(); defer { condition.unlock() }
        return finalChunkServedAt[version]
    }

    func complete(_ round: GradientRoundKey, gradients: [ShardGradient]) {
        condition.lock(); defer { condition.unlock() }
        completedGradients[round] = gradients
        condition.broadcast()
    }

    /// Waits until every shard of `round` has an accepted gradient, or a stop is requested or
    /// the socket thread can no longer serve (nil: the learner finishes the update itself).
    func waitForGradients(_ round: GradientRoundKey, stop: StopSignal) -> [ShardGradient]? {
        condition.lock(); defer { condition.unlock() }
        while true {
            if let gradients = completedGradients.removeValue(forKey: round) { return gradients }
            if aborted || stop.isRequested { return nil }
            _ = condition.wait(until: Date().addingTimeInterval(0.05))
        }
    }

    /// Waits until `step` is complete (its rollouts) or a stop is requested (nil). A stop wins
    /// over a step completing at the same moment: once requested, no further update starts.
    func waitForStep(_ step: UInt64, stop: StopSignal) -> StepRollouts? {
        condition.lock(); defer { condition.unlock() }
        while true {
            if aborted || stop.isRequested { return nil }
            if let rollouts = completed.removeValue(forKey: step) { return rollouts }
            _ = condition.wait(until: Date().addingTimeInterval(0.05))
        }
    }
}

/// The learner thread: steps, updates, publishing, checkpoints and metrics.
private final class StepDriver: @unchecked Sendable {
    private struct OpenStep {
        var pairs: [TaskPair]
        /// The data cursor before this step's pairs were drawn (where a rewind goes).
        var cursorBefore: DataCursor
    }

    let settings: CoordinatorSettings
    let learner: any Learner
    var pairs: any PairSource
    let resume: ResumePoint?
    let stop: StopSignal
    let clock: any Clock
    let checkpoints: CheckpointWriter?
    let metrics: MetricsLogger?
    let onStep: (@Sendable (StepMetrics) -> Void)?
    let mailbox: CoordinatorMailbox
    let logger: Logger
    private var written: [String] = []

    init(settings: CoordinatorSettings, learner: any Learner, pairs: any PairSource, resume: ResumePoint?, stop: StopSignal,
         clock: any Clock, checkpoints: CheckpointWriter?, metrics: MetricsLogger?, onStep: (@Sendable (StepMetrics) -> Void)?,
         mailbox: CoordinatorMailbox, logger: Logger) {
        self.settings = settings
        self.learner = learner
        self.pairs = pairs
        self.resume = resume
        self.stop = stop
        self.clock = clock
        self.checkpoints = checkpoints
        self.metrics = metrics
        self.onStep = onStep
        self.mailbox = mailbox
        self.logger = logger
    }

    func run() {
        let result: Result<CoordinatorOutcome, any Error>
        do { result = .success(try drive()) } catch {
            logger.error("training failed: \(error)")
            result = .failure(error)
        }
        mailbox.finish(DriverEnd(result: result, checkpoints: written))
    }

    /// Serializes the learner's current weights and hands them to the socket thread; seconds spent.
    private func publishPolicy() throws -> Double {
        let started = clock.now()
        let version = learner.policyVersion
        guard version < WeightsVersion.firstIntermediate else {
            throw CermError.invalid("learner policy version \(version) collides with the reserved versions of the model and the reference weights")
        }
        mailbox.post(.publish(try learner.publishedWeights(chunkBytes: settings.weightChunkBytes)))
        return clock.now() - started
    }

    private func drive() throws -> CoordinatorOutcome {
        let resumedStep = try restoreResumePoint()
        var completedSteps = resumedStep ?? 0
        var lastSaved = resumedStep
        if completedSteps >= settings.steps {
            logger.notice("already at step \(completedSteps) of \(settings.steps): nothing to do (raise run.steps or pass --steps to continue)")
        }
        let chunkBytes = settings.weightChunkBytes
        mailbox.post(.publish(PublishedWeights(version: WeightsVersion.model, bytes: learner.modelDescription(), chunkBytes: chunkBytes)))
        mailbox.post(.publish(PublishedWeights(version: WeightsVersion.reference, bytes: try learner.referenceWeights(), chunkBytes: chunkBytes)))
        var lag = FixedLag(settings: settings.scheduler, completedSteps: completedSteps, policyVersion: learner.policyVersion,
                           checkpoint: resume?.path)
        // A resumed fixed-lag run samples its next steps with the versions the checkpoint kept
        // (a learner keeps none in the other modes).
        for previous in try learner.previousPolicyWeights() {
            mailbox.post(.publish(PublishedWeights(version: previous.version, bytes: previous.bytes, chunkBytes: chunkBytes)))
            lag?.kept.insert(previous.version)
        }
        _ = try publishPolicy()

        let lookahead = switch settings.scheduler.mode {
        case .sync: 0
        case .async: settings.scheduler.maxStaleness >= 1 ? 1 : 0
        case .fixedLag: Int(settings.scheduler.maxStaleness)
        }
        var open: [Int: OpenStep] = [:]
        var nextToOpen = completedSteps + 1
        var stopped = false
        // Async throughput is measured from one step's end to the next (see tokensPerSecond).
        var previousStepEnded = clock.now()
        var previousCheckpointSeconds = 0.0
        let driveStarted = previousStepEnded

        while completedSteps < settings.steps {
            if mailbox.shouldStop(stop) { stopped = true; break }
            while nextToOpen <= min(settings.steps, completedSteps + 1 + lookahead) {
                let version = try lag?.version(forStep: nextToOpen)
                let cursorBefore = pairs.cursor
                let batch = try pairs.nextBatch(count: settings.pairsPerBatch)
                open[nextToOpen] = OpenStep(pairs: batch, cursorBefore: cursorBefore)
                mailbox.post(.open(step: UInt64(nextToOpen), pairs: batch, version: version))
                nextToOpen += 1
            }
            let step = completedSteps + 1
            let stepStarted = clock.now()
            guard let rollouts = mailbox.waitForStep(UInt64(step), stop: stop), let opened = open[step] else { stopped = true; break }
            let waited = clock.now() - stepStarted
            // Weight fetches by workers happen inside the wait; count them as distribution.
            let sampledWith = rollouts.versionByPair.values.max() ?? learner.policyVersion
            let fetching = mailbox.finalChunkServed(version: sampledWith).map { min(max(0, $0 - stepStarted), waited) } ?? 0

            let updateStarted = clock.now()
            let versionBefore = learner.policyVersion
            var line = try learner.update(step: step, pairs: opened.pairs, rollouts: rollouts)
            let updateSeconds = clock.now() - updateStarted
            guard learner.policyVersion > versionBefore else {
                throw CermError.invalid("learner update of step \(step) left policy version \(learner.policyVersion) (was \(versionBefore)); it must increase")
            }
            event(.stepTrained(step: step, pairs: rollouts.rollouts.map(\.pairID)))
            let handover = try publishPolicy()
            lag?.published(learner.policyVersion, afterStep: step)
            open[step] = nil
            completedSteps = step

            let recorded = clock.now()
            // Sync: workers sample only while the learner waits, so the wait is their sampling
            // time. Async: they sample the next step during the update and the wait is near 0,
            // so the whole interval since the previous step ended is the sampling time.
            let samplingSeconds = lookahead > 0 ? recorded - previousStepEnded : waited - fetching
            line.step = step
            line.policyVersion = sampledWith
            line.waitRolloutsSeconds = waited - fetching
            line.updateSeconds = updateSeconds
            line.weightDistributionSeconds = handover + fetching
            // The line goes out before the step's checkpoint: a coordinator killed between the
            // two leaves a line of a step that a resume trains again (the last line of a step
            // counts), never a checkpoint without its line (found by scripts/chaos.sh). So a
            // line carries the previous step's checkpoint time, and its step time from there.
            line.checkpointSeconds = previousCheckpointSeconds
            line.stepSeconds = recorded - stepStarted + previousCheckpointSeconds
            try record(line, rollouts: rollouts, samplingSeconds: samplingSeconds)
            previousCheckpointSeconds = 0
            if settings.isSaveDue(step: step) {
                previousCheckpointSeconds = try save(step: step, cursor: cursorAfterCompleted(open: open))
                lastSaved = step
            }
            let stepEnded = clock.now()
            previousStepEnded = stepEnded
            // Steps of a pretrained model take minutes: say when the run will end.
            let stepsDone = Double(completedSteps - (resumedStep ?? 0))
            let elapsed = stepEnded - driveStarted
            let eta = formatDuration(elapsed / stepsDone * Double(settings.steps - completedSteps))
            logger.info("step \(completedSteps) of \(settings.steps): \(formatDuration(elapsed)) elapsed, ETA \(eta)")
        }

        if stopped { return try abandon(open: open, completedSteps: completedSteps, lastSaved: lastSaved) }
        event(.runFinished(steps: completedSteps))
        return .finished(steps: completedSteps)
    }

    /// Restores learner and data source from the resume point, if any, and returns its step.
    private func restoreResumePoint() throws -> Int? {
        guard let resume else { return nil }
        // Before the restore, so they are on record even when it fails.
        for skipped in resume.skipped { event(.checkpointSkipped(path: skipped.path, reason: "\(skipped.reason)")) }
        for change in resume.configChanges {
            logger.warning("config differs from the checkpoint's: \(change.key): \(change.old) (checkpoint) → \(change.new) (config)")
            event(.configChanged(key: change.key, checkpoint: change.old, config: change.new))
        }
        try learner.restore(from: resume.state)
        try pairs.restore(cursor: resume.state.dataCursor)
        event(.resumed(path: resume.path, step: resume.state.step))
        return resume.state.step
    }

    /// Completes a step's metrics line with the rollouts' sizes, throughput and the workers
    /// alive, and records it.
    private func record(_ stepLine: StepMetrics, rollouts: StepRollouts, samplingSeconds: Double) throws {
        var line = stepLine
        let tokens = rollouts.trajectories.reduce(0) { $0 + $1.tokens.count }
        line.generatedTokens = tokens
        line.trajectories = rollouts.trajectories.count
        line.tokensPerSecond = samplingSeconds > 0 ? Double(tokens) / samplingSeconds : 0
        line.workersAlive = mailbox.aliveWorkers
        if let metrics { try metrics.record(line) } else { logger.info("\(line.tailLine())") }
        onStep?(line)
    }

    /// A stop before `run.steps`: the open steps are abandoned without a trace (the next run
    /// draws their pairs again) and the completed ones are saved.
    private func abandon(open: [Int: OpenStep], completedSteps: Int, lastSaved: Int?) throws -> CoordinatorOutcome {
        if let earliest = open.keys.min(), let cursor = open[earliest]?.cursorBefore { try pairs.restore(cursor: cursor) }
        logger.notice("stop requested: abandoned \(open.count) open step(s) after \(completedSteps) completed")
        if lastSaved != completedSteps { _ = try save(step: completedSteps, cursor: pairs.cursor) }
        event(.runStopped(completedSteps: completedSteps))
        return .stopped(completedSteps: completedSteps)
    }

    /// The cursor a checkpoint after the completed steps stores: before the earliest step still
    /// open (async look-ahead), else the source's own.
    private func cursorAfterCompleted(open: [Int: OpenStep]) -> DataCursor {
        if let earliest = open.keys.min(), let step = open[earliest] { return step.cursorBefore }
        return pairs.cursor
    }

    private func save(step: Int, cursor: DataCursor) throws -> Double {
        guard let checkpoints else { return 0 }
        let started = clock.now()
        let state = try learner.trainingState(step: step, dataCursor: cursor)
        let result = try checkpoints.write(state)
        written.append(result.path)
        let seconds = clock.now() - started
        event(.checkpointSaved(path: result.path, seconds: seconds))
        return seconds
    }

    private func event(_ event: ClusterEvent) {
        if let metrics { metrics.event(event) } else { logger.log(level: event.level, "\(event.line)") }
    }
}

/// The socket thread's state: the ROUTER, the scheduler, the weights and the pairs of open steps.
private final class SocketLoop {
    let settings: CoordinatorSettings
    let router: RouterChannel
    let mailbox: CoordinatorMailbox
    let clock: any Clock
    let metrics: MetricsLogger?
    /// Rate-limits the warnings peers can trigger (shared with the router and the ZAP handler).
    let warnings: PeerWarningLimiter
    let logger: Logger
    private(set) var scheduler: TaskScheduler
    private var policyWeights: WeightsPublisher
    /// The model description and the reference weights: published once, never evicted.
    private var fixedWeights: WeightsPublisher
    private var pairsByStep: [UInt64: [UInt64: TaskPair]] = [:]
    /// The weights a distributed update's later mini-batches are computed at (the newest only).
    private var intermediateWeights: WeightsPublisher
    /// Open gradient rounds: what their tasks carry, and the shards accepted so far.
    private var gradientRequests: [GradientRoundKey: GradientRequest] = [:]
    private var gradientsDone: [GradientRoundKey: [UInt32: ShardGradient]] = [:]
    /// Gradients being received, by task id.
    private var receipts: [UInt64: GradientReceipt] = [:]
    private var lastAlive = -1
    /// Names of the routing ids declared dead (the newest 256), so a late RESULT of a worker that
    /// was only stalled (SIGSTOP, a swapping host) is logged under its name as a late result.
    private var declaredDead: [RoutingID: String] = [:]
    private var declaredDeadOrder: [RoutingID] = []

    init(settings: CoordinatorSettings, router: RouterChannel, mailbox: CoordinatorMailbox, clock: any Clock,
         metrics: MetricsLogger?, warnings: PeerWarningLimiter, logger: Logger) {
        self.settings = settings
        self.router = router
        self.mailbox = mailbox
        self.clock = clock
        self.metrics = metrics
        self.warnings = warnings
        self.logger = logger
        scheduler = TaskScheduler(settings: settings.scheduler)
        policyWeights = WeightsPublisher(retain: settings.retainedVersions)
        fixedWeights = WeightsPublisher(retain: 2)
        intermediateWeights = WeightsPublisher(retain: 1)
    }

    /// Serves until the learner thread ends, then says GOODBYE to every worker.
    func serve() -> DriverEnd {
        while true {
            applyCommands()
            if let end = mailbox.end {
                applyCommands()
                sayGoodbye(end)
                return end
            }
            // Before waiting: dispatches what the commands opened, and after a message what it
            // made possible (credit, re-queued tasks).
            housekeeping()
            do {
                if let (peer, message) = try router.receive(timeoutMs: settings.pollMilliseconds, wakeup: mailbox.wakeup) {
                    handle(message, from: peer)
                }
                for dropped in router.takeMalformed() { handle(malformed: dropped) }
            } catch {
                // Only a dead socket or context fails here. The learner thread stops as on a
                // signal (abandoning the step, saving a checkpoint); the run then fails.
                logger.critical("router receive failed: \(error); stopping the run")
                mailbox.abort()
                var end = mailbox.end
                while end == nil {
                    Thread.sleep(forTimeInterval: 0.01)
                    end = mailbox.end
                }
                return DriverEnd(result: .failure(error), checkpoints: end?.checkpoints ?? [])
            }
        }
    }

    /// A worker's first message after its HELLO: it has joined. Logged here, not at the HELLO,
    /// so that HELLOs nothing follows (a flood's) write nothing to `train.log`. A registered
    /// peer that says HELLO again restarted, or loops on HELLO: such repeats are limited like
    /// warnings.
    private func noteJoined(_ worker: WorkerRecord) {
        guard !worker.rejoined || warnings.admit("worker rejoined", from: "peer \(worker.peer)", level: .info) else { return }
        logger.info("worker \(worker.name) (\(worker.kind)) \(worker.rejoined ? "rejoined" : "joined")",
                    metadata: ["peer": "\(worker.peer)", "capacity": "\(worker.capacity)"])
        event(.workerJoined(worker: worker.name, alive: scheduler.registry.count))
    }

    private func name(_ peer: RoutingID) -> String {
        if let worker = scheduler.registry.worker(peer) { return worker.name }
        if let dead = declaredDead[peer] { return "\(dead) (declared dead, peer \(peer))" }
        return peer.description
    }

    private func event(_ event: ClusterEvent) {
        if let metrics { metrics.event(event) } else { logger.log(level: event.level, "\(event.line)") }
    }

    /// Sends and notes it (any message counts as a heartbeat).
    private func send(_ message: Message, to peer: RoutingID) {
        if deliver(message, to: peer) { scheduler.sent(to: peer, now: clock.now()) }
    }

    /// The answer to a WEIGHTS_REQUEST, as ``send(_:to:)-(Message,_)``.
    private func send(_ reply: WeightsReply, to peer: RoutingID) {
        if deliver(reply.messageType, to: peer, { try router.send(reply, to: peer) }) { scheduler.sent(to: peer, now: clock.now()) }
    }

    /// Queues `message` for `peer` (``RouterChannel/send(_:to:)`` never blocks); a peer that is
    /// gone or has a full queue loses the message, logged.
    @discardableResult
    private func deliver(_ message: Message, to peer: RoutingID) -> Bool {
        deliver(message.type, to: peer) { try router.send(message, to: peer) }
    }

    /// Runs `sending` (a ``RouterChannel`` send of a `type` message to `peer`) and logs what
    /// kept the message from being queued.
    private func deliver(_ type: MessageType, to peer: RoutingID, _ sending: () throws -> Bool) -> Bool {
        do {
            if try sending() { return true }
            logger.debug("peer \(peer) is gone; \(type) not delivered")
        } catch is RouterChannel.QueueFull {
            // A peer that floods requests and never reads would get this for each of them.
            if warnings.admit("queue is full", from: "peer \(peer)") {
                logger.warning("queue to \(name(peer)) is full; \(type) dropped")
            }
        } catch {
            logger.error("cannot send \(type) to \(name(peer)): \(error)")
        }
        return false
    }

    private func applyCommands() {
        for command in mailbox.takeCommands() {
            switch command {
            case let .publish(weights):
                let version = weights.version
                if version >= WeightsVersion.model {
                    fixedWeights.publish(weights)
                    continue
                }
                policyWeights.publish(weights)
                if version > scheduler.policyVersion {
                    do { try scheduler.advancePolicy(to: version) } catch { logger.error("\(error)") }
                }
            case let .gradients(request):
                do {
                    if let weights = request.weights { intermediateWeights.publish(weights) }
                    try scheduler.openGradients(request.round, shards: request.shards.count, version: request.version)
                    gradientRequests[request.round] = request
                    gradientsDone[request.round] = [:]
                } catch {
                    // The learner thread opens each mini-batch once; this is a bug.
                    logger.critical("cannot open the gradient tasks of \(request.round): \(error)")
                }
            case let .cancelGradients(round):
                scheduler.closeGradients(round)
                gradientRequests[round] = nil
                gradientsDone[round] = nil
                receipts = receipts.filter { $0.value.key.round != round }
            case let .open(step, pairs, version):
                do {
                    try scheduler.openStep(step, pairs: pairs, version: version)
                    pairsByStep[step] = Dictionary(pairs.map { ($0.pairID, $0) }, uniquingKeysWith: { first, _ in first })
                } catch {
                    // The learner thread opens steps in order with unique pairs; this is a bug.
                    logger.critical("cannot open step \(step): \(error)")
                }
            }
        }
    }

    private func handle(_ message: Message, from peer: RoutingID) {
        let now = clock.now()
        let wasJoining = scheduler.registry.worker(peer)?.joining == true
        defer { if wasJoining, let record = scheduler.registry.worker(peer), !record.joining { noteJoined(record) } }
        switch message {
        case let .hello(hello):
            switch scheduler.handle(hello: hello, from: peer, now: now) {
            case let .welcome(welcome, requeued, forgotten):
                send(.welcome(welcome), to: peer)
                if let forgotten, warnings.admit("forgot joining worker", from: "joining peers", level: .notice) {
                    // Keyed by one source: a flood comes under a new routing id per HELLO.
                    logger.notice("forgot joining worker \(forgotten.name) at \(forgotten.peer): \(scheduler.registry.maxJoining) workers said HELLO and nothing since (a HELLO flood?); a real one reconnects")
                }
                if !requeued.isEmpty { event(.tasksRequeued(count: requeued.count, from: "\(hello.name) (restarted)")) }
            case let .refuse(reason):
                // Keyed by routing id: the name is the sender's to vary.
                if warnings.admit("refused worker", from: "peer \(peer)") {
                    logger.warning("refused worker \(hello.name) at \(peer): \(reason)")
                }
                deliver(.refuse(reason: reason), to: peer)
            case .unanswered:
                // Keyed by one source, as above.
                if warnings.admit("left HELLO unanswered", from: "joining peers", level: .notice) {
                    let budget = scheduler.settings.helloBudget
                    logger.notice("left HELLO from \(hello.name) at \(peer) unanswered: more than \(budget.burst) HELLOs at once or \(Int(budget.perSecond)) a second (a HELLO flood?); a real worker reconnects after its heartbeat_timeout")
                }
            }
        case let .ready(credit):
            if !scheduler.handle(ready: Int(credit), from: peer, now: now) { dropUnregistered(message, from: peer) }
        case let .result(result):
            switch scheduler.handle(result: result, from: peer, now: now) {
            case let .accepted(_, step, stepComplete):
                if stepComplete, let rollouts = scheduler.takeCompletedStep(step) {
                    pairsByStep[step] = nil
                    mailbox.complete(rollouts)
                }
            case let .dropped(taskID, reason, requeuedAs):
                noteDropped(.result, taskID, from: peer, reason: reason, requeuedAs: requeuedAs)
            }
        case .heartbeat:
            if !scheduler.heard(from: peer, now: now) { dropUnregistered(message, from: peer) }
        case let .weightsRequest(version, chunkIndex):
            guard scheduler.heard(from: peer, now: now) else { return dropUnregistered(message, from: peer) }
            let publisher = version >= WeightsVersion.model ? fixedWeights
                : WeightsVersion.isIntermediate(version) ? intermediateWeights : policyWeights
            let reply = publisher.reply(version: version, chunkIndex: chunkIndex)
            send(reply, to: peer)
            if case let .chunk(_, index, count) = reply, index + 1 == count {
                mailbox.servedFinalChunk(version: version, at: clock.now())
            }
        case let .goodbye(reason):
            let worker = name(peer)
            guard scheduler.registry.contains(peer) else { return dropUnregistered(message, from: peer) }
            let requeued = scheduler.handle(goodbyeFrom: peer, now: now)
            logger.info("worker \(worker) said goodbye: \(reason)")
            event(.workerLeft(worker: worker, alive: scheduler.registry.count))
            if !requeued.isEmpty { event(.tasksRequeued(count: requeued.count, from: worker)) }
        case let .gradientResult(result):
            handle(gradientResult: result, from: peer, now: now)
        case let .gradientChunk(chunk):
            handle(gradientChunk: chunk, from: peer, now: now)
        case .welcome, .refuse, .task, .weightsChunk, .weightsUnavailable, .gradientTask:
            if warnings.admit("dropped \(message.type)", from: "peer \(peer)") {
                logger.warning("dropped \(message.type) from \(name(peer)): only the coordinator sends it")
            }
        }
    }

    /// GRADIENT_RESULT: checked against its task's rows and the model's size, then its chunks
    /// are awaited.
    private func handle(gradientResult result: GradientResultMessage, from peer: RoutingID, now: Double) {
        switch scheduler.handle(gradientResult: result, from: peer, now: now) {
        case let .receive(key):
            guard let request = gradientRequests[key.round] else {
                // The learner computed the round itself (a stop): the task ends here, late.
                return finishGradient(result.taskID, from: peer, rejection: nil, now: now)
            }
            let rows = request.shards[Int(key.shard)]
            let expectedBytes = UInt64(request.settings.parameterCount) * 4
            var fault: String?
            if result.logprobs.count != rows.count {
                fault = "\(result.logprobs.count) rows of log-probs for the task's \(rows.count) rows"
            } else if let row = rows.indices.first(where: { result.logprobs[$0].count != rows[$0].outputCount }) {
                fault = "row \(row) (\(rows[row].id)): \(result.logprobs[row].count) log-probs for \(rows[row].outputCount) output tokens"
            } else if result.totalBytes != expectedBytes {
                fault = "\(result.totalBytes) bytes of gradient, the model's \(request.settings.parameterCount) parameters take \(expectedBytes)"
            }
            if let fault {
                finishGradient(result.taskID, from: peer, rejection: .invalidGradient(fault), now: now)
                return
            }
            receipts[result.taskID] = GradientReceipt(peer: peer, key: key, header: result, parameterCount: request.settings.parameterCount)
        case .accepted:
            break
        case let .dropped(taskID, reason, requeuedAs):
            noteDropped(.gradientResult, taskID, from: peer, reason: reason, requeuedAs: requeuedAs)
        }
    }

    /// GRADIENT_CHUNK: the next piece of a gradient being received from its sender.
    private func handle(gradientChunk chunk: GradientChunk, from peer: RoutingID, now: Double) {
        guard scheduler.heard(from: peer, now: now) else { return dropUnregistered(.gradientChunk(chunk), from: peer) }
        guard receipts[chunk.taskID]?.peer == peer, scheduler.isInFlight(chunk.taskID, at: peer),
              // Out of the dictionary while it grows: a second reference would make every chunk
              // copy the whole buffer (copy-on-write).
              var receipt = receipts.removeValue(forKey: chunk.taskID) else {
            if warnings.admit("dropped GRADIENT_CHUNK", from: "peer \(peer)", level: .notice) {
                logger.notice("dropped GRADIENT_CHUNK \(chunk.chunkIndex) of task \(chunk.taskID) from \(name(peer)): no such gradient is being received from it")
            }
            return
        }
        do {
            guard try receipt.add(chunk) else {
                receipts[chunk.taskID] = receipt
                return
            }
        } catch {
            finishGradient(chunk.taskID, from: peer, rejection: .invalidGradient(error.description), now: now)
            return
        }
        finishGradient(chunk.taskID, from: peer, rejection: nil, received: receipt, now: now)
    }

    /// Ends a gradient task: accepted (`received` holds it) or dropped and re-run; hands the
    /// mini-batch's gradients, in shard order, to the learner once every shard is in.
    private func finishGradient(_ taskID: UInt64, from peer: RoutingID, rejection: ResultDropReason?, received: GradientReceipt? = nil,
                                now: Double) {
        switch scheduler.finishGradient(taskID: taskID, from: peer, rejection: rejection, now: now) {
        case let .accepted(key, roundComplete):
            guard let received else { return }
            gradientsDone[key.round, default: [:]][key.shard] = received.result
            guard roundComplete, let done = gradientsDone.removeValue(forKey: key.round) else { return }
            scheduler.closeGradients(key.round)
            gradientRequests[key.round] = nil
            mailbox.complete(key.round, gradients: done.keys.sorted().compactMap { done[$0] })
        case .receive:
            break
        case let .dropped(taskID, reason, requeuedAs):
            noteDropped(.gradientResult, taskID, from: peer, reason: reason, requeuedAs: requeuedAs)
        }
    }

    /// A dropped RESULT or GRADIENT_RESULT: a rejected one (its worker is counted towards
    /// refusal) is a warning; a late, duplicate or stray one a rate-limited notice, and a
    /// `late_result_dropped` event when its task was sent to that worker.
    private func noteDropped(_ kind: MessageType, _ taskID: UInt64, from peer: RoutingID, reason: ResultDropReason, requeuedAs: UInt64?) {
        let worker = name(peer)
        switch reason {
        case .versionMismatch, .invalidTrajectories, .invalidGradient:
            // Apart from the notices below, which stale results in async mode can make
            // common: those must not crowd out this warning of a broken worker.
            if warnings.admit("rejected \(kind)", from: "peer \(peer)") {
                let rejected = scheduler.registry.worker(peer)?.rejectedResults ?? 0
                let requeue = requeuedAs.map { "re-queued as task \($0)" } ?? "not re-queued"
                logger.warning("dropped \(kind) of task \(taskID) from worker \(worker): \(reason); \(requeue) (\(rejected) rejected result(s) from \(worker))")
            }
        default:
            // Any peer can send results for made-up or finished tasks, as fast as it likes:
            // the event of a late one is limited with its line.
            if warnings.admit("dropped \(kind)", from: "peer \(peer)", level: .notice) {
                logger.notice("dropped \(kind) of task \(taskID) from \(worker): \(reason)")
                switch reason {
                case .lateOrDuplicate, .notAssignedToSender: event(.lateResultDropped(task: taskID, worker: worker))
                case .unknownWorker:
                    // A worker declared dead that was only stalled: its result is late.
                    if let dead = declaredDead[peer] { event(.lateResultDropped(task: taskID, worker: dead)) }
                default: break
                }
            }
        }
        if requeuedAs != nil { event(.tasksRequeued(count: 1, from: "\(worker) (\(reason))")) }
        refuseIfOverRejectionLimit(peer)
    }

    /// A message that failed decoding: a RESULT of a registered worker re-queues its task (or,
    /// when the task id cannot be read, every task in flight at the worker), so the step does
    /// not wait forever on a worker that keeps heartbeating.
    private func handle(malformed dropped: MalformedMessage) {
        guard [.result, .gradientResult, .gradientChunk].contains(dropped.type), let record = scheduler.registry.worker(dropped.peer) else { return }
        let requeued = scheduler.handle(malformedResultFrom: dropped.peer, taskID: dropped.taskID, now: clock.now())
        let rejected = scheduler.registry.worker(dropped.peer)?.rejectedResults ?? 0
        let task = dropped.taskID.map { "task \($0)" } ?? "unreadable task id"
        if warnings.admit("dropped malformed RESULT", from: "peer \(dropped.peer)") {
            logger.warning("dropped malformed \(dropped.type.map { "\($0)" } ?? "RESULT") (\(task)) from worker \(record.name) at peer \(dropped.peer): \(dropped.error); re-queued \(requeued.count) task(s) (\(rejected) rejected result(s) from \(record.name))")
        }
        if !requeued.isEmpty { event(.tasksRequeued(count: requeued.count, from: "\(record.name) (malformed \(dropped.type.map { "\($0)" } ?? "RESULT"))")) }
        refuseIfOverRejectionLimit(dropped.peer)
    }

    /// After a rejected result: a worker at the rejection limit gets REFUSE and is forgotten.
    private func refuseIfOverRejectionLimit(_ peer: RoutingID) {
        guard let refused = scheduler.refuseIfOverRejectionLimit(peer) else { return }
        logger.error("\(refused.error)")
        deliver(.refuse(reason: String(refused.reason.utf8.prefix(settings.limits.maxReasonBytes)) ?? "refused"), to: peer)
        event(.workerLeft(worker: refused.name, alive: scheduler.registry.count))
        if !refused.requeued.isEmpty { event(.tasksRequeued(count: refused.requeued.count, from: refused.requeuedFrom)) }
    }

    private func dropUnregistered(_ message: Message, from peer: RoutingID) {
        logger.debug("dropped \(message.type) from unregistered peer \(peer) (HELLO first)")
    }

    private func housekeeping() {
        // Sums up a flood that stopped, instead of waiting for its peer's next bad message.
        warnings.flush()
        let now = clock.now()
        for assignment in scheduler.dispatch(now: now) {
            if let key = assignment.task.gradient {
                guard let request = gradientRequests[key.round] else {
                    logger.error("cannot build gradient task \(assignment.task.taskID): \(key) is not open")
                    continue
                }
                send(request.message(taskID: assignment.task.taskID, shard: key.shard), to: assignment.worker)
                continue
            }
            let pairs = pairsByStep[assignment.task.step] ?? [:]
            do {
                let message = try assignment.task.message(runSeed: settings.runSeed, parameters: settings.rollout) { id in
                    guard let pair = pairs[id] else { throw CermError.invalid("pair \(id) of step \(assignment.task.step) is unknown") }
                    return pair
                }
                send(message, to: assignment.worker)
            } catch {
                logger.error("cannot build task \(assignment.task.taskID): \(error)")
            }
        }
        let tick = scheduler.tick(now: now)
        // Gradients whose task was re-queued (worker dead, gone or timed out) will not be used.
        if !receipts.isEmpty { receipts = receipts.filter { scheduler.isInFlight($0.key, at: $0.value.peer) } }
        for dead in tick.expired {
            let silent = now - dead.lastHeard
            logger.warning("worker \(dead.name) silent for \(String(format: "%.2f", silent)) s: declared dead")
            if declaredDead.updateValue(dead.name, forKey: dead.peer) == nil { declaredDeadOrder.append(dead.peer) }
            if declaredDeadOrder.count > 256 { declaredDead[declaredDeadOrder.removeFirst()] = nil }
            event(.workerDied(worker: dead.name, silentSeconds: silent, requeuedTasks: dead.requeued.count, alive: scheduler.registry.count))
            if !dead.requeued.isEmpty { event(.tasksRequeued(count: dead.requeued.count, from: dead.name)) }
        }
        for overdue in tick.timedOut {
            logger.warning("\(overdue.warning)")
            if overdue.requeuedAs != nil { event(.tasksRequeued(count: 1, from: overdue.requeuedFrom)) }
        }
        for peer in tick.heartbeatsDue {
            // tick already marked these as sent.
            deliver(.heartbeat(policyVersion: scheduler.policyVersion), to: peer)
        }
        if scheduler.registry.count != lastAlive {
            lastAlive = scheduler.registry.count
            mailbox.setWorkersAlive(lastAlive)
        }
    }

    private func sayGoodbye(_ end: DriverEnd) {
        let reason: String
        switch end.result {
        case let .success(.finished(steps)): reason = "run finished after \(steps) steps"
        case let .success(.stopped(steps)): reason = "coordinator stopping after \(steps) steps (stop requested)"
        case let .failure(error): reason = "coordinator failed: \(error)"
        }
        for worker in scheduler.registry.workers {
            deliver(.goodbye(reason: String(reason.utf8.prefix(settings.limits.maxReasonBytes)) ?? "goodbye"), to: worker.peer)
        }
        // Linger so the GOODBYEs leave before the socket closes (sockets default to 0).
        try? router.socket.setLinger(milliseconds: 500)
    }
}
