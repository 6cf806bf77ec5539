@testable import Configuration
@testable import Coordinator
@testable import Engine
import EngineConfiguration
import Foundation
@testable import Method
import PolicyGradient
@testable import Shared
import TestSupport
import Testing
@testable import WireProtocol

/// A tiny model and a hand-built CE-RM step whose outputs all parse.
enum LearnerFixture {
    static func config(initStd: Double = 0.1) -> Config {
        var config = Config()
        config.run.seed = 99
        config.run.name = "learner-test"
        config.model.family = .qwen3
        config.model.hiddenSize = 16
        config.model.layers = 1
        config.model.heads = 2
        config.model.kvHeads = 1
        config.model.ffnSize = 32
        config.model.vocabSize = 264
        config.model.maxSeqLen = 256
        config.model.initStd = initStd
        config.rollout.format = .compact
        config.rollout.nc = 2
        config.rollout.ne = 2
        config.rollout.temperature = 0.8
        config.grpo.pairsPerBatch = 2
        config.grpo.miniBatches = 2
        config.grpo.learningRate = 1e-2
        config.grpo.klCoef = 0.05
        return config
    }

    static let pairs = [
        TaskPair(pairID: 3, query: "add 2 3", responses: ["5", "6"]),
        TaskPair(pairID: 8, query: "upper x", responses: ["X", "x!"]),
    ]

    /// The overall score evaluation j of response r under criteria i writes: varied, so groups
    /// have non-zero std and the step has a signal.
    static func overall(pair: UInt64, criteria i: Int, response r: Int, sample j: Int) -> Double {
        r == 0 ? Double(5 + (i * 2 + j + Int(pair)) % 4) : Double(2 + (i + 2 * j + Int(pair)) % 5)
    }

    /// Every trajectory of the step under `config`, accepted as the coordinator accepts results
    /// (``RolloutResultCheck``), with behaviour log-probs from `policy` at the rollout temperature
    /// and reference log-probs from `reference` (or 0.05 below the behaviour ones). One forward
    /// per pair, as a worker with one pair per task.
    static func rollouts(config: Config, policy: ModelWeights, reference: ModelWeights? = nil, step: Int,
                         pairs: [TaskPair] = pairs) throws -> StepRollouts {
        let trajectories = try pairs.flatMap { try self.trajectories(config: config, policy: policy, reference: reference, step: step, pair: $0) }
        return try accept(config: config, step: step, pairs: pairs, trajectories: trajectories)
    }

    /// `trajectories` of `pairs` as acceptance takes them: the learner's one way to its input.
    static func accept(config: Config, step: Int, pairs: [TaskPair] = pairs, trajectories: [Trajectory]) throws -> StepRollouts {
        try RolloutResultCheck(config: config, chat: ByteChat()).stepRollouts(step: UInt64(step), pairs: pairs, trajectories: trajectories)
    }

    /// The trajectories of one pair (see ``rollouts(config:policy:reference:step:pairs:)``).
    static func trajectories(config: Config, policy: ModelWeights, reference: ModelWeights?, step: Int, pair: TaskPair) throws -> [Trajectory] {
        let format = CompactFormat()
        let plan = RolloutPlan(config: config.rollout, chat: ByteChat(), runSeed: config.run.seed, step: UInt64(step))
        var requests: [(RolloutRequest, [TokenID])] = []
        let item = RolloutItem(pairID: pair.pairID, query: pair.query, responses: pair.responses)
        var criteriaOutputs: [[TokenID]] = []
        for request in plan.criteriaRequests(for: item) {
            let i = request.id.criteriaIndex
            let output = format.outputTokens(text: format.criteriaText(analysis: "a\(i)", items: ["c1", "c2"]))
            criteriaOutputs.append(output)
            requests.append((request, output))
        }
        for request in plan.evaluationRequests(for: item, criteriaOutputs: criteriaOutputs).requests {
            let id = request.id
            let text = format.evaluationText(items: [ScoredItem(analysis: "ok", score: 3), ScoredItem(analysis: "fine", score: 4)],
                                             otherPoint: nil,
                                             overall: overall(pair: id.pairID, criteria: id.criteriaIndex, response: id.responseIndex, sample: id.sampleIndex))
            requests.append((request, format.outputTokens(text: text)))
        }
        let temperature = Float(config.rollout.temperature)
        let batch = TokenBatch(sequences: requests.map { $0.0.promptTokens + $0.1 }, scoredFrom: requests.map { $0.0.promptTokens.count })
        let pass = try Transformer(weights: policy).forward(batch, temperature: temperature)
        let referencePass = try reference.map { try Transformer(weights: $0).forward(batch, temperature: temperature) }
        return requests.enumerated().map { row, entry in
            let (request, output) = entry
            let range = (request.promptTokens.count - 1)..<(request.promptTokens.count - 1 + output.count)
            let behaviour = Array(pass.logprobs[row][range])
            let referenceLogprobs = referencePass.map { Array($0.logprobs[row][range]) } ?? behaviour.map { $0 - 0.05 }
            return Trajectory(id: request.id, promptTokenCount: UInt32(request.promptTokens.count), tokens: output.map { UInt32($0) },
                              behaviourLogprobs: behaviour, referenceLogprobs: referenceLogprobs, finishReason: .eos, text: "")
        }
    }

