@testable import Configuration
@testable import Coordinator
import Method
import EngineConfiguration
import Foundation
import Logging
@testable import Runtime
@testable import Shared
import Synchronization
import TestSupport
import Testing
@testable import WireProtocol
import Worker

/// Coordinator and workers as threads of this process over TCP loopback, with fake engines.
/// Heartbeats are short (50 ms; 300 ms timeout where expiry matters) so a killed worker is
/// noticed quickly; assertions
/// never depend on timing, only on what the runs produce.
@Suite(.serialized) struct RuntimeTests {
    static let configHash: UInt64 = 0xC0FFEE
    static let rollout = RolloutParameters(nc: 2, ne: 1, criteriaMaxTokens: 8, evaluationMaxTokens: 8, temperature: 1, topP: 1)
    static let pairCount = 7
    static let pairsPerBatch = 5

    static func quiet(_ label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = .warning
        return logger
    }

    /// Heartbeat timeout of tests that do not exercise expiry: long enough that a loaded machine
    /// does not starve a healthy peer into a spurious death.
    static let relaxedTimeout = 1.0

    static func coordinatorSettings(steps: Int, saveEvery: Int = 100, chunkBytes: Int = 1 << 16, pairsPerTask: Int = 1,
                                    heartbeatTimeout: Double = relaxedTimeout, helloBudget: HelloBudget = HelloBudget()) -> CoordinatorSettings {
        CoordinatorSettings(
            endpoint: "tcp://127.0.0.1:*",
            scheduler: SchedulerSettings(mode: .sync, pairsPerTask: pairsPerTask, heartbeatInterval: 0.05, heartbeatTimeout: heartbeatTimeout,
                                         configHash: configHash, maxMessageBytes: 1 << 20, helloBudget: helloBudget),
            limits: ProtocolLimits(maxMessageBytes: 1 << 20, vocabularySize: UInt32(FakeModel.vocabulary)),
            rollout: rollout, runSeed: 99, steps: steps, pairsPerBatch: pairsPerBatch, saveEvery: saveEvery,
            weightChunkBytes: chunkBytes)
    }

    static func workerSettings(_ endpoint: String, name: String, configHash: UInt64 = configHash) -> WorkerSettings {
        WorkerSettings(endpoint: endpoint, name: name, configHash: configHash,
                       limits: ProtocolLimits(maxMessageBytes: 1 << 20, vocabularySize: UInt32(FakeModel.vocabulary)),
                       heartbeatInterval: 0.05, heartbeatTimeout: relaxedTimeout)
    }

    /// The weights a run must end with, computed without any network: every pair of every step
    /// sampled with the version the learner had when the step opened.
    static func expectedWeights(steps: Int, learnerSize: Int = 48) throws -> [UInt8] {
        let learner = FakeLearner(size: learnerSize)
        var pairs = FakePairs(count: pairCount)
        for step in 1...steps {
            let batch = try pairs.nextBatch(count: pairsPerBatch)
            let task = TaskMessage(taskID: 1, step: UInt64(step), policyVersion: learner.policyVersion, runSeed: 99, parameters: rollout, pairs: batch)
            let trajectories = FakeModel.trajectories(task: task, weights: try learner.currentWeights(), reference: learner.reference)
            let rollouts = StepRollouts.unplanned(step: UInt64(step), trajectories: trajectories,
                                                  versionByPair: Dictionary(uniqueKeysWithValues: batch.map { ($0.pairID, learner.policyVersion) }))
            _ = try learner.update(step: step, pairs: batch, rollouts: rollouts)
        }
        return learner.weights
    }

    /// A run directory's train.log, and a coordinator logger whose lines go into it too, as
    /// `cerm coordinator` logs (detach the sink when done).
    static func trainLog(in directory: String) throws -> (sink: LogSink, metrics: MetricsLogger, logger: Logger) {
        let sink = LogSink()
        let metrics = try MetricsLogger(runDirectory: directory, sink: sink)
        return (sink, metrics, Logger(label: "cerm.coordinator") { CermLogHandler(label: $0, sink: sink) })
    }

    /// A coordinator on its own thread; returns it, its run and the bound endpoint.
    /// A DEALER connected to `endpoint` and the codec to speak through it: a worker driven by
    /// the test one message at a time.
    static func rawWorkerSocket(_ endpoint: String) throws -> (ZMQSocket, MessageCodec) {
        let codec = MessageCodec(limits: ProtocolLimits(maxMessageBytes: 1 << 20, vocabularySize: UInt32(FakeModel.vocabulary)))
        let socket = try ZMQSocket(context: try ZMQContext(), type: .dealer)
        try socket.connect(endpoint)
        return (socket, codec)
    }

    static func startCoordinator(_ service: CoordinatorService) throws -> (Background<CoordinatorReport>, String) {
        let run = Background("coordinator") { try service.run() }
        guard let endpoint = service.waitForEndpoint(timeout: 10) else {
            _ = run.wait(timeout: 1)
            throw CermError.invalid("coordinator did not bind")
        }
        return (run, endpoint)
    }

    static func startWorker(_ endpoint: String, name: String, executor: FakeExecutor, configHash: UInt64 = configHash,
                            stop: StopSignal = StopSignal(), crash: StopSignal? = nil) -> Background<WorkerOutcome> {
        let client = WorkerClient(settings: workerSettings(endpoint, name: name, configHash: configHash), executor: executor,
                                  stop: stop, crash: crash, logger: quiet("worker.\(name)"))
        return Background("worker-\(name)") { try client.run() }
    }

    // MARK: Tests

