import Configuration
@testable import Coordinator
import Method
import Runtime
import Shared
import Testing
import WireProtocol

@Suite struct TaskSchedulerTests {
    static let alice = RoutingID([0xA1])
    static let bob = RoutingID([0xB0])

    static func settings(mode: RolloutMode = .sync, pairsPerTask: Int = 2, staleness: UInt64 = 1) -> SchedulerSettings {
        SchedulerSettings(mode: mode, maxStaleness: staleness, pairsPerTask: pairsPerTask, heartbeatInterval: 1, heartbeatTimeout: 5,
                          configHash: 0xC0FFEE, maxMessageBytes: 1 << 20)
    }

    static func hello(_ name: String, capacity: UInt16 = 4) -> HelloMessage {
        HelloMessage(name: name, capacity: capacity, configHash: 0xC0FFEE, kind: .cpu)
    }

    /// The complete two-stage rollout (nc = 1, ne = 1, two responses) of `pairs`.
    static func trajectories(_ pairs: [UInt64], tokenSeed: UInt32 = 0) -> [Trajectory] {
        pairs.flatMap { pair -> [Trajectory] in
            let ids = [TrajectoryID(pairID: pair, stage: .evaluation, criteriaIndex: 0, responseIndex: 1, sampleIndex: 0),
                       TrajectoryID(pairID: pair, stage: .criteria, criteriaIndex: 0, responseIndex: 0, sampleIndex: 0),
                       TrajectoryID(pairID: pair, stage: .evaluation, criteriaIndex: 0, responseIndex: 0, sampleIndex: 0)]
            return ids.map { id in
                Trajectory(id: id, promptTokenCount: 4, tokens: [UInt32(pair) + tokenSeed], behaviourLogprobs: [-1],
                           referenceLogprobs: [-1], finishReason: .eos, text: "\(id)")
            }
        }
    }

    static func result(for task: ScheduledTask, version: UInt64? = nil) -> ResultMessage {
        ResultMessage(taskID: task.taskID, policyVersion: version ?? task.policyVersion, trajectories: trajectories(task.pairIDs))
    }

    /// A scheduler with alice (and bob) registered and given `credit`.
    static func scheduler(_ settings: SchedulerSettings = settings(), workers: [RoutingID] = [alice], credit: Int = 4,
                          clock: ManualClock) -> TaskScheduler {
        var s = TaskScheduler(settings: settings)
        for (i, peer) in workers.enumerated() {
            guard case .welcome = s.handle(hello: hello("w\(i)"), from: peer, now: clock.now()) else {
                Issue.record("worker refused"); return s
            }
            s.handle(ready: credit, from: peer, now: clock.now())
        }
        return s
    }

    @Test func stepsBecomeTasksOfPairsPerTaskWithUniqueIDs() throws {
        var s = TaskScheduler(settings: Self.settings(pairsPerTask: 2))
        try s.openStep(0, pairIDs: [10, 11, 12, 13, 14])
        #expect(s.queuedTasks.map(\.pairIDs) == [[10, 11], [12, 13], [14]])
        #expect(s.queuedTasks.map(\.taskID) == [1, 2, 3])
        #expect(s.statistics.tasksCreated == 3)
        #expect(throws: SchedulerError.stepAlreadyOpen(0)) { try s.openStep(0, pairIDs: [1]) }
        #expect(throws: SchedulerError.syncModeStepStillOpen(open: 0, requested: 1)) { try s.openStep(1, pairIDs: [1]) }
        var a = TaskScheduler(settings: Self.settings(mode: .async))
        #expect(throws: SchedulerError.duplicatePair(step: 0, pairID: 7)) { try a.openStep(0, pairIDs: [7, 8, 7]) }
        #expect(throws: SchedulerError.emptyStep(1)) { try a.openStep(1, pairIDs: []) }
    }

