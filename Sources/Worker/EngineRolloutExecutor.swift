import Configuration
import Engine
import EngineConfiguration
import Foundation
import Logging
import Method
import PolicyGradient
import Shared
import WireProtocol

/// Sampling settings of one task, as the engine takes them.
public struct RolloutSampling: Sendable, Equatable {
    /// Softmax temperature; 0 is greedy (log-probs are then those of temperature 1).
    public var temperature: Float
    /// Nucleus mass in (0, 1].
    public var topP: Float

    public init(temperature: Float, topP: Float) {
        self.temperature = temperature
        self.topP = topP
    }

    /// The settings of a task's rollout parameters.
    public init(parameters: RolloutParameters) {
        self.init(temperature: Float(parameters.temperature), topP: Float(parameters.topP))
    }
}

/// The worker's ``RolloutExecutor`` on the engine: CE-RM's two-stage rollout (or the single-stage
/// `par` / `pairwise` modes) with a policy ``Generator`` and a frozen reference ``Generator``.
///
/// What is sampled comes only from the method's ``RolloutPlan`` (ids, seeds, prompts, token
/// budgets), so the learner can rebuild every prompt from the same plan. For `cerm` mode:
/// - **Stage 1**: the nc criteria requests of every pair of the task in one batched `generate`.
/// - **Stage 2**: per pair, the plan turns the criteria outputs into evaluation requests (none
///   under a criteria set that does not parse). The requests of one criteria set share a prefix
///   (the criteria prompt, the criteria output through its `⟨eos⟩`, and whatever else all of
///   them share); it is prefilled once per generator, then the evaluations of every criteria
///   set of every pair are decoded as one batch (`Generator.generate(groups:)`), each group
///   continuing its own prefix, and scored by the reference in one pass (`score(groups:)`).
///   A decode step streams all the weights whatever the batch, so one batch of
///   pairs · nc · 2·ne rows costs far less than that many batches of 2·ne (on SmolLM2-135M a
///   step of 16 rows takes about as long as two of 4; BENCHMARKS.md, "One decode step at small batch").
///
/// Every trajectory carries the policy's behaviour log-probs (at the task's temperature) and the
/// reference model's teacher-forced log-probs of the same tokens after the same prompt, at the
/// same temperature. Generation stops at `⟨eos⟩` (finish `stop`), at the plan's budget
/// (`length`) or when the context reaches `model.max_seq_len` (`context`); a prompt longer than
/// the context yields an empty trajectory with finish `context` (its output does not parse).
///
/// Determinism: a trajectory depends only on its request (prompt, seed, budget), the sampling
/// settings and the weights: the engine's kernels are batch-invariant and its random stream is
/// keyed by the request seed, so neither the other pairs of a task nor the thread count change
/// a single bit. Results are returned in canonical ``TrajectoryID`` order.
///
/// Calls are serialised by a lock (``WorkerClient`` makes them from one compute thread anyway).
public final class EngineRolloutExecutor: RolloutExecutor, @unchecked Sendable {
    /// The architecture both models share: given, or the coordinator's (nil until
    /// ``prepareModel(description:)``).
    public private(set) var model: TransformerConfig?
    /// The CE-RM prompt format (`rollout.format`) rendered through the model's chat; nil until
    /// the model is known.
    public private(set) var format: (any PromptFormat)?
    /// Which rollout the tasks ask for (`reward.mode`).
    public let mode: RewardMode
    /// The format to render through the coordinator's model, for an executor made to take it.
    private let formatOfCoordinatorModel: PromptFormatName?

    private let logger: Logger
    private let lock = NSLock()
    private var policy: Generator?
    private var reference: Generator?
    private var loadedPolicyVersion: UInt64?

    /// A worker's executor: the format and reward mode of `config`, the model (architecture,
    /// tokenizer, chat template) the coordinator describes in ``prepareModel(description:)``,
    /// so the worker's host needs no model file of its own.
    public init(takingCoordinatorModel config: Config, logger: Logger = Logger(label: "cerm.executor")) {
        formatOfCoordinatorModel = config.rollout.format
        mode = config.reward.mode
        self.logger = logger
    }