    @Test func twoWorkersRunThreeStepsAndEveryVersionArrivesIntact() throws {
        let learner = FakeLearner()
        let service = CoordinatorService(settings: Self.coordinatorSettings(steps: 3), learner: learner, pairs: FakePairs(count: Self.pairCount),
                                         logger: Self.quiet("coordinator"))
        let (coordinator, endpoint) = try Self.startCoordinator(service)
        let executors = [FakeExecutor(), FakeExecutor()]
        let workers = executors.enumerated().map { Self.startWorker(endpoint, name: "w\($0.offset)", executor: $0.element) }

        let report = try coordinator.value()
        #expect(report.outcome == .finished(steps: 3))
        #expect(report.policyVersion == 3)
        #expect(report.statistics.resultsAccepted == 15)
        #expect(learner.weights == (try Self.expectedWeights(steps: 3)))
        for worker in workers {
            #expect(try worker.value() == .goodbye(reason: "run finished after 3 steps"))
        }
        #expect(executors.map(\.runs).reduce(0, +) == 15)
        let published = learner.publishedChecksums
        for executor in executors where executor.runs > 0 {
            #expect(executor.references == 1)
            for (version, checksum) in executor.prepared { #expect(published[version] == checksum, "version \(version)") }
        }
    }

    /// Sync mode keeps only the current policy version: a worker half-way through fetching
    /// version 0 when version 1 is published is told WEIGHTS_UNAVAILABLE (its task of version 0
    /// could only be stale), and gets version 1 whole.
    @Test func syncModeServesOnlyTheCurrentPolicyVersion() throws {
        let learner = FakeLearner()
        let service = CoordinatorService(settings: Self.coordinatorSettings(steps: 2, chunkBytes: 16), learner: learner,
                                         pairs: FakePairs(count: Self.pairCount), logger: Self.quiet("coordinator"))
        let (coordinator, endpoint) = try Self.startCoordinator(service)

        // The fetching worker: a raw socket that joins and fetches, but never asks for a task.
        let (socket, codec) = try Self.rawWorkerSocket(endpoint)
        defer { socket.close() }
        func send(_ message: Message) throws { try socket.send(try codec.encode(message)) }
        /// The next message from the coordinator that is not a HEARTBEAT (each one is answered,
        /// to stay alive), or the first HEARTBEAT naming `policyVersion` when given.
        func receive(heartbeatOf policyVersion: UInt64? = nil) throws -> Message {
            for _ in 0..<1000 {
                guard let frames = try socket.receive(timeoutMs: 10) else { continue }
                let message = try codec.decode(frames)
                if case let .heartbeat(version) = message {
                    try send(.heartbeat(policyVersion: 0))
                    if version != policyVersion { continue }
                }
                return message
            }
            throw CermError.invalid("fetching worker: nothing from the coordinator for 10 s")
        }
        try send(.hello(HelloMessage(name: "fetcher", capacity: 1, configHash: Self.configHash, kind: .cpu)))
        guard case .welcome = try receive() else { Issue.record("fetcher: expected WELCOME"); return }
        // The learner thread publishes version 0 while the socket thread already answers HELLOs:
        // ask again until it is there.
        var reply = Message.weightsUnavailable(version: 0, latestVersion: 0)
        for _ in 0..<200 {
            try send(.weightsRequest(version: 0, chunkIndex: 0))
            reply = try receive()
            guard case .weightsUnavailable = reply else { break }
            Thread.sleep(forTimeInterval: 0.01)
        }
        guard case let .weightsChunk(first) = reply else { Issue.record("fetcher: expected chunk 0 of version 0, got \(reply)"); return }
        #expect(first.chunkCount > 1)

        // A worker runs step 1, then holds step 2 until the fetcher is done: version 1 is current meanwhile.
        let fetched = StopSignal()
        let executor = FakeExecutor { task in
            while task.step == 2 && !fetched.isRequested { Thread.sleep(forTimeInterval: 0.005) }
        }
        let worker = Self.startWorker(endpoint, name: "w0", executor: executor)
        _ = try receive(heartbeatOf: 1)
        try send(.weightsRequest(version: 0, chunkIndex: 1))
        #expect(try receive() == .weightsUnavailable(version: 0, latestVersion: 1))
        var bytes: [UInt8] = []
        var index: UInt32 = 0
        while true {
            try send(.weightsRequest(version: 1, chunkIndex: index))
            guard case let .weightsChunk(chunk) = try receive() else { Issue.record("fetcher: expected chunk \(index) of version 1"); break }
            bytes += chunk.data
            index += 1
            if index == chunk.chunkCount { break }
        }
        #expect(learner.publishedChecksums[1] == Checksum.fnv1a64(bytes))
        fetched.request()

        #expect(try coordinator.value().outcome == .finished(steps: 2))
        #expect(try worker.value() == .goodbye(reason: "run finished after 2 steps"))
        #expect(learner.weights == (try Self.expectedWeights(steps: 2)))
    }

    @Test(arguments: [1, 3]) func finalWeightsDoNotDependOnTheNumberOfWorkers(workerCount: Int) throws {
        let learner = FakeLearner()
        let service = CoordinatorService(settings: Self.coordinatorSettings(steps: 3, pairsPerTask: 2), learner: learner,
                                         pairs: FakePairs(count: Self.pairCount), logger: Self.quiet("coordinator"))
        let (coordinator, endpoint) = try Self.startCoordinator(service)
        let workers = (0..<workerCount).map { Self.startWorker(endpoint, name: "w\($0)", executor: FakeExecutor()) }
        #expect(try coordinator.value().outcome == .finished(steps: 3))
        #expect(learner.weights == (try Self.expectedWeights(steps: 3)))
        for worker in workers { #expect(try worker.value().exitCode == 0) }
    }

    @Test func aWorkerKilledMidStepHasItsTasksRerunAndTheResultIsUnchanged() throws {
        let learner = FakeLearner()
        let service = CoordinatorService(settings: Self.coordinatorSettings(steps: 3, heartbeatTimeout: 0.3), learner: learner,
                                         pairs: FakePairs(count: Self.pairCount), logger: Self.quiet("coordinator"))
        let (coordinator, endpoint) = try Self.startCoordinator(service)
        let crash = StopSignal()
        // The victim dies while holding a task of step 2: it never answers it.
        let victim = FakeExecutor(delay: 0.2) { task in if task.step == 2 { crash.request() } }
        let survivor = FakeExecutor(delay: 0.01)
        let victimRun = Self.startWorker(endpoint, name: "victim", executor: victim, crash: crash)
        let survivorRun = Self.startWorker(endpoint, name: "survivor", executor: survivor)

        #expect(try victimRun.value() == .crashed)
        let report = try coordinator.value()
        #expect(report.outcome == .finished(steps: 3))
        #expect(report.statistics.workersExpired >= 1)
        #expect(report.statistics.tasksRequeued >= 1)
        #expect(learner.weights == (try Self.expectedWeights(steps: 3)))
        #expect(try survivorRun.value().exitCode == 0)
    }

    @Test func aFailingEngineEndsItsWorkerAndItsTaskRunsElsewhere() throws {
        let learner = FakeLearner()
        let service = CoordinatorService(settings: Self.coordinatorSettings(steps: 3), learner: learner, pairs: FakePairs(count: Self.pairCount),
                                         logger: Self.quiet("coordinator"))
        let (coordinator, endpoint) = try Self.startCoordinator(service)
        let fragile = Self.startWorker(endpoint, name: "fragile", executor: FakeExecutor(failOnStep: 2))
        let sturdy = Self.startWorker(endpoint, name: "sturdy", executor: FakeExecutor(delay: 0.02))
        let outcome = try fragile.value()
        #expect(outcome == .executorFailed("engine failure on step 2"))
        #expect(outcome.exitCode == 1)
        let report = try coordinator.value()
        #expect(report.outcome == .finished(steps: 3))
        #expect(report.statistics.tasksRequeued >= 1)
        #expect(learner.weights == (try Self.expectedWeights(steps: 3)))
        #expect(try sturdy.value().exitCode == 0)
    }

    @Test func aWorkerWithAnotherConfigIsRefusedAndTheCoordinatorCarriesOn() throws {
        let learner = FakeLearner()
        let service = CoordinatorService(settings: Self.coordinatorSettings(steps: 1), learner: learner, pairs: FakePairs(count: Self.pairCount),
                                         logger: Self.quiet("coordinator"))
        let (coordinator, endpoint) = try Self.startCoordinator(service)
        let wrong = try Self.startWorker(endpoint, name: "stranger", executor: FakeExecutor(), configHash: Self.configHash + 1).value()
        guard case let .refused(reason) = wrong else { Issue.record("expected a refusal, got \(wrong)"); return }
        #expect(reason.hasPrefix("config hash mismatch: worker 0xc0ffef, coordinator 0xc0ffee"))
        #expect(wrong.exitCode == 2)

        let good = Self.startWorker(endpoint, name: "good", executor: FakeExecutor())
        #expect(try coordinator.value().outcome == .finished(steps: 1))
        #expect(try good.value() == .goodbye(reason: "run finished after 1 steps"))
        #expect(learner.weights == (try Self.expectedWeights(steps: 1)))
    }

    /// A peer flooding HELLOs on the insecure loopback endpoint under 10,000 routing ids (a
    /// connection each, 8 at a time; every other one with the run's config hash, the rest with
    /// another): the refused ones are not held at all, and of the admitted ones at most
    /// `WorkerRegistry.defaultMaxJoining` are held joining, the oldest forgotten first. A real
    /// worker joining after the flood (forgetting one more) runs the run to the undisturbed
    /// weights. The heartbeat timeout is long so that no flood peer expires: every one the bound
    /// did not hold is counted as forgotten. Every HELLO is answered (no ``HelloBudget``), so
    /// that the bound is what holds them back.
    @Test func aHelloFloodUnderManyRoutingIDsHoldsABoundedNumberOfJoiningPeers() throws {
        let learner = FakeLearner()
        let service = CoordinatorService(settings: Self.coordinatorSettings(steps: 2, heartbeatTimeout: 120, helloBudget: .unlimited), learner: learner,
                                         pairs: FakePairs(count: Self.pairCount), logger: Self.quiet("coordinator"))
        let (coordinator, endpoint) = try Self.startCoordinator(service)
        let hellos = 10_000
        let replies = try Self.floodHellos(endpoint, count: hellos, replyWithinMs: 30_000)
        #expect(replies.unanswered == 0)
        #expect(replies.welcomed == hellos / 2)
        #expect(replies.refused == hellos / 2)

        let real = Self.startWorker(endpoint, name: "real", executor: FakeExecutor())
        let report = try coordinator.value()
        #expect(report.outcome == .finished(steps: 2))
        #expect(report.statistics.hellosRefused == hellos / 2)
        #expect(report.statistics.peakJoining == WorkerRegistry.defaultMaxJoining)
        #expect(report.statistics.joiningForgotten == hellos / 2 - WorkerRegistry.defaultMaxJoining + 1)
        #expect(report.statistics.hellosUnanswered == 0)
        #expect(learner.weights == (try Self.expectedWeights(steps: 2)))
        #expect(try real.value().exitCode == 0)
    }

    /// With a ``HelloBudget`` of a burst of 7 and one HELLO a minute, a real worker's HELLO
    /// and then a flood of 40: the flood gets 6 answers (WELCOMEs and REFUSEs) and nothing more;
    /// the rest are left unanswered and counted, the flood's welcomed peers never said anything
    /// after their HELLO and so never show as joined in the log, and the real worker trains the
    /// run to the undisturbed weights.
    @Test func hellosPastTheBudgetAreLeftUnansweredAndTheRunGoesOn() throws {
        let directory = try makeTemporaryDirectory("runtime")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (sink, metrics, logger) = try Self.trainLog(in: directory)
        defer { sink.detachFile() }
        let learner = FakeLearner()
        // A burst of 7: the real worker's HELLO, then 6 of the flood's. The real worker's first
        // task waits for the flood to end, so that the run is still going meanwhile.
        let service = CoordinatorService(settings: Self.coordinatorSettings(steps: 2, helloBudget: HelloBudget(perSecond: 1.0 / 60, burst: 7)),
                                         learner: learner, pairs: FakePairs(count: Self.pairCount), metrics: metrics, logger: logger)
        let (coordinator, endpoint) = try Self.startCoordinator(service)
        let floodOver = StopSignal()
        let real = Self.startWorker(endpoint, name: "real", executor: FakeExecutor(onRun: { _ in
            while !floodOver.isRequested { Thread.sleep(forTimeInterval: 0.01) }
        }))
        for _ in 0..<1000 where try !Self.trainLogLines(directory).contains(where: { $0.contains("worker real (cpu) joined") }) {
            Thread.sleep(forTimeInterval: 0.01)
        }
        let hellos = 40
        let replies = try Self.floodHellos(endpoint, count: hellos, replyWithinMs: 1_000)
        floodOver.request()
        #expect(replies.welcomed + replies.refused == 6 && replies.unanswered == hellos - 6)
        let report = try coordinator.value()
        #expect(report.outcome == .finished(steps: 2))
        #expect(report.statistics.hellosUnanswered == hellos - 6)
        #expect(report.statistics.hellosRefused == replies.refused)
        let lines = try Self.trainLogLines(directory)
        // The flood's 3 welcomed peers said nothing after HELLO: no line for them.
        let joined = lines.filter { $0.contains("joined") }
        #expect(joined.count == 2)
        #expect(joined.first?.hasPrefix("INFO  [cerm.coordinator] worker real (cpu) joined capacity=1 peer=") == true)
        #expect(joined.last == "INFO  [train] event worker_joined worker=real alive=1")
        #expect(lines.contains { $0.contains("unanswered: more than 7 HELLOs at once or 0 a second (a HELLO flood?); a real worker reconnects after its heartbeat_timeout") })
        #expect(learner.weights == (try Self.expectedWeights(steps: 2)))
        #expect(try real.value().exitCode == 0)
    }

    /// HELLOs on `count` connections, 8 open at a time, each waiting `replyWithinMs` for its
    /// answer; every other one with the run's config hash, the rest with another. Each flooding
    /// thread owns its sockets; a socket lives until its HELLO is answered or the wait is over.
    static func floodHellos(_ endpoint: String, count hellos: Int, replyWithinMs: Int) throws -> (welcomed: Int, refused: Int, unanswered: Int) {
        let connectionsAtOnce = 8
        let flooders = (0..<connectionsAtOnce).map { first in
            Background("flood-\(first)") { () throws -> (welcomed: Int, refused: Int, unanswered: Int) in
                let codec = MessageCodec(limits: ProtocolLimits(maxMessageBytes: 1 << 20, vocabularySize: UInt32(FakeModel.vocabulary)))
                let context = try ZMQContext()
                var welcomed = 0, refused = 0, unanswered = 0
                for index in stride(from: first, to: hellos, by: connectionsAtOnce) {
                    let socket = try ZMQSocket(context: context, type: .dealer)
                    defer { socket.close() }
                    try socket.setLinger(milliseconds: 0)
                    try socket.connect(endpoint)
                    let hash = index % 2 == 0 ? Self.configHash : Self.configHash ^ 0xFF
                    try socket.send(try codec.encode(.hello(HelloMessage(name: "flood-\(index)", capacity: 1, configHash: hash, kind: .cpu))))
                    guard let reply = try socket.receive(timeoutMs: replyWithinMs) else {
                        unanswered += 1
                        continue
                    }
                    switch try codec.decode(reply) {
                    case .welcome: welcomed += 1
                    case .refuse: refused += 1
                    case let other: throw CermError.invalid("flood HELLO \(index) was answered with \(other.type)")
                    }
                }
                return (welcomed, refused, unanswered)
            }
        }
        let replies = try flooders.map { try $0.value() }
        return (replies.map(\.welcomed).reduce(0, +), replies.map(\.refused).reduce(0, +), replies.map(\.unanswered).reduce(0, +))
    }

    @Test func garbageFromARawSocketIsDroppedAndTheRunCompletes() throws {
        let learner = FakeLearner()
        let service = CoordinatorService(settings: Self.coordinatorSettings(steps: 2), learner: learner, pairs: FakePairs(count: Self.pairCount),
                                         logger: Self.quiet("coordinator"))
        let (coordinator, endpoint) = try Self.startCoordinator(service)

        let context = try ZMQContext()
        let raw = try ZMQSocket(context: context, type: .dealer)
        try raw.connect(endpoint)
        let hello = try MessageCodec().encode(.hello(HelloMessage(name: "raw", capacity: 1, configHash: Self.configHash, kind: .cpu)))
        let garbage: [[[UInt8]]] = [
            [[1, 2, 3]],                                                  // one frame
            [Array("JUNK".utf8) + hello[0].dropFirst(4), hello[1]],       // bad magic
            [hello[0], Array(hello[1].dropLast(3))],                      // body shorter than declared
            [hello[0], hello[1], [0]],                                    // three frames
            [MessageCodec.header(type: 200, bodyLength: 0), []],          // unknown type
        ]
        for frames in garbage { try raw.send(frames) }
        // Valid but from a peer that never said HELLO: dropped without a reply.
        try raw.send(try MessageCodec().encode(.ready(credit: 1)))
        // Same connection, so the WELCOME proves everything above was processed first.
        try raw.send(hello)
        let reply = try #require(try raw.receive(timeoutMs: 10_000))
        guard case .welcome = try MessageCodec().decode(reply) else { Issue.record("expected WELCOME"); return }
        raw.close()

        let good = Self.startWorker(endpoint, name: "good", executor: FakeExecutor())
        let report = try coordinator.value()
        #expect(report.outcome == .finished(steps: 2))
        #expect(report.droppedMalformed == garbage.count)
        #expect(learner.weights == (try Self.expectedWeights(steps: 2)))
        #expect(try good.value().exitCode == 0)
    }

    /// A registered worker whose RESULT fails decoding (a NaN behaviour log-prob) and that keeps
    /// heartbeating: its task is re-queued at once and runs on the honest worker, instead of
    /// staying assigned to it forever. The run completes with the weights of an undisturbed run.
    @Test func aMalformedResultOfARegisteredWorkerRequeuesItsTask() throws {
        let learner = FakeLearner()
        let service = CoordinatorService(settings: Self.coordinatorSettings(steps: 2), learner: learner, pairs: FakePairs(count: Self.pairCount),
                                         logger: Self.quiet("coordinator"))
        let (coordinator, endpoint) = try Self.startCoordinator(service)
        let gotTask = StopSignal()
        let done = StopSignal()
        defer { done.request() }
        // The raw worker's socket lives on its own thread only.
        let raw = Background("raw-worker") { () throws -> UInt64 in
            let codec = MessageCodec(limits: ProtocolLimits(maxMessageBytes: 1 << 20, vocabularySize: UInt32(FakeModel.vocabulary)))
            let socket = try ZMQSocket(context: try ZMQContext(), type: .dealer)
            defer { socket.close() }
            try socket.connect(endpoint)
            try socket.send(try codec.encode(.hello(HelloMessage(name: "nan-worker", capacity: 1, configHash: Self.configHash, kind: .cpu))))
            try socket.send(try codec.encode(.ready(credit: 1)))
            var taskID: UInt64 = 0
            while !done.isRequested {
                if let frames = try socket.receive(timeoutMs: 20), case let .task(task) = try codec.decode(frames), taskID == 0 {
                    taskID = task.taskID
                    let bad = Trajectory(id: .criteria(pair: task.pairs[0].pairID, 0), promptTokenCount: 5, tokens: [1],
                                         behaviourLogprobs: [.nan], referenceLogprobs: [-1], finishReason: .eos, text: "")
                    try socket.send(try codec.encode(.result(ResultMessage(taskID: task.taskID, policyVersion: task.policyVersion,
                                                                           trajectories: [bad]))))
                    gotTask.request()
                }
                try socket.send(try codec.encode(.heartbeat(policyVersion: 0)))
            }
            return taskID
        }
        // The honest worker joins only once the raw one holds a task.
        for _ in 0..<1000 where !gotTask.isRequested { Thread.sleep(forTimeInterval: 0.01) }
        #expect(gotTask.isRequested)
        let good = Self.startWorker(endpoint, name: "good", executor: FakeExecutor())
        let report = try coordinator.value()
        done.request()
        #expect(try raw.value() == 1)
        #expect(report.outcome == .finished(steps: 2))
        #expect(report.droppedMalformed == 1)
        #expect(report.statistics.droppedInvalid == 1)
        #expect(report.statistics.tasksRequeued == 1)
        #expect(learner.weights == (try Self.expectedWeights(steps: 2)))
        #expect(try good.value().exitCode == 0)
    }

    /// A worker whose results keep failing the acceptance check is refused at its third rejected
    /// result (REFUSE with the reason), its routing id forgotten (a RESULT after that is dropped
    /// as from an unknown peer), and the run completes on an honest worker with unchanged weights.
    @Test func aWorkerWithThreeRejectedResultsIsRefused() throws {
        let learner = FakeLearner()
        let directory = try makeTemporaryDirectory("runtime")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let sink = LogSink()
        let metrics = try MetricsLogger(runDirectory: directory, sink: sink)
        defer { sink.detachFile() }
        let service = CoordinatorService(settings: Self.coordinatorSettings(steps: 2), learner: learner, pairs: FakePairs(count: Self.pairCount),
                                         metrics: metrics, logger: Self.quiet("coordinator"))
        let (coordinator, endpoint) = try Self.startCoordinator(service)
        let refused = StopSignal()
        // The raw worker's socket lives on its own thread only.
        let raw = Background("raw-worker") { () throws -> (tasks: [UInt64], reason: String) in
            let codec = MessageCodec(limits: ProtocolLimits(maxMessageBytes: 1 << 20, vocabularySize: UInt32(FakeModel.vocabulary)))
            let socket = try ZMQSocket(context: try ZMQContext(), type: .dealer)
            defer { socket.close() }
            try socket.connect(endpoint)
            try socket.send(try codec.encode(.hello(HelloMessage(name: "bad-worker", capacity: 1, configHash: Self.configHash, kind: .cpu))))
            try socket.send(try codec.encode(.ready(credit: 1)))
            var tasks: [UInt64] = []
            for _ in 0..<1000 {
                guard let frames = try socket.receive(timeoutMs: 20) else {
                    try socket.send(try codec.encode(.heartbeat(policyVersion: 0)))
                    continue
                }
                switch try codec.decode(frames) {
                case let .task(task):
                    tasks.append(task.taskID)
                    try socket.send(try codec.encode(.result(ResultMessage(taskID: task.taskID, policyVersion: task.policyVersion, trajectories: []))))
                    try socket.send(try codec.encode(.ready(credit: 1)))
                case let .refuse(reason):
                    // Forgotten: this one is dropped as from an unknown peer.
                    try socket.send(try codec.encode(.result(ResultMessage(taskID: tasks.last ?? 0, policyVersion: 0, trajectories: []))))
                    refused.request()
                    return (tasks, reason)
                default:
                    try socket.send(try codec.encode(.heartbeat(policyVersion: 0)))
                }
            }
            refused.request()
            return (tasks, "never refused")
        }
        for _ in 0..<2000 where !refused.isRequested { Thread.sleep(forTimeInterval: 0.01) }
        let good = Self.startWorker(endpoint, name: "good", executor: FakeExecutor())
        let report = try coordinator.value()
        let bad = try raw.value()
        #expect(bad.tasks == [1, 6, 7])
        #expect(bad.reason == "3 results of worker bad-worker were rejected (limit 3): refused; check its engine, build and configuration before restarting it")
        #expect(report.outcome == .finished(steps: 2))
        #expect(report.statistics.droppedInvalid == 3)
        #expect(report.statistics.tasksRequeued == 3)
        #expect(report.statistics.droppedUnknown == 1)
        metrics.close()
        let requeued = "NOTE  [train] event tasks_requeued count=1 from=bad-worker (invalid trajectories: no trajectories for pair 0)"
        #expect(try Self.trainLogLines(directory).filter { $0.contains("bad-worker") } == [
            "INFO  [train] event worker_joined worker=bad-worker alive=1",
            requeued, requeued, requeued,
            "INFO  [train] event worker_left worker=bad-worker alive=0",
        ])
        #expect(learner.weights == (try Self.expectedWeights(steps: 2)))
        #expect(try good.value().exitCode == 0)
    }

