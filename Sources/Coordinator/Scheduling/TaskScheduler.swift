import Configuration
import Foundation
import Method
import WireProtocol

/// Settings of a ``TaskScheduler``, normally from the run's configuration.
public struct SchedulerSettings: Sendable {
    public var mode: RolloutMode
    /// Async mode: results sampled more than this many versions ago are dropped.
    public var maxStaleness: UInt64
    public var pairsPerTask: Int
    public var heartbeatInterval: Double
    public var heartbeatTimeout: Double
    /// Seconds a worker may hold a task without its RESULT before the task is re-queued
    /// (`cluster.task_timeout`); 0 turns the deadline off.
    public var taskTimeout: Double
    /// `Config.hash` workers must match.
    public var configHash: UInt64
    public var maxMessageBytes: Int
    /// When set, each result is checked against the rollout plan of its step (steps opened with
    /// their pairs, ``TaskScheduler/openStep(_:pairs:)``): trajectory set, prompt lengths,
    /// log-prob counts, vocabulary, context length.
    public var resultCheck: RolloutResultCheck?
    /// HELLOs answered at most (``HelloBudget``); the rest are left unanswered.
    public var helloBudget: HelloBudget

    public init(mode: RolloutMode = .sync, maxStaleness: UInt64 = 1, pairsPerTask: Int = 1, heartbeatInterval: Double = 1,
                heartbeatTimeout: Double = 10, taskTimeout: Double = 0, configHash: UInt64 = 0,
                maxMessageBytes: Int = 64 << 20, resultCheck: RolloutResultCheck? = nil, helloBudget: HelloBudget = HelloBudget()) {
        self.mode = mode
        self.maxStaleness = maxStaleness
        self.pairsPerTask = max(1, pairsPerTask)
        self.heartbeatInterval = heartbeatInterval
        self.heartbeatTimeout = heartbeatTimeout
        self.taskTimeout = taskTimeout
        self.configHash = configHash
        self.maxMessageBytes = maxMessageBytes
        self.resultCheck = resultCheck
        self.helloBudget = helloBudget
    }

    /// The settings `[cluster]`, `[rollout]`, `[reward]` and `[model]` imply, with the run
    /// model's `chat`: every result is checked against the rollout plan (``RolloutResultCheck``).
    public init(config: Config, chat: any ChatCodec) {
        self.init(mode: config.cluster.mode, maxStaleness: UInt64(config.cluster.maxStaleness),
                  pairsPerTask: config.cluster.pairsPerTask, heartbeatInterval: config.cluster.heartbeatInterval,
                  heartbeatTimeout: config.cluster.heartbeatTimeout, taskTimeout: config.cluster.taskTimeout, configHash: config.hash,
                  maxMessageBytes: config.cluster.maxMessageBytes,
                  resultCheck: RolloutResultCheck(config: config, chat: chat))
    }
}

/// A unit of work: a few pairs of one step. Task ids are unique for the scheduler's life; a
/// re-queued task gets a new id so that a late answer to the old one is recognisable.
public struct ScheduledTask: Equatable, Sendable {
    public let taskID: UInt64
    public let step: UInt64
    /// The pairs to roll out; empty for a gradient task.
    public let pairIDs: [UInt64]
    /// A gradient task's shard (`grpo.distributed_update`); nil for rollouts.
    public let gradient: GradientShardKey?
    /// The version the task was sent with (set when dispatched).
    public internal(set) var policyVersion: UInt64

    /// The TASK message for this task; `pairs` gives each pair's prompt material.
    public func message(runSeed: UInt64, parameters: RolloutParameters, pairs: (UInt64) throws -> TaskPair) rethrows -> Message {
        .task(TaskMessage(taskID: taskID, step: step, policyVersion: policyVersion, runSeed: runSeed,
                          parameters: parameters, pairs: try pairIDs.map(pairs)))
    }
}

/// A gradient task's place in the update: data shard `shard` of mini-batch `miniBatch` of step
/// `step`. Its sum with the other shards' goes in shard order, so nothing about who computed
/// it or when it arrived reaches the weights.
public struct GradientShardKey: Hashable, Sendable, CustomStringConvertible {
    public var step: UInt64
    public var miniBatch: UInt32
    public var shard: UInt32

    public init(step: UInt64, miniBatch: UInt32, shard: UInt32) {
        self.step = step
        self.miniBatch = miniBatch
        self.shard = shard
    }

    /// The mini-batch this shard belongs to.
    public var round: GradientRoundKey { GradientRoundKey(step: step, miniBatch: miniBatch) }

    public var description: String { "step \(step), mini-batch \(miniBatch), shard \(shard)" }
}