    @Test func dispatchFollowsCreditClampedToCapacity() throws {
        let clock = ManualClock()
        var s = TaskScheduler(settings: Self.settings(pairsPerTask: 1))
        #expect(s.handle(hello: Self.hello("a", capacity: 2), from: Self.alice, now: 0)
            == .welcome(WelcomeMessage(heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 5000, policyVersion: 0, maxMessageBytes: 1 << 20), requeued: [], forgotten: nil))
        try s.openStep(0, pairIDs: [1, 2, 3, 4])
        #expect(s.dispatch(now: clock.now()).isEmpty) // no credit yet
        s.handle(ready: 5, from: Self.alice, now: clock.now())
        #expect(s.registry.worker(Self.alice)?.credit == 2) // clamped to capacity
        let first = s.dispatch(now: clock.now())
        #expect(first.map(\.task.taskID) == [1, 2])
        #expect(first.allSatisfy { $0.worker == Self.alice })
        #expect(s.registry.worker(Self.alice)?.credit == 0)
        s.handle(ready: 1, from: Self.alice, now: clock.now())
        #expect(s.registry.worker(Self.alice)?.credit == 0) // two in flight already fill capacity 2
        #expect(s.handle(result: Self.result(for: first[0].task), from: Self.alice, now: clock.now())
            == .accepted(taskID: 1, step: 0, stepComplete: false))
        s.handle(ready: 1, from: Self.alice, now: clock.now())
        #expect(s.dispatch(now: clock.now()).map(\.task.taskID) == [3])
        #expect(s.handle(ready: 1, from: Self.bob, now: clock.now()) == false) // never said HELLO
    }

    @Test func tasksGoToTheLeastLoadedWorkerWithCredit() throws {
        let clock = ManualClock()
        var s = Self.scheduler(Self.settings(pairsPerTask: 1), workers: [Self.alice, Self.bob], credit: 2, clock: clock)
        try s.openStep(0, pairIDs: [1, 2, 3, 4, 5])
        let assignments = s.dispatch(now: clock.now())
        #expect(assignments.map(\.worker) == [Self.alice, Self.bob, Self.alice, Self.bob])
        #expect(s.queuedTasks.map(\.pairIDs) == [[5]])
        let message = assignments[0].task.message(runSeed: 7, parameters: RolloutParameters(config: RolloutConfig())) {
            TaskPair(pairID: $0, query: "q\($0)", responses: ["a", "b"])
        }
        guard case let .task(task) = message else { Issue.record("not a task"); return }
        #expect(task.taskID == 1 && task.step == 0 && task.runSeed == 7 && task.pairs.map(\.query) == ["q1"])
        #expect(task.parameters.nc == 4 && task.parameters.criteriaMaxTokens == 96)
    }

    @Test func silentWorkerIsDeclaredDeadAndItsTasksAreRequeued() throws {
        let clock = ManualClock(start: 1000)
        var s = Self.scheduler(workers: [Self.alice, Self.bob], credit: 1, clock: clock)
        try s.openStep(0, pairIDs: [1, 2, 3, 4])
        let sent = s.dispatch(now: clock.now())
        #expect(sent.map(\.worker) == [Self.alice, Self.bob])
        let aliceTask = sent[0].task
        // Bob keeps talking, Alice goes silent.
        for _ in 0..<5 {
            clock.advance(by: 1)
            s.heard(from: Self.bob, now: clock.now())
            #expect(s.tick(now: clock.now()).expired.isEmpty)
        }
        clock.advance(by: 1) // alice silent for 6 s > timeout 5 s
        let tick = s.tick(now: clock.now())
        #expect(tick.expired == [ExpiredWorker(peer: Self.alice, name: "w0", requeued: [3], lastHeard: clock.now() - 6)])
        #expect(s.registry.contains(Self.alice) == false)
        #expect(s.statistics.workersExpired == 1)
        #expect(s.queuedTasks.map(\.taskID) == [3])
        #expect(s.queuedTasks.first?.pairIDs == aliceTask.pairIDs)

        // Alice was only slow: her late answer to the old task id is dropped.
        #expect(s.handle(result: Self.result(for: aliceTask), from: Self.alice, now: clock.now())
            == .dropped(taskID: aliceTask.taskID, reason: .unknownWorker, requeuedAs: nil))
        // After a new HELLO she is a fresh worker; the old task id is still late.
        _ = s.handle(hello: Self.hello("w0"), from: Self.alice, now: clock.now())
        #expect(s.handle(result: Self.result(for: aliceTask), from: Self.alice, now: clock.now())
            == .dropped(taskID: aliceTask.taskID, reason: .lateOrDuplicate, requeuedAs: nil))

        // Bob finishes his task and takes the re-queued one.
        #expect(s.handle(result: Self.result(for: sent[1].task), from: Self.bob, now: clock.now())
            == .accepted(taskID: 2, step: 0, stepComplete: false))
        s.handle(ready: 1, from: Self.bob, now: clock.now())
        let retry = s.dispatch(now: clock.now())
        #expect(retry.map(\.task.taskID) == [3] && retry.map(\.worker) == [Self.bob])
        #expect(s.handle(result: Self.result(for: retry[0].task), from: Self.bob, now: clock.now())
            == .accepted(taskID: 3, step: 0, stepComplete: true))
        #expect(s.isComplete(step: 0))
    }

    @Test func heartbeatsAreDueEveryIntervalAndTasksCountAsHeartbeats() throws {
        let clock = ManualClock()
        var s = Self.scheduler(Self.settings(pairsPerTask: 1), workers: [Self.alice, Self.bob], credit: 1, clock: clock)
        #expect(s.tick(now: clock.now()).heartbeatsDue.isEmpty) // the WELCOME was just sent
        clock.advance(by: 0.5)
        try s.openStep(0, pairIDs: [1])
        #expect(s.dispatch(now: clock.now()).map(\.worker) == [Self.alice])
        clock.advance(by: 0.5)
        #expect(s.tick(now: clock.now()).heartbeatsDue == [Self.bob]) // alice got a TASK 0.5 s ago
        #expect(s.tick(now: clock.now()).heartbeatsDue.isEmpty)        // marked as sent
        clock.advance(by: 0.5)
        #expect(s.tick(now: clock.now()).heartbeatsDue == [Self.alice])
    }

    @Test func lateDuplicateForeignAndUnknownResultsAreDropped() throws {
        let clock = ManualClock()
        var s = Self.scheduler(workers: [Self.alice, Self.bob], credit: 1, clock: clock)
        try s.openStep(0, pairIDs: [1, 2, 3, 4])
        let sent = s.dispatch(now: clock.now())
        let aliceTask = sent[0].task
        #expect(s.handle(result: Self.result(for: aliceTask), from: Self.bob, now: 0)
            == .dropped(taskID: 1, reason: .notAssignedToSender, requeuedAs: nil))
        #expect(s.handle(result: Self.result(for: aliceTask), from: Self.alice, now: 0) == .accepted(taskID: 1, step: 0, stepComplete: false))
        #expect(s.handle(result: Self.result(for: aliceTask), from: Self.alice, now: 0)
            == .dropped(taskID: 1, reason: .lateOrDuplicate, requeuedAs: nil))
        #expect(s.handle(result: ResultMessage(taskID: 99, policyVersion: 0, trajectories: []), from: Self.alice, now: 0)
            == .dropped(taskID: 99, reason: .unknownTask, requeuedAs: nil))
        #expect(s.statistics.droppedLateOrDuplicate == 2)
        #expect(s.statistics.droppedUnknown == 1)
        #expect(s.statistics.resultsAccepted == 1)
    }

    @Test func resultsThatDoNotFitTheTaskAreDroppedAndRequeued() throws {
        let clock = ManualClock()
        var s = Self.scheduler(workers: [Self.alice], credit: 4, clock: clock)
        try s.openStep(0, pairIDs: [1, 2, 3, 4, 5, 6, 7, 8])
        let sent = s.dispatch(now: clock.now()).map(\.task)
        #expect(sent.map(\.taskID) == [1, 2, 3, 4])

        var twice = Self.result(for: sent[0])
        twice.trajectories.append(twice.trajectories[0])
        #expect(s.handle(result: twice, from: Self.alice, now: 0) == .dropped(taskID: 1, reason: .invalidTrajectories(
            "pair 1 evaluation c0 r1 s0 received twice"), requeuedAs: 5))

        var foreign = Self.result(for: sent[1])
        foreign.trajectories[0].id.pairID = 1
        #expect(s.handle(result: foreign, from: Self.alice, now: 0) == .dropped(taskID: 2, reason: .invalidTrajectories(
            "pair 1 evaluation c0 r1 s0 names a pair outside the task"), requeuedAs: 6))

        var empty = Self.result(for: sent[2])
        empty.trajectories.removeAll { $0.id.pairID == 6 }
        #expect(s.handle(result: empty, from: Self.alice, now: 0) == .dropped(taskID: 3, reason: .invalidTrajectories(
            "no trajectories for pair 6"), requeuedAs: 7))

        #expect(s.handle(result: Self.result(for: sent[3], version: 9), from: Self.alice, now: 0)
            == .dropped(taskID: 4, reason: .versionMismatch(expected: 0, received: 9), requeuedAs: 8))
        #expect(s.statistics.droppedInvalid == 4)
        #expect(s.queuedTasks.map(\.taskID) == [8, 7, 6, 5])
        #expect(s.registry.worker(Self.alice)?.inFlight.isEmpty == true)
    }

    static func gradientResult(_ task: ScheduledTask, version: UInt64? = nil) -> GradientResultMessage {
        GradientResultMessage(taskID: task.taskID, policyVersion: version ?? task.policyVersion, logprobs: [], entropySums: [],
                              microBatches: 1, totalBytes: 8, chunkCount: 1)
    }

    /// A mini-batch's gradient tasks go ahead of queued rollouts, are sent with the round's
    /// version, stay in flight until finished, and are re-run under a new id when their worker
    /// dies or their gradient is rejected; the round completes once every shard is accepted.
    @Test func gradientTasksGoFirstAndAreRerunWhenLostOrRejected() throws {
        let clock = ManualClock(start: 1000)
        var s = Self.scheduler(Self.settings(mode: .async), workers: [Self.alice, Self.bob], credit: 1, clock: clock)
        try s.openStep(2, pairIDs: [7, 8])
        let round = GradientRoundKey(step: 1, miniBatch: 1)
        let version = WeightsVersion.intermediate(step: 1, miniBatch: 1)
        try s.openGradients(round, shards: 2, version: version)
        #expect(throws: SchedulerError.gradientsAlreadyOpen(round)) { try s.openGradients(round, shards: 2, version: version) }
        #expect(s.queuedTasks.map(\.gradient?.shard) == [0, 1, nil])
        let sent = s.dispatch(now: clock.now())
        #expect(sent.map(\.task.gradient) == [GradientShardKey(step: 1, miniBatch: 1, shard: 0), GradientShardKey(step: 1, miniBatch: 1, shard: 1)])
        #expect(sent.map(\.task.policyVersion) == [version, version])
        #expect(sent.map(\.worker) == [Self.alice, Self.bob])
        let (toAlice, toBob) = (sent[0].task, sent[1].task)

        // A RESULT cannot answer a gradient task, nor a GRADIENT_RESULT rollouts.
        #expect(s.handle(result: ResultMessage(taskID: toAlice.taskID, policyVersion: version, trajectories: []), from: Self.alice, now: clock.now())
            == .dropped(taskID: toAlice.taskID, reason: .otherKind, requeuedAs: nil))
        // A result of another version is rejected and re-run; one of another sender is dropped.
        #expect(s.handle(gradientResult: Self.gradientResult(toBob), from: Self.alice, now: clock.now())
            == .dropped(taskID: toBob.taskID, reason: .notAssignedToSender, requeuedAs: nil))
        #expect(s.handle(gradientResult: Self.gradientResult(toAlice, version: 0), from: Self.alice, now: clock.now())
            == .dropped(taskID: toAlice.taskID, reason: .versionMismatch(expected: version, received: 0), requeuedAs: 4))
        #expect(s.registry.worker(Self.alice)?.rejectedResults == 1)
        // Bob's result is received (its chunks would follow); he dies before the last one.
        #expect(s.handle(gradientResult: Self.gradientResult(toBob), from: Self.bob, now: clock.now()) == .receive(toBob.gradient!))
        #expect(s.isInFlight(toBob.taskID, at: Self.bob))
        clock.advance(by: 6)
        s.heard(from: Self.alice, now: clock.now())
        #expect(s.tick(now: clock.now()).expired.map(\.requeued) == [[5]])
        #expect(!s.isInFlight(toBob.taskID, at: Self.bob))
        #expect(s.queuedTasks.map(\.gradient?.shard) == [1, 0, nil])

        // Alice computes both again; a rejected gradient is re-run, never counted as done.
        s.handle(ready: 1, from: Self.alice, now: clock.now())
        let again = s.dispatch(now: clock.now())
        #expect(again.map(\.task.taskID) == [5])
        #expect(s.handle(gradientResult: Self.gradientResult(again[0].task), from: Self.alice, now: clock.now()) == .receive(again[0].task.gradient!))
        #expect(s.finishGradient(taskID: 5, from: Self.alice, rejection: nil, now: clock.now())
            == .accepted(GradientShardKey(step: 1, miniBatch: 1, shard: 1), roundComplete: false))
        #expect(s.finishGradient(taskID: 5, from: Self.alice, rejection: nil, now: clock.now())
            == .dropped(taskID: 5, reason: .lateOrDuplicate, requeuedAs: nil))
        s.handle(ready: 1, from: Self.alice, now: clock.now())
        let last = s.dispatch(now: clock.now())
        #expect(last.map(\.task.taskID) == [4])
        #expect(s.finishGradient(taskID: 4, from: Self.alice, rejection: .invalidGradient("parameter 3 of the gradient is nan"), now: clock.now())
            == .dropped(taskID: 4, reason: .invalidGradient("parameter 3 of the gradient is nan"), requeuedAs: 6))
        s.handle(ready: 1, from: Self.alice, now: clock.now())
        #expect(s.dispatch(now: clock.now()).map(\.task.taskID) == [6])
        #expect(s.finishGradient(taskID: 6, from: Self.alice, rejection: nil, now: clock.now())
            == .accepted(GradientShardKey(step: 1, miniBatch: 1, shard: 0), roundComplete: true))
        s.closeGradients(round)
        // The rollouts of step 2 waited behind the gradients.
        #expect(s.queuedTasks.map(\.pairIDs) == [[7, 8]])
    }

    @Test func settingsFromConfig() throws {
        var config = Config()
        config.cluster.mode = .async
        config.cluster.maxStaleness = 3
        config.cluster.pairsPerTask = 2
        config.rollout.ne = 2
        let settings = SchedulerSettings(config: config, chat: ByteChat())
        #expect(settings.mode == .async && settings.maxStaleness == 3 && settings.pairsPerTask == 2)
        #expect(settings.configHash == config.hash)
        #expect(settings.resultCheck?.mode == .cerm && settings.resultCheck?.rollout.ne == 2)
    }
}

