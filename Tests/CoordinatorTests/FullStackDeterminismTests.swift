@testable import Configuration
@testable import Coordinator
@testable import Datasets
import Engine
import EngineConfiguration
import Foundation
import Logging
@testable import Method
@testable import Runtime
@testable import Shared
import TestSupport
import Testing
@testable import WireProtocol
import PolicyGradient
import Worker

/// A real learner that also keeps the metrics of every step, so a test can check that the run
/// had a learning signal (evaluations parsed, rewards non-zero).
final class MetricsRecordingLearner: Learner, @unchecked Sendable {
    let learner: GRPOLearner
    private let lock = NSLock()
    private var recorded: [StepMetrics] = []
    private var versions: [[UInt64]] = []

    init(_ learner: GRPOLearner) { self.learner = learner }

    var metrics: [StepMetrics] { lock.withLock { recorded } }
    /// Per step, the policy versions its trajectories were sampled with.
    var sampledVersions: [[UInt64]] { lock.withLock { versions } }
    var policyVersion: UInt64 { learner.policyVersion }
    func currentWeights() throws -> [UInt8] { try learner.currentWeights() }
    func referenceWeights() throws -> [UInt8] { try learner.referenceWeights() }
    func modelDescription() -> [UInt8] { learner.modelDescription() }

    func update(step: Int, pairs: [TaskPair], rollouts: StepRollouts) throws -> StepMetrics {
        let metrics = try learner.update(step: step, pairs: pairs, rollouts: rollouts)
        lock.withLock {
            recorded.append(metrics)
            versions.append(Set(rollouts.versionByPair.values).sorted())
        }
        return metrics
    }

    func trainingState(step: Int, dataCursor: DataCursor) throws -> TrainingState {
        try learner.trainingState(step: step, dataCursor: dataCursor)
    }

    func restore(from state: TrainingState) throws { try learner.restore(from: state) }
    func previousPolicyWeights() throws -> [(version: UInt64, bytes: [UInt8])] { try learner.previousPolicyWeights() }
    func distributeGradients(to remote: any RemoteGradients) throws { try learner.distributeGradients(to: remote) }
}

/// An engine executor whose worker "dies" (stops without GOODBYE) as soon as it is handed a task
/// of `crashStep` or later (a gradient task, with `onGradient`): the task is never answered and
/// must be re-run elsewhere. "Or later": which worker takes which task is up to timing (in
/// fixed-lag mode the other worker can take every task of `crashStep`), and the victim must die
/// holding one whichever it gets.
final class CrashingExecutor: RolloutExecutor, @unchecked Sendable {
    let inner: EngineRolloutExecutor
    let crashStep: UInt64
    let crash: StopSignal
    let onGradient: Bool

    init(inner: EngineRolloutExecutor, crashStep: UInt64, crash: StopSignal, onGradient: Bool = false) {
        self.inner = inner
        self.crashStep = crashStep
        self.crash = crash
        self.onGradient = onGradient
    }

    func gradient(task: GradientTaskMessage) throws -> ShardGradient {
        if onGradient && task.step >= crashStep {
            crash.request()
            Thread.sleep(forTimeInterval: 0.3)
        }
        return try inner.gradient(task: task)
    }

    func prepare(policyVersion: UInt64, weights: [UInt8]) throws { try inner.prepare(policyVersion: policyVersion, weights: weights) }
    func prepareReference(weights: [UInt8]) throws { try inner.prepareReference(weights: weights) }
    func prepareModel(description: [UInt8]) throws { try inner.prepareModel(description: description) }

    func run(task: TaskMessage) throws -> [Trajectory] {
        if !onGradient && task.step >= crashStep {
            crash.request()
            // Give the client time to notice the crash before a result could be sent.
            Thread.sleep(forTimeInterval: 0.3)
        }
        return try inner.run(task: task)
    }
}

/// An engine executor whose first gradient has a NaN in parameter 0: the coordinator must
/// refuse it, name the worker and have the shard computed again.
final class NaNGradientExecutor: RolloutExecutor, @unchecked Sendable {
    let inner: EngineRolloutExecutor
    private let lock = NSLock()
    private var corrupted = false