/// One mini-batch's gradient tasks.
public struct GradientRoundKey: Hashable, Sendable, CustomStringConvertible {
    public var step: UInt64
    public var miniBatch: UInt32

    public init(step: UInt64, miniBatch: UInt32) {
        self.step = step
        self.miniBatch = miniBatch
    }

    public var description: String { "step \(step), mini-batch \(miniBatch)" }
}

/// What ``TaskScheduler/handle(gradientResult:from:now:)`` and
/// ``TaskScheduler/finishGradient(taskID:from:rejection:now:)`` decided.
public enum GradientOutcome: Equatable, Sendable {
    /// GRADIENT_RESULT of a task in flight at its sender: receive its chunks.
    case receive(GradientShardKey)
    /// Every chunk arrived and checked out; `roundComplete` when it was the mini-batch's last shard.
    case accepted(GradientShardKey, roundComplete: Bool)
    case dropped(taskID: UInt64, reason: ResultDropReason, requeuedAs: UInt64?)
}

/// A task sent to a worker by ``TaskScheduler/dispatch(now:)``.
public struct Assignment: Equatable, Sendable {
    public let worker: RoutingID
    public let task: ScheduledTask
}

/// Why a result was not accepted.
public enum ResultDropReason: Error, Equatable, Sendable, CustomStringConvertible {
    /// The sender is not registered (never said HELLO, or was declared dead).
    case unknownWorker
    /// The task id was never issued.
    case unknownTask
    /// The task was issued but is no longer in flight (already answered or re-queued).
    case lateOrDuplicate
    /// The task is in flight at another worker.
    case notAssignedToSender
    /// A RESULT for a gradient task, or a GRADIENT_RESULT for rollouts.
    case otherKind
    /// The result names another version than the task was sent with.
    case versionMismatch(expected: UInt64, received: UInt64)
    /// Sampled with a version the learner no longer accepts.
    case stale(version: UInt64, current: UInt64)
    /// The trajectories do not match the task.
    case invalidTrajectories(String)
    /// A gradient task's result does not fit the task (rows, log-probs, size) or holds a
    /// non-finite value.
    case invalidGradient(String)

    public var description: String {
        switch self {
        case .unknownWorker: "sender is not a registered worker"
        case .unknownTask: "task id was never issued"
        case .lateOrDuplicate: "task is no longer in flight (late or duplicate result)"
        case .notAssignedToSender: "task is in flight at another worker"
        case .otherKind: "answers a task of the other kind (rollouts and gradient tasks have their own results)"
        case let .versionMismatch(expected, received): "result names policy version \(received), task was sent with \(expected)"
        case let .stale(version, current): "sampled with version \(version), current version \(current) is beyond the staleness bound"
        case let .invalidTrajectories(reason): "invalid trajectories: \(reason)"
        case let .invalidGradient(reason): "invalid gradient: \(reason)"
        }
    }
}

/// What ``TaskScheduler/handle(result:from:now:)`` did.
public enum ResultOutcome: Equatable, Sendable {
    /// Stored under its step; `stepComplete` when every pair of the step now has rollouts.
    case accepted(taskID: UInt64, step: UInt64, stepComplete: Bool)
    /// Dropped; if the task was in flight at the sender its pairs were re-queued under `requeuedAs`.
    case dropped(taskID: UInt64, reason: ResultDropReason, requeuedAs: UInt64?)
}

/// What the coordinator must do after a HELLO.
public enum HelloOutcome: Equatable, Sendable {
    /// Send this WELCOME; `requeued` lists the tasks the peer held if it was registered already
    /// (it restarted on the same routing id, or repeats HELLO; its ``WorkerRecord/rejoined`` says so).
    /// `forgotten` is the oldest joining worker, forgotten to keep at most
    /// ``WorkerRegistry/maxJoining`` joining (it gets no message: a real one reconnects).
    case welcome(WelcomeMessage, requeued: [UInt64], forgotten: WorkerRecord?)
    /// Send REFUSE with this reason (the worker prints it and exits).
    case refuse(reason: String)
    /// Send nothing: more HELLOs arrived than ``SchedulerSettings/helloBudget`` answers (a
    /// flood); nothing is held for the sender.
    case unanswered
}

/// A worker declared dead by ``TaskScheduler/tick(now:)``.
public struct ExpiredWorker: Equatable, Sendable {
    public let peer: RoutingID
    public let name: String
    /// New ids of its re-queued tasks.
    public let requeued: [UInt64]
    /// When the coordinator last heard from it.
    public let lastHeard: Double
}

/// A task re-queued by ``TaskScheduler/tick(now:)`` because its worker held it longer than
/// ``SchedulerSettings/taskTimeout`` without a RESULT.
public struct TimedOutTask: Equatable, Sendable {
    public let peer: RoutingID
    public let worker: String
    public let taskID: UInt64
    public let step: UInt64
    /// Seconds since the task was sent to the worker.
    public let heldSeconds: Double
    /// The task's new id; nil if its step is no longer open.
    public let requeuedAs: UInt64?

