import Configuration
import Foundation
import Logging
import PolicyGradient
import Runtime
import Shared
import WireProtocol

/// Worker side of the runtime: runs one task's rollouts with the weights the coordinator
/// publishes.
///
/// ``WorkerClient`` calls every method from its compute thread only, one call at a time, never
/// from the socket thread (so a class holding engine state may be `@unchecked Sendable`).
/// `prepareModel` and then `prepareReference` come once per process before the first task,
/// `prepare` whenever a task names a policy version other than the one loaded.
public protocol RolloutExecutor: AnyObject, Sendable {
    /// Takes the run's model as the coordinator describes it (the bytes published as
    /// ``WeightsVersion/model``: its architecture and tokenizer), before any weights.
    func prepareModel(description: [UInt8]) throws
    /// Loads policy weights `weights` (the bytes as published) as version `policyVersion`.
    func prepare(policyVersion: UInt64, weights: [UInt8]) throws
    /// Loads the frozen reference model (published as ``WeightsVersion/reference``).
    func prepareReference(weights: [UInt8]) throws
    /// Samples the task's trajectories; must be deterministic given the task and the weights.
    func run(task: TaskMessage) throws -> [Trajectory]
    /// Computes a gradient task at the loaded policy weights (`grpo.distributed_update`):
    /// its shard's pass and gradient, with the bits the coordinator's own learner would get.
    func gradient(task: GradientTaskMessage) throws -> ShardGradient
}

extension RolloutExecutor {
    public func gradient(task: GradientTaskMessage) throws -> ShardGradient {
        throw CermError.invalid("executor \(type(of: self)) computes no gradients (grpo.distributed_update)")
    }
}

/// A task a worker holds: rollouts, or one shard's gradient.
enum WorkItem: Sendable {
    case rollout(TaskMessage)
    case gradient(GradientTaskMessage)

    var taskID: UInt64 {
        switch self {
        case let .rollout(task): task.taskID
        case let .gradient(task): task.taskID
        }
    }

    /// The weights version it runs with.
    var policyVersion: UInt64 {
        switch self {
        case let .rollout(task): task.policyVersion
        case let .gradient(task): task.policyVersion
        }
    }
}

/// What a ``WorkItem`` produced.
enum WorkOutput: Sendable {
    case trajectories([Trajectory])
    case gradient(ShardGradient)
}

/// What a worker needs from the configuration, as plain values (tests use sub-second timing).
public struct WorkerSettings: Sendable {
    /// The coordinator's `cluster.endpoint`.
    public var endpoint: String
    /// Shown in the coordinator's logs.
    public var name: String
    public var kind: WorkerKind
    /// `Config.hash` of this worker's configuration; the coordinator refuses a different one.
    public var configHash: UInt64
    public var limits: ProtocolLimits
    /// Heartbeat timing until WELCOME brings the coordinator's; also the reconnect backoff base.
    public var heartbeatInterval: Double
    public var heartbeatTimeout: Double
    /// `.curveClient` when `cluster.worker_secret_key_file` is set.
    public var security: ChannelSecurity
    /// Longest the socket thread blocks in one receive.
    public var pollMilliseconds: Int
    /// Bytes of gradient per GRADIENT_CHUNK (`cluster.weight_chunk_bytes`, which
    /// `cluster.max_message_bytes` must hold with its header).
    public var gradientChunkBytes: Int

    public init(endpoint: String, name: String, kind: WorkerKind = .cpu, configHash: UInt64,
                limits: ProtocolLimits, heartbeatInterval: Double, heartbeatTimeout: Double, security: ChannelSecurity = .none,
                pollMilliseconds: Int = 10, gradientChunkBytes: Int = ClusterConfig().weightChunkBytes) {
        self.endpoint = endpoint
        self.name = name
        self.kind = kind
        self.configHash = configHash
        self.limits = limits
        self.heartbeatInterval = heartbeatInterval
        self.heartbeatTimeout = heartbeatTimeout
        self.security = security
        self.pollMilliseconds = max(1, pollMilliseconds)
        self.gradientChunkBytes = max(4, gradientChunkBytes / 4 * 4)
    }