    static func bitsEqual(_ a: [Float], _ b: [Float]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
    }
}

@Suite struct GRPOLearnerTests {
    /// The GRPO loss's gradient through the engine (forward → log-probs → GRPOLoss weights →
    /// backward) against central finite differences of the loss value, with and without
    /// micro-batching.
    @Test func lossGradientMatchesFiniteDifferences() throws {
        let config = LearnerFixture.config(initStd: 0.5)
        let learner = try GRPOLearner(config: config)
        var noise = SplitMix64(seed: 5)
        let rows: [(prompt: Int, total: Int, advantage: Double, included: Bool)] = [
            (4, 11, 1.0, true), (6, 9, -0.7, true), (3, 8, 0.4, true), (5, 7, 2.0, false),
        ]
        let initial = learner.policy
        let scorer = try Transformer(weights: initial)
        var batch: [PreparedTrajectory] = []
        for (index, row) in rows.enumerated() {
            let sequence = (0..<row.total).map { _ in TokenID(noise.below(264)) }
            let pass = try scorer.forward(TokenBatch(sequences: [sequence], scoredFrom: [row.prompt]), temperature: 0.8)
            let current = pass.logprobs[0][(row.prompt - 1)...].map(Double.init)
            // Ratios within the clip range (no kink near the evaluation point), KL ≠ 0.
            let behaviour = current.map { $0 + (noise.unit() - 0.5) * 0.1 }
            let reference = current.map { $0 - 0.1 - noise.unit() * 0.1 }
            batch.append(PreparedTrajectory(id: .criteria(pair: 1, index), sequence: sequence, promptLength: row.prompt,
                                            behaviourLogprobs: behaviour, referenceLogprobs: reference,
                                            advantage: row.advantage, included: row.included))
        }

        let whole = try learner.runMiniBatch(batch, backward: true)
        #expect(whole.microBatches == GRPOLearner.dataShards)  // one forward per data shard
        let analytic = learner.accumulatedGradients
        learner.zeroGradients()
        learner.workspaceBudgetFloats = 1  // one row per micro-batch
        let split = try learner.runMiniBatch(batch, backward: true)
        #expect(split.microBatches == 4)
        // Row results depend on the batch's shape only through float rounding.
        #expect(abs(split.loss.loss - whole.loss.loss) <= 1e-5 * abs(whole.loss.loss))
        let accumulated = learner.accumulatedGradients
        let maxGrad = analytic.values.map { abs($0) }.max() ?? 0
        #expect(maxGrad > 0)
        for (a, b) in zip(analytic.values, accumulated.values) { #expect(abs(a - b) <= 1e-5 * maxGrad) }

        let eps: Float = 3e-3
        var checked = 0
        for spec in initial.layout.specs {
            let grads = Array(analytic.values[spec.offset..<(spec.offset + spec.count)])
            let tensorMax = grads.map { abs($0) }.max() ?? 0
            let largest = grads.indices.max { abs(grads[$0]) < abs(grads[$1]) } ?? 0
            for local in [largest, spec.count / 3, (2 * spec.count) / 3] {
                let index = spec.offset + local
                var plus = initial, minus = initial
                plus.values[index] += eps
                minus.values[index] -= eps
                learner.setPolicy(plus)
                let lossPlus = try learner.runMiniBatch(batch, backward: false).loss.loss
                learner.setPolicy(minus)
                let lossMinus = try learner.runMiniBatch(batch, backward: false).loss.loss
                let numeric = (lossPlus - lossMinus) / (Double(plus.values[index]) - Double(minus.values[index]))
                let exact = Double(analytic.values[index])
                #expect(abs(numeric - exact) <= 1e-2 * abs(exact) + 1e-3 * Double(tensorMax) + 1e-4,
                        "\(spec.name)[\(local)]: finite difference \(numeric), backward \(exact)")
                checked += 1
            }
        }
        #expect(checked == 3 * initial.layout.specs.count)
    }