@Suite struct WorkerRegistryTests {
    /// At most `maxJoining` workers are joining (HELLO said, nothing since): a HELLO past it
    /// forgets the oldest joining one. A worker heard from after its HELLO is no longer joining
    /// and is never forgotten for a newer HELLO; a HELLO repeated by a joining peer is not a
    /// new one.
    @Test func joiningWorkersAreBoundedOldestForgottenFirst() {
        var registry = WorkerRegistry(heartbeatInterval: 1, heartbeatTimeout: 3, maxJoining: 3)
        let peers = (0..<6).map { RoutingID([UInt8($0)]) }
        func hello(_ peer: Int) -> WorkerRegistry.Registration {
            registry.register(peers[peer], hello: HelloMessage(name: "p\(peer)", capacity: 1, configHash: 0, kind: .cpu), now: 0)
        }
        #expect(hello(0).forgotten == nil)
        let heard = registry.heard(from: peers[0], at: 0.1)
        #expect(heard)
        for peer in 1...3 { #expect(hello(peer) == WorkerRegistry.Registration(previous: nil, forgotten: nil)) }
        #expect(registry.joiningCount == 3)
        #expect(hello(4).forgotten?.name == "p1")
        #expect(hello(5).forgotten?.name == "p2")
        #expect(registry.workers.map(\.name) == ["p0", "p3", "p4", "p5"])
        let repeated = hello(3)
        #expect(repeated.previous?.name == "p3" && repeated.forgotten == nil)
        #expect(registry.joiningCount == 3 && registry.peakJoining == 3)
        #expect(registry.worker(peers[0])?.joining == false)
        #expect(registry.worker(peers[4])?.joining == true)
        #expect(registry.worker(peers[3])?.rejoined == true && registry.worker(peers[4])?.rejoined == false)
    }

    /// A burst of 3 refilled at 2 a second: the bucket empties, refills by elapsed time only
    /// (a clock going back refills nothing), and never holds more than the burst.
    @Test func theHelloBudgetIsATokenBucket() {
        var budget = HelloBudget(perSecond: 2, burst: 3)
        // 0.8 of a HELLO refilled at 10.4, 1.0 at 10.5; 10.2 is in the past; by 100 the bucket is full.
        let times = [10, 10, 10, 10, 10.4, 10.5, 10.5, 10.2, 100, 100, 100, 100]
        let admitted = times.map { budget.admit(now: $0) }
        #expect(admitted == [true, true, true, false, false, true, false, false, true, true, true, false])
        var unlimited = HelloBudget.unlimited
        let all = (0..<10_000).map { _ in unlimited.admit(now: 0) }
        #expect(!all.contains(false))
    }

    /// HELLOs past the budget are left unanswered and counted, refused or not; answered ones
    /// register (or are refused) as before.
    @Test func hellosPastTheBudgetAreLeftUnanswered() {
        var scheduler = TaskScheduler(settings: SchedulerSettings(configHash: 7, helloBudget: HelloBudget(perSecond: 1, burst: 2)))
        func hello(_ name: String, hash: UInt64 = 7, at now: Double) -> HelloOutcome {
            scheduler.handle(hello: HelloMessage(name: name, capacity: 1, configHash: hash, kind: .cpu), from: RoutingID(Array(name.utf8)), now: now)
        }
        guard case .welcome = hello("a", at: 0), case .refuse = hello("b", hash: 8, at: 0) else {
            Issue.record("the first two HELLOs are answered"); return
        }
        #expect(hello("c", at: 0.5) == .unanswered)
        #expect(hello("d", hash: 8, at: 0.9) == .unanswered)
        guard case .welcome = hello("e", at: 1.0) else { Issue.record("a HELLO a second later is answered"); return }
        #expect(scheduler.statistics.hellosUnanswered == 2 && scheduler.statistics.hellosRefused == 1)
        #expect(scheduler.registry.workers.map(\.name) == ["a", "e"])
    }

    @Test func expiryHeartbeatsAndCreditFollowTheClock() {
        let clock = ManualClock(start: 10)
        var registry = WorkerRegistry(heartbeatInterval: 1, heartbeatTimeout: 3)
        let a = RoutingID([1]), b = RoutingID([2])
        registry.register(a, hello: HelloMessage(name: "a", capacity: 3, configHash: 0, kind: .cpu), now: clock.now())
        clock.advance(by: 1)
        registry.register(b, hello: HelloMessage(name: "b", capacity: 1, configHash: 0, kind: .gpu), now: clock.now())
        #expect(registry.workers.map(\.name) == ["a", "b"])
        #expect(registry.grantCredit(2, to: a) == 2)
        #expect(registry.grantCredit(9, to: a) == 3)
        #expect(registry.grantCredit(1, to: RoutingID([3])) == nil)
        #expect(registry.nextWorkerWithCredit() == a)
        #expect(registry.heartbeatsDue(now: clock.now()) == [a])
        #expect(registry.heartbeatsDue(now: clock.now()) == [])
        clock.advance(by: 2.5) // a silent 3.5 s, b 2.5 s
        #expect(registry.heard(from: RoutingID([3]), at: clock.now()) == false)
        let dead = registry.expire(now: clock.now())
        #expect(dead.map(\.name) == ["a"])
        #expect(registry.workers.map(\.name) == ["b"])
        #expect(registry.heard(from: b, at: clock.now()) == true)
        clock.advance(by: 3)
        #expect(registry.expire(now: clock.now()).isEmpty)
        clock.advance(by: 0.01)
        #expect(registry.expire(now: clock.now()).map(\.kind) == [.gpu])
        #expect(registry.count == 0)
    }
}

@Suite struct SchedulerWireValuesTests {
    @Test func millisecondsNeverTrap() {
        #expect(TaskScheduler.milliseconds(1.5) == 1500)
        #expect(TaskScheduler.milliseconds(0) == 1)
        #expect(TaskScheduler.milliseconds(.infinity) == .max)
        #expect(TaskScheduler.milliseconds(.nan) == 1)
        #expect(TaskScheduler.milliseconds(1e12) == .max)
    }

}

extension TaskSchedulerTests {
    // MARK: Results against the rollout plan

