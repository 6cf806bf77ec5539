@testable import Coordinator
import Engine
import EngineConfiguration
import Foundation
import Logging
@testable import Method
@testable import Shared
import Testing
@testable import WireProtocol
import Worker

/// A learner stand-in that serves real model weights (fixed across versions) and records the
/// rollouts of every step, so real engine workers can be checked end to end.
final class RecordingWeightsLearner: Learner, @unchecked Sendable {
    private let lock = NSLock()
    private(set) var policyVersion: UInt64 = 0
    let policy: [UInt8]
    let reference: [UInt8]
    /// cerm's own model of the weights' architecture (the engine executor checks it).
    let description: [UInt8]
    private var rolloutsByStep: [Int: StepRollouts] = [:]
    private var pairsByStep: [Int: [TaskPair]] = [:]

    init(policy: ModelWeights, reference: ModelWeights) {
        self.policy = policy.wireBytes
        self.reference = reference.wireBytes
        description = RunModel(architecture: policy.config).wireDescription
    }

    var steps: [Int: (pairs: [TaskPair], rollouts: StepRollouts)] {
        lock.withLock { Dictionary(uniqueKeysWithValues: rolloutsByStep.map { ($0.key, (pairsByStep[$0.key] ?? [], $0.value)) }) }
    }

    func currentWeights() throws -> [UInt8] { policy }
    func referenceWeights() throws -> [UInt8] { reference }
    func modelDescription() -> [UInt8] { description }

    func update(step: Int, pairs: [TaskPair], rollouts: StepRollouts) throws -> StepMetrics {
        lock.withLock {
            rolloutsByStep[step] = rollouts
            pairsByStep[step] = pairs
            policyVersion += 1
            return StepMetrics(step: step, policyVersion: policyVersion)
        }
    }

    func trainingState(step: Int, dataCursor: DataCursor) throws -> TrainingState {
        throw CermError.invalid("no checkpoints in this test")
    }

    func restore(from state: TrainingState) throws {
        throw CermError.invalid("no checkpoints in this test")
    }
}

/// Coordinator and workers running the real engine executor over TCP loopback.
@Suite(.serialized) struct EngineWorkerRuntimeTests {
    static let model = TransformerConfig(family: .qwen3, hiddenSize: 16, layers: 1, heads: 2, kvHeads: 1, headDim: 8, ffnSize: 32,
                                         vocabSize: ByteTokenizer.vocabularySize, maxSeqLen: 128, ropeTheta: 10_000, rmsNormEps: 1e-6,
                                         qkNorm: true, qkvBias: false, tieEmbeddings: true)
    static let rollout = RolloutParameters(nc: 2, ne: 1, criteriaMaxTokens: 10, evaluationMaxTokens: 6, temperature: 1, topP: 1)
    static let limits = ProtocolLimits(maxMessageBytes: 1 << 20, vocabularySize: UInt32(ByteTokenizer.vocabularySize))

    static func quiet(_ label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = .warning
        return logger
    }

    @Test(arguments: [1, 2]) func engineWorkersDeliverWhatALocalExecutorSamples(workerCount: Int) throws {
        let policy = ModelWeights(config: Self.model, seed: 1, initStd: 0.6)
        let reference = ModelWeights(config: Self.model, seed: 2, initStd: 0.6)
        let learner = RecordingWeightsLearner(policy: policy, reference: reference)
        let settings = CoordinatorSettings(
            endpoint: "tcp://127.0.0.1:*",
            scheduler: SchedulerSettings(mode: .sync, pairsPerTask: 2, heartbeatInterval: 0.05, heartbeatTimeout: 2,
                                         configHash: 0xE5, maxMessageBytes: 1 << 20),
            limits: Self.limits, rollout: Self.rollout, runSeed: 99, steps: 2, pairsPerBatch: 3, saveEvery: 100,
            weightChunkBytes: 1 << 14)
        let service = CoordinatorService(settings: settings, learner: learner, pairs: FakePairs(count: 5), logger: Self.quiet("coordinator"))
        let coordinator = Background("coordinator") { try service.run() }
        guard let endpoint = service.waitForEndpoint(timeout: 10) else {
            _ = coordinator.wait(timeout: 1)
            throw CermError.invalid("coordinator did not bind")
        }
        let workers = try (0..<workerCount).map { index in
            let client = WorkerClient(
                settings: WorkerSettings(endpoint: endpoint, name: "engine\(index)", configHash: 0xE5, limits: Self.limits,
                                         heartbeatInterval: 0.05, heartbeatTimeout: 2),
                executor: try EngineRolloutExecutor(model: Self.model, format: CompactFormat(), logger: Self.quiet("executor")),
                logger: Self.quiet("worker"))
            return Background("worker\(index)") { try client.run() }
        }
        #expect(try coordinator.value(timeout: 60).outcome == .finished(steps: 2))
        for worker in workers { #expect(try worker.value().exitCode == 0) }

        // Whatever the split into tasks and workers, each step's rollouts are those of one local
        // executor running the whole step as a single task.
        let local = try EngineRolloutExecutor(model: Self.model, format: CompactFormat(), logger: Self.quiet("executor"))
        try local.load(policy: policy)
        try local.load(reference: reference)
        let steps = learner.steps
        #expect(steps.keys.sorted() == [1, 2])
        for (step, recorded) in steps {
            let task = TaskMessage(taskID: 0, step: UInt64(step), policyVersion: 0, runSeed: 99, parameters: Self.rollout, pairs: recorded.pairs)
            #expect(recorded.pairs.count == 3)
            #expect(recorded.rollouts.trajectories == (try local.run(task: task)), "step \(step)")
        }
    }
}