    @Test func updateChangesWeightsAndIsDeterministic() throws {
        let config = LearnerFixture.config()
        let first = try GRPOLearner(config: config)
        let initial = first.policy
        let reference = try first.referenceWeights()
        let rollouts = try LearnerFixture.rollouts(config: config, policy: initial, step: 1)
        #expect(rollouts.trajectories.count == 20)
        let metrics = try first.update(step: 1, pairs: LearnerFixture.pairs, rollouts: rollouts)
        #expect(first.policyVersion == 1)
        #expect(!LearnerFixture.bitsEqual(first.policy.values, initial.values))
        #expect(try first.referenceWeights() == reference)
        #expect(first.optimizer.step == 2)  // one AdamW step per mini-batch
        #expect(metrics.trajectories == 20)
        #expect(metrics.generatedTokens == rollouts.trajectories.reduce(0) { $0 + $1.tokens.count })
        #expect(metrics.validFormatRate == 1)
        #expect(metrics.gradNorm > 0 && metrics.gradNorm.isFinite)
        #expect(metrics.loss.isFinite && metrics.entropy > 0)
        #expect(metrics.kl > 0)  // reference log-probs sit 0.05 below the policy's
        // Chosen scores 5…8 beat rejected 2…6 mostly: accuracy is the chosen-mean-wins rate.
        #expect(metrics.pairwiseAccuracy == 1)
        #expect(metrics.meanCriteriaReward > 0.5)

        // Same inputs, trajectories and pairs in another order: the same bits.
        let second = try GRPOLearner(config: config)
        let shuffled = try LearnerFixture.accept(config: config, step: 1, pairs: LearnerFixture.pairs.reversed(),
                                                 trajectories: rollouts.trajectories.reversed())
        #expect(shuffled == rollouts)
        let secondMetrics = try second.update(step: 1, pairs: LearnerFixture.pairs.reversed(), rollouts: shuffled)
        #expect(try second.currentWeights() == first.currentWeights())
        #expect(secondMetrics == metrics)

        // The data shards computed in parallel: the same bits.
        let parallel = try GRPOLearner(config: config, threads: 2)
        let parallelMetrics = try parallel.update(step: 1, pairs: LearnerFixture.pairs, rollouts: rollouts)
        #expect(try parallel.currentWeights() == first.currentWeights())
        #expect(parallelMetrics == metrics)

        // A second step bumps the version again.
        let next = try LearnerFixture.rollouts(config: config, policy: first.policy, step: 2)
        _ = try first.update(step: 2, pairs: LearnerFixture.pairs, rollouts: next)
        #expect(first.policyVersion == 2)
    }