    /// nc = 1, ne = 1, compact format, a small context.
    static func planConfig() -> Config {
        var config = Config()
        config.rollout.format = .compact
        config.rollout.nc = 1
        config.rollout.ne = 1
        config.model.vocabSize = 264
        config.model.maxSeqLen = 200
        config.cluster.pairsPerTask = 1
        return config
    }

    static let planPair = TaskPair(pairID: 1, query: "add 2 3", responses: ["5", "6"])

    /// What an honest worker returns for `planPair` at `step`: criteria that parse (`criteria`
    /// overrides the output) and, if they parse, both evaluations.
    static func honestTrajectories(config: Config, step: UInt64, criteria: [TokenID]? = nil) -> [Trajectory] {
        let format = CompactFormat()
        let plan = RolloutPlan(config: config.rollout, chat: ByteChat(), runSeed: config.run.seed, step: step)
        let output = criteria ?? format.outputTokens(text: format.criteriaText(analysis: "a", items: ["c1"]))
        func trajectory(_ request: RolloutRequest, _ tokens: [TokenID]) -> Trajectory {
            Trajectory(id: request.id, promptTokenCount: UInt32(request.promptTokens.count), tokens: tokens.map { UInt32($0) },
                       behaviourLogprobs: tokens.map { _ in -0.5 }, referenceLogprobs: tokens.map { _ in -0.6 }, finishReason: .eos, text: "")
        }
        let evaluation = format.outputTokens(text: format.evaluationText(items: [ScoredItem(analysis: "ok", score: 3)], otherPoint: nil, overall: 6))
        return plan.criteriaRequests(for: planPair).map { trajectory($0, output) }
            + plan.evaluationRequests(for: planPair, criteriaOutputs: [output]).requests.map { trajectory($0, evaluation) }
    }

