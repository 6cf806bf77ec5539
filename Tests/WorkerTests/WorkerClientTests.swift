import Configuration
import Foundation
import Logging
@testable import Method
@testable import Runtime
@testable import Shared
import Testing
@testable import WireProtocol
@testable import Worker

/// An executor that records what it was given and answers one criteria trajectory per pair.
final class RecordingExecutor: RolloutExecutor, @unchecked Sendable {
    private let lock = NSLock()
    private var log: [String] = []
    private var policyStorage: [UnsafeRawPointer?] = []

    var calls: [String] { lock.withLock { log } }
    /// Where each policy version's wire bytes were, in the order prepared.
    var policyAddresses: [UnsafeRawPointer?] { lock.withLock { policyStorage } }

    func prepareModel(description: [UInt8]) throws {
        lock.withLock { log.append("model \(description.count)B \(Checksum.fnv1a64(description))") }
    }

    func prepare(policyVersion: UInt64, weights: [UInt8]) throws {
        lock.withLock {
            log.append("prepare v\(policyVersion) \(weights.count)B \(Checksum.fnv1a64(weights))")
            policyStorage.append(weights.withUnsafeBytes { $0.baseAddress })
        }
    }

    func prepareReference(weights: [UInt8]) throws {
        lock.withLock { log.append("reference \(weights.count)B \(Checksum.fnv1a64(weights))") }
    }

    func run(task: TaskMessage) throws -> [Trajectory] {
        lock.withLock { log.append("run task \(task.taskID)") }
        return Self.trajectories(task.pairs)
    }

    static func trajectories(_ pairs: [TaskPair]) -> [Trajectory] {
        pairs.map {
            Trajectory(id: TrajectoryID(pairID: $0.pairID, stage: .criteria, criteriaIndex: 0, responseIndex: 0, sampleIndex: 0),
                       promptTokenCount: 1, tokens: [7], behaviourLogprobs: [-1], referenceLogprobs: [-1], finishReason: .eos, text: "x")
        }
    }
}

/// Runs `body` on its own thread; `value` waits for it.
final class WorkerThread: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<WorkerOutcome, any Error>?

    init(_ client: WorkerClient) {
        let thread = Thread { [self] in
            result = Result { try client.run() }
            done.signal()
        }
        thread.start()
    }

    func value(timeout: Double = 20) throws -> WorkerOutcome {
        guard done.wait(timeout: .now() + timeout) == .success, let result else { throw CermError.invalid("worker did not finish") }
        return try result.get()
    }
}