    /// The coordinator's warning.
    public var warning: String {
        "task \(taskID) of step \(step) held by worker \(worker) for \(String(format: "%.2f", heldSeconds)) s without a RESULT "
            + "(cluster.task_timeout): " + (requeuedAs.map { "re-queued as task \($0)" } ?? "not re-queued (step closed)")
    }

    /// The `from` field of its `tasks_requeued` event.
    public var requeuedFrom: String { "\(worker) (task \(taskID) timed out)" }
}

/// A worker refused by ``TaskScheduler/refuseIfOverRejectionLimit(_:)``: forgotten, its tasks
/// re-queued.
public struct RefusedWorker: Equatable, Sendable {
    public let peer: RoutingID
    public let name: String
    public let rejectedResults: Int
    /// New ids of its re-queued tasks.
    public let requeued: [UInt64]

    /// The REFUSE reason the worker gets (it prints it and exits).
    public var reason: String {
        "\(rejectedResults) results of worker \(name) were rejected (limit \(TaskScheduler.maxRejectedResults)): "
            + "refused; check its engine, build and configuration before restarting it"
    }

    /// The coordinator's error.
    public var error: String {
        "refused worker \(name) at peer \(peer) after \(rejectedResults) rejected results: forgot its routing id, re-queued "
            + (requeued.isEmpty ? "no tasks" : "\(requeued.count) task(s) as \(requeued.map(String.init).joined(separator: ", "))")
    }

    /// The `from` field of its `tasks_requeued` event.
    public var requeuedFrom: String { "\(name) (refused)" }
}

/// What ``TaskScheduler/tick(now:)`` found.
public struct TickOutcome: Equatable, Sendable {
    public var expired: [ExpiredWorker] = []
    /// Tasks past their deadline, by old task id, re-queued.
    public var timedOut: [TimedOutTask] = []
    /// Workers owed a HEARTBEAT now (already marked as sent).
    public var heartbeatsDue: [RoutingID] = []
}

/// Counters for the step log and metrics.
public struct SchedulerStatistics: Equatable, Sendable {
    public var tasksCreated = 0
    public var tasksDispatched = 0
    public var resultsAccepted = 0
    public var tasksRequeued = 0
    public var workersExpired = 0
    public var droppedStale = 0
    public var droppedLateOrDuplicate = 0
    public var droppedUnknown = 0
    public var droppedInvalid = 0
    /// HELLOs answered with REFUSE (protocol version, config hash, capacity).
    public var hellosRefused = 0
    /// HELLOs left unanswered, past the ``SchedulerSettings/helloBudget``.
    public var hellosUnanswered = 0
    /// Joining workers forgotten to admit a newer HELLO (``WorkerRegistry/maxJoining``).
    public var joiningForgotten = 0
    /// The most workers joining at once (registered by a HELLO, not heard from since).
    public var peakJoining = 0
}

/// A step's rollouts, complete: the learner's input.
public struct StepRollouts: Equatable, Sendable {
    public let step: UInt64
    /// Every pair's accepted rollout, in pair-id order.
    public let rollouts: [AcceptedRollout]
    /// Policy version each task's trajectories were sampled with, by pair.
    public let versionByPair: [UInt64: UInt64]

    public init(step: UInt64, rollouts: [AcceptedRollout], versionByPair: [UInt64: UInt64]) {
        self.step = step
        self.rollouts = rollouts.sorted { $0.pairID < $1.pairID }
        self.versionByPair = versionByPair
    }

    /// Every accepted trajectory in canonical order (``TrajectoryID`` order).
    public var trajectories: [Trajectory] { rollouts.flatMap(\.trajectories) }
}

/// Errors from misuse of the scheduler by the coordinator loop.
public enum SchedulerError: Error, Equatable, CustomStringConvertible {
    case stepAlreadyOpen(UInt64)
    case syncModeStepStillOpen(open: UInt64, requested: UInt64)
    case duplicatePair(step: UInt64, pairID: UInt64)
    case emptyStep(UInt64)
    case versionNotIncreasing(current: UInt64, requested: UInt64)
    case gradientsAlreadyOpen(GradientRoundKey)
    case noShards(GradientRoundKey)
    /// A fixed-lag step opened without its version, or a step of another mode with one.
    case stepVersion(step: UInt64, mode: RolloutMode)