    /// Settings of the `cluster.task_timeout` runs: a 12 s deadline and a 5 s heartbeat timeout.
    /// Their coordinator runs on a ``ManualClock`` the test moves, so the values cost no time;
    /// the heartbeat timeout is shorter than the deadline (as in production, 10 s vs 600 s) so
    /// the slow worker outlives it only by heartbeating, and long enough in real time for the
    /// honest worker, which hears no coordinator HEARTBEAT while that clock stands still.
    static func deadlineSettings() -> CoordinatorSettings {
        var settings = coordinatorSettings(steps: 2, heartbeatTimeout: 5)
        settings.scheduler.taskTimeout = 12
        return settings
    }

    /// `cluster.task_timeout` through the coordinator's sockets: a worker that registers, fetches
    /// the weights, accepts a task and keeps heartbeating but never answers keeps the task until
    /// the deadline has passed (strictly: held exactly 12 s it still has it), then loses it to a
    /// re-queue under a new id, with a warning naming the worker and both ids. Its RESULT for the
    /// old id, sent after the deadline while the new task is still queued, is dropped as late
    /// and counted nowhere; it stays registered to the end. The honest worker runs the
    /// re-queued task, and the weights are bitwise those of the same run with the honest worker
    /// alone (seeds derive from run seed, step, pair and trajectory, not from the worker).
    @Test func aTaskHeldPastTheTaskTimeoutRunsElsewhereAndItsLateResultIsDropped() throws {
        // The same run with the honest worker only.
        let aloneLearner = FakeLearner()
        let aloneService = CoordinatorService(settings: Self.deadlineSettings(), learner: aloneLearner,
                                              pairs: FakePairs(count: Self.pairCount), clock: ManualClock(),
                                              logger: Self.quiet("coordinator"))
        let (aloneRun, aloneEndpoint) = try Self.startCoordinator(aloneService)
        let alone = Self.startWorker(aloneEndpoint, name: "honest", executor: FakeExecutor())
        let aloneReport = try aloneRun.value()
        #expect(aloneReport.outcome == .finished(steps: 2))
        #expect(aloneReport.statistics.tasksRequeued == 0)
        #expect(try alone.value() == .goodbye(reason: "run finished after 2 steps"))
        #expect(aloneLearner.weights == (try Self.expectedWeights(steps: 2)))

        let directory = try makeTemporaryDirectory("runtime")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // Notice and up keeps the per-worker info lines out and the deadline warning and late drop in.
        var (sink, metrics, logger) = try Self.trainLog(in: directory)
        defer { sink.detachFile() }
        logger.logLevel = .notice
        let clock = ManualClock()
        let learner = FakeLearner()
        let service = CoordinatorService(settings: Self.deadlineSettings(), learner: learner, pairs: FakePairs(count: Self.pairCount),
                                         clock: clock, metrics: metrics, logger: logger)
        let (coordinator, endpoint) = try Self.startCoordinator(service)

        // The slow worker is a raw socket driven from this thread only, one exchange at a time.
        let (socket, codec) = try Self.rawWorkerSocket(endpoint)
        defer { socket.close() }
        func send(_ message: Message) throws { try socket.send(try codec.encode(message)) }
        /// The next message from the coordinator that is not a HEARTBEAT.
        func receive() throws -> Message {
            for _ in 0..<1000 {
                guard let frames = try socket.receive(timeoutMs: 10) else { continue }
                let message = try codec.decode(frames)
                if case .heartbeat = message { continue }
                return message
            }
            throw CermError.invalid("slow worker: nothing from the coordinator for 10 s")
        }
        /// Weights of `version`, chunk by chunk, as a worker fetches them.
        func fetch(_ version: UInt64) throws -> [UInt8] {
            var bytes: [UInt8] = []
            var index: UInt32 = 0
            while true {
                try send(.weightsRequest(version: version, chunkIndex: index))
                guard case let .weightsChunk(chunk) = try receive(), chunk.version == version, chunk.chunkIndex == index else {
                    throw CermError.invalid("slow worker: expected chunk \(index) of version \(version)")
                }
                bytes += chunk.data
                index += 1
                if index == chunk.chunkCount { return bytes }
            }
        }
        /// A HEARTBEAT, then a weights request as a fence: the coordinator handles one peer's
        /// messages in order, so its reply proves the HEARTBEAT was handled at the clock's
        /// current time. Twice, because a housekeeping pass (where the deadline and liveness
        /// are checked) runs after each handled message: after the second reply, one ran at
        /// the current time.
        func heartbeat() throws {
            for _ in 0..<2 {
                try send(.heartbeat(policyVersion: 0))
                _ = try fetch(0)
            }
        }
        func trainLog() throws -> String { try String(contentsOfFile: directory + "/train.log", encoding: .utf8) }

        try send(.hello(HelloMessage(name: "slow-worker", capacity: 1, configHash: Self.configHash, kind: .cpu)))
        guard case .welcome = try receive() else { Issue.record("slow worker: expected WELCOME"); return }
        try send(.ready(credit: 1))
        guard case let .task(task) = try receive() else { Issue.record("slow worker: expected TASK"); return }
        #expect(task.taskID == 1 && task.step == 1 && task.policyVersion == 0 && task.pairs.map(\.pairID) == [0])
        let weights = try fetch(task.policyVersion), reference = try fetch(WeightsVersion.reference)

        // Held 4, 8 and then exactly 12 s (the deadline, not past it): still its task. Silent
        // for 8 s it would be dead (heartbeat timeout 5 s); it heartbeats after every move.
        for _ in 0..<3 {
            clock.advance(by: 4)
            try heartbeat()
        }
        #expect(!(try trainLog()).contains("cluster.task_timeout"), "task re-queued at the deadline, not past it")
        // Held 16 s: re-queued.
        clock.advance(by: 4)
        try heartbeat()
        #expect(try trainLog().contains("task 1 of step 1 held by worker slow-worker for 16.00 s"))

        // The answer comes after the deadline, while task 6 (its pair, re-queued) waits for a
        // worker: accepting it would count pair 0 twice. It is a correct rollout of task 1, so
        // only its lateness can get it dropped. The fence makes sure it was handled before the
        // honest worker joins.
        let rollout = FakeModel.trajectories(task: task, weights: weights, reference: reference)
        try send(.result(ResultMessage(taskID: task.taskID, policyVersion: task.policyVersion, trajectories: rollout)))
        try heartbeat()

        let ran = Mutex<[UInt64]>([])
        let honestExecutor = FakeExecutor { task in ran.withLock { $0.append(task.taskID) } }
        let honest = Self.startWorker(endpoint, name: "honest", executor: honestExecutor)
        let report = try coordinator.value()
        #expect(report.outcome == .finished(steps: 2))
        #expect(try honest.value() == .goodbye(reason: "run finished after 2 steps"))
        // Still registered at the end: it gets the GOODBYE too.
        guard case let .goodbye(reason) = try receive() else { Issue.record("slow worker: expected GOODBYE"); return }
        #expect(reason == "run finished after 2 steps")

        // Two steps of five one-pair tasks, one of them re-queued once: 11 tasks, 10 results.
        #expect(report.statistics.tasksCreated == 11)
        #expect(report.statistics.tasksDispatched == 11)
        #expect(report.statistics.resultsAccepted == 10)
        #expect(report.statistics.tasksRequeued == 1)
        #expect(report.statistics.droppedLateOrDuplicate == 1)
        #expect(report.statistics.droppedInvalid == 0 && report.statistics.droppedUnknown == 0 && report.statistics.droppedStale == 0)
        #expect(report.statistics.workersExpired == 0)
        #expect(ran.withLock { $0.sorted() } == Array(2...11))
        #expect(learner.weights == aloneLearner.weights)

        metrics.close()
        #expect(try Self.trainLogLines(directory).filter { $0.contains("slow-worker") } == [
            "INFO  [train] event worker_joined worker=slow-worker alive=1",
            "WARN  [cerm.coordinator] task 1 of step 1 held by worker slow-worker for 16.00 s without a RESULT (cluster.task_timeout): re-queued as task 6",
            "NOTE  [train] event tasks_requeued count=1 from=slow-worker (task 1 timed out)",
            "NOTE  [cerm.coordinator] dropped RESULT of task 1 from slow-worker: task is no longer in flight (late or duplicate result)",
            "NOTE  [train] event late_result_dropped task=1 worker=slow-worker",
        ])
    }

    /// A peer flooding the coordinator with garbage frames and refused HELLOs (no registration
    /// needed), and then valid HELLOs again and again, costs train.log a bounded number of lines: per kind, the first five of a 10 s
    /// window in full, then one summary with the exact count when the window ends on the
    /// service's clock; the next bad message is logged again at once. Every dropped message is
    /// still counted.
    @Test func aFloodOfBadMessagesCostsTrainLogABoundedNumberOfLines() throws {
        let directory = try makeTemporaryDirectory("runtime")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (sink, metrics, logger) = try Self.trainLog(in: directory)
        defer { sink.detachFile() }
        let clock = ManualClock()
        let stop = StopSignal()
        // The flooder registers as a fence and stays silent while the clock moves 10 s: a
        // heartbeat timeout past that keeps it alive to answer the last fence.
        // Every HELLO answered (the clock stands still, so the budget would not refill).
        let service = CoordinatorService(settings: Self.coordinatorSettings(steps: 1, heartbeatTimeout: 60, helloBudget: .unlimited),
                                         learner: FakeLearner(), pairs: FakePairs(count: Self.pairCount), stop: stop, clock: clock,
                                         metrics: metrics, logger: logger)
        let (coordinator, endpoint) = try Self.startCoordinator(service)
        func trainLog() throws -> [String] { try Self.trainLogLines(directory) }

        let (socket, codec) = try Self.rawWorkerSocket(endpoint)
        defer { socket.close() }
        /// Replies until one that is not a REFUSE or HEARTBEAT: the coordinator handles one
        /// peer's messages in order, so it proves everything sent before was handled.
        func fence(_ message: Message) throws -> Message {
            try socket.send(try codec.encode(message))
            for _ in 0..<2000 {
                guard let frames = try socket.receive(timeoutMs: 10) else { continue }
                switch try codec.decode(frames) {
                case .refuse, .heartbeat: continue
                case let reply: return reply
                }
            }
            throw CermError.invalid("flooding peer: no reply to \(message.type) for 20 s")
        }

        let malformed = 3000, refused = 500
        for _ in 0..<malformed { try socket.send([[1, 2, 3]]) }
        let stranger = try codec.encode(.hello(HelloMessage(name: "stranger", capacity: 1, configHash: Self.configHash + 1, kind: .cpu)))
        for _ in 0..<refused { try socket.send(stranger) }
        // Each HELLO followed by a message (a worker is joined by its first message after HELLO;
        // this reply comes after that line is written).
        let rejoins = 200
        for _ in 0...rejoins {
            guard case .welcome = try fence(.hello(HelloMessage(name: "flooder", capacity: 1, configHash: Self.configHash, kind: .cpu))) else {
                Issue.record("flooding peer: expected WELCOME"); return
            }
            _ = try fence(.weightsRequest(version: 0, chunkIndex: 0))
        }
        let lines = try trainLog()
        let first = try #require(lines.first { $0.contains("dropped malformed message") })
        let peer = try #require(first.split(separator: " ").dropFirst(7).first.map { String($0.dropLast()) })
        let malformedLine = "WARN  [cerm.coordinator] dropped malformed message from peer \(peer): expected 2 data frames (header, body), got 1"
        let refusedLine = "WARN  [cerm.coordinator] refused worker stranger at \(peer): config hash mismatch: worker 0xc0ffef, coordinator 0xc0ffee"
        #expect(lines.filter { $0.contains("dropped malformed message from") } == Array(repeating: malformedLine, count: 5))
        #expect(lines.filter { $0.contains("refused worker") }.map { String($0.prefix(refusedLine.count)) }
                == Array(repeating: refusedLine, count: 5))
        let joined = "INFO  [cerm.coordinator] worker flooder (cpu) joined capacity=1 peer=\(peer)"
        let rejoined = "INFO  [cerm.coordinator] worker flooder (cpu) rejoined capacity=1 peer=\(peer)"
        #expect(lines.filter { $0.contains("worker flooder") } == [joined] + Array(repeating: rejoined, count: 5))
        #expect(lines.filter { $0.contains("worker_joined worker=flooder") }.count == 6)
        #expect(!lines.contains { $0.contains("suppressed") }, "summed up before the window ended")

        // The window ends on the service's clock: housekeeping writes the summaries (it runs
        // at least every poll interval, so wait for it in real time).
        clock.advance(by: 10)
        let malformedSummary = #"WARN  [cerm.coordinator] suppressed 2995 more "dropped malformed message" warnings from peer "# + "\(peer) in the last 10 s"
        let refusedSummary = #"WARN  [cerm.coordinator] suppressed 495 more "refused worker" warnings from peer "# + "\(peer) in the last 10 s"
        let rejoinedSummary = #"INFO  [cerm.coordinator] suppressed 195 more "worker rejoined" warnings from peer "# + "\(peer) in the last 10 s"
        for _ in 0..<1000 where try !trainLog().contains(rejoinedSummary) { Thread.sleep(forTimeInterval: 0.01) }
        // All three windows opened at the same clock time: the summaries come in text order.
        #expect(try trainLog().filter { $0.contains("suppressed") } == [rejoinedSummary, malformedSummary, refusedSummary])

        // The next bad message opens a new window: logged at once and in full.
        for _ in 0..<2 { try socket.send([[1, 2, 3]]) }
        _ = try fence(.weightsRequest(version: 0, chunkIndex: 0))
        #expect(try trainLog().filter { $0.contains("dropped malformed message from") }.count == 7)

        stop.request()
        let report = try coordinator.value()
        #expect(report.outcome == .stopped(completedSteps: 0))
        #expect(report.droppedMalformed == malformed + 2)
        metrics.close()
        let final = try trainLog()
        #expect(final.filter { $0.contains(peer) } == Array(repeating: malformedLine, count: 5)
                + lines.filter { $0.contains("refused worker") }
                + [joined] + Array(repeating: rejoined, count: 5) + [rejoinedSummary, malformedSummary, refusedSummary,
                   malformedLine, malformedLine])
        // 3502 bad messages and 200 repeated HELLOs; the rest of the log is the run's own few lines.
        #expect(final.count < 40, "\(final.count) lines:\n\(final.joined(separator: "\n"))")
    }

    @Test func weightsTravelInManySmallChunks() throws {
        // 3000-byte weights in 64-byte chunks: 47 requests per version.
        let learner = FakeLearner(size: 3000)
        let service = CoordinatorService(settings: Self.coordinatorSettings(steps: 2, chunkBytes: 64), learner: learner,
                                         pairs: FakePairs(count: Self.pairCount), logger: Self.quiet("coordinator"))
        let (coordinator, endpoint) = try Self.startCoordinator(service)
        let executor = FakeExecutor()
        let worker = Self.startWorker(endpoint, name: "w", executor: executor)
        #expect(try coordinator.value().outcome == .finished(steps: 2))
        #expect(try worker.value().exitCode == 0)
        let published = learner.publishedChecksums
        #expect(executor.prepared.map(\.version) == [0, 1])
        #expect(executor.prepared.map { Optional($0.checksum) } == [published[0], published[1]])
        #expect(executor.references == 1)
        #expect(learner.weights == (try Self.expectedWeights(steps: 2, learnerSize: 3000)))
    }

    @Test func aStopAbandonsTheStepSavesAndResumingMatchesAnUninterruptedRun() throws {
        let directory = try makeTemporaryDirectory("runtime")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let stop = StopSignal()
        let learner = FakeLearner()
        let sink = LogSink()
        let metrics = try MetricsLogger(runDirectory: directory, sink: sink)
        defer { sink.detachFile() }
        let service = CoordinatorService(settings: Self.coordinatorSettings(steps: 4, saveEvery: 3), learner: learner,
                                         pairs: FakePairs(count: Self.pairCount), stop: stop,
                                         checkpoints: CheckpointWriter(directory: directory, keepLast: 3), metrics: metrics,
                                         logger: Self.quiet("coordinator"))
        let (coordinator, endpoint) = try Self.startCoordinator(service)
        // The stop arrives while step 3 is being sampled: step 3 must be abandoned.
        let worker = Self.startWorker(endpoint, name: "w", executor: FakeExecutor { task in if task.step == 3 { stop.request() } })
        let report = try coordinator.value()
        #expect(report.outcome == .stopped(completedSteps: 2))
        #expect(report.checkpoints == [directory + "/step_2.h5"])
        guard case let .goodbye(reason) = try worker.value() else { Issue.record("worker did not get GOODBYE"); return }
        #expect(reason == "coordinator stopping after 2 steps (stop requested)")
        metrics.close()
        let lines = try String(contentsOfFile: directory + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(try lines.map { try StepMetrics.parse(jsonLine: String($0)).step } == [1, 2])
        let trainLog = try String(contentsOfFile: directory + "/train.log", encoding: .utf8)
        #expect(trainLog.contains("event worker_joined worker=w alive=1"))
        #expect(trainLog.hasSuffix("[train] event run_stopped steps=2\n"))
        #expect(try RunStatus.collect(runDirectory: directory).ending == .stopped(steps: 2))
        #expect(trainLog.contains("event checkpoint_saved path=\(directory)/step_2.h5"))

        let saved = try CheckpointReader.resume(from: directory)
        #expect(saved.state.step == 2)
        #expect(saved.state.policyVersion == 2)
        // Two batches of 5 from 7 pairs: epoch 1, position 3 — step 3's pairs were given back.
        #expect(saved.state.dataCursor == DataCursor(epoch: 1, position: 3, permutationSeed: 3))

        let resumed = FakeLearner()   // step-0 weights: restore must replace them with step 2's
        let second = CoordinatorService(settings: Self.coordinatorSettings(steps: 4, saveEvery: 3), learner: resumed,
                                        pairs: FakePairs(count: Self.pairCount), resume: ResumePoint(state: saved.state, path: saved.path),
                                        checkpoints: CheckpointWriter(directory: directory, keepLast: 3), logger: Self.quiet("coordinator"))
        let (secondRun, secondEndpoint) = try Self.startCoordinator(second)
        let secondWorker = Self.startWorker(secondEndpoint, name: "w2", executor: FakeExecutor())
        let secondReport = try secondRun.value()
        #expect(secondReport.outcome == .finished(steps: 4))
        #expect(secondReport.checkpoints == [directory + "/step_3.h5", directory + "/step_4.h5"])
        #expect(resumed.weights == (try Self.expectedWeights(steps: 4)))
        #expect(try secondWorker.value().exitCode == 0)
    }

    /// The lines of `train.log` without their timestamps.
    static func trainLogLines(_ directory: String) throws -> [String] {
        try String(contentsOfFile: directory + "/train.log", encoding: .utf8).split(separator: "\n")
            .map { String($0.split(separator: " ", maxSplits: 1)[1]) }
    }

    @Test func checkpointsSkippedWhenResumingAreEventsInTrainLog() throws {
        let directory = try makeTemporaryDirectory("runtime")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let writer = CheckpointWriter(directory: directory, keepLast: 3)
        let cursor = DataCursor(epoch: 0, position: 5, permutationSeed: 3)
        for step in [1, 2, 3] { try writer.write(try FakeLearner().trainingState(step: step, dataCursor: cursor)) }
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: directory + "/step_2.h5"))
        // step_3.h5 is valid but its probe "crashed": skipped like the garbage one.
        let probe = FakeCheckpointProbe(results: [directory + "/step_3.h5": .crashed(signal: SIGSEGV)])
        var skipped: [CheckpointError] = []
        var silent = Logger(label: "checkpoint")
        silent.logLevel = .error
        let loaded = try CheckpointReader.resume(from: directory, probe: probe, logger: silent) { skipped.append($0) }
        #expect(loaded.path == directory + "/step_1.h5")

        let sink = LogSink()
        let metrics = try MetricsLogger(runDirectory: directory, sink: sink)
        defer { sink.detachFile() }
        // run.steps = 1: the resumed run has nothing left to do, so it needs no worker.
        let service = CoordinatorService(settings: Self.coordinatorSettings(steps: 1), learner: FakeLearner(),
                                         pairs: FakePairs(count: Self.pairCount),
                                         resume: ResumePoint(state: loaded.state, path: loaded.path, skipped: skipped),
                                         metrics: metrics, logger: Self.quiet("coordinator"))
        #expect(try service.run().outcome == .finished(steps: 1))
        metrics.close()
        #expect(try Self.trainLogLines(directory) == [
            "WARN  [train] event checkpoint_skipped path=\(directory)/step_3.h5 reason=\(CheckpointProbeTests.crashMessage)",
            "WARN  [train] event checkpoint_skipped path=\(directory)/step_2.h5 reason=not an HDF5 file (no HDF5 signature)",
            "INFO  [train] event resumed path=\(directory)/step_1.h5 step=1",
            "INFO  [train] event run_finished steps=1",
        ])
    }

    @Test func aResumeWithAChangedConfigWarnsAboutEachKey() throws {
        var stored = Config()
        stored.grpo.learningRate = 5e-5
        stored.run.steps = 3
        var state = try FakeLearner().trainingState(step: 1, dataCursor: DataCursor(epoch: 0, position: 5, permutationSeed: 3))
        state.configText = stored.renderTOML()
        var current = stored
        current.grpo.learningRate = 1e-4
        current.grpo.klCoef = 0.01
        current.run.steps = 1   // not a change worth a warning: continuing a run changes it
        let changes = try ResumePoint.configChanges(from: state, path: "ck/step_1.h5", to: current)
        #expect(changes == [ConfigChange(key: "grpo.learning_rate", old: "5e-05", new: "0.0001"),
                            ConfigChange(key: "grpo.kl_coef", old: "0.001", new: "0.01")])
        #expect(try ResumePoint.configChanges(from: state, path: "ck/step_1.h5", to: stored) == [])
        state.configText = "[grpo]\nlearning_rat = 1.0\n"
        #expect(throws: ConfigError(file: "ck/step_1.h5 (stored config)", line: 2, key: "grpo.learning_rat", message: "unknown key")) {
            _ = try ResumePoint.configChanges(from: state, path: "ck/step_1.h5", to: current)
        }

        let directory = try makeTemporaryDirectory("runtime")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (sink, metrics, logger) = try Self.trainLog(in: directory)
        defer { sink.detachFile() }
        let service = CoordinatorService(settings: Self.coordinatorSettings(steps: 1), learner: FakeLearner(),
                                         pairs: FakePairs(count: Self.pairCount),
                                         resume: ResumePoint(state: state, path: "ck/step_1.h5", configChanges: changes),
                                         metrics: metrics, logger: logger)
        #expect(try service.run().outcome == .finished(steps: 1))
        metrics.close()
        let lines = try Self.trainLogLines(directory)
        #expect(lines.first?.hasPrefix("INFO  [cerm.coordinator] coordinator listening ") == true)
        #expect(Array(lines.dropFirst()) == [
            "WARN  [cerm.coordinator] config differs from the checkpoint's: grpo.learning_rate: 5e-05 (checkpoint) → 0.0001 (config)",
            "WARN  [train] event config_changed key=grpo.learning_rate checkpoint=5e-05 config=0.0001",
            "WARN  [cerm.coordinator] config differs from the checkpoint's: grpo.kl_coef: 0.001 (checkpoint) → 0.01 (config)",
            "WARN  [train] event config_changed key=grpo.kl_coef checkpoint=0.001 config=0.01",
            "INFO  [train] event resumed path=ck/step_1.h5 step=1",
            "NOTE  [cerm.coordinator] already at step 1 of 1: nothing to do (raise run.steps or pass --steps to continue)",
            "INFO  [train] event run_finished steps=1",
        ])
        // cerm status tells the finished run from a stalled one.
        let status = try RunStatus.collect(runDirectory: directory)
        #expect(status.ending == .finished(steps: 1))
        #expect(status.render(now: Date(), trainLogGrowth: 0, watchedSeconds: 2).hasSuffix(" ago; the run finished after 1 steps"))
    }

    @Test func anInsecureNonLoopbackBindIsRefused() throws {
        var settings = Self.coordinatorSettings(steps: 1)
        settings.endpoint = "tcp://0.0.0.0:*"
        let service = CoordinatorService(settings: settings, learner: FakeLearner(), pairs: FakePairs(count: 3), logger: Self.quiet("coordinator"))
        #expect(throws: CermError.self) { try service.run() }
        #expect(service.waitForEndpoint(timeout: 1) == nil)
    }

    @Test func workersStayAliveThroughALongUpdate() throws {
        // Each update takes 0.8 s, well past the 0.3 s heartbeat timeout.
        let learner = FakeLearner(updateDelay: 0.8)
        let service = CoordinatorService(settings: Self.coordinatorSettings(steps: 2, heartbeatTimeout: 0.3), learner: learner,
                                         pairs: FakePairs(count: Self.pairCount), logger: Self.quiet("coordinator"))
        let (coordinator, endpoint) = try Self.startCoordinator(service)
        let client = WorkerClient(settings: Self.workerSettings(endpoint, name: "patient"), executor: FakeExecutor(), logger: Self.quiet("worker"))
        let worker = Background("worker-patient") { try client.run() }
        let report = try coordinator.value()
        #expect(report.outcome == .finished(steps: 2))
        #expect(report.statistics.workersExpired == 0)
        #expect(try worker.value() == .goodbye(reason: "run finished after 2 steps"))
        #expect(client.sessions == 1)
        #expect(learner.weights == (try Self.expectedWeights(steps: 2)))
    }

    @Test func asyncModeKeepsOneStepAheadWithinTheStalenessBound() throws {
        var settings = Self.coordinatorSettings(steps: 4)
        settings.scheduler.mode = .async
        settings.scheduler.maxStaleness = 1
        let learner = FakeLearner(updateDelay: 0.05)
        let lines = Mutex<[StepMetrics]>([])
        let service = CoordinatorService(settings: settings, learner: learner, pairs: FakePairs(count: Self.pairCount),
                                         onStep: { line in lines.withLock { $0.append(line) } }, logger: Self.quiet("coordinator"))
        let (coordinator, endpoint) = try Self.startCoordinator(service)
        let workers = (0..<2).map { Self.startWorker(endpoint, name: "w\($0)", executor: FakeExecutor(delay: 0.005)) }
        let report = try coordinator.value()
        #expect(report.outcome == .finished(steps: 4))
        // Rollouts sampled during the previous update leave almost no wait; throughput is over
        // the time since the previous step ended, which holds this step's 50 ms update.
        for line in lines.withLock({ $0 }) {
            #expect(line.generatedTokens == 90, "step \(line.step)")
            #expect(line.tokensPerSecond > 0 && line.tokensPerSecond * line.updateSeconds <= Double(line.generatedTokens),
                    "step \(line.step): \(line.tokensPerSecond) tok/s, update \(line.updateSeconds) s")
        }
        #expect(lines.withLock { $0.map(\.step) } == [1, 2, 3, 4])
        #expect(report.policyVersion == 4)
        #expect(report.statistics.resultsAccepted == 20)
        // Step k is sampled with version k-1, or k-2 when it was dispatched during update k-1.
        let versions = learner.versionsByStep
        for step in 1...4 {
            let allowed = Set([UInt64(max(0, step - 2)), UInt64(step - 1)])
            #expect(versions[step].map { $0.isSubset(of: allowed) } == true, "step \(step): \(versions[step] ?? [])")
        }
        for worker in workers { #expect(try worker.value().exitCode == 0) }
    }

    @Test func curveAdmitsOnlyListedWorkers() throws {
        try #require(ZMQContext.has("curve"))
        let server = try CurveKeyPair.generate(), member = try CurveKeyPair.generate(), stranger = try CurveKeyPair.generate()
        var settings = Self.coordinatorSettings(steps: 1)
        settings.curve = CoordinatorCurve(secretKey: server.secretKey, authorizedKeys: [member.publicKey])
        let learner = FakeLearner()
        let service = CoordinatorService(settings: settings, learner: learner, pairs: FakePairs(count: Self.pairCount), logger: Self.quiet("coordinator"))
        let (coordinator, endpoint) = try Self.startCoordinator(service)

        func client(_ name: String, _ keys: CurveKeyPair, _ executor: FakeExecutor, stop: StopSignal = StopSignal()) -> Background<WorkerOutcome> {
            var workerSettings = Self.workerSettings(endpoint, name: name)
            workerSettings.security = .curveClient(serverKey: server.publicKey, keys: keys)
            let client = WorkerClient(settings: workerSettings, executor: executor, stop: stop, logger: Self.quiet("worker.\(name)"))
            return Background("worker-\(name)") { try client.run() }
        }
        let strangerStop = StopSignal()
        let strangerExecutor = FakeExecutor()
        let strangerRun = client("stranger", stranger, strangerExecutor, stop: strangerStop)
        let memberRun = client("member", member, FakeExecutor())
        #expect(try coordinator.value().outcome == .finished(steps: 1))
        #expect(try memberRun.value() == .goodbye(reason: "run finished after 1 steps"))
        strangerStop.request()
        #expect(try strangerRun.value() == .stopped)
        #expect(strangerExecutor.runs == 0)
        #expect(learner.weights == (try Self.expectedWeights(steps: 1)))
    }
}