    /// A protocol-valid RESULT inconsistent with the rollout plan is dropped at acceptance with
    /// the reason (so the learner never sees it), its task re-queued, and the worker's rejected
    /// results counted; the honest result is accepted.
    @Test func resultsAreCheckedAgainstTheRolloutPlan() throws {
        let config = Self.planConfig()
        var settings = SchedulerSettings(config: config, chat: ByteChat())
        #expect(settings.resultCheck?.rollout == config.rollout && settings.resultCheck?.maxSeqLen == config.model.maxSeqLen)
        settings.configHash = 0xC0FFEE
        let clock = ManualClock()
        var s = Self.scheduler(settings, credit: 1, clock: clock)
        try s.openStep(1, pairs: [Self.planPair])
        let honest = Self.honestTrajectories(config: config, step: 1)
        #expect(honest.count == 3)
        let criteriaPrompt = Int(honest[0].promptTokenCount)

        /// Sends `trajectories` for the task in flight; returns the outcome and gives credit again.
        func answer(_ trajectories: [Trajectory]) -> ResultOutcome {
            let task = s.dispatch(now: 0)[0].task
            defer { s.handle(ready: 1, from: Self.alice, now: 0) }
            return s.handle(result: ResultMessage(taskID: task.taskID, policyVersion: task.policyVersion, trajectories: trajectories),
                            from: Self.alice, now: 0)
        }
        func dropped(_ task: UInt64, _ reason: String) -> ResultOutcome {
            .dropped(taskID: task, reason: .invalidTrajectories(reason), requeuedAs: task + 1)
        }

        var wrongPrompt = honest
        wrongPrompt[0].promptTokenCount += 2
        #expect(answer(wrongPrompt) == dropped(1, "pair 1 criteria c0 r0 s0: generated after a \(criteriaPrompt + 2)-token prompt but the rollout plan rebuilds \(criteriaPrompt) tokens"))
        #expect(s.registry.worker(Self.alice)?.rejectedResults == 1)

        // Criteria that do not parse have no evaluations; sending them anyway is refused.
        var unparsed = Self.honestTrajectories(config: config, step: 1, criteria: CompactFormat().outputTokens(text: "no criteria"))
        #expect(unparsed.count == 1)
        unparsed += honest.dropFirst().map { t -> Trajectory in
            var t = t
            t.promptTokenCount = UInt32(CompactFormat().evaluationPrompt(criteriaPrompt: RolloutPlan(config: config.rollout, chat: ByteChat(), runSeed: config.run.seed, step: 1).criteriaRequests(for: Self.planPair)[0].promptTokens,
                                                                         criteriaOutput: unparsed[0].tokens.map { TokenID($0) }, response: Self.planPair.responses[t.id.responseIndex]).count)
            return t
        }
        #expect(answer(unparsed) == dropped(2, "pair 1 evaluation c0 r0 s0 is not in the rollout plan: criteria set c0 does not parse, so it has no evaluations"))

        // An evaluation under a criteria set beyond rollout.nc.
        var beyond = honest
        beyond[1].id.criteriaIndex = 1
        #expect(answer(beyond) == dropped(3, "pair 1 evaluation c1 r0 s0 is not in the rollout plan"))

        // Valid criteria, evaluations left out: the plan asks for them.
        #expect(answer(Array(honest.prefix(1))) == dropped(4, "pair 1 evaluation c0 r0 s0 is missing (the rollout plan asks for 3 trajectories of pair 1, the result has 1)"))

        var outOfVocabulary = honest
        outOfVocabulary[2].tokens[1] = 300
        #expect(answer(outOfVocabulary) == dropped(5, "pair 1 evaluation c0 r1 s0: generated token 1 is 300, outside the vocabulary of 264"))

        var counts = honest
        counts[1].referenceLogprobs.removeLast()
        let n = counts[1].tokens.count
        #expect(answer(counts) == dropped(6, "pair 1 evaluation c0 r0 s0: \(n) generated tokens but \(n) behaviour and \(n - 1) reference log-probs"))

        var long = honest
        long[1].tokens += [UInt32](repeating: 65, count: 200)
        long[1].behaviourLogprobs += [Float](repeating: -1, count: 200)
        long[1].referenceLogprobs += [Float](repeating: -1, count: 200)
        let evaluationPrompt = Int(honest[1].promptTokenCount)
        #expect(answer(long) == dropped(7, "pair 1 evaluation c0 r0 s0: prompt + output is \(evaluationPrompt + n + 200) tokens, model.max_seq_len is 200"))

        #expect(s.registry.worker(Self.alice)?.rejectedResults == 7)
        #expect(s.statistics.droppedInvalid == 7)
        #expect(answer(honest) == .accepted(taskID: 8, step: 1, stepComplete: true))
        #expect(s.takeCompletedStep(1)?.trajectories == honest.sorted { $0.id < $1.id })

        // An empty output after a prompt that does not fit is what an honest worker returns.
        try s.openStep(2, pairs: [TaskPair(pairID: 4, query: String(repeating: "q", count: 250), responses: ["a", "b"])])
        let plan = RolloutPlan(config: config.rollout, chat: ByteChat(), runSeed: config.run.seed, step: 2)
        let request = plan.criteriaRequests(for: TaskPair(pairID: 4, query: String(repeating: "q", count: 250), responses: ["a", "b"]))[0]
        #expect(request.promptTokens.count > 201)
        let empty = Trajectory(id: request.id, promptTokenCount: UInt32(request.promptTokens.count), tokens: [], behaviourLogprobs: [],
                               referenceLogprobs: [], finishReason: .context, text: "")
        #expect(answer([empty]) == .accepted(taskID: 9, step: 2, stepComplete: true))
    }