    /// Shard gradients computed by the workers (here: in this process, as a worker's executor
    /// computes them) give the learner bitwise the weights and metrics of its own update, the
    /// second mini-batch at the intermediate weights it hands out; a shard left empty is not sent.
    @Test func remoteShardGradientsGiveTheSameBits() throws {
        final class InProcessGradients: RemoteGradients, @unchecked Sendable {
            var policy: () -> ModelWeights = { fatalError("unset") }
            var calls: [(miniBatch: Int, shards: Int, version: UInt64)] = []

            func compute(step: Int, miniBatch: Int, shards: [[GradientRow]], weights: GradientWeights, settings: GradientSettings) throws
                -> [ShardGradient] {
                calls.append((miniBatch, shards.count, weights.version))
                let at: ModelWeights = switch weights {
                case .published: policy()
                case let .intermediate(_, values): values
                }
                return try shards.map { rows in
                    let shard = GRPOShard(model: try Transformer(weights: at))
                    shard.take(rows, assignment: rows.map { _ in 0 }, index: 0, weights: at)
                    shard.compute(budget: settings.workspaceFloats, temperature: settings.temperature, options: settings.loss)
                    if let error = shard.error { throw error }
                    return ShardGradient(gradient: shard.gradients.values, pass: shard.pass)
                }
            }
        }
        let config = LearnerFixture.config()
        let local = try GRPOLearner(config: config)
        let rollouts = try LearnerFixture.rollouts(config: config, policy: local.policy, step: 1)
        let remote = try GRPOLearner(config: config)
        let workers = InProcessGradients()
        workers.policy = { remote.policy }
        try remote.distributeGradients(to: workers)
        let expected = try local.update(step: 1, pairs: LearnerFixture.pairs, rollouts: rollouts)
        let metrics = try remote.update(step: 1, pairs: LearnerFixture.pairs, rollouts: rollouts)
        #expect(try remote.currentWeights() == local.currentWeights())
        #expect(metrics == expected)
        #expect(workers.calls.map(\.miniBatch) == [0, 1])
        #expect(workers.calls.map(\.shards) == [2, 2])
        #expect(workers.calls.map(\.version) == [0, WeightsVersion.intermediate(step: 1, miniBatch: 1)])

        // One trajectory: shard 1 is empty and not sent; the sum is still the learner's.
        let one = [PreparedTrajectory(id: .criteria(pair: 1, 0), sequence: [1, 2, 3, 4, 5], promptLength: 2,
                                      behaviourLogprobs: [-1, -2, -3], referenceLogprobs: [-1.5, -2, -2.5], advantage: 0.5)]
        let localPass = try local.runMiniBatch(one, backward: true)
        let remotePass = try remote.runMiniBatch(one, backward: true)
        #expect(workers.calls.last?.shards == 1)
        #expect(LearnerFixture.bitsEqual(remote.accumulatedGradients.values, local.accumulatedGradients.values))
        #expect(remotePass.loss == localPass.loss)
        #expect(remote.accumulatedGradients.values.contains { $0 != 0 })
    }

