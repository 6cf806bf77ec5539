@testable import Configuration
@testable import Coordinator
@testable import Datasets
@testable import Engine
import EngineConfiguration
import Foundation
import Logging
@testable import Shared
import TestSupport
import Testing
@testable import WireProtocol
import Worker

/// A worker engine that writes the fixture's outputs (teacher forcing) and scores them with the
/// weights it was sent: behaviour log-probs from the published policy, reference log-probs from
/// the published reference model.
final class TeacherForcedExecutor: RolloutExecutor, @unchecked Sendable {
    private let lock = NSLock()
    private let config: Config
    private var policy: ModelWeights?
    private var reference: ModelWeights?

    init(config: Config) { self.config = config }

    /// The learner's model is the config's, which this executor runs already.
    func prepareModel(description: [UInt8]) throws {
        let described = try RunModel(wireDescription: description)
        guard described.architecture == TransformerConfig(config.model) else { throw CermError.invalid("another model: \(described.description)") }
    }

    func prepare(policyVersion: UInt64, weights: [UInt8]) throws {
        let loaded = try ModelWeights(config: TransformerConfig(config.model), wireBytes: weights)
        lock.withLock { policy = loaded }
    }

    func prepareReference(weights: [UInt8]) throws {
        let loaded = try ModelWeights(config: TransformerConfig(config.model), wireBytes: weights)
        lock.withLock { reference = loaded }
    }

    func run(task: TaskMessage) throws -> [Trajectory] {
        let (policy, reference) = lock.withLock { (self.policy, self.reference) }
        guard let policy, let reference else { throw CermError.invalid("run before prepare") }
        return try task.pairs.flatMap {
            try LearnerFixture.trajectories(config: config, policy: policy, reference: reference, step: Int(task.step), pair: $0)
        }
    }
}

/// GRPOLearner and DatasetPairSource inside the real coordinator runtime, one worker over TCP
/// loopback: the run ends with exactly the weights of the same steps done without a network.
@Suite(.serialized) struct LearnerRuntimeTests {
    static let dataPairs = (0..<5).map {
        PreferencePair(id: "p\($0)", query: "add \($0) 1", chosen: "\($0 + 1)", rejected: "\($0 + 2)")
    }

    @Test func coordinatorTrainsWithARealLearner() throws {
        var config = LearnerFixture.config()
        config.run.steps = 2
        config.grpo.pairsPerBatch = 2
        config.cluster.pairsPerTask = 1
        var settings = try CoordinatorSettings(config: config, runModel: RunModel(ownModel: config.model))
        settings.endpoint = "tcp://127.0.0.1:*"
        settings.scheduler.heartbeatInterval = 0.05
        settings.scheduler.heartbeatTimeout = 2
        let directory = try makeTemporaryDirectory("learner-runtime")
        defer { try? FileManager.default.removeItem(atPath: directory) }

        let learner = try GRPOLearner(config: config)
        let service = CoordinatorService(settings: settings, learner: learner,
                                         pairs: try DatasetPairSource(pairs: Self.dataPairs, runSeed: config.run.seed),
                                         checkpoints: CheckpointWriter(directory: directory, keepLast: 3),
                                         logger: RuntimeTests.quiet("coordinator"))
        let (run, endpoint) = try RuntimeTests.startCoordinator(service)
        let workerSettings = WorkerSettings(endpoint: endpoint, name: "w1", configHash: config.hash, limits: settings.limits,
                                            heartbeatInterval: 0.05, heartbeatTimeout: 2)
        let client = WorkerClient(settings: workerSettings, executor: TeacherForcedExecutor(config: config),
                                  logger: RuntimeTests.quiet("worker"))
        let worker = Background("worker-w1") { try client.run() }
        let report = try run.value(timeout: 120)
        _ = worker.wait(timeout: 10)
        #expect(report.outcome == .finished(steps: 2))
        #expect(learner.policyVersion == 2)

        // The same two steps without a network.
        let direct = try GRPOLearner(config: config)
        var source = try DatasetPairSource(pairs: Self.dataPairs, runSeed: config.run.seed)
        for step in 1...2 {
            let batch = try source.nextBatch(count: 2)
            let rollouts = try LearnerFixture.rollouts(config: config, policy: direct.policy, reference: direct.reference,
                                                       step: step, pairs: batch)
            _ = try direct.update(step: step, pairs: batch, rollouts: rollouts)
        }
        #expect(try learner.currentWeights() == direct.currentWeights())

        // The final checkpoint resumes into the same learner state.
        let final = try CheckpointReader.load(path: (directory as NSString).appendingPathComponent("step_2.h5"))
        #expect(final.dataCursor == source.cursor)
        let resumed = try GRPOLearner(config: config)
        try resumed.restore(from: final)
        #expect(try resumed.currentWeights() == direct.currentWeights())
        #expect(resumed.optimizer == direct.optimizer)
    }
}