    /// A RESULT that fails decoding re-queues its task when its id is readable and in flight at
    /// the sender; a late id re-queues nothing; no readable id re-queues everything the sender
    /// holds. Unregistered senders change nothing.
    @Test func malformedResultsRequeueTheSendersTasks() throws {
        let clock = ManualClock()
        var s = Self.scheduler(Self.settings(pairsPerTask: 1), credit: 3, clock: clock)
        try s.openStep(0, pairIDs: [1, 2, 3, 4])
        #expect(s.dispatch(now: 0).map(\.task.taskID) == [1, 2, 3])
        #expect(s.handle(malformedResultFrom: Self.alice, taskID: 2, now: 0) == [5])
        #expect(s.registry.worker(Self.alice)?.inFlight == [1, 3])
        #expect(s.handle(malformedResultFrom: Self.alice, taskID: 2, now: 0) == [])
        #expect(s.handle(malformedResultFrom: Self.bob, taskID: nil, now: 0) == [])
        #expect(s.handle(malformedResultFrom: Self.alice, taskID: nil, now: 0) == [6, 7])
        #expect(s.registry.worker(Self.alice)?.inFlight == [])
        #expect(s.registry.worker(Self.alice)?.rejectedResults == 3)
        #expect(s.queuedTasks.map(\.pairIDs) == [[1], [3], [2], [4]])
        #expect(s.statistics.droppedInvalid == 3)
    }