    /// - Parameter logger: one info line per task (trajectories, tokens, valid criteria, time).
    /// - Throws: when the model's vocabulary cannot hold the byte tokenizer's tokens.
    public init(model: TransformerConfig, format: any PromptFormat, mode: RewardMode = .cerm,
                logger: Logger = Logger(label: "cerm.executor")) throws {
        try Self.checkVocabulary(model, format)
        self.model = model
        self.format = format
        formatOfCoordinatorModel = nil
        self.mode = mode
        self.logger = logger
    }

    private static func checkVocabulary(_ model: TransformerConfig, _ format: any PromptFormat) throws {
        if format.chat is ByteChat, model.vocabSize < ByteTokenizer.vocabularySize {
            throw CermError.invalid("model.vocab_size \(model.vocabSize) is smaller than the byte tokenizer's \(ByteTokenizer.vocabularySize) tokens")
        }
    }

    /// The model and format tasks run with; throws before the model is known.
    private func setup() throws -> (model: TransformerConfig, format: any PromptFormat) {
        guard let model, let format else {
            throw CermError.invalid("executor: no model yet (the coordinator's model description was not prepared)")
        }
        return (model, format)
    }

    // MARK: - Model

    /// Takes the coordinator's model, or, for an executor given its model, checks that the
    /// coordinator runs the same architecture (its weights would not fit otherwise).
    public func prepareModel(description: [UInt8]) throws {
        let described = try RunModel(wireDescription: description)
        try lock.withLock {
            guard let name = formatOfCoordinatorModel else {
                guard described.architecture == model else {
                    throw CermError.invalid("the coordinator runs \(described.architecture.jsonString()), this executor \(model?.jsonString() ?? "nothing")")
                }
                return
            }
            let format = described.promptFormat(name)
            try Self.checkVocabulary(described.architecture, format)
            model = described.architecture
            self.format = format
            logger.info("model from the coordinator: \(described.description)")
        }
    }

    /// The policy version loaded by ``prepare(policyVersion:weights:)``, if any.
    public var policyVersion: UInt64? { lock.withLock { loadedPolicyVersion } }

    // MARK: - Weights

    public func prepare(policyVersion: UInt64, weights: [UInt8]) throws {
        try lock.withLock {
            policy = try load(wire: weights, into: policy, what: "policy version \(policyVersion)")
            loadedPolicyVersion = policyVersion
        }
    }

    public func prepareReference(weights: [UInt8]) throws {
        try lock.withLock { reference = try load(wire: weights, into: reference, what: "reference") }
    }

    /// Decodes wire weights into the existing generator's own buffer (a new version reuses the
    /// old one's memory), or into a new generator. Call with the lock held.
    private func load(wire bytes: [UInt8], into generator: Generator?, what: String) throws -> Generator {
        let (model, format) = try setup()
        do {
            try ModelWeights.checkWire(bytes, count: ParameterLayout(model).totalCount)
        } catch {
            throw CermError.invalid("\(what) weights: \(error)")
        }
        guard let generator else {
            return try Self.load(try ModelWeights(config: model, wireBytes: bytes), into: nil, stopTokens: format.chat.stopTokens)
        }
        generator.updateParameters { ModelWeights.decodeWire(bytes, into: $0) }
        return generator
    }

    /// Loads policy weights directly (tests, local evaluation); the version is recorded as given.
    public func load(policy weights: ModelWeights, version: UInt64 = 0) throws {
        let format = try checkArchitecture(weights, what: "policy")
        try lock.withLock {
            policy = try Self.load(weights, into: policy, stopTokens: format.chat.stopTokens)
            loadedPolicyVersion = version
        }
    }

    /// Loads reference weights directly (tests, local evaluation).
    public func load(reference weights: ModelWeights) throws {
        let format = try checkArchitecture(weights, what: "reference")
        try lock.withLock { reference = try Self.load(weights, into: reference, stopTokens: format.chat.stopTokens) }
    }

    /// Throws unless `weights` fit the model; returns the format.
    private func checkArchitecture(_ weights: ModelWeights, what: String) throws -> any PromptFormat {
        let (model, format) = try setup()
        guard weights.config == model else {
            throw CermError.invalid("\(what) weights are for \(weights.config.jsonString()), the executor runs \(model.jsonString())")
        }
        return format
    }