    public var description: String {
        switch self {
        case let .stepAlreadyOpen(s): "step \(s) is already open"
        case let .syncModeStepStillOpen(open, requested): "sync mode: cannot open step \(requested) while step \(open) is open"
        case let .duplicatePair(step, pair): "step \(step) lists pair \(pair) twice"
        case let .emptyStep(s): "step \(s) has no pairs"
        case let .versionNotIncreasing(current, requested): "policy version must increase (current \(current), requested \(requested))"
        case let .gradientsAlreadyOpen(round): "the gradient tasks of \(round) are already open"
        case let .noShards(round): "\(round): a gradient round has at least one shard"
        case let .stepVersion(step, mode):
            mode == .fixedLag ? "fixed-lag mode: step \(step) must name the version it samples with"
                : "\(mode.rawValue) mode: step \(step) samples with the newest version and cannot name one"
        }
    }
}

/// Credit-based task dispatch with liveness, re-queueing and result acceptance (docs/PROTOCOL.md
/// section 4). Pure logic for one coordinator loop: it owns no socket and reads no clock; each
/// call gets `now`. Which worker gets which task may vary; results are keyed by task id and
/// trajectories are handed out in canonical order, so nothing downstream depends on it.
public struct TaskScheduler: Sendable {
    /// Rejected results (invalid or malformed; stale and late ones do not count) after which a
    /// registered worker is refused. One bad result can be a transient (a frame cut by a
    /// dropped connection) and the task is simply re-run; three from the same worker mean its
    /// engine, build or model files are broken, and every further one costs a task re-run
    /// and can keep a sync step from completing (its re-queued tasks may come back to it).
    public static let maxRejectedResults = 3

    public let settings: SchedulerSettings
    public private(set) var registry: WorkerRegistry
    /// The version new tasks are sent with.
    public private(set) var policyVersion: UInt64
    public private(set) var statistics = SchedulerStatistics()

    private struct StepState: Sendable {
        var pendingPairs: Set<UInt64>
        /// Fixed-lag mode: the version every task of the step is sent with (nil: the newest).
        var version: UInt64?
        var rollouts: [AcceptedRollout] = []
        var versionByPair: [UInt64: UInt64] = [:]
        /// The pairs' prompt material, when the step was opened with it (result checks).
        var pairs: [UInt64: TaskPair] = [:]
    }

    private var helloBudget: HelloBudget
    private var nextTaskID: UInt64 = 1
    private var queue: [ScheduledTask] = []
    private var inFlight: [UInt64: (task: ScheduledTask, worker: RoutingID, sentAt: Double)] = [:]
    private var steps: [UInt64: StepState] = [:]
    /// Open gradient rounds: the version their tasks compute at and the shards still missing.
    private var rounds: [GradientRoundKey: (version: UInt64, pending: Set<UInt32>)] = [:]

    public init(settings: SchedulerSettings, policyVersion: UInt64 = 0) {
        self.settings = settings
        helloBudget = settings.helloBudget
        self.policyVersion = policyVersion
        registry = WorkerRegistry(heartbeatInterval: settings.heartbeatInterval, heartbeatTimeout: settings.heartbeatTimeout)
    }

    /// Steps opened and not yet taken, ascending.
    public var openSteps: [UInt64] { steps.keys.sorted() }
    /// Tasks waiting for a worker with credit.
    public var queuedTasks: [ScheduledTask] { queue }
    /// Task ids sent and not yet answered.
    public var inFlightTaskIDs: [UInt64] { inFlight.keys.sorted() }

    /// Whether every pair of `step` has accepted rollouts.
    public func isComplete(step: UInt64) -> Bool { steps[step]?.pendingPairs.isEmpty ?? false }

    // MARK: Workers

    /// Admits or refuses the sender of a HELLO.
    public mutating func handle(hello: HelloMessage, from peer: RoutingID, now: Double) -> HelloOutcome {
        guard helloBudget.admit(now: now) else {
            statistics.hellosUnanswered += 1
            return .unanswered
        }
        if let reason = refusal(of: hello) {
            statistics.hellosRefused += 1
            return .refuse(reason: reason)
        }
        var requeued: [UInt64] = []
        let registration = registry.register(peer, hello: hello, now: now)
        let previous = registration.previous
        if let previous { requeued = requeue(previous.inFlight) }
        // A joining worker holds no task (it has sent no READY): nothing to re-queue.
        if registration.forgotten != nil { statistics.joiningForgotten += 1 }
        statistics.peakJoining = registry.peakJoining
        registry.sent(to: peer, at: now)
        let welcome = WelcomeMessage(heartbeatIntervalMs: Self.milliseconds(settings.heartbeatInterval),
                                     heartbeatTimeoutMs: Self.milliseconds(settings.heartbeatTimeout),
                                     policyVersion: policyVersion, maxMessageBytes: UInt32(clamping: settings.maxMessageBytes))
        return .welcome(welcome, requeued: requeued, forgotten: registration.forgotten)
    }