    /// The settings of a run's configuration; loads the worker's CURVE keys and the server's
    /// public key when `cluster.worker_secret_key_file` is set (errors name the config key and the file).
    public init(config: Config, name: String, kind: WorkerKind = .cpu, endpoint: String? = nil) throws {
        let cluster = config.cluster
        var security = ChannelSecurity.none
        if let curve = try CurveKeyFiles.workerKeys(of: cluster) {
            security = .curveClient(serverKey: curve.serverKey, keys: curve.keys)
        } else {
            try EndpointSecurity.checkInsecureConnect(endpoint ?? cluster.endpoint, allowInsecure: cluster.allowInsecure)
        }
        var limits = ProtocolLimits(config: config)
        if !config.model.source.isEmpty {
            // A pretrained model's vocabulary and context are the coordinator's to describe
            // (WeightsVersion.model): the executor checks gradient tasks' tokens against them.
            limits.vocabularySize = ProtocolLimits().vocabularySize
            limits.maxTokensPerTrajectory = ProtocolLimits().maxTokensPerTrajectory
        }
        self.init(endpoint: endpoint ?? cluster.endpoint, name: name, kind: kind, configHash: config.hash,
                  limits: limits, heartbeatInterval: cluster.heartbeatInterval,
                  heartbeatTimeout: cluster.heartbeatTimeout, security: security, gradientChunkBytes: cluster.weightChunkBytes)
    }
}

/// How a worker's run ended.
public enum WorkerOutcome: Sendable, Equatable {
    /// The coordinator said GOODBYE (the run is over).
    case goodbye(reason: String)
    /// The ``StopSignal`` was raised; the worker said GOODBYE.
    case stopped
    /// The coordinator refused the HELLO (the reason was printed). Retrying cannot help.
    case refused(reason: String)
    /// The executor failed; the worker said GOODBYE so its task is re-queued elsewhere.
    case executorFailed(String)
    /// Fault injection (``WorkerClient/init(settings:executor:stop:crash:clock:logger:)``):
    /// the worker vanished without a word, as a killed process would.
    case crashed

    /// The process exit status: 0 for a clean end, 2 refused, 1 executor failure or crash.
    public var exitCode: Int32 {
        switch self {
        case .goodbye, .stopped: 0
        case .refused: 2
        case .executorFailed, .crashed: 1
        }
    }
}

/// A rollout worker (docs/PROTOCOL.md): one DEALER socket served by the thread that calls
/// ``run()``, and a compute thread that runs the ``RolloutExecutor``.
///
/// Says HELLO (capacity 1, `Config.hash`), grants READY(1), fetches the weights a TASK names
/// chunk by chunk (before the first, the run's model description and the reference weights),
/// runs the task on the compute thread while the socket thread keeps heartbeating, sends RESULT
/// then READY(1). Silence from the
/// coordinator for the heartbeat timeout closes the socket and reconnects with exponential
/// backoff (a new socket and a new HELLO; the task in progress is abandoned). GOODBYE from the
/// coordinator or a stop ends the run; a REFUSE is printed and ends it with a non-zero status.
public final class WorkerClient: @unchecked Sendable {
    public let settings: WorkerSettings
    private let executor: any RolloutExecutor
    private let stop: StopSignal
    private let crash: StopSignal?
    private let clock: any Clock
    private let logger: Logger
    private let compute: ComputeLane

    /// - Parameters:
    ///   - executor: called from the compute thread only.
    ///   - stop: polled by the socket thread (also while backing off).
    ///   - crash: fault injection for tests: when raised, the worker closes its socket without
    ///     GOODBYE and returns ``WorkerOutcome/crashed``.
    public init(settings: WorkerSettings, executor: any RolloutExecutor, stop: StopSignal = StopSignal(), crash: StopSignal? = nil,
                clock: any Clock = SystemClock(), logger: Logger = Logger(label: "cerm.worker")) {
        self.settings = settings
        self.executor = executor
        self.stop = stop
        self.crash = crash
        self.clock = clock
        self.logger = logger
        compute = ComputeLane(executor: executor)
    }