    init(inner: EngineRolloutExecutor) { self.inner = inner }

    func prepare(policyVersion: UInt64, weights: [UInt8]) throws { try inner.prepare(policyVersion: policyVersion, weights: weights) }
    func prepareReference(weights: [UInt8]) throws { try inner.prepareReference(weights: weights) }
    func prepareModel(description: [UInt8]) throws { try inner.prepareModel(description: description) }
    func run(task: TaskMessage) throws -> [Trajectory] { try inner.run(task: task) }

    func gradient(task: GradientTaskMessage) throws -> ShardGradient {
        var output = try inner.gradient(task: task)
        lock.withLock {
            if !corrupted { output.gradient[0] = .nan }
            corrupted = true
        }
        return output
    }
}

/// The whole stack in one process: real CoordinatorService, real GRPOLearner, real
/// EngineRolloutExecutor workers over TCP loopback, a tiny model first taught the compact format
/// (so criteria parse, evaluations run and rewards are non-zero). The final policy must be
/// bitwise the same whatever the number of workers and whether a worker dies mid-step.
@Suite(.serialized) struct FullStackDeterminismTests {
    static let dataPairs = (0..<4).map {
        PreferencePair(id: "p\($0)", query: "q\($0)", chosen: "good", rejected: "bad")
    }

    static func config() -> Config {
        var config = Config()
        config.run.seed = 17
        config.run.name = "full-stack"
        config.run.steps = 3
        config.model.family = .qwen3
        config.model.hiddenSize = 32
        config.model.layers = 1
        config.model.heads = 2
        config.model.kvHeads = 1
        config.model.ffnSize = 64
        config.model.vocabSize = 264
        config.model.maxSeqLen = 128
        config.model.initStd = 0.1
        config.rollout.format = .compact
        config.rollout.nc = 2
        config.rollout.ne = 1
        config.rollout.criteriaMaxTokens = 24
        config.rollout.evaluationMaxTokens = 24
        config.rollout.temperature = 1
        config.grpo.pairsPerBatch = 2
        config.grpo.miniBatches = 2
        config.grpo.learningRate = 1e-3
        config.grpo.klCoef = 0.05
        config.cluster.pairsPerTask = 1
        return config
    }

    static let criteriaText = CompactFormat().criteriaText(analysis: "a", items: ["x"])

    static func evaluationText(score: Double) -> String {
        CompactFormat().evaluationText(items: [ScoredItem(analysis: "y", score: score)], otherPoint: nil, overall: 2 * score)
    }

    /// Thirty full-batch AdamW steps of supervised fine-tuning on the format (two of the queries):
    /// the criteria turn writes one criterion, the evaluation turn scores "good" 4 or 3 out of 5
    /// and "bad" 2 or 3, so sampled evaluations disagree and reward groups have a spread.
    /// Deterministic (fixed init seed, fixed data, no sampling).
    static func formatTrainedWeights(model: TransformerConfig, steps: Int) throws -> ModelWeights {
        let format = CompactFormat()
        var sequences: [[TokenID]] = []
        var promptLengths: [Int] = []
        for pair in dataPairs.prefix(2) {
            let criteriaPrompt = format.criteriaPrompt(query: pair.query)
            let criteriaOutput = format.outputTokens(text: criteriaText)
            sequences.append(criteriaPrompt + criteriaOutput)
            promptLengths.append(criteriaPrompt.count)
            for (response, score) in [(pair.chosen, 4.0), (pair.chosen, 3.0), (pair.rejected, 2.0), (pair.rejected, 3.0)] {
                let prompt = format.evaluationPrompt(criteriaPrompt: criteriaPrompt, criteriaOutput: criteriaOutput, response: response)
                sequences.append(prompt + format.outputTokens(text: evaluationText(score: score)))
                promptLengths.append(prompt.count)
            }
        }
        let batch = TokenBatch(sequences: sequences, scoredFrom: promptLengths)
        let scored = Float(batch.scoredCount)
        var weights = ModelWeights(config: model, seed: 3, initStd: 0.1)
        var optimizer = AdamW(layout: weights.layout)
        var gradients = ModelGradients(config: model)
        for _ in 0..<steps {
            gradients.zero()
            try Transformer(weights: weights).forwardBackward(batch, into: &gradients) { pass in
                pass.logprobs.map { row in row.map { _ in -1 / scored } }
            }
            try optimizer.step(weights: &weights, gradients: gradients, learningRate: 2e-2)
        }
        return weights
    }