/// The worker against a scripted coordinator: a bare ROUTER driven by the test.
@Suite(.serialized) struct WorkerClientTests {
    /// A worker of a pretrained model (`model.source`) learns its vocabulary from the
    /// coordinator, so it decodes gradient tasks with any token id (its executor checks them
    /// against the model); a worker of cerm's own model holds them to `model.vocab_size`.
    @Test func aPretrainedModelsWorkerDecodesTheTokensOfItsVocabulary() throws {
        let row = GradientRow(id: .criteria(pair: 1, 0), sequence: [1, 9690, 2], promptLength: 1, behaviourLogprobs: [-1, -2],
                              referenceLogprobs: [-1, -2], advantage: 1, scale: 0.5)
        let task = Message.gradientTask(GradientTaskMessage(taskID: 3, step: 1, miniBatch: 0, shard: 0, policyVersion: 0, temperature: 1,
                                                            loss: GRPOLossOptions(), workspaceFloats: 1 << 20, rows: [row]))
        let frames = try MessageCodec().encode(task)
        var pretrained = Config()
        pretrained.model.source = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
        let settings = try WorkerSettings(config: pretrained, name: "w", endpoint: "tcp://127.0.0.1:5999")
        #expect(try MessageCodec(limits: settings.limits).decode(frames) == task)
        let own = try WorkerSettings(config: Config(), name: "w", endpoint: "tcp://127.0.0.1:5999")
        #expect(throws: ProtocolError.tokenOutOfRange(field: "GRADIENT_TASK.rows[0].sequence", index: 1, token: 9690, vocabularySize: 264)) {
            try MessageCodec(limits: own.limits).decode(frames)
        }
    }

    static let limits = ProtocolLimits(maxMessageBytes: 1 << 20)
    static let welcome = WelcomeMessage(heartbeatIntervalMs: 50, heartbeatTimeoutMs: 300, policyVersion: 0, maxMessageBytes: 1 << 20)

    static func quiet() -> Logger {
        var logger = Logger(label: "worker-test")
        logger.logLevel = .critical
        return logger
    }

    static func settings(_ endpoint: String) -> WorkerSettings {
        WorkerSettings(endpoint: endpoint, name: "solo", configHash: 5, limits: limits, heartbeatInterval: 0.05, heartbeatTimeout: 0.3)
    }

    /// Next message from the router that is not a HEARTBEAT, within 10 s.
    static func next(_ router: RouterChannel) throws -> (RoutingID, Message)? {
        let deadline = SystemClock().now() + 10
        while SystemClock().now() < deadline {
            guard let (peer, message) = try router.receive(timeoutMs: 100) else { continue }
            if case .heartbeat = message { continue }
            return (peer, message)
        }
        return nil
    }

    @Test func fetchesModelReferenceAndPolicyWeightsInChunksRunsTheTaskAndAsksForMore() throws {
        let context = try ZMQContext()
        let router = try RouterChannel(context: context, bind: "tcp://127.0.0.1:*", codec: MessageCodec(limits: Self.limits), security: .none)
        let executor = RecordingExecutor()
        let client = WorkerClient(settings: Self.settings(router.endpoint), executor: executor, logger: Self.quiet())
        let worker = WorkerThread(client)

        let (peer, hello) = try #require(try Self.next(router))
        #expect(hello == .hello(HelloMessage(name: "solo", capacity: 1, configHash: 5, kind: .cpu)))
        try router.send(.welcome(Self.welcome), to: peer)
        #expect(try Self.next(router)?.1 == .ready(credit: 1))

        var publisher = WeightsPublisher(retain: 4)
        let model = (0..<12).map { UInt8(100 + $0) }
        let reference = (0..<25).map { UInt8($0) }, policy = (0..<31).map { UInt8(200 - $0) }
        publisher.publish(PublishedWeights(version: WeightsVersion.model, bytes: model, chunkBytes: 10))
        publisher.publish(PublishedWeights(version: WeightsVersion.reference, bytes: reference, chunkBytes: 10))
        publisher.publish(PublishedWeights(version: 5, bytes: policy, chunkBytes: 10))
        let pairs = [TaskPair(pairID: 3, query: "q", responses: ["a", "b"])]
        let parameters = RolloutParameters(nc: 1, ne: 1, criteriaMaxTokens: 4, evaluationMaxTokens: 4, temperature: 1, topP: 1)
        try router.send(.task(TaskMessage(taskID: 11, step: 1, policyVersion: 5, runSeed: 1, parameters: parameters, pairs: pairs)), to: peer)

        // The model first (2 chunks), the reference (3 chunks), then version 5 (4 chunks).
        var requested: [String] = []
        while true {
            let (_, message) = try #require(try Self.next(router))
            guard case let .weightsRequest(version, index) = message else {
                #expect(message == .result(ResultMessage(taskID: 11, policyVersion: 5, trajectories: RecordingExecutor.trajectories(pairs))))
                break
            }
            let name = switch version { case WeightsVersion.model: "model"; case WeightsVersion.reference: "ref"; default: "v\(version)" }
            requested.append("\(name)#\(index)")
            try router.send(publisher.reply(version: version, chunkIndex: index), to: peer)
        }
        #expect(requested == ["model#0", "model#1", "ref#0", "ref#1", "ref#2", "v5#0", "v5#1", "v5#2", "v5#3"])
        #expect(try Self.next(router)?.1 == .ready(credit: 1))
        #expect(Array(executor.calls.prefix(4)) == ["model 12B \(Checksum.fnv1a64(model))", "reference 25B \(Checksum.fnv1a64(reference))",
                                                   "prepare v5 31B \(Checksum.fnv1a64(policy))", "run task 11"])

        // The next version is assembled into the wire buffer of the one loaded before.
        let policy7 = policy.map { $0 ^ 0x3C }
        publisher.publish(PublishedWeights(version: 7, bytes: policy7, chunkBytes: 10))
        try router.send(.task(TaskMessage(taskID: 12, step: 2, policyVersion: 7, runSeed: 1, parameters: parameters, pairs: pairs)), to: peer)
        while true {
            let (_, message) = try #require(try Self.next(router))
            guard case let .weightsRequest(version, index) = message else {
                #expect(message == .result(ResultMessage(taskID: 12, policyVersion: 7, trajectories: RecordingExecutor.trajectories(pairs))))
                break
            }
            try router.send(publisher.reply(version: version, chunkIndex: index), to: peer)
        }
        #expect(try Self.next(router)?.1 == .ready(credit: 1))
        #expect(Array(executor.calls.suffix(2)) == ["prepare v7 31B \(Checksum.fnv1a64(policy7))", "run task 12"])
        let addresses = executor.policyAddresses
        #expect(addresses.count == 2 && addresses[0] == addresses[1])

        // A version the coordinator no longer holds: the task is dropped and credit returned.
        try router.send(.task(TaskMessage(taskID: 13, step: 3, policyVersion: 6, runSeed: 1, parameters: parameters, pairs: pairs)), to: peer)
        #expect(try Self.next(router)?.1 == .weightsRequest(version: 6, chunkIndex: 0))
        try router.send(.weightsUnavailable(version: 6, latestVersion: 7), to: peer)
        #expect(try Self.next(router)?.1 == .ready(credit: 1))

        try router.send(.goodbye(reason: "done"), to: peer)
        #expect(try worker.value() == .goodbye(reason: "done"))
        #expect(executor.calls.count == 6)
    }

    @Test func aSilentCoordinatorMakesTheWorkerReconnectWithANewHello() throws {
        let context = try ZMQContext()
        let router = try RouterChannel(context: context, bind: "tcp://127.0.0.1:*", codec: MessageCodec(limits: Self.limits), security: .none)
        let client = WorkerClient(settings: Self.settings(router.endpoint), executor: RecordingExecutor(), logger: Self.quiet())
        let worker = WorkerThread(client)

        let (first, hello) = try #require(try Self.next(router))
        guard case .hello = hello else { Issue.record("expected HELLO, got \(hello)"); return }
        try router.send(.welcome(Self.welcome), to: first)
        #expect(try Self.next(router)?.1 == .ready(credit: 1))
        // Say nothing more: after 300 ms of silence the worker must come back as a new peer.
        let (second, again) = try #require(try Self.next(router))
        #expect(again == hello)
        #expect(second != first)
        try router.send(.goodbye(reason: "bye"), to: second)
        #expect(try worker.value() == .goodbye(reason: "bye"))
        #expect(client.sessions == 2)
    }

    @Test func theReconnectWarningGivesTheRealSilenceAndAHintWhenNothingWasEverHeard() {
        let curve = ChannelSecurity.curveClient(serverKey: "s", keys: CurveKeyPair(publicKey: "p", secretKey: "k"))
        func report(_ cause: ReconnectReport.Cause, heard: Bool, _ security: ChannelSecurity = .none, welcomedBefore: Bool = false) -> String {
            ReconnectReport(cause: cause, silentSeconds: 1.0149, heardSinceConnecting: heard, everWelcomed: welcomedBefore,
                            security: security, endpoint: "tcp://10.0.0.1:5557").message(delay: 1.03)
        }
        #expect(report(.timeout, heard: true) == "coordinator silent for 1.01 s; reconnecting in 1.03 s")
        #expect(report(.connectionLost, heard: true) == "lost the connection to the coordinator (silent for 1.01 s); reconnecting in 1.03 s")
        #expect(report(.receiveFailed, heard: true) == "cannot receive from the coordinator (silent for 1.01 s); reconnecting in 1.03 s")
        #expect(report(.connectionLost, heard: false, curve)
            == "no reply since connecting 1.01 s ago: check that this worker's public key is in the coordinator's authorized_keys_file and server_public_key_file is the coordinator's key; reconnecting in 1.03 s")
        #expect(report(.timeout, heard: false)
            == "no reply since connecting 1.01 s ago: check that a coordinator listens at tcp://10.0.0.1:5557 and, if it uses CURVE, set cluster.worker_secret_key_file and cluster.server_public_key_file; reconnecting in 1.03 s")
        // A worker that was welcomed before and is cut off (a partition, a coordinator restart)
        // is not told to check its keys (the chaos suite's partitions showed the key hint).
        #expect(report(.connectionLost, heard: false, curve, welcomedBefore: true)
            == "no reply since reconnecting 1.01 s ago (the coordinator welcomed this worker before, so not a key or endpoint problem: the network or the coordinator is down); reconnecting in 1.03 s")
    }

    @Test func aWorkerWhoseKeyIsNotAuthorizedSaysWhatToCheck() throws {
        try #require(ZMQContext.has("curve"))
        let server = try CurveKeyPair.generate(), stranger = try CurveKeyPair.generate()
        let context = try ZMQContext()
        let zap = try ZAPAuthenticator(context: context, authorizedKeys: [])
        try zap.start()
        defer { zap.stop() }
        let router = try RouterChannel(context: context, bind: "tcp://127.0.0.1:*", codec: MessageCodec(limits: Self.limits),
                                       security: .curveServer(secretKey: server.secretKey))
        defer { router.socket.close() }
        let logPath = NSTemporaryDirectory() + "cerm-worker-\(UUID().uuidString).log"
        defer { try? FileManager.default.removeItem(atPath: logPath) }
        let sink = LogSink()
        try sink.attachFile(logPath)
        defer { sink.detachFile() }
        var settings = Self.settings(router.endpoint)
        settings.security = .curveClient(serverKey: server.publicKey, keys: stranger)
        let stop = StopSignal()
        let worker = WorkerThread(WorkerClient(settings: settings, executor: RecordingExecutor(), stop: stop,
                                               logger: Logger(label: "worker-test") { CermLogHandler(label: $0, sink: sink) }))
        var warning: String?
        let deadline = SystemClock().now() + 10
        while warning == nil, SystemClock().now() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
            warning = (try? String(contentsOfFile: logPath, encoding: .utf8))?.split(separator: "\n").first { $0.contains("WARN") }.map(String.init)
        }
        stop.request()
        #expect(try worker.value() == .stopped)
        let line = try #require(warning)
        // Not the old "coordinator silent for 0.30 s" (the timeout, whatever happened).
        #expect(line.contains(" WARN  [worker-test] no reply since connecting "))
        #expect(line.contains(" s ago: check that this worker's public key is in the coordinator's authorized_keys_file and server_public_key_file is the coordinator's key; reconnecting in "))
        #expect(zap.statistics.admitted == 0)
    }

    @Test func aStopSendsGoodbyeAndARefusalEndsWithItsReason() throws {
        let context = try ZMQContext()
        let router = try RouterChannel(context: context, bind: "tcp://127.0.0.1:*", codec: MessageCodec(limits: Self.limits), security: .none)
        let stop = StopSignal()
        let worker = WorkerThread(WorkerClient(settings: Self.settings(router.endpoint), executor: RecordingExecutor(), stop: stop, logger: Self.quiet()))
        let (peer, _) = try #require(try Self.next(router))
        try router.send(.welcome(Self.welcome), to: peer)
        #expect(try Self.next(router)?.1 == .ready(credit: 1))
        stop.request()
        #expect(try Self.next(router)?.1 == .goodbye(reason: "worker solo stopping (stop requested)"))
        #expect(try worker.value() == .stopped)

        let refused = WorkerThread(WorkerClient(settings: Self.settings(router.endpoint), executor: RecordingExecutor(), logger: Self.quiet()))
        let (other, _) = try #require(try Self.next(router))
        try router.send(.refuse(reason: "config hash mismatch"), to: other)
        let outcome = try refused.value()
        #expect(outcome == .refused(reason: "config hash mismatch"))
        #expect(outcome.exitCode == 2)
    }
}