@Suite struct RuntimeSettingsTests {
    @Test func settingsComeFromTheConfigAndLoadKeyFiles() throws {
        var config = Config()
        config.run.steps = 6
        config.run.saveEvery = 4
        config.grpo.pairsPerBatch = 3
        config.cluster.weightChunkBytes = 4096
        config.cluster.taskTimeout = 12
        let plain = try CoordinatorSettings(config: config, runModel: RunModel(ownModel: config.model))
        // The service's deadline is the config's (the run above exercises it over sockets).
        #expect(plain.scheduler.taskTimeout == 12)
        #expect(plain.steps == 6 && plain.pairsPerBatch == 3 && plain.weightChunkBytes == 4096 && plain.runSeed == config.run.seed)
        #expect(plain.scheduler.configHash == config.hash)
        #expect(plain.curve == nil)
        #expect((1...6).filter(plain.isSaveDue) == [4, 6])

        let directory = NSTemporaryDirectory() + "cerm-keys-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let server = try CurveKeyPair.generate(), worker = try CurveKeyPair.generate()
        let serverFiles = try CurveKeyFiles.write(name: "coordinator", keys: server, directory: directory)
        let workerFiles = try CurveKeyFiles.write(name: "worker", keys: worker, directory: directory)
        config.cluster.curveSecretKeyFile = serverFiles.secret
        #expect(throws: CermError.self) { try CoordinatorSettings(config: config, runModel: RunModel(ownModel: config.model)) }
        config.cluster.authorizedKeysFile = workerFiles.public
        config.cluster.workerSecretKeyFile = workerFiles.secret
        config.cluster.serverPublicKeyFile = serverFiles.public
        #expect(try CoordinatorSettings(config: config, runModel: RunModel(ownModel: config.model)).curve == CoordinatorCurve(secretKey: server.secretKey, authorizedKeys: [worker.publicKey]))
        let workerSettings = try WorkerSettings(config: config, name: "w")
        #expect(workerSettings.configHash == config.hash)
        guard case let .curveClient(serverKey, keys) = workerSettings.security else { Issue.record("expected a CURVE client"); return }
        #expect(serverKey == server.publicKey && keys == worker)

        // A key file that cannot be read names the config key it came from.
        func failure(_ body: () throws -> Void) -> String? {
            do { try body(); return nil } catch { return "\(error)" }
        }
        var missing = config
        missing.cluster.curveSecretKeyFile = "nope.key"
        #expect(failure { _ = try CoordinatorSettings(config: missing, runModel: RunModel(ownModel: missing.model)) } == "cluster.curve_secret_key_file: nope.key: cannot read file")
        missing = config
        missing.cluster.authorizedKeysFile = "nope.txt"
        #expect(failure { _ = try CoordinatorSettings(config: missing, runModel: RunModel(ownModel: missing.model)) } == "cluster.authorized_keys_file: nope.txt: cannot read file")
        missing = config
        missing.cluster.workerSecretKeyFile = "nope.key"
        #expect(failure { _ = try WorkerSettings(config: missing, name: "w") } == "cluster.worker_secret_key_file: nope.key: cannot read file")
        missing = config
        missing.cluster.serverPublicKeyFile = workerFiles.secret + ".absent"
        #expect(failure { _ = try WorkerSettings(config: missing, name: "w") }
            == "cluster.server_public_key_file: \(workerFiles.secret).absent: cannot read file")

        // Without keys a worker connects only to a local endpoint (or with allow_insecure), as
        // the coordinator binds only one: it used to talk plain text to any host.
        var plainWorker = Config()
        #expect(failure { _ = try WorkerSettings(config: plainWorker, name: "w", endpoint: "tcp://192.0.2.1:5611") }
            == "refusing to connect to tcp://192.0.2.1:5611 without CURVE keys: set cluster.worker_secret_key_file and "
            + "cluster.server_public_key_file (see `cerm keygen`), connect to a loopback address, or set cluster.allow_insecure = true")
        #expect(failure { _ = try WorkerSettings(config: plainWorker, name: "w", endpoint: "tcp://127.0.0.1:5611") } == nil)
        plainWorker.cluster.allowInsecure = true
        #expect(failure { _ = try WorkerSettings(config: plainWorker, name: "w", endpoint: "tcp://192.0.2.1:5611") } == nil)
    }
}