    /// What the learner must never train on is refused where rollouts are accepted, with the
    /// one text of each rule; the learner takes only accepted rollouts.
    @Test func inconsistentTrajectoriesAreRefusedAtAcceptance() throws {
        let config = LearnerFixture.config()
        let learner = try GRPOLearner(config: config)
        let rollouts = try LearnerFixture.rollouts(config: config, policy: learner.policy, step: 1)
        func accept(_ trajectories: [Trajectory]) throws { _ = try LearnerFixture.accept(config: config, step: 1, trajectories: trajectories) }
        var trajectories = rollouts.trajectories
        let target = trajectories.firstIndex { $0.id == .evaluation(pair: 8, criteria: 1, response: 0, sample: 1) }!
        let rebuilt = Int(trajectories[target].promptTokenCount)
        trajectories[target].promptTokenCount += 1
        let expected = TrajectoryFault.promptLength(.evaluation(pair: 8, criteria: 1, response: 0, sample: 1), reported: rebuilt + 1, rebuilt: rebuilt)
        #expect(throws: expected) { try accept(trajectories) }
        #expect(expected.description == "pair 8 evaluation c1 r0 s1: generated after a \(rebuilt + 1)-token prompt but the rollout plan rebuilds \(rebuilt) tokens")

        // A NaN behaviour log-prob.
        var poisoned = rollouts.trajectories
        poisoned[target].behaviourLogprobs[2] = .nan
        #expect(throws: TrajectoryFault.nonFiniteLogprob(poisoned[target].id, index: 2)) { try accept(poisoned) }

        // An evaluation the plan never asks for (sample index beyond ne), a trajectory twice.
        var extra = rollouts.trajectories
        var stray = extra[1]
        stray.id.sampleIndex = 7
        extra.append(stray)
        #expect(throws: TrajectoryFault.notInPlan(stray.id, unparsedCriteria: false)) { try accept(extra) }
        #expect(throws: TrajectoryFault.duplicate(rollouts.trajectories[1].id)) { try accept(rollouts.trajectories + [rollouts.trajectories[1]]) }

        // Rollouts of other pairs than the update's, or accepted without a plan, are refused before any mini-batch steps.
        let before = try learner.currentWeights()
        #expect(throws: GRPOLearnerError.pairsMismatch(step: 1, pairs: [3], rollouts: [3, 8])) {
            try learner.update(step: 1, pairs: [LearnerFixture.pairs[0]], rollouts: rollouts)
        }
        let unplanned = StepRollouts.unplanned(step: 1, trajectories: rollouts.trajectories, versionByPair: rollouts.versionByPair)
        #expect(throws: GRPOLearnerError.unplannedRollout(step: 1, pairID: 3)) {
            try learner.update(step: 1, pairs: LearnerFixture.pairs, rollouts: unplanned)
        }
        #expect(learner.policyVersion == 0)
        #expect(try learner.currentWeights() == before)
    }

    /// A pair whose criteria prompt does not fit `model.max_seq_len`: an honest worker returns
    /// empty trajectories with finish `context` (docs/PROTOCOL.md §7). Acceptance takes them, the
    /// learner scores them as invalid output (reward 0, no evaluations) and trains on the rest.
    @Test func contextFinishedEmptyTrajectoriesAreInvalidOutputNotAnError() throws {
        let config = LearnerFixture.config()
        let learner = try GRPOLearner(config: config)
        let long = TaskPair(pairID: 5, query: String(repeating: "q", count: 300), responses: ["a", "b"])
        let pairs = LearnerFixture.pairs + [long]
        let plan = RolloutPlan(config: config.rollout, chat: ByteChat(), runSeed: config.run.seed, step: 1)
        let criteria = plan.criteriaRequests(for: long)
        #expect(criteria.count == 2)
        #expect(criteria[0].promptTokens.count > config.model.maxSeqLen + 1)
        let empty = criteria.map {
            Trajectory(id: $0.id, promptTokenCount: UInt32($0.promptTokens.count), tokens: [], behaviourLogprobs: [],
                       referenceLogprobs: [], finishReason: .context, text: "")
        }
        let honest = try LearnerFixture.rollouts(config: config, policy: learner.policy, step: 1)
        let rollouts = try LearnerFixture.accept(config: config, step: 1, pairs: pairs, trajectories: honest.trajectories + empty)
        let before = try learner.currentWeights()
        let metrics = try learner.update(step: 1, pairs: pairs, rollouts: rollouts)
        #expect(learner.policyVersion == 1)
        #expect(try learner.currentWeights() != before)
        // 2 × (2 criteria + 8 evaluations) valid outcomes, 2 invalid criteria of pair 5.
        #expect(metrics.validFormatRate == 20.0 / 22.0)
        #expect(metrics.trajectories == 22)

        // A non-empty output that overruns the context is still refused (no honest worker sends it).
        var overrun = empty[0]
        overrun.tokens = [1]
        overrun.behaviourLogprobs = [-1]
        overrun.referenceLogprobs = [-1]
        let length = criteria[0].promptTokens.count + 1
        #expect(throws: TrajectoryFault.sequenceTooLong(overrun.id, length: length, maxSeqLen: 256)) {
            try LearnerFixture.accept(config: config, step: 1, pairs: pairs, trajectories: honest.trajectories + [overrun, empty[1]])
        }
    }

    @Test func checkpointRoundTripGivesTheSameNextUpdate() throws {
        let config = LearnerFixture.config()
        let original = try GRPOLearner(config: config)
        _ = try original.update(step: 1, pairs: LearnerFixture.pairs,
                                rollouts: LearnerFixture.rollouts(config: config, policy: original.policy, step: 1))
        let cursor = DataCursor(epoch: 1, position: 3, permutationSeed: 42)
        let state = try original.trainingState(step: 1, dataCursor: cursor)
        #expect(state.referenceTensors.count == state.policyTensors.count)

        let directory = try makeTemporaryDirectory("learner")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let written = try CheckpointWriter(directory: directory, keepLast: 2).write(state)
        let loaded = try CheckpointReader.load(path: written.path)
        #expect(loaded.isBitIdentical(to: state))
        #expect(loaded.dataCursor == cursor)

        // A learner from other initial weights: restore must replace policy, reference, AdamW.
        var otherConfig = config
        otherConfig.run.seed = 7
        let restored = try GRPOLearner(config: config, initialWeights: ModelWeights(config: TransformerConfig(otherConfig.model), seed: 7, initStd: 0.1))
        try restored.restore(from: loaded)
        #expect(restored.policyVersion == 1)
        #expect(try restored.currentWeights() == original.currentWeights())
        #expect(try restored.referenceWeights() == original.referenceWeights())
        #expect(restored.optimizer == original.optimizer)

        let next = try LearnerFixture.rollouts(config: config, policy: original.policy, step: 2)
        let a = try original.update(step: 2, pairs: LearnerFixture.pairs, rollouts: next)
        let b = try restored.update(step: 2, pairs: LearnerFixture.pairs, rollouts: next)
        #expect(try restored.currentWeights() == original.currentWeights())
        #expect(restored.optimizer == original.optimizer)
        #expect(a == b)
        #expect(restored.policyVersion == 2)

        // Export keeps only the policy.
        let exported = try makeTemporaryDirectory("learner-export")
        defer { try? FileManager.default.removeItem(atPath: exported) }
        try HuggingFaceExport.export(loaded, to: exported, source: written.path)
        let header = try Data(contentsOf: URL(fileURLWithPath: (exported as NSString).appendingPathComponent("model.safetensors")))
        #expect(!String(decoding: header, as: UTF8.self).contains("reference."))
    }

    /// A checkpoint is written from the learner's own buffers, not from a copy of them: its
    /// tensors point into policy, reference and AdamW moments, and it holds, checksums and reads
    /// back exactly what the copy held. A state taken before the learner trains on keeps its values.
    @Test func checkpointsAreWrittenFromTheLearnersBuffersWithTheContentOfACopy() throws {
        let config = LearnerFixture.config()
        let learner = try GRPOLearner(config: config)
        _ = try learner.update(step: 1, pairs: LearnerFixture.pairs,
                               rollouts: LearnerFixture.rollouts(config: config, policy: learner.policy, step: 1))
        let state = try learner.trainingState(step: 1, dataCursor: DataCursor(epoch: 0, position: 4, permutationSeed: 5))

        let layout = learner.policy.layout
        func copied(_ values: [Float], prefix: String = "") throws -> [NamedTensor] {
            try layout.tensors(of: values).map { NamedTensor(name: prefix + $0.name, shape: $0.shape, values: $0.values) }
        }
        var copy = state
        copy.tensors = try copied(learner.policy.values) + copied(learner.reference.values, prefix: GRPOLearner.referencePrefix)
        copy.adamM = try copied(learner.optimizer.m)
        copy.adamV = try copied(learner.optimizer.v)
        #expect(copy.adamM.contains { $0.values.contains { $0 != 0 } }, "the update moved the moments")
        #expect(state.isBitIdentical(to: copy))
        let extra = CheckpointFormat.encodeExtra(state.extra)
        let copyChecksum = CheckpointFormat.checksum(of: copy, extraJSON: extra)
        #expect(CheckpointFormat.checksum(of: state, extraJSON: extra) == copyChecksum)

        func expectInPlace(_ tensors: [NamedTensor], of buffer: [Float], _ label: String) {
            #expect(tensors.count == layout.specs.count)
            buffer.withUnsafeBufferPointer { buffer in
                for (tensor, spec) in zip(tensors, layout.specs) {
                    #expect(tensor.withUnsafeValues { $0.baseAddress } == buffer.baseAddress.map { $0 + spec.offset }, "\(label) \(spec.name)")
                }
            }
        }
        expectInPlace(state.policyTensors, of: learner.policy.values, "policy")
        expectInPlace(state.referenceTensors, of: learner.reference.values, "reference")
        expectInPlace(state.adamM, of: learner.optimizer.m, "m")
        expectInPlace(state.adamV, of: learner.optimizer.v, "v")

        let directory = try makeTemporaryDirectory("learner-buffers")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let written = try CheckpointWriter(directory: directory, keepLast: 2).write(state)
        #expect(written.checksum == copyChecksum)
        #expect(try CheckpointReader.load(path: written.path).isBitIdentical(to: copy))

        _ = try learner.update(step: 2, pairs: LearnerFixture.pairs,
                               rollouts: LearnerFixture.rollouts(config: config, policy: learner.policy, step: 2))
        #expect(try copied(learner.policy.values) != copy.policyTensors)
        #expect(state.isBitIdentical(to: copy))
    }

    /// The AdamW step updates the policy where it is: no data-shard replica still holds it, so
    /// it is not copied (0.5 GiB at 135M parameters) and its buffer stays the same. (The first
    /// step does copy it, away from the reference it shared a buffer with until then.)
    @Test func anUpdateChangesThePolicyInPlace() throws {
        var config = LearnerFixture.config()
        // One AdamW step per update: with more, a copy could land where the buffer before it was.
        config.grpo.miniBatches = 1
        let learner = try GRPOLearner(config: config)
        func address() -> UInt { learner.policy.values.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) } }
        for step in 1...2 {
            let rollouts = try LearnerFixture.rollouts(config: config, policy: learner.policy, step: step)
            let before = address(), weights = try learner.currentWeights()
            _ = try learner.update(step: step, pairs: LearnerFixture.pairs, rollouts: rollouts)
            #expect(try learner.currentWeights() != weights)
            #expect((address() == before) == (step > 1), "step \(step)")
        }
    }

    /// The run model's tokenizer goes into every checkpoint; `--init` weights or a checkpoint
    /// carrying another tokenizer are refused, naming the file: their token ids mean other text.
    @Test func theRunModelsTokenizerGoesIntoCheckpointsAndOthersAreRefused() throws {
        let config = LearnerFixture.config()
        let directory = try makeTemporaryDirectory("learner-tokenizer")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let initPath = (directory as NSString).appendingPathComponent("init.h5")
        let tokenizer = StoredTokenizer(tokenizerJSON: Array(GenerateCommandTests.tokenizerJSON.utf8), bosToken: "<|im_start|>",
                                        eosToken: "<|endoftext|>", padToken: nil, unkToken: nil, chatTemplate: "chatml",
                                        chatTemplateSystem: nil, chatTemplateJinja: nil)
        let pretrained = try RunModel(architecture: TransformerConfig(config.model), tokenizer: tokenizer, source: "tiny.gguf")
        try WeightsFile.saveAtomically(ModelWeights(initialFor: config), tokenizer: tokenizer, to: initPath)
        let learner = try GRPOLearner(config: config, runModel: pretrained, initPath: initPath)
        #expect(learner.modelTokenizer == tokenizer)
        let state = try learner.trainingState(step: 0, dataCursor: DataCursor())
        #expect(state.tokenizer == tokenizer)
        #expect(state.tokenizerDescription == tokenizer.description)

        let byteModel = RunModel(ownModel: config.model)
        #expect(throws: CermError.invalid("\(initPath) carries the tokenizer \(tokenizer.description), but the run's model is cerm's own "
                                          + "model with the byte tokenizer: set model.source to the pretrained model these weights come from")) {
            try GRPOLearner(config: config, runModel: byteModel, initPath: initPath)
        }
        let resumed = try GRPOLearner(config: config)
        #expect(try resumed.trainingState(step: 0, dataCursor: DataCursor()).tokenizerDescription == ByteTokenizer().description)
        #expect(throws: CermError.invalid("the checkpoint of step 0 carries the tokenizer \(tokenizer.description), but the run's model is "
                                          + "cerm's own model with the byte tokenizer: set model.source to the pretrained model these weights come from")) {
            try resumed.restore(from: state)
        }
        let other = try GRPOLearner(config: config, runModel: pretrained)
        #expect(throws: CermError.invalid("the checkpoint of step 0 carries cerm's byte tokenizer, but the run's model is tiny.gguf (qwen3, "
                                          + "chatml template, vocabulary 264): use weights trained from model.source, or set model.source "
                                          + "to the model these weights come from")) {
            try other.restore(from: resumed.trainingState(step: 0, dataCursor: DataCursor()))
        }
    }

    /// `par` and `pairwise`: single-stage prompts are rebuilt and rewarded; the step trains.
    @Test(arguments: [RewardMode.par, .pairwise]) func singleStageModesTrain(mode: RewardMode) throws {
        var config = LearnerFixture.config()
        config.reward.mode = mode
        config.model.maxSeqLen = 512  // the single-stage prompts carry long instructions
        config.rollout.nc = 2
        config.rollout.ne = 1
        let learner = try GRPOLearner(config: config)
        let plan = RolloutPlan(config: config.rollout, chat: ByteChat(), runSeed: config.run.seed, step: 1)
        let eos = ByteTokenizer.Special.eos.rawValue
        var requests: [(RolloutRequest, [TokenID])] = []
        for pair in LearnerFixture.pairs {
            let item = RolloutItem(pairID: pair.pairID, query: pair.query, responses: pair.responses)
            switch mode {
            case .par:
                for request in plan.judgmentRequests(for: item) {
                    let id = request.id
                    let score = Double((id.sampleIndex * 3 + id.responseIndex * 5 + Int(id.pairID)) % 10)
                    let text = ParFormat().outputText(thought: "t", rubric: "r", evaluation: "e", score: score)
                    requests.append((request, ByteTokenizer().encode(text) + [eos]))
                }
            default:
                for request in plan.comparisonRequests(for: item) {
                    let verdict: PairwiseVerdict = request.id.sampleIndex == 0 ? .a : .b
                    let text = PairwiseFormat().outputText(rubric: "r", evaluation: "e", verdict: verdict)
                    requests.append((request, ByteTokenizer().encode(text) + [eos]))
                }
            }
        }
        let pass = try Transformer(weights: learner.policy).forward(
            TokenBatch(sequences: requests.map { $0.0.promptTokens + $0.1 }, scoredFrom: requests.map { $0.0.promptTokens.count }),
            temperature: Float(config.rollout.temperature))
        let trajectories = requests.enumerated().map { row, entry in
            let range = (entry.0.promptTokens.count - 1)..<(entry.0.promptTokens.count - 1 + entry.1.count)
            let behaviour = Array(pass.logprobs[row][range])
            return Trajectory(id: entry.0.id, promptTokenCount: UInt32(entry.0.promptTokens.count), tokens: entry.1.map { UInt32($0) },
                              behaviourLogprobs: behaviour, referenceLogprobs: behaviour, finishReason: .eos, text: "")
        }
        #expect(trajectories.count == (mode == .par ? 8 : 4))
        let rollouts = try LearnerFixture.accept(config: config, step: 1, trajectories: trajectories)
        let before = learner.policy
        let metrics = try learner.update(step: 1, pairs: LearnerFixture.pairs, rollouts: rollouts)
        #expect(learner.policyVersion == 1)
        #expect(metrics.validFormatRate == 1)
        #expect(metrics.gradNorm > 0)
        #expect(!LearnerFixture.bitsEqual(learner.policy.values, before.values))
    }

    @Test func initialWeightsOfAnotherArchitectureAreRefused() throws {
        let config = LearnerFixture.config()
        var other = config.model
        other.hiddenSize = 8
        let weights = ModelWeights(config: TransformerConfig(other), seed: 1, initStd: 0.1)
        let error = #expect(throws: GRPOLearnerError.self) {
            _ = try GRPOLearner(config: config, initialWeights: weights, source: "sft.h5")
        }
        #expect(error?.description == "sft.h5: the model differs from [model] (the architecture cannot change): model.hidden_size: 8 (weights) ≠ 16 (config); model.head_dim: 4 (weights) ≠ 8 (config)")
    }

    @Test func aCheckpointOfAnotherArchitectureNamesTheDifferingKeys() throws {
        let config = LearnerFixture.config()
        var other = config
        other.model.layers = config.model.layers + 2
        let state = try GRPOLearner(config: other).trainingState(step: 3, dataCursor: DataCursor(permutationSeed: 1))
        let error = #expect(throws: GRPOLearnerError.self) { try GRPOLearner(config: config).restore(from: state) }
        #expect(error?.description == "checkpoint of step 3: the model differs from [model] (the architecture cannot change): model.layers: 3 (checkpoint) ≠ 1 (config)")
    }
}