    /// Reuses the existing generator (its workspace) when there is one.
    private static func load(_ weights: ModelWeights, into generator: Generator?, stopTokens: [TokenID]) throws -> Generator {
        if let generator {
            try generator.setParameters(weights.values)
            return generator
        }
        let generator = try Generator(config: weights.config, parameters: weights.values)
        generator.stopTokens = stopTokens
        return generator
    }

    // MARK: - Tasks

    /// The rollout plan of `task`: the configured format, the task's nc/ne/budgets, run seed and step.
    public func plan(for task: TaskMessage) throws -> RolloutPlan {
        let p = task.parameters
        return RolloutPlan(format: try setup().format, nc: Int(p.nc), ne: Int(p.ne), criteriaMaxTokens: Int(p.criteriaMaxTokens),
                           evaluationMaxTokens: Int(p.evaluationMaxTokens), runSeed: task.runSeed, step: task.step)
    }

    /// A gradient task at the loaded policy weights: one ``GRPOShard`` over all its rows, so
    /// the gradient is what the coordinator's learner computes for the same shard, bit for bit.
    /// The replica and its gradient buffer live for the task only (a worker holds them between
    /// rollouts otherwise: 2 × 0.5 GiB at 135M parameters).
    public func gradient(task: GradientTaskMessage) throws -> ShardGradient {
        try lock.withLock {
            let (model, _) = try setup()
            guard let policy, loadedPolicyVersion == task.policyVersion else {
                throw CermError.invalid("gradient task \(task.taskID) needs weights v\(task.policyVersion), the executor holds \(loadedPolicyVersion.map { "v\($0)" } ?? "none")")
            }
            for row in task.rows {
                if let token = row.sequence.first(where: { $0 < 0 || Int($0) >= model.vocabSize }) {
                    throw CermError.invalid("gradient task \(task.taskID), \(row.id): token \(token) is outside the model's vocabulary of \(model.vocabSize)")
                }
                guard row.sequence.count - 1 <= model.maxSeqLen else {
                    throw CermError.invalid("gradient task \(task.taskID), \(row.id): \(row.sequence.count) tokens exceed the model's context of \(model.maxSeqLen)")
                }
            }
            let shard = GRPOShard(model: try Transformer(weights: try ModelWeights(config: model, values: policy.parameters)))
            shard.take(task.rows, assignment: [Int](repeating: 0, count: task.rows.count), index: 0, weights: shard.model.weights)
            let started = Date()
            shard.compute(budget: Int(clamping: task.workspaceFloats), temperature: task.temperature, options: task.loss)
            if let error = shard.error { throw error }
            logger.info("gradient task \(task.taskID) (step \(task.step), mini-batch \(task.miniBatch), shard \(task.shard)): \(task.rows.count) rows, \(task.rows.reduce(0) { $0 + $1.sequence.count }) tokens in \(String(format: "%.2f", Date().timeIntervalSince(started))) s")
            return ShardGradient(gradient: shard.gradients.values, pass: shard.pass)
        }
    }

    public func run(task: TaskMessage) throws -> [Trajectory] {
        var seen = Set<UInt64>()
        for pair in task.pairs where !seen.insert(pair.pairID).inserted {
            throw CermError.invalid("task \(task.taskID): pair \(pair.pairID) appears twice")
        }
        let plan = try plan(for: task)
        let sampling = RolloutSampling(parameters: task.parameters)
        let items = task.pairs
        let started = Date()
        let result: [Trajectory] = try lock.withLock {
            let models = try loadedModels()
            var trajectories: [Trajectory]
            switch mode {
            case .cerm:
                trajectories = try Self.sample([items.flatMap(plan.criteriaRequests(for:))], sharingPrefixes: false, sampling, models)
                var outputs: [UInt64: [Int: [TokenID]]] = [:]
                for t in trajectories {
                    outputs[t.id.pairID, default: [:]][t.id.criteriaIndex] = t.tokens.map { TokenID(truncatingIfNeeded: $0) }
                }
                trajectories += try Self.evaluate(items.map { item in
                    let byIndex = outputs[item.pairID] ?? [:]
                    return (item, (0..<plan.nc).map { byIndex[$0] ?? [] })
                }, plan: plan, sampling, models)
            case .par:
                trajectories = try Self.sample([items.flatMap { plan.judgmentRequests(for: $0) }], sharingPrefixes: false, sampling, models)
            case .pairwise:
                trajectories = try Self.sample([items.flatMap { plan.comparisonRequests(for: $0) }], sharingPrefixes: false, sampling, models)
            }
            return trajectories.sorted { $0.id < $1.id }
        }
        let seconds = Date().timeIntervalSince(started)
        let tokens = result.reduce(0) { $0 + $1.tokens.count }
        var summary = "task \(task.taskID) step \(task.step) v\(task.policyVersion): \(task.pairs.count) pairs, \(result.count) trajectories, "
            + "\(tokens) tokens in \(String(format: "%.2f", seconds)) s (\(String(format: "%.0f", Double(tokens) / max(seconds, 1e-9))) tok/s)"
        if mode == .cerm {
            let evaluated = Set(result.filter { $0.id.stage == .evaluation }.map { "\($0.id.pairID)/\($0.id.criteriaIndex)" }).count
            summary += ", criteria sets evaluated \(evaluated)/\(task.pairs.count * plan.nc)"
        }
        logger.info("\(summary)")
        return result
    }