    /// Sessions started (1 + reconnects), for logs and tests.
    public private(set) var sessions = 0

    /// Connects, works and reconnects until GOODBYE, a stop, a refusal or an executor failure.
    /// Blocks the calling thread, which becomes the socket thread. Call it once per client. Throws only when no socket
    /// can be made at all (bad endpoint, ZeroMQ failure).
    public func run() throws -> WorkerOutcome {
        defer { compute.shutdown() }
        let context = try ZMQContext()
        var backoff = ReconnectBackoff(initial: settings.heartbeatInterval, maximum: 32 * settings.heartbeatInterval,
                                       spread: Double(Checksum.fnv1a64(Array(settings.name.utf8)) % 1000) / 1000)
        var session = WorkerSession.State()
        while true {
            sessions += 1
            let channel = try DealerChannel(context: context, connect: settings.endpoint, codec: MessageCodec(limits: settings.limits),
                                            security: settings.security, logger: logger)
            let ending = serve(channel, session: &session, backoff: &backoff)
            switch ending {
            case let .end(outcome):
                if outcome != .crashed { try? channel.socket.setLinger(milliseconds: 500) }
                channel.socket.close()
                return outcome
            case let .reconnect(cause):
                channel.socket.close()
                let delay = backoff.nextDelay()
                let report = ReconnectReport(cause: cause, silentSeconds: clock.now() - session.liveness.lastHeard,
                                             heardSinceConnecting: session.heardSinceConnecting, everWelcomed: session.everWelcomed,
                                             security: settings.security, endpoint: settings.endpoint)
                logger.warning("\(report.message(delay: delay))")
                if let outcome = sleepWatchingSignals(delay) { return outcome }
            }
        }
    }

    private enum SessionEnding { case end(WorkerOutcome), reconnect(ReconnectReport.Cause) }

    /// Sleeps in short slices so a stop or crash is noticed; returns the outcome if one arrived.
    private func sleepWatchingSignals(_ seconds: Double) -> WorkerOutcome? {
        let until = clock.now() + seconds
        while clock.now() < until {
            if crash?.isRequested == true { return .crashed }
            if stop.isRequested { return .stopped }
            Thread.sleep(forTimeInterval: min(0.01, max(0, until - clock.now())))
        }
        return nil
    }