    /// Why a HELLO is refused, or nil when it is admitted.
    private func refusal(of hello: HelloMessage) -> String? {
        if hello.protocolVersion != MessageCodec.version {
            return "protocol version \(hello.protocolVersion) not supported: the coordinator speaks cerm protocol v\(MessageCodec.version)"
        }
        if hello.configHash != settings.configHash {
            return "config hash mismatch: worker 0x\(String(hello.configHash, radix: 16)), coordinator 0x\(String(settings.configHash, radix: 16)) "
                + "(compare `cerm config check` output on both machines)"
        }
        if hello.capacity == 0 { return "capacity must be at least 1" }
        return nil
    }

    /// READY: adds credit. False (message dropped) if the sender is not registered.
    @discardableResult
    public mutating func handle(ready credit: Int, from peer: RoutingID, now: Double) -> Bool {
        guard registry.heard(from: peer, at: now) else { return false }
        registry.grantCredit(credit, to: peer)
        return true
    }

    /// Any other message (HEARTBEAT, WEIGHTS_REQUEST, …) proves the sender alive. False if it
    /// is not registered (the message should be dropped).
    @discardableResult
    public mutating func heard(from peer: RoutingID, now: Double) -> Bool { registry.heard(from: peer, at: now) }

    /// Notes a message sent to `peer` (counts as a heartbeat).
    public mutating func sent(to peer: RoutingID, now: Double) { registry.sent(to: peer, at: now) }

    /// GOODBYE: forgets the worker and re-queues its tasks; returns their new ids.
    @discardableResult
    public mutating func handle(goodbyeFrom peer: RoutingID, now: Double) -> [UInt64] {
        guard let record = registry.remove(peer) else { return [] }
        return requeue(record.inFlight)
    }

    /// Declares silent workers dead (re-queueing their tasks) and lists heartbeats due.
    public mutating func tick(now: Double) -> TickOutcome {
        var outcome = TickOutcome()
        for record in registry.expire(now: now) {
            statistics.workersExpired += 1
            outcome.expired.append(ExpiredWorker(peer: record.peer, name: record.name, requeued: requeue(record.inFlight),
                                                 lastHeard: record.liveness.lastHeard))
        }
        if settings.taskTimeout > 0 {
            let overdue = inFlight.filter { now - $0.value.sentAt > settings.taskTimeout }.keys.sorted()
            for taskID in overdue {
                guard let (task, worker, sentAt) = inFlight[taskID] else { continue }
                let name = registry.worker(worker)?.name ?? worker.description
                let requeued = requeue([taskID]).first
                outcome.timedOut.append(TimedOutTask(peer: worker, worker: name, taskID: taskID, step: task.step,
                                                     heldSeconds: now - sentAt, requeuedAs: requeued))
            }
        }
        outcome.heartbeatsDue = registry.heartbeatsDue(now: now)
        return outcome
    }

    // MARK: Steps and tasks

    /// Opens a step: its pairs become tasks of `pairs_per_task` pairs, queued in order.
    /// Sync mode allows one open step at a time; async and fixed-lag modes several. Fixed-lag
    /// steps name their `version`: every task of the step is sent with it, once published.
    public mutating func openStep(_ step: UInt64, pairIDs: [UInt64], version: UInt64? = nil) throws(SchedulerError) {
        if steps[step] != nil { throw .stepAlreadyOpen(step) }
        if settings.mode == .sync, let open = steps.keys.min() { throw .syncModeStepStillOpen(open: open, requested: step) }
        if (settings.mode == .fixedLag) != (version != nil) { throw .stepVersion(step: step, mode: settings.mode) }
        if pairIDs.isEmpty { throw .emptyStep(step) }
        var seen = Set<UInt64>()
        for pair in pairIDs where !seen.insert(pair).inserted { throw .duplicatePair(step: step, pairID: pair) }
        steps[step] = StepState(pendingPairs: seen, version: version)
        var start = 0
        while start < pairIDs.count {
            let end = min(start + settings.pairsPerTask, pairIDs.count)
            queue.append(makeTask(step: step, pairIDs: Array(pairIDs[start..<end])))
            start = end
        }
    }