    /// Stage 1 alone: the criteria trajectories of `items` (one batched generation).
    public func criteriaStage(items: [RolloutItem], plan: RolloutPlan, sampling: RolloutSampling) throws -> [Trajectory] {
        try lock.withLock {
            try Self.sample([items.flatMap(plan.criteriaRequests(for:))], sharingPrefixes: false, sampling, try loadedModels())
        }
    }

    /// Stage 2 alone: the evaluation trajectories of `item` given the generated tokens of its
    /// criteria trajectories (`criteriaOutputs[i]` for criteria index i, as the plan takes them),
    /// in canonical order. Criteria sets that do not parse get no evaluations.
    public func evaluationStage(item: RolloutItem, criteriaOutputs: [[TokenID]], plan: RolloutPlan,
                                sampling: RolloutSampling) throws -> [Trajectory] {
        try evaluationStage([(item, criteriaOutputs)], plan: plan, sampling: sampling)
    }

    /// Stage 2 of several pairs at once, as ``run(task:)`` does it: each pair with the generated
    /// tokens of its criteria trajectories.
    public func evaluationStage(_ pairs: [(item: RolloutItem, criteriaOutputs: [[TokenID]])], plan: RolloutPlan,
                                sampling: RolloutSampling) throws -> [Trajectory] {
        try lock.withLock { try Self.evaluate(pairs, plan: plan, sampling, try loadedModels()) }
    }

    // MARK: - Sampling

    private struct Models {
        let policy: Generator
        let reference: Generator
        /// Decodes trajectory text.
        let chat: any ChatCodec
        var maxSeqLen: Int { policy.config.maxSeqLen }
    }

    /// Call with the lock held.
    private func loadedModels() throws -> Models {
        guard let policy else { throw CermError.invalid("executor: no policy weights loaded (prepare was not called)") }
        guard let reference else { throw CermError.invalid("executor: no reference weights loaded (prepareReference was not called)") }
        return Models(policy: policy, reference: reference, chat: try setup().format.chat)
    }

    private static func evaluate(_ pairs: [(item: RolloutItem, criteriaOutputs: [[TokenID]])], plan: RolloutPlan,
                                 _ sampling: RolloutSampling, _ models: Models) throws -> [Trajectory] {
        let requests = pairs.flatMap { plan.evaluationRequests(for: $0.item, criteriaOutputs: $0.criteriaOutputs).requests }
        // Requests of one criteria set are contiguous in the plan's canonical order.
        var sets: [[RolloutRequest]] = []
        for request in requests {
            if let last = sets.last?.last, last.id.pairID == request.id.pairID, last.id.criteriaIndex == request.id.criteriaIndex {
                sets[sets.count - 1].append(request)
            } else {
                sets.append([request])
            }
        }
        return try sample(sets, sharingPrefixes: true, sampling, models)
    }