    /// What the channel can still read of a RESULT that failed decoding: its type and task id.
    @Test func malformedMessagesKeepTypeAndTaskID() throws {
        let codec = MessageCodec()
        let bad = Trajectory(id: .criteria(pair: 1, 0), promptTokenCount: 5, tokens: [1], behaviourLogprobs: [.nan],
                             referenceLogprobs: [-1], finishReason: .eos, text: "")
        let frames = try codec.encode(.result(ResultMessage(taskID: 42, policyVersion: 0, trajectories: [bad])))
        var error: ProtocolError?
        do { _ = try codec.decode(frames) } catch let e { error = e }
        let decodeError = try #require(error)
        let peer = RoutingID([7])
        // (The error holds a NaN, so the messages are compared field by field.)
        let result = MalformedMessage(peer: peer, frames: frames, error: decodeError)
        #expect(result.peer == peer && result.type == .result && result.taskID == 42)
        #expect(result.error.description == "RESULT.trajectories[0].behaviour_logprobs[0]: NaN value")
        #expect(MalformedMessage(peer: peer, frames: [frames[0], [1, 2]], error: decodeError).taskID == nil)
        #expect(MalformedMessage(peer: peer, frames: [[1, 2, 3]], error: decodeError).type == nil)
        let heartbeat = try codec.encode(.heartbeat(policyVersion: 3))
        let other = MalformedMessage(peer: peer, frames: heartbeat, error: decodeError)
        #expect(other.type == .heartbeat && other.taskID == nil)
    }
}

extension TaskSchedulerTests {
    // MARK: Task deadline

    /// A worker that keeps heartbeating but never answers loses its task after
    /// `task_timeout` (strictly longer): it is re-queued under a new id, another worker runs it,
    /// and the first worker's late result is dropped as late without counting against it.
    @Test func aTaskHeldPastTheDeadlineIsRequeuedAndTheLateResultDropped() throws {
        let clock = ManualClock()
        var settings = Self.settings(pairsPerTask: 1)
        settings.taskTimeout = 30
        var s = Self.scheduler(settings, workers: [Self.alice, Self.bob], credit: 1, clock: clock)
        try s.openStep(0, pairIDs: [10, 11])
        let sent = s.dispatch(now: clock.now())
        #expect(sent.map(\.worker) == [Self.alice, Self.bob])
        #expect(sent.map(\.task.taskID) == [1, 2])
        clock.advance(by: 1)
        #expect(s.handle(result: Self.result(for: sent[1].task), from: Self.bob, now: clock.now())
                == .accepted(taskID: 2, step: 0, stepComplete: false))
        // Alice heartbeats (never expires) but never answers.
        for _ in 0..<29 {
            clock.advance(by: 1)
            s.heard(from: Self.alice, now: clock.now())
            s.heard(from: Self.bob, now: clock.now())
            let tick = s.tick(now: clock.now())
            #expect(tick.timedOut.isEmpty && tick.expired.isEmpty, "t = \(clock.now())")
        }
        #expect(clock.now() == 30)
        #expect(s.inFlightTaskIDs == [1])
        clock.advance(by: 0.5)
        let tick = s.tick(now: clock.now())
        #expect(tick.expired.isEmpty)
        #expect(tick.timedOut == [TimedOutTask(peer: Self.alice, worker: "w0", taskID: 1, step: 0, heldSeconds: 30.5, requeuedAs: 3)])
        #expect(tick.timedOut.first?.warning == "task 1 of step 0 held by worker w0 for 30.50 s without a RESULT (cluster.task_timeout): re-queued as task 3")
        #expect(tick.timedOut.first?.requeuedFrom == "w0 (task 1 timed out)")
        #expect(s.inFlightTaskIDs == [])
        #expect(s.queuedTasks.map(\.taskID) == [3])
        #expect(s.queuedTasks.map(\.pairIDs) == [[10]])
        #expect(s.statistics.tasksRequeued == 1)
        #expect(s.registry.worker(Self.alice)?.inFlight == [])
        #expect(s.tick(now: clock.now()).timedOut.isEmpty)