    /// Opens a step with its pairs' prompt material, so results can be checked against the
    /// rollout plan (``SchedulerSettings/resultCheck``); otherwise as ``openStep(_:pairIDs:)``.
    public mutating func openStep(_ step: UInt64, pairs: [TaskPair], version: UInt64? = nil) throws(SchedulerError) {
        try openStep(step, pairIDs: pairs.map(\.pairID), version: version)
        steps[step]?.pairs = Dictionary(pairs.map { ($0.pairID, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// Opens the gradient tasks of one mini-batch of a distributed update, one per data shard,
    /// to be computed at weights `version`. They go ahead of every queued rollout task (the
    /// update waits for them) in shard order.
    public mutating func openGradients(_ round: GradientRoundKey, shards: Int, version: UInt64) throws(SchedulerError) {
        guard rounds[round] == nil else { throw .gradientsAlreadyOpen(round) }
        guard shards >= 1 else { throw .noShards(round) }
        rounds[round] = (version, Set((0..<UInt32(shards)).map { $0 }))
        let tasks = (0..<UInt32(shards)).map {
            makeTask(step: round.step, pairIDs: [], gradient: GradientShardKey(step: round.step, miniBatch: round.miniBatch, shard: $0))
        }
        queue.insert(contentsOf: tasks, at: 0)
    }

    /// Whether `taskID` is in flight at `peer` (a gradient's chunks count only while it is).
    public func isInFlight(_ taskID: UInt64, at peer: RoutingID) -> Bool { inFlight[taskID]?.worker == peer }

    /// GRADIENT_RESULT: the sender's task, of the version it was sent with, is received (its
    /// chunks follow); anything else is dropped by the RESULT rules. The task stays in flight
    /// until ``finishGradient(taskID:from:rejection:now:)``, so a worker lost while sending its
    /// chunks has the shard re-run.
    public mutating func handle(gradientResult result: GradientResultMessage, from peer: RoutingID, now: Double) -> GradientOutcome {
        let taskID = result.taskID
        let task: ScheduledTask
        switch senderTask(taskID, from: peer, gradient: true, now: now) {
        case let .success(found): task = found
        case let .failure(reason): return .dropped(taskID: taskID, reason: reason, requeuedAs: nil)
        }
        guard let key = task.gradient else { return .dropped(taskID: taskID, reason: .otherKind, requeuedAs: nil) }
        guard result.policyVersion == task.policyVersion else {
            return finishGradient(taskID: taskID, from: peer,
                                  rejection: .versionMismatch(expected: task.policyVersion, received: result.policyVersion), now: now)
        }
        return .receive(key)
    }

    /// Ends a gradient task in flight at `peer`: accepted when `rejection` is nil, else dropped,
    /// counted against the worker and re-queued (the shard is computed again elsewhere, never
    /// applied).
    public mutating func finishGradient(taskID: UInt64, from peer: RoutingID, rejection: ResultDropReason?, now: Double) -> GradientOutcome {
        guard let (task, worker, _) = inFlight[taskID], worker == peer, let key = task.gradient else {
            statistics.droppedLateOrDuplicate += 1
            return .dropped(taskID: taskID, reason: .lateOrDuplicate, requeuedAs: nil)
        }
        inFlight[taskID] = nil
        _ = registry.release(taskID, from: peer)
        if let rejection {
            statistics.droppedInvalid += 1
            registry.noteRejectedResult(from: peer)
            return .dropped(taskID: taskID, reason: rejection, requeuedAs: requeue(tasks: [task]).first)
        }
        guard var round = rounds[key.round] else {
            statistics.droppedLateOrDuplicate += 1
            return .dropped(taskID: taskID, reason: .lateOrDuplicate, requeuedAs: nil)
        }
        round.pending.remove(key.shard)
        rounds[key.round] = round
        statistics.resultsAccepted += 1
        return .accepted(key, roundComplete: round.pending.isEmpty)
    }

    /// Forgets a gradient round, complete (its results were handed to the learner) or not (the
    /// learner computes it itself): its queued tasks are dropped, results of those in flight
    /// are late, and a lost one is not re-run.
    public mutating func closeGradients(_ round: GradientRoundKey) {
        rounds[round] = nil
        queue.removeAll { $0.gradient?.round == round }
    }

    /// The learner published `version`. Tasks dispatched from now on carry it; in-flight tasks
    /// keep theirs and are judged by the staleness rule when they come back.
    public mutating func advancePolicy(to version: UInt64) throws(SchedulerError) {
        guard version > policyVersion else { throw .versionNotIncreasing(current: policyVersion, requested: version) }
        policyVersion = version
    }

    /// Sends queued tasks to workers with credit, oldest first, each to the worker with credit
    /// and the fewest tasks in flight; a fixed-lag step's tasks wait until its version is
    /// published. The caller sends each assignment's TASK message.
    public mutating func dispatch(now: Double) -> [Assignment] {
        var assignments: [Assignment] = []
        while let index = queue.firstIndex(where: { $0.gradient != nil || (steps[$0.step]?.version ?? 0) <= policyVersion }),
              let worker = registry.nextWorkerWithCredit() {
            var task = queue.remove(at: index)
            task.policyVersion = task.gradient.flatMap { rounds[$0.round]?.version } ?? steps[task.step]?.version ?? policyVersion
            registry.assign(task.taskID, to: worker)
            registry.sent(to: worker, at: now)
            inFlight[task.taskID] = (task, worker, now)
            statistics.tasksDispatched += 1
            assignments.append(Assignment(worker: worker, task: task))
        }
        return assignments
    }

    /// Accepts or drops a RESULT (docs/PROTOCOL.md, "Coordinator's acceptance rules").
    public mutating func handle(result: ResultMessage, from peer: RoutingID, now: Double) -> ResultOutcome {
        let taskID = result.taskID
        let task: ScheduledTask
        switch senderTask(taskID, from: peer, gradient: false, now: now) {
        case let .success(found): task = found
        case let .failure(reason): return .dropped(taskID: taskID, reason: reason, requeuedAs: nil)
        }
        // From here the task leaves the worker whatever happens: accepted, or re-queued.
        inFlight[taskID] = nil
        _ = registry.release(taskID, from: peer)

        let accepted: Result<[AcceptedRollout], ResultDropReason>
        if result.policyVersion != task.policyVersion {
            accepted = .failure(.versionMismatch(expected: task.policyVersion, received: result.policyVersion))
        } else if isStale(task) {
            accepted = .failure(.stale(version: task.policyVersion, current: policyVersion))
        } else {
            accepted = accept(result.trajectories, for: task)
        }
        let rollouts: [AcceptedRollout]
        switch accepted {
        case let .success(checked): rollouts = checked
        case let .failure(rejection):
            if case .stale = rejection { statistics.droppedStale += 1 } else {
                statistics.droppedInvalid += 1
                registry.noteRejectedResult(from: peer)
            }
            let requeued = requeue(tasks: [task]).first
            return .dropped(taskID: taskID, reason: rejection, requeuedAs: requeued)
        }
        guard var state = steps[task.step] else {
            // The step was taken already (cannot happen while tasks of it are in flight).
            statistics.droppedLateOrDuplicate += 1
            return .dropped(taskID: taskID, reason: .lateOrDuplicate, requeuedAs: nil)
        }
        for pair in task.pairIDs {
            state.pendingPairs.remove(pair)
            state.versionByPair[pair] = task.policyVersion
        }
        state.rollouts.append(contentsOf: rollouts)
        steps[task.step] = state
        statistics.resultsAccepted += 1
        return .accepted(taskID: taskID, step: task.step, stepComplete: state.pendingPairs.isEmpty)
    }

    /// A message from `peer` that failed decoding but can be attributed to a task: a RESULT
    /// whose task id could be read (`taskID`), or nil when the task cannot be told. The task
    /// when in flight at `peer` (a late one is left alone), or with no readable id every task in
    /// flight at `peer`, is re-queued so the
    /// step does not wait forever on a worker that keeps heartbeating; counts as a rejected
    /// result of the worker. Returns the new task ids (empty for an unregistered peer).
    public mutating func handle(malformedResultFrom peer: RoutingID, taskID: UInt64?, now: Double) -> [UInt64] {
        guard let record = registry.worker(peer) else { return [] }
        registry.noteRejectedResult(from: peer)
        statistics.droppedInvalid += 1
        if let taskID { return record.inFlight.contains(taskID) ? requeue([taskID]) : [] }
        return requeue(record.inFlight)
    }

    /// Refuses `peer` if it has ``maxRejectedResults`` rejected results: forgets it (further
    /// messages from its routing id are dropped as from an unknown peer until it says HELLO)
    /// and re-queues its in-flight tasks. Nil (nothing changes) below the limit or for an
    /// unregistered peer. The caller sends REFUSE(``RefusedWorker/reason``).
    public mutating func refuseIfOverRejectionLimit(_ peer: RoutingID) -> RefusedWorker? {
        guard let record = registry.worker(peer), record.rejectedResults >= Self.maxRejectedResults else { return nil }
        registry.remove(peer)
        return RefusedWorker(peer: peer, name: record.name, rejectedResults: record.rejectedResults, requeued: requeue(record.inFlight))
    }

    /// Removes a complete step and returns its accepted rollouts in pair-id order (each pair's
    /// trajectories in canonical order); nil while the step is incomplete or unknown.
    public mutating func takeCompletedStep(_ step: UInt64) -> StepRollouts? {
        guard let state = steps[step], state.pendingPairs.isEmpty else { return nil }
        steps[step] = nil
        return StepRollouts(step: step, rollouts: state.rollouts, versionByPair: state.versionByPair)
    }

    // MARK: Internals

    /// Seconds as whole milliseconds for the wire, clamped to 1...UInt32.max (never traps).
    static func milliseconds(_ seconds: Double) -> UInt32 {
        let ms = (seconds * 1000).rounded()
        guard ms.isFinite else { return ms > 0 ? .max : 1 }
        return UInt32(max(1, min(ms, Double(UInt32.max))))
    }

    private mutating func makeTask(step: UInt64, pairIDs: [UInt64], gradient: GradientShardKey? = nil) -> ScheduledTask {
        defer { nextTaskID += 1 }
        statistics.tasksCreated += 1
        return ScheduledTask(taskID: nextTaskID, step: step, pairIDs: pairIDs, gradient: gradient, policyVersion: policyVersion)
    }

    /// Sync: only the current version counts. Async: at most `max_staleness` versions behind.
    /// Fixed-lag: the step's own version, which every task of it is sent with.
    private func isStale(_ task: ScheduledTask) -> Bool {
        switch settings.mode {
        case .sync: return task.policyVersion != policyVersion
        case .async: return task.policyVersion > policyVersion || policyVersion - task.policyVersion > settings.maxStaleness
        case .fixedLag: return task.policyVersion != steps[task.step]?.version
        }
    }

    /// The task `taskID` of the kind an answer is for (a gradient task or rollouts), in flight at
    /// its sender `peer`; or why the answer is dropped (counted): an unregistered sender, a task
    /// no longer in flight (late or duplicate), never issued, of the other kind, or in flight at
    /// another worker.
    private mutating func senderTask(_ taskID: UInt64, from peer: RoutingID, gradient: Bool, now: Double) -> Result<ScheduledTask, ResultDropReason> {
        guard registry.heard(from: peer, at: now) else {
            statistics.droppedUnknown += 1
            return .failure(.unknownWorker)
        }
        guard let (task, worker, _) = inFlight[taskID] else {
            if taskID != 0 && taskID < nextTaskID {
                statistics.droppedLateOrDuplicate += 1
                return .failure(.lateOrDuplicate)
            }
            statistics.droppedUnknown += 1
            return .failure(.unknownTask)
        }
        guard (task.gradient != nil) == gradient else {
            statistics.droppedUnknown += 1
            return .failure(.otherKind)
        }
        guard worker == peer else {
            statistics.droppedLateOrDuplicate += 1
            return .failure(.notAssignedToSender)
        }
        return .success(task)
    }

    /// Re-queues the given tasks (at the front, oldest first, under new ids) if their step is
    /// still open; returns the new ids.
    private mutating func requeue(_ taskIDs: some Collection<UInt64>) -> [UInt64] {
        var tasks: [ScheduledTask] = []
        for id in taskIDs.sorted() {
            guard let (task, worker, _) = inFlight.removeValue(forKey: id) else { continue }
            _ = registry.release(id, from: worker)
            tasks.append(task)
        }
        return requeue(tasks: tasks)
    }

    /// Re-queues tasks already out of `inFlight`.
    private mutating func requeue(tasks: [ScheduledTask]) -> [UInt64] {
        var fresh: [ScheduledTask] = []
        for task in tasks where task.gradient.map({ rounds[$0.round] != nil }) ?? (steps[task.step] != nil) {
            fresh.append(makeTask(step: task.step, pairIDs: task.pairIDs, gradient: task.gradient))
        }
        statistics.tasksRequeued += fresh.count
        queue.insert(contentsOf: fresh, at: 0)
        return fresh.map(\.taskID)
    }

    /// The task's rollouts as accepted, or why `trajectories` do not fit the task: each must
    /// name a pair of the task once, every pair needs trajectories, and with
    /// ``SchedulerSettings/resultCheck`` and the step's pairs known they must be exactly what
    /// the rollout plan asks for (``RolloutResultCheck``).
    private func accept(_ trajectories: [Trajectory], for task: ScheduledTask) -> Result<[AcceptedRollout], ResultDropReason> {
        let byPair: [UInt64: [Trajectory]]
        do { byPair = try TrajectoryFault.grouped(trajectories, pairIDs: task.pairIDs) } catch {
            return .failure(.invalidTrajectories(error.description))
        }
        if let pair = task.pairIDs.first(where: { byPair[$0] == nil }) {
            return .failure(.invalidTrajectories("no trajectories for pair \(pair)"))
        }
        guard let check = settings.resultCheck, let known = steps[task.step]?.pairs, !known.isEmpty else {
            return .success(task.pairIDs.map { AcceptedRollout(pairID: $0, unplanned: byPair[$0] ?? []) })
        }
        let pairs = task.pairIDs.compactMap { known[$0] }
        guard pairs.count == task.pairIDs.count else {
            return .failure(.invalidTrajectories("task \(task.taskID) names pairs the step does not hold"))
        }
        do { return .success(try check.accept(step: task.step, pairs: pairs, trajectories: trajectories)) } catch {
            return .failure(.invalidTrajectories(error.description))
        }
    }
}