    /// One connection: HELLO, then work until it ends or goes silent.
    private func serve(_ channel: DealerChannel, session state: inout WorkerSession.State, backoff: inout ReconnectBackoff) -> SessionEnding {
        let s = WorkerSession(channel: channel, clock: clock, logger: logger)
        state.beginSession(interval: settings.heartbeatInterval, timeout: settings.heartbeatTimeout, now: clock.now())
        state.heardSinceConnecting = false
        // Work of an earlier session is void: its task ids were re-queued by the coordinator.
        compute.abandonCurrent()
        state.pending = []
        state.fetching = nil
        guard s.send(.hello(HelloMessage(name: settings.name, capacity: 1, configHash: settings.configHash, kind: settings.kind)), state: &state) else {
            return .reconnect(.connectionLost)
        }
        var welcomed = false
        while true {
            if crash?.isRequested == true { return .end(.crashed) }
            if stop.isRequested {
                _ = s.send(.goodbye(reason: "worker \(settings.name) stopping (stop requested)"), state: &state)
                return .end(.stopped)
            }
            let message: Message?
            do { message = try channel.receive(timeoutMs: settings.pollMilliseconds, wakeup: compute.finishedSignal) } catch {
                logger.error("receive failed: \(error)")
                return .reconnect(.receiveFailed)
            }
            let now = clock.now()
            if let message {
                state.liveness.heard(at: now)
                state.heardSinceConnecting = true
                switch message {
                case let .welcome(welcome):
                    guard !welcomed else { break }
                    welcomed = true
                    state.everWelcomed = true
                    backoff.reset()
                    state.beginSession(interval: Double(welcome.heartbeatIntervalMs) / 1000, timeout: Double(welcome.heartbeatTimeoutMs) / 1000, now: now)
                    logger.info("joined coordinator at \(settings.endpoint) (policy v\(welcome.policyVersion))")
                    guard s.send(.ready(credit: 1), state: &state) else { return .reconnect(.connectionLost) }
                case let .refuse(reason):
                    logger.error("coordinator refused worker \(settings.name): \(reason)")
                    FileHandle.standardError.write(Data("cerm worker \(settings.name): refused by the coordinator: \(reason)\n".utf8))
                    return .end(.refused(reason: reason))
                case let .goodbye(reason):
                    logger.info("coordinator said goodbye: \(reason)")
                    return .end(.goodbye(reason: reason))
                case let .task(task):
                    guard welcomed else { break }
                    state.pending.append(.rollout(task))
                case let .gradientTask(task):
                    guard welcomed else { break }
                    state.pending.append(.gradient(task))
                case let .weightsChunk(chunk):
                    if let outcome = s.accept(chunk, state: &state) { return .end(outcome) }
                case let .weightsUnavailable(version, latest):
                    let dropped = state.pending.filter { $0.policyVersion == version }.count
                    logger.warning("coordinator no longer holds weights v\(version) (latest v\(latest)); dropping \(dropped) task(s)")
                    state.pending.removeAll { $0.policyVersion == version }
                    if state.fetching?.version == version { state.fetching = nil }
                    if dropped > 0 { guard s.send(.ready(credit: UInt16(clamping: dropped)), state: &state) else { return .reconnect(.connectionLost) } }
                case .heartbeat:
                    break
                case .hello, .ready, .result, .weightsRequest, .gradientResult, .gradientChunk:
                    logger.warning("dropped \(message.type) from the coordinator: only workers send it")
                }
            }
            if welcomed {
                if let outcome = advanceWork(s, state: &state) { return outcome }
            }
            if state.liveness.isExpired(at: clock.now()) { return .reconnect(.timeout) }
            if state.liveness.isHeartbeatDue(at: clock.now()) {
                guard s.send(.heartbeat(policyVersion: state.loadedVersion ?? 0), state: &state) else { return .reconnect(.connectionLost) }
            }
        }
    }

    /// Collects a finished task, fetches weights for the next and starts it.
    private func advanceWork(_ s: WorkerSession, state: inout WorkerSession.State) -> SessionEnding? {
        if let done = compute.takeFinished() {
            if let spent = done.spentWeights { state.spareWeights = spent }
            switch done.result {
            case let .success(output):
                state.loadedVersion = done.task.policyVersion
                state.modelLoaded = true
                state.referenceLoaded = true
                let messages: AnySequence<Message>
                switch output {
                case let .trajectories(trajectories):
                    messages = AnySequence([.result(ResultMessage(taskID: done.task.taskID, policyVersion: done.task.policyVersion,
                                                                  trajectories: trajectories))])
                case let .gradient(gradient):
                    messages = AnySequence(GradientUpload(taskID: done.task.taskID, policyVersion: done.task.policyVersion, output: gradient,
                                                          chunkBytes: settings.gradientChunkBytes).messages)
                }
                for message in messages {
                    guard s.send(message, state: &state) else { return .reconnect(.connectionLost) }
                }
                guard s.send(.ready(credit: 1), state: &state) else { return .reconnect(.connectionLost) }
            case let .failure(error):
                logger.error("executor failed on task \(done.task.taskID): \(error)")
                _ = s.send(.goodbye(reason: "worker \(settings.name): executor failed: \(error)"), state: &state)
                return .end(.executorFailed("\(error)"))
            }
        }
        guard !compute.isBusy, let task = state.pending.first else { return nil }
        // The model first, then the reference, each once per process; then the task's policy version.
        if !state.modelLoaded && state.model == nil {
            return s.fetch(WeightsVersion.model, state: &state) ? nil : .reconnect(.connectionLost)
        }
        if !state.referenceLoaded && state.reference == nil {
            return s.fetch(WeightsVersion.reference, state: &state) ? nil : .reconnect(.connectionLost)
        }
        var policyWeights: [UInt8]?
        if state.loadedVersion != task.policyVersion {
            guard let ready = state.assembled, ready.version == task.policyVersion else {
                return s.fetch(task.policyVersion, state: &state) ? nil : .reconnect(.connectionLost)
            }
            policyWeights = ready.bytes
        }
        state.pending.removeFirst()
        // Until this job succeeds the executor's weights are unknown (a reconnect may void it
        // after `prepare` ran), so the next task fetches again rather than trust a stale version.
        if policyWeights != nil { state.loadedVersion = nil }
        compute.start(ComputeJob(task: task, model: state.modelLoaded ? nil : state.model,
                                 reference: state.referenceLoaded ? nil : state.reference, policyWeights: policyWeights))
        state.model = nil
        state.reference = nil
        state.assembled = nil
        return nil
    }
}