        s.handle(ready: 1, from: Self.bob, now: clock.now())
        let again = s.dispatch(now: clock.now())
        #expect(again.map(\.worker) == [Self.bob])
        #expect(again.map(\.task.taskID) == [3])
        #expect(s.handle(result: Self.result(for: sent[0].task), from: Self.alice, now: clock.now())
                == .dropped(taskID: 1, reason: .lateOrDuplicate, requeuedAs: nil))
        #expect(s.registry.worker(Self.alice)?.rejectedResults == 0)
        #expect(s.handle(result: Self.result(for: again[0].task), from: Self.bob, now: clock.now())
                == .accepted(taskID: 3, step: 0, stepComplete: true))
        #expect(s.takeCompletedStep(0)?.trajectories.count == 6)
    }

    /// `task_timeout = 0` turns the deadline off: a task may be held for ever by a live worker.
    @Test func aZeroTaskTimeoutNeverRequeues() throws {
        #expect(SchedulerSettings(config: Config(), chat: ByteChat()).taskTimeout == 600)
        let clock = ManualClock()
        var settings = Self.settings(pairsPerTask: 1)
        settings.taskTimeout = 0
        var s = Self.scheduler(settings, credit: 1, clock: clock)
        try s.openStep(0, pairIDs: [10])
        #expect(s.dispatch(now: clock.now()).map(\.task.taskID) == [1])
        for _ in 0..<100 {
            clock.advance(by: 4)
            s.heard(from: Self.alice, now: clock.now())
            #expect(s.tick(now: clock.now()).timedOut.isEmpty)
        }
        #expect(s.inFlightTaskIDs == [1])
        #expect(s.statistics.tasksRequeued == 0)
    }
}

extension TaskSchedulerTests {
    // MARK: Rejection limit

    /// Rejected results (version mismatch, malformed, invalid trajectories) count per worker; at
    /// the third the worker is refused: forgotten (its messages then come from an unknown peer),
    /// its other task re-queued. Below the limit, and for other workers, nothing happens. A
    /// new HELLO admits it again with a clean count.
    @Test func aWorkerIsRefusedAtItsThirdRejectedResult() throws {
        let clock = ManualClock()
        var s = Self.scheduler(Self.settings(pairsPerTask: 1), workers: [Self.alice, Self.bob], credit: 2, clock: clock)
        try s.openStep(0, pairIDs: [10, 11, 12, 13])
        let sent = s.dispatch(now: clock.now())
        #expect(sent.map(\.task.taskID) == [1, 2, 3, 4])
        #expect(sent.map(\.worker) == [Self.alice, Self.bob, Self.alice, Self.bob])

        #expect(s.handle(result: Self.result(for: sent[0].task, version: 9), from: Self.alice, now: clock.now())
                == .dropped(taskID: 1, reason: .versionMismatch(expected: 0, received: 9), requeuedAs: 5))
        #expect(s.refuseIfOverRejectionLimit(Self.alice) == nil)
        #expect(s.handle(malformedResultFrom: Self.alice, taskID: 3, now: clock.now()) == [6])
        #expect(s.refuseIfOverRejectionLimit(Self.alice) == nil)
        #expect(s.registry.worker(Self.alice)?.rejectedResults == 2)
        #expect(s.queuedTasks.map(\.taskID) == [6, 5])

        s.handle(ready: 2, from: Self.alice, now: clock.now())
        let again = s.dispatch(now: clock.now())
        #expect(again.map(\.task.taskID) == [6, 5])
        #expect(again.map(\.worker) == [Self.alice, Self.alice])
        let empty = ResultMessage(taskID: 6, policyVersion: 0, trajectories: [])
        #expect(s.handle(result: empty, from: Self.alice, now: clock.now())
                == .dropped(taskID: 6, reason: .invalidTrajectories("no trajectories for pair 12"), requeuedAs: 7))
        let refused = s.refuseIfOverRejectionLimit(Self.alice)
        #expect(refused == RefusedWorker(peer: Self.alice, name: "w0", rejectedResults: 3, requeued: [8]))
        #expect(refused?.error == "refused worker w0 at peer a1 after 3 rejected results: forgot its routing id, re-queued 1 task(s) as 8")
        #expect(refused?.requeuedFrom == "w0 (refused)")
        #expect(refused?.reason == "3 results of worker w0 were rejected (limit 3): refused; check its engine, build and configuration before restarting it")
        #expect(s.registry.contains(Self.alice) == false)
        #expect(s.queuedTasks.map(\.taskID) == [8, 7])
        #expect(s.queuedTasks.map(\.pairIDs) == [[10], [12]])
        #expect(s.inFlightTaskIDs == [2, 4])
        #expect(s.refuseIfOverRejectionLimit(Self.alice) == nil)
        #expect(s.refuseIfOverRejectionLimit(Self.bob) == nil)

        // Forgotten: its late answers are from an unknown peer.
        #expect(s.handle(result: Self.result(for: again[1].task), from: Self.alice, now: clock.now())
                == .dropped(taskID: 5, reason: .unknownWorker, requeuedAs: nil))
        #expect(s.heard(from: Self.alice, now: clock.now()) == false)
        #expect(s.handle(ready: 1, from: Self.alice, now: clock.now()) == false)
        // A new HELLO starts it over.
        guard case .welcome(_, requeued: [], forgotten: nil) = s.handle(hello: Self.hello("w0"), from: Self.alice, now: clock.now()) else {
            Issue.record("refused worker could not say HELLO again"); return
        }
        #expect(s.registry.worker(Self.alice)?.rejectedResults == 0)
    }
}
