@testable import Configuration
@testable import Coordinator
import Datasets
@testable import Engine
import EngineConfiguration
import Foundation
import Method
@testable import Shared
import TestSupport
import Testing
@testable import WireProtocol
import Worker

/// A worker needs nothing but the config: the coordinator serves its pretrained model (here a
/// tiny ChatML tokenizer the worker never sees otherwise) before the weights, and the worker's
/// rollouts are rendered with it. Rendered with anything else, their prompt lengths would not
/// match the coordinator's rebuilt prompts and acceptance would refuse every result.
@Suite(.serialized) struct WorkerTakesTheModelTests {
    @Test func aWorkerWithoutTheSourceRendersWithTheCoordinatorsTokenizer() throws {
        var config = LearnerFixture.config()
        config.model.vocabSize = 32  // the tiny tokenizer's ids
        config.run.steps = 1
        config.grpo.pairsPerBatch = 2
        config.cluster.pairsPerTask = 1
        let tokenizer = StoredTokenizer(tokenizerJSON: Array(GenerateCommandTests.tokenizerJSON.utf8), bosToken: "<|im_start|>",
                                        eosToken: "<|im_end|>", padToken: nil, unkToken: nil, chatTemplate: "chatml",
                                        chatTemplateSystem: nil, chatTemplateJinja: nil)
        let runModel = try RunModel(architecture: TransformerConfig(config.model), tokenizer: tokenizer, source: "/nowhere/tiny.gguf")
        var settings = try CoordinatorSettings(config: config, runModel: runModel)
        settings.endpoint = "tcp://127.0.0.1:*"
        settings.scheduler.heartbeatInterval = 0.05
        settings.scheduler.heartbeatTimeout = 2
        let directory = try makeTemporaryDirectory("worker-takes-model")
        defer { try? FileManager.default.removeItem(atPath: directory) }

        let learner = try GRPOLearner(config: config, runModel: runModel, initialWeights: ModelWeights(initialFor: config))
        let pairs = (0..<2).map { PreferencePair(id: "p\($0)", query: "ab \($0)", chosen: "ab", rejected: "c") }
        let service = CoordinatorService(settings: settings, learner: learner,
                                         pairs: try DatasetPairSource(pairs: pairs, runSeed: config.run.seed),
                                         checkpoints: CheckpointWriter(directory: directory, keepLast: 1),
                                         logger: RuntimeTests.quiet("coordinator"))
        let (run, endpoint) = try RuntimeTests.startCoordinator(service)
        let executor = EngineRolloutExecutor(takingCoordinatorModel: config, logger: RuntimeTests.quiet("executor"))
        #expect(executor.model == nil)
        let workerSettings = WorkerSettings(endpoint: endpoint, name: "w1", configHash: config.hash, limits: settings.limits,
                                            heartbeatInterval: 0.05, heartbeatTimeout: 2)
        let client = WorkerClient(settings: workerSettings, executor: executor, logger: RuntimeTests.quiet("worker"))
        let worker = Background("worker-w1") { try client.run() }
        let report = try run.value(timeout: 120)
        _ = worker.wait(timeout: 10)
        #expect(report.outcome == .finished(steps: 1))
        #expect(executor.model == runModel.architecture)
        #expect(executor.format?.chat.stopTokens == runModel.chat.stopTokens)
        #expect(executor.format?.chat.firstTurn(user: "ab c") == runModel.chat.firstTurn(user: "ab c"))
    }

    /// An executor given its own model checks the coordinator's architecture instead.
    @Test func anExecutorWithItsOwnModelRefusesAnotherArchitecture() throws {
        let config = LearnerFixture.config()
        let executor = try EngineRolloutExecutor(model: TransformerConfig(config.model), format: CompactFormat(), logger: RuntimeTests.quiet("executor"))
        try executor.prepareModel(description: RunModel(architecture: TransformerConfig(config.model)).wireDescription)
        var other = TransformerConfig(config.model)
        other.layers += 1
        #expect(throws: CermError.invalid("the coordinator runs \(other.jsonString()), this executor \(TransformerConfig(config.model).jsonString())")) {
            try executor.prepareModel(description: RunModel(architecture: other).wireDescription)
        }
    }
}