    static func quiet(_ label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = .warning
        return logger
    }

    enum Scenario: CustomStringConvertible {
        case workers(Int)
        case oneKilledMidStep
        /// Two workers; one dies on its gradient task of step 2 (distributed update).
        case oneKilledDuringGradient
        /// Two workers; one sends a gradient with a NaN once (distributed update).
        case oneSendsANaNGradient

        var description: String {
            switch self {
            case let .workers(count): "\(count) worker(s)"
            case .oneKilledMidStep: "2 workers, one killed mid-step"
            case .oneKilledDuringGradient: "2 workers, one killed on a gradient task"
            case .oneSendsANaNGradient: "2 workers, one sends a NaN gradient"
            }
        }

        var killsOne: Bool {
            switch self {
            case .oneKilledMidStep, .oneKilledDuringGradient: true
            case .workers, .oneSendsANaNGradient: false
            }
        }

        var killsOnGradient: Bool {
            if case .oneKilledDuringGradient = self { return true }
            return false
        }
    }

    /// Runs `config.run.steps` steps under `scenario` (from `resume` when given, writing
    /// checkpoints to `checkpoints`); returns the final policy and the per-step metrics.
    static func run(_ scenario: Scenario, config: Config, initial: ModelWeights, resume: ResumePoint? = nil,
                    checkpoints: CheckpointWriter? = nil) throws -> (ModelWeights, [StepMetrics], CoordinatorReport) {
        try runRecording(scenario, config: config, initial: initial, resume: resume, checkpoints: checkpoints).result
    }