/// The warning a worker logs before reconnecting: how long the coordinator has really been
/// silent, and, when nothing at all arrived since connecting, what to check.
struct ReconnectReport {
    enum Cause: Equatable {
        /// Nothing heard for the heartbeat timeout.
        case timeout
        /// A message could not be queued: the connection is gone (or a CURVE handshake was denied).
        case connectionLost
        /// The socket failed to receive (already logged as an error).
        case receiveFailed
    }

    var cause: Cause
    /// Seconds since the last message from the coordinator, or since connecting without one.
    var silentSeconds: Double
    var heardSinceConnecting: Bool
    var everWelcomed = false
    var security: ChannelSecurity
    var endpoint: String

    func message(delay: Double) -> String {
        let silent = String(format: "%.2f", silentSeconds), retry = String(format: "reconnecting in %.2f s", delay)
        if !heardSinceConnecting && everWelcomed {
            // The keys and endpoint worked before: a link down or a coordinator restarting.
            return "no reply since reconnecting \(silent) s ago (the coordinator welcomed this worker before, so not a key or "
                + "endpoint problem: the network or the coordinator is down); \(retry)"
        }
        guard heardSinceConnecting else {
            // Silence from the very start is a setup problem far more often than a network one.
            let hint: String
            switch security {
            case .curveClient:
                hint = "check that this worker's public key is in the coordinator's authorized_keys_file and server_public_key_file is the coordinator's key"
            case .none, .curveServer:
                hint = "check that a coordinator listens at \(endpoint) and, if it uses CURVE, set cluster.worker_secret_key_file and cluster.server_public_key_file"
            }
            return "no reply since connecting \(silent) s ago: \(hint); \(retry)"
        }
        switch cause {
        case .timeout: return "coordinator silent for \(silent) s; \(retry)"
        case .connectionLost: return "lost the connection to the coordinator (silent for \(silent) s); \(retry)"
        case .receiveFailed: return "cannot receive from the coordinator (silent for \(silent) s); \(retry)"
        }
    }
}

/// Per-connection helpers; `State` outlives connections (loaded versions, pending tasks).
struct WorkerSession {
    struct State {
        var liveness = PeerLiveness(interval: 1, timeout: 10, now: 0)
        /// Whether any message arrived on this connection (none: the handshake may have been
        /// denied, or no coordinator listens).
        var heardSinceConnecting = false
        /// Whether a coordinator ever welcomed this worker (on any connection): silence after a
        /// reconnect is then a network or coordinator outage, not a setup problem.
        var everWelcomed = false
        var pending: [WorkItem] = []
        /// The policy version the executor holds.
        var loadedVersion: UInt64?
        var modelLoaded = false
        var referenceLoaded = false
        /// The model description fetched and not yet handed to the executor.
        var model: [UInt8]?
        /// Reference weights fetched and not yet handed to the executor.
        var reference: [UInt8]?
        /// Policy weights fetched and not yet handed to the executor.
        var assembled: (version: UInt64, bytes: [UInt8])?
        /// The version being fetched and its chunks so far; a request is outstanding.
        var fetching: WeightsAssembler?
        /// Wire weights the executor has loaded: the next version is assembled into them.
        var spareWeights: [UInt8] = []