    /// The requests whose prompt fits the context, and empty `context` trajectories for the rest.
    private static func splitByContext(_ requests: [RolloutRequest], maxSeqLen: Int) -> (fitting: [RolloutRequest], overflow: [Trajectory]) {
        var fitting: [RolloutRequest] = []
        var overflow: [Trajectory] = []
        for request in requests {
            if request.promptTokens.count <= maxSeqLen {
                fitting.append(request)
            } else {
                overflow.append(Trajectory(id: request.id, promptTokenCount: UInt32(clamping: request.promptTokens.count), tokens: [],
                                           behaviourLogprobs: [], referenceLogprobs: [], finishReason: .context, text: ""))
            }
        }
        return (fitting, overflow)
    }

    /// Generates the requests of all `groups` as one batch and scores the outputs with the
    /// reference in one pass, in canonical order. With `sharingPrefixes`, each group's longest
    /// common prompt prefix is prefilled once on each model and its requests continue it (a group
    /// sharing nothing runs from whole prompts); the kernels are batch-invariant, so every
    /// trajectory is bitwise what its group, or its request, would give alone.
    private static func sample(_ groups: [[RolloutRequest]], sharingPrefixes: Bool, _ sampling: RolloutSampling,
                               _ models: Models) throws -> [Trajectory] {
        var overflow: [Trajectory] = []
        var batches: [(requests: [RolloutRequest], prefix: [TokenID])] = []
        for group in groups {
            let (fitting, over) = splitByContext(group, maxSeqLen: models.maxSeqLen)
            overflow += over
            guard let first = fitting.first else { continue }
            // Each continuation keeps at least one prompt token of its own.
            let shared = sharingPrefixes
                ? min(commonPrefixLength(fitting.map(\.promptTokens)), (fitting.map(\.promptTokens.count).min() ?? 0) - 1) : 0
            batches.append((fitting, Array(first.promptTokens[..<max(0, shared)])))
        }
        guard !batches.isEmpty else { return overflow.sorted { $0.id < $1.id } }
        func own(_ request: RolloutRequest, after prefix: [TokenID]) -> [TokenID] { Array(request.promptTokens[prefix.count...]) }
        let results = try models.policy.generate(groups: batches.map { batch in
            PrefixedGenerations(prefix: batch.prefix.isEmpty ? nil : try models.policy.prefill(prefix: batch.prefix), requests: batch.requests.map {
                GenerationRequest(prompt: own($0, after: batch.prefix), seed: $0.seed, maxNewTokens: $0.maxTokens,
                                  temperature: sampling.temperature, topP: sampling.topP)
            })
        })
        let referenceLogprobs = try models.reference.score(groups: zip(batches, results).map { batch, generated in
            PrefixedScorings(prefix: batch.prefix.isEmpty ? nil : try models.reference.prefill(prefix: batch.prefix),
                             requests: zip(batch.requests, generated).map {
                                 ScoringRequest(prompt: own($0, after: batch.prefix), tokens: $1.tokens, temperature: sampling.temperature)
                             })
        })
        var trajectories = overflow
        for (batch, (generated, reference)) in zip(batches, zip(results, referenceLogprobs)) {
            trajectories += try assemble(batch.requests, generated, reference, models.chat)
        }
        return trajectories.sorted { $0.id < $1.id }
    }

    static func commonPrefixLength(_ sequences: [[TokenID]]) -> Int {
        guard var length = sequences.first?.count else { return 0 }
        for sequence in sequences.dropFirst() {
            length = min(length, sequence.count)
            var i = 0
            while i < length && sequence[i] == sequences[0][i] { i += 1 }
            length = i
        }
        return length
    }

    private static func assemble(_ requests: [RolloutRequest], _ results: [GenerationResult],
                                 _ referenceLogprobs: [[Float]], _ chat: any ChatCodec) throws -> [Trajectory] {
        return try zip(requests, zip(results, referenceLogprobs)).map { request, output in
            let (result, reference) = output
            guard result.tokens.count == result.logProbs.count, reference.count == result.tokens.count else {
                throw CermError.invalid("executor: \(request.id): \(result.tokens.count) tokens, \(result.logProbs.count) behaviour and \(reference.count) reference log-probs")
            }
            return Trajectory(id: request.id, promptTokenCount: UInt32(clamping: request.promptTokens.count),
                              tokens: result.tokens.map { UInt32(truncatingIfNeeded: $0) },
                              behaviourLogprobs: result.logProbs, referenceLogprobs: reference,
                              finishReason: result.finishReason,
                              text: chat.text(result.tokens))
        }
    }
}