    /// ``run(_:config:initial:resume:checkpoints:)`` with the recording learner.
    static func runRecording(_ scenario: Scenario, config: Config, initial: ModelWeights, resume: ResumePoint? = nil,
                             checkpoints: CheckpointWriter? = nil, logger: Logger = quiet("coordinator"))
        throws -> (result: (ModelWeights, [StepMetrics], CoordinatorReport), learner: MetricsRecordingLearner) {
        var settings = try CoordinatorSettings(config: config, runModel: RunModel(ownModel: config.model))
        settings.endpoint = "tcp://127.0.0.1:*"
        settings.scheduler.heartbeatInterval = 0.05
        settings.scheduler.heartbeatTimeout = scenario.killsOne ? 0.5 : 2
        let learner = MetricsRecordingLearner(try GRPOLearner(config: config, initialWeights: initial, logger: quiet("learner")))
        let service = CoordinatorService(settings: settings, learner: learner,
                                         pairs: try DatasetPairSource(pairs: dataPairs, runSeed: config.run.seed),
                                         resume: resume, checkpoints: checkpoints, logger: logger)
        let (coordinator, endpoint) = try RuntimeTests.startCoordinator(service)
        func worker(_ name: String, _ executor: any RolloutExecutor, crash: StopSignal? = nil) -> Background<WorkerOutcome> {
            let client = WorkerClient(
                settings: WorkerSettings(endpoint: endpoint, name: name, configHash: config.hash, limits: settings.limits,
                                         heartbeatInterval: 0.05, heartbeatTimeout: 2),
                executor: executor, crash: crash, logger: quiet("worker.\(name)"))
            return Background("worker-\(name)") { try client.run() }
        }
        let model = TransformerConfig(config.model)
        var workers: [Background<WorkerOutcome>] = []
        var victim: Background<WorkerOutcome>?
        switch scenario {
        case let .workers(count):
            for index in 0..<count {
                workers.append(worker("w\(index)", try EngineRolloutExecutor(model: model, format: CompactFormat(), logger: quiet("executor"))))
            }
        case .oneKilledMidStep, .oneKilledDuringGradient:
            let crash = StopSignal()
            let executor = CrashingExecutor(inner: try EngineRolloutExecutor(model: model, format: CompactFormat(), logger: quiet("executor")),
                                            crashStep: 2, crash: crash, onGradient: scenario.killsOnGradient)
            victim = worker("victim", executor, crash: crash)
            workers.append(worker("survivor", try EngineRolloutExecutor(model: model, format: CompactFormat(), logger: quiet("executor"))))
        case .oneSendsANaNGradient:
            workers.append(worker("nan", NaNGradientExecutor(inner: try EngineRolloutExecutor(model: model, format: CompactFormat(),
                                                                                             logger: quiet("executor")))))
            workers.append(worker("honest", try EngineRolloutExecutor(model: model, format: CompactFormat(), logger: quiet("executor"))))
        }
        let report = try coordinator.value(timeout: 120)
        if let victim { #expect(try victim.value() == .crashed) }
        for worker in workers { #expect(try worker.value().exitCode == 0) }
        return ((learner.learner.policy, learner.metrics, report), learner)
    }

    @Test func finalPolicyIsBitwiseTheSameForOneThreeAndAKilledWorker() throws {
        let config = Self.config()
        let model = TransformerConfig(config.model)
        let initial = try Self.formatTrainedWeights(model: model, steps: 30)

        let (single, metrics, report) = try Self.run(.workers(1), config: config, initial: initial)
        #expect(report.outcome == .finished(steps: 3))
        #expect(metrics.map(\.step) == [1, 2, 3])
        // The run had a learning signal: criteria parsed, evaluations ran and scored.
        #expect(metrics.contains { $0.validFormatRate > 0 })
        #expect(metrics.contains { $0.meanEvaluationReward != 0 || $0.meanCriteriaReward != 0 })
        #expect(metrics.contains { $0.fracZeroStd < 1 })
        #expect(single != initial)

        let (three, _, _) = try Self.run(.workers(3), config: config, initial: initial)
        #expect(LearnerFixture.bitsEqual(three.values, single.values), "3 workers")

        let (killed, _, killedReport) = try Self.run(.oneKilledMidStep, config: config, initial: initial)
        #expect(killedReport.outcome == .finished(steps: 3))
        #expect(killedReport.statistics.tasksRequeued >= 1)
        #expect(LearnerFixture.bitsEqual(killed.values, single.values), "2 workers, one killed mid-step")
    }

    /// `grpo.distributed_update`: the workers compute each mini-batch's two data shards (the
    /// second mini-batch at intermediate weights they fetch) and the coordinator sums them in
    /// shard order: the final policy and every step's loss metrics are bitwise the coordinator's
    /// own update, with 1, 2 or 3 workers, with a worker killed on its gradient task, and with a
    /// worker whose gradient holds a NaN (refused with the worker named, computed again).
    @Test func distributedUpdateIsBitwiseTheCoordinatorsForAnyWorkersAKillAndABadGradient() throws {
        let local = Self.config()
        let initial = try Self.formatTrainedWeights(model: TransformerConfig(local.model), steps: 30)
        let (expected, expectedMetrics, _) = try Self.run(.workers(2), config: local, initial: initial)
        #expect(expectedMetrics.contains { $0.fracZeroStd < 1 })
        var config = local
        config.grpo.distributedUpdate = true
        for scenario in [Scenario.workers(1), .workers(2), .workers(3), .oneKilledDuringGradient, .oneSendsANaNGradient] {
            let directory = try makeTemporaryDirectory("distributed-update")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let log = try RuntimeTests.trainLog(in: directory)
            defer { log.sink.detachFile() }
            let (weights, metrics, report) = try Self.runRecording(scenario, config: config, initial: initial, logger: log.logger).result
            let lines = try String(contentsOfFile: directory + "/train.log", encoding: .utf8)
            #expect(report.outcome == .finished(steps: 3))
            #expect(LearnerFixture.bitsEqual(weights.values, expected.values), "\(scenario)")
            #expect(metrics.map(\.loss) == expectedMetrics.map(\.loss), "\(scenario)")
            #expect(metrics.map(\.kl) == expectedMetrics.map(\.kl), "\(scenario)")
            #expect(metrics.map(\.entropy) == expectedMetrics.map(\.entropy), "\(scenario)")
            #expect(metrics.map(\.gradNorm) == expectedMetrics.map(\.gradNorm), "\(scenario)")
            // 3 steps of 2 rollout tasks (a pair each) and 2 mini-batches of 2 gradient tasks.
            switch scenario {
            case .oneKilledDuringGradient:
                #expect(report.statistics.tasksRequeued >= 1)
            case .oneSendsANaNGradient:
                #expect(report.statistics.tasksCreated == 3 * (2 + 2 * 2) + 1)
                #expect(lines.contains("from worker nan: invalid gradient: parameter 0 of the gradient is nan; re-queued as task"), "\(lines)")
            default:
                #expect(report.statistics.tasksCreated == 3 * (2 + 2 * 2), "\(scenario)")
            }
        }

        // Three shards per mini-batch: on the coordinator's threads or on 2 workers, the same bits.
        var threeShards = local
        threeShards.grpo.gradientShards = 3
        let (threeHere, _, _) = try Self.run(.workers(1), config: threeShards, initial: initial)
        threeShards.grpo.distributedUpdate = true
        let (threeOnWorkers, _, report) = try Self.run(.workers(2), config: threeShards, initial: initial)
        #expect(report.statistics.tasksCreated > 3 * (2 + 2 * 2))
        #expect(LearnerFixture.bitsEqual(threeOnWorkers.values, threeHere.values), "3 shards")

        // Fixed-lag rollouts: workers sample the next step with an older version while they
        // compute this step's gradients at the newest; the same bits as the coordinator's update.
        var lagged = local
        lagged.cluster.mode = .fixedLag
        lagged.cluster.maxStaleness = 1
        let (laggedHere, _, _) = try Self.run(.workers(2), config: lagged, initial: initial)
        lagged.grpo.distributedUpdate = true
        let (laggedOnWorkers, _, _) = try Self.run(.workers(2), config: lagged, initial: initial)
        #expect(LearnerFixture.bitsEqual(laggedOnWorkers.values, laggedHere.values), "fixed-lag")
    }

    /// A stop while the workers hold a distributed update's gradient tasks (here: the only
    /// worker stops the run on its task of step 2 and then fails) does not hang or drop the
    /// update: the coordinator computes the shards itself, finishes step 2 with the bits of its
    /// own update, saves it and stops.
    @Test func aStopDuringADistributedUpdateFinishesItHere() throws {
        var config = Self.config()
        let initial = try Self.formatTrainedWeights(model: TransformerConfig(config.model), steps: 30)
        config.run.steps = 2
        let (expected, _, _) = try Self.run(.workers(1), config: config, initial: initial)
        config.run.steps = 3
        config.grpo.distributedUpdate = true

        final class StoppingExecutor: RolloutExecutor, @unchecked Sendable {
            let inner: EngineRolloutExecutor
            let stop: StopSignal
            init(inner: EngineRolloutExecutor, stop: StopSignal) {
                self.inner = inner
                self.stop = stop
            }
            func prepare(policyVersion: UInt64, weights: [UInt8]) throws { try inner.prepare(policyVersion: policyVersion, weights: weights) }
            func prepareReference(weights: [UInt8]) throws { try inner.prepareReference(weights: weights) }
            func prepareModel(description: [UInt8]) throws { try inner.prepareModel(description: description) }
            func run(task: TaskMessage) throws -> [Trajectory] { try inner.run(task: task) }
            func gradient(task: GradientTaskMessage) throws -> ShardGradient {
                guard task.step == 2 else { return try inner.gradient(task: task) }
                stop.request()
                Thread.sleep(forTimeInterval: 0.3)
                throw CermError.invalid("this worker computes no gradient of step 2")
            }
        }
        let directory = try makeTemporaryDirectory("distributed-stop")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var settings = try CoordinatorSettings(config: config, runModel: RunModel(ownModel: config.model))
        settings.endpoint = "tcp://127.0.0.1:*"
        settings.scheduler.heartbeatInterval = 0.05
        settings.scheduler.heartbeatTimeout = 2
        let learner = try GRPOLearner(config: config, initialWeights: initial, logger: Self.quiet("learner"))
        let stop = StopSignal()
        let service = CoordinatorService(settings: settings, learner: learner,
                                         pairs: try DatasetPairSource(pairs: Self.dataPairs, runSeed: config.run.seed), stop: stop,
                                         checkpoints: CheckpointWriter(directory: directory, keepLast: 5), logger: Self.quiet("coordinator"))
        let (coordinator, endpoint) = try RuntimeTests.startCoordinator(service)
        let executor = StoppingExecutor(inner: try EngineRolloutExecutor(model: TransformerConfig(config.model), format: CompactFormat(),
                                                                         logger: Self.quiet("executor")), stop: stop)
        let client = WorkerClient(settings: WorkerSettings(endpoint: endpoint, name: "w0", configHash: config.hash, limits: settings.limits,
                                                           heartbeatInterval: 0.05, heartbeatTimeout: 2),
                                  executor: executor, logger: Self.quiet("worker"))
        let worker = Background("worker") { try client.run() }
        let report = try coordinator.value(timeout: 120)
        _ = try? worker.value()
        #expect(report.outcome == .stopped(completedSteps: 2))
        #expect(report.checkpoints.map { ($0 as NSString).lastPathComponent } == ["step_2.h5"])
        #expect(LearnerFixture.bitsEqual(learner.policy.values, expected.values))
        let saved = try CheckpointReader.read(path: directory + "/step_2.h5")
        #expect(saved.state.policyVersion == 2)
    }

    /// Fixed-lag mode (lag 1): step k samples with exactly the version after step k − 2, so the
    /// versions are 0, 0, 1, 2 whatever the timing, and the final policy is bitwise the same for
    /// 1, 2 and 3 workers, a worker killed mid-step, and a run stopped after step 2 and resumed
    /// from its checkpoint (which keeps the version step 3 samples with).
    @Test func fixedLagIsBitwiseTheSameForAnyWorkersAKillAndAResume() throws {
        var config = Self.config()
        config.cluster.mode = .fixedLag
        config.cluster.maxStaleness = 1
        config.run.steps = 4
        let initial = try Self.formatTrainedWeights(model: TransformerConfig(config.model), steps: 30)

        let (first, recorder) = try Self.runRecording(.workers(1), config: config, initial: initial)
        let (single, metrics, report) = first
        #expect(report.outcome == .finished(steps: 4))
        #expect(recorder.sampledVersions == [[0], [0], [1], [2]])
        #expect(metrics.contains { $0.fracZeroStd < 1 })
        var sync = Self.config()
        sync.run.steps = 4
        let (synchronous, _, _) = try Self.run(.workers(1), config: sync, initial: initial)
        #expect(!LearnerFixture.bitsEqual(synchronous.values, single.values), "fixed-lag samples steps 2-4 with older versions than sync")

        for scenario in [Scenario.workers(2), .workers(3), .oneKilledMidStep] {
            let (weights, _, other) = try Self.run(scenario, config: config, initial: initial)
            #expect(other.outcome == .finished(steps: 4))
            #expect(LearnerFixture.bitsEqual(weights.values, single.values), "\(scenario)")
        }

        let directory = try makeTemporaryDirectory("fixed-lag-resume")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var firstHalf = config
        firstHalf.run.steps = 2
        _ = try Self.run(.workers(2), config: firstHalf, initial: initial, checkpoints: CheckpointWriter(directory: directory, keepLast: 5))
        let checkpoint = try CheckpointReader.read(path: directory + "/step_2.h5")
        #expect(checkpoint.formatVersion == 3)
        #expect(try checkpoint.state.previousPolicyTensors().map { $0.back } == [1])
        let (second, resumedRecorder) = try Self.runRecording(.workers(2), config: config, initial: initial,
                                                              resume: ResumePoint(state: checkpoint.state, path: checkpoint.path))
        let (resumed, _, resumedReport) = second
        #expect(resumedReport.outcome == .finished(steps: 4))
        #expect(resumedRecorder.sampledVersions == [[1], [2]])
        #expect(LearnerFixture.bitsEqual(resumed.values, single.values), "stopped after step 2, resumed")
    }
}