        mutating func beginSession(interval: Double, timeout: Double, now: Double) {
            liveness = PeerLiveness(interval: interval, timeout: timeout, now: now)
        }
    }

    let channel: DealerChannel
    let clock: any Clock
    let logger: Logger

    /// Sends and notes it (any message counts as a heartbeat); false when the socket failed or
    /// has no connection to queue on (``DealerChannel/send(_:)`` never blocks).
    func send(_ message: Message, state: inout State) -> Bool {
        do {
            guard try channel.send(message) else {
                logger.debug("cannot queue \(message.type): no connection to the coordinator")
                return false
            }
            state.liveness.sent(at: clock.now())
            return true
        } catch {
            logger.error("cannot send \(message.type): \(error)")
            return false
        }
    }

    /// Starts fetching `version` unless a fetch is already outstanding; false when the socket failed.
    func fetch(_ version: UInt64, state: inout State) -> Bool {
        if state.fetching != nil { return true }
        state.fetching = WeightsAssembler(version: version, reusing: state.spareWeights)
        state.spareWeights = []
        return requestChunks(state: &state)
    }

    /// Requests what the outstanding fetch's assembler asks for; false when the socket failed.
    private func requestChunks(state: inout State) -> Bool {
        guard var assembler = state.fetching else { return true }
        let indices = assembler.takeRequests()
        state.fetching = assembler
        return indices.allSatisfy { send(.weightsRequest(version: assembler.version, chunkIndex: $0), state: &state) }
    }

    /// Adds a chunk of the outstanding fetch and requests the next; nil to continue.
    func accept(_ chunk: WeightsChunk, state: inout State) -> WorkerOutcome? {
        guard var assembler = state.fetching, assembler.version == chunk.version else {
            logger.notice("dropped unrequested WEIGHTS_CHUNK v\(chunk.version) #\(chunk.chunkIndex)")
            return nil
        }
        // Out of `state` while it takes the chunk: a second reference to its buffer would make
        // every chunk copy the whole version (copy-on-write; 0.5 GiB at 135M parameters).
        state.fetching = nil
        do {
            if let bytes = try assembler.add(chunk) {
                state.fetching = nil
                switch chunk.version {
                case WeightsVersion.model: state.model = bytes
                case WeightsVersion.reference: state.reference = bytes
                default:
                    state.assembled = (chunk.version, bytes)
                }
                logger.debug("fetched weights v\(chunk.version): \(bytes.count) bytes in \(chunk.chunkCount) chunks")
                return nil
            }
            state.fetching = assembler
            _ = requestChunks(state: &state)
        } catch {
            // Inconsistent chunks: start this version over.
            logger.warning("weights v\(chunk.version) chunks inconsistent (\(error)); fetching again")
            state.fetching = WeightsAssembler(version: chunk.version)
            _ = requestChunks(state: &state)
        }
        return nil
    }
}

/// A gradient task's answer: GRADIENT_RESULT, then the gradient's float32 values in chunks.
struct GradientUpload {
    let taskID: UInt64
    let policyVersion: UInt64
    let output: ShardGradient
    let chunkBytes: Int

    /// GRADIENT_RESULT, then each chunk, made as it is sent: a chunk copies only its own bytes
    /// of the gradient (the whole gradient is 0.5 GiB at 135M).
    var messages: some Sequence<Message> {
        let totalBytes = output.gradient.count * MemoryLayout<Float>.size
        let chunkCount = max(1, (totalBytes + chunkBytes - 1) / chunkBytes)
        let header = GradientResultMessage(
            taskID: taskID, policyVersion: policyVersion, logprobs: output.pass.logprobs, entropySums: output.pass.entropySums,
            microBatches: UInt32(clamping: output.pass.microBatches), totalBytes: UInt64(totalBytes), chunkCount: UInt32(chunkCount))
        let (taskID, gradient, chunkBytes) = (taskID, output.gradient, chunkBytes)
        return (-1..<chunkCount).lazy.map { index -> Message in
            guard index >= 0 else { return .gradientResult(header) }
            let range = (index * chunkBytes)..<min(totalBytes, (index + 1) * chunkBytes)
            let data = gradient.withUnsafeBytes { ArraySlice($0[range]) }
            return .gradientChunk(GradientChunk(taskID: taskID, chunkIndex: UInt32(index), chunkCount: UInt32(chunkCount),
                                                totalBytes: UInt64(totalBytes), data: data))
        }
    }
}

/// One unit of compute-thread work: load what is given, then run the task.
struct ComputeJob: Sendable {
    let task: WorkItem
    var model: [UInt8]?
    var reference: [UInt8]?
    var policyWeights: [UInt8]?

    /// The wire weights the job loaded (policy, else reference), dropped by the job so that the
    /// caller holds the only reference: the next fetch assembles into it.
    mutating func takeSpentWeights() -> [UInt8]? {
        defer { (model, reference, policyWeights) = (nil, nil, nil) }
        return policyWeights ?? reference
    }
}

struct ComputeDone: Sendable {
    let task: WorkItem
    let result: Result<WorkOutput, any Error>
    /// The job's wire weights, loaded and free to be overwritten by the next version.
    let spentWeights: [UInt8]?
}

/// The compute thread and its one-job mailbox. A job abandoned by a reconnect still runs to
/// the end (an executor cannot be interrupted) but its result is discarded.
final class ComputeLane: @unchecked Sendable {
    private let condition = NSCondition()
    private let executor: any RolloutExecutor
    private var job: ComputeJob?
    private var running = false
    private var finished: ComputeDone?
    private var generation = 0
    private var closing = false
    private var started = false
    /// Signalled when a job finishes, so that the socket thread sends its result at once.
    let finishedSignal = Wakeup()

    init(executor: any RolloutExecutor) { self.executor = executor }

    /// Whether a job is queued or running (a new one must wait).
    var isBusy: Bool {
        condition.lock(); defer { condition.unlock() }
        return job != nil || running || finished != nil
    }

    func start(_ newJob: ComputeJob) {
        condition.lock()
        if !started {
            started = true
            let thread = Thread { [self] in work() }
            thread.name = "cerm-compute"
            thread.stackSize = 8 << 20
            thread.start()
        }
        job = newJob
        condition.broadcast()
        condition.unlock()
    }

    func takeFinished() -> ComputeDone? {
        condition.lock(); defer { condition.unlock() }
        defer { finished = nil }
        return finished
    }

    /// Discards the queued job and the result of the running one.
    func abandonCurrent() {
        condition.lock(); defer { condition.unlock() }
        generation += 1
        job = nil
        finished = nil
    }

    func shutdown() {
        condition.lock(); defer { condition.unlock() }
        closing = true
        generation += 1
        condition.broadcast()
    }

    private func work() {
        // Set from the thread itself, Foundation also gives the name to the OS (set before start,
        // it does not): the compute thread then shows in top -H, gdb and /proc, where
        // scripts/chaos.sh looks for it to stop a worker while it computes.
        Thread.current.name = "cerm-compute"
        while true {
            condition.lock()
            while job == nil && !closing { condition.wait() }
            if closing { condition.unlock(); return }
            guard var current = job else { condition.unlock(); continue }
            job = nil
            running = true
            let myGeneration = generation
            condition.unlock()

            let result: Result<WorkOutput, any Error> = Result {
                if let model = current.model { try executor.prepareModel(description: model) }
                if let reference = current.reference { try executor.prepareReference(weights: reference) }
                if let weights = current.policyWeights { try executor.prepare(policyVersion: current.task.policyVersion, weights: weights) }
                switch current.task {
                case let .rollout(task): return .trajectories(try executor.run(task: task))
                case let .gradient(task): return .gradient(try executor.gradient(task: task))
                }
            }

            let spentWeights = current.takeSpentWeights()
            condition.lock()
            running = false
            if myGeneration == generation { finished = ComputeDone(task: current.task, result: result, spentWeights: spentWeights) }
            condition.unlock()
            finishedSignal.signal()
        }
    }
}
