import Configuration
import Engine
import EngineConfiguration
import Foundation
import Logging
import Method
import PolicyGradient
import Shared
import WireProtocol

/// What ``GRPOLearner`` refuses. The trajectories themselves it takes as accepted
/// (``RolloutResultCheck``): no rule of acceptance is checked again here.
public enum GRPOLearnerError: Error, Equatable, CustomStringConvertible {
    /// The rollouts are of another step than the one being updated.
    case stepMismatch(expected: Int, rollouts: UInt64)
    /// The accepted rollouts are not of exactly the step's pairs.
    case pairsMismatch(step: Int, pairs: [UInt64], rollouts: [UInt64])
    /// A pair's rollout was accepted without a rollout plan, so it has no rebuilt prompts (a
    /// scheduler without ``SchedulerSettings/resultCheck``).
    case unplannedRollout(step: Int, pairID: UInt64)
    /// Initial weights or a checkpoint of a different architecture than `[model]`: each
    /// differing key with the value in `source` (`old`, labelled `label`) and in `[model]` (`new`).
    case modelConfigMismatch(source: String, label: String, differences: [ConfigChange])

    public var description: String {
        switch self {
        case let .stepMismatch(expected, rollouts):
            return "learner update of step \(expected) was given the rollouts of step \(rollouts)"
        case let .pairsMismatch(step, pairs, rollouts):
            return "learner update of step \(step) has pairs \(pairs) but accepted rollouts of pairs \(rollouts)"
        case let .unplannedRollout(step, pair):
            return "step \(step), pair \(pair): the rollout was accepted without the rollout plan, so its prompts are unknown"
        case let .modelConfigMismatch(source, label, differences):
            return "\(source): the model differs from [model] (the architecture cannot change): \(differences.mismatches(labelled: label))"
        }
    }
}

/// One trajectory ready for the loss: the whole token sequence, where the output starts, and
/// one behaviour / reference log-prob per output token.
public struct PreparedTrajectory: Sendable, Equatable {
    public var id: TrajectoryID
    /// Prompt + generated tokens.
    public var sequence: [TokenID]
    /// Number of prompt tokens (≥ 1: prompts start with `⟨bos⟩`).
    public var promptLength: Int
    public var behaviourLogprobs: [Double]
    public var referenceLogprobs: [Double]
    public var advantage: Double
    /// False leaves it out of the loss and its denominator (see ``AdvantagedTrajectory/inLoss``).
    public var included: Bool

    public init(id: TrajectoryID, sequence: [TokenID], promptLength: Int, behaviourLogprobs: [Double],
                referenceLogprobs: [Double], advantage: Double, included: Bool = true) {
        self.id = id
        self.sequence = sequence
        self.promptLength = promptLength
        self.behaviourLogprobs = behaviourLogprobs
        self.referenceLogprobs = referenceLogprobs
        self.advantage = advantage
        self.included = included
    }

    /// Number of generated tokens.
    public var outputCount: Int { sequence.count - promptLength }
}

/// What one mini-batch's forward (and backward) measured.
public struct MiniBatchPass: Sendable {
    public var loss: GRPOLossResult
    /// Σ entropy over the generated tokens, and their count.
    public var entropySum: Double
    public var tokens: Int
    /// Forward passes the mini-batch was split into (memory budget).
    public var microBatches: Int
}

/// CE-RM's GRPO learner (reward modes `cerm`, `par` and `pairwise`): the policy, the frozen
/// reference model and AdamW, driven by ``CoordinatorService`` from its learner thread.
///
/// An update takes the step's rollouts as the coordinator accepted them (``StepRollouts``: each
/// trajectory with the prompt the step's ``RolloutPlan`` rebuilds, so the gradient is taken in
/// exactly the context the worker sampled in), rewards each pair with ``PairRewarder``, computes
/// group advantages, splits the pairs into `grpo.mini_batches` mini-batches and takes one
/// AdamW step per mini-batch on the clipped GRPO loss with the KL penalty. The policy version
/// increases by one per update. Everything runs in canonical trajectory order, and each
/// mini-batch's forward and backward in ``shardCount`` fixed data shards (computed ``threads``
/// at a time) whose gradients are summed in shard order, so the same inputs give bit-identical
/// weights whatever order trajectories arrived in and whatever the thread count.
///
/// Responses of a pair are read as `[chosen, rejected]` (``DatasetPairSource`` sends them so).
public final class GRPOLearner: Learner, @unchecked Sendable {
    public let config: Config
    public let modelConfig: TransformerConfig
    /// Largest forward + backward workspace (floats) one micro-batch may use; a data shard's
    /// rows above it are split and their gradients accumulated. Each shard has its own
    /// workspace, and ``threads`` shards run at once.
    public var workspaceBudgetFloats: Int
    public private(set) var policyVersion: UInt64 = 0
    /// The frozen reference model (the initial weights).
    public private(set) var reference: ModelWeights
    /// AdamW state (moments, step counter).
    public private(set) var optimizer: AdamW
    /// The run's model: its tokenizer and chat template read the outputs the rewarder parses
    /// and go into every checkpoint. The `--init` weights and a restored checkpoint
    /// must carry the same tokenizer.
    public let runModel: RunModel
    /// The tokenizer written into checkpoints; nil for cerm's byte tokenizer.
    public var modelTokenizer: StoredTokenizer? { runModel.tokenizer }

    private let model: Transformer
    /// One replica per data shard (shard 0's is ``model``), each with its own gradient buffer;
    /// only shard 0's (the sum) once the workers compute the shards (``distributeGradients(to:)``).
    private var shards: [GRPOShard]
    /// The shard whose gradient buffer holds a mini-batch's gradient once the shards are summed
    /// into it, for the clip and the AdamW step: the learner keeps no buffer of its own for the
    /// sum (0.5 GiB at 135M parameters).
    private var summingShard: GRPOShard { shards[0] }
    /// Data shards per mini-batch by default (`grpo.gradient_shards`).
    public static let dataShards = DataShards.standardCount
    /// Data shards per mini-batch (`grpo.gradient_shards`): fixes the arithmetic of the update
    /// (see ``DataShards``).
    public let shardCount: Int
    /// Shards computed at once (one thread each, with one BLAS thread each as set by the
    /// caller); does not change the result.
    public var threads: Int
    private let lossOptions: GRPOLossOptions
    /// Where mini-batch gradients are computed when not here (``distributeGradients(to:)``).
    private var remote: (any RemoteGradients)?
    private let schedule: LearningRateSchedule
    private let temperature: Float
    private let logger: Logger

    /// The current policy weights.
    public var policy: ModelWeights { model.weights }

    /// Fixed-lag mode: the policies before ``policyVersion`` that steps still sample with, at
    /// most `cluster.max_staleness`, oldest first. Checkpoints hold them (`previous.<k>.`
    /// tensors), so a resumed run samples its next steps with the same weights as one that
    /// never stopped.
    public private(set) var previousPolicies: [(version: UInt64, weights: ModelWeights)] = []
    /// How many previous policies fixed-lag sampling needs (0 in the other modes).
    private var previousPoliciesKept: Int { config.cluster.mode == .fixedLag ? config.cluster.maxStaleness : 0 }

    /// Default micro-batch budget: 2^28 floats (1 GiB).
    public static let defaultWorkspaceBudgetFloats = 1 << 28

    /// Tensor-name prefix of the reference weights inside a checkpoint's `/model` group.
    public static let referencePrefix = "reference."

    /// A learner whose policy and reference both start at `initialWeights`, or at a random
    /// init from `model.init_std` and `run.seed` when nil. `source` names the weights in errors;
    /// `runModel` is cerm's own model of `[model]` when nil.
    public init(config: Config, runModel: RunModel? = nil, initialWeights: ModelWeights? = nil,
                source: String = "initial weights",
                workspaceBudgetFloats: Int = GRPOLearner.defaultWorkspaceBudgetFloats, threads: Int = 1,
                logger: Logger = Logger(label: "cerm.learner")) throws {
        let modelConfig = TransformerConfig(config.model)
        let weights: ModelWeights
        if let initialWeights {
            guard initialWeights.config == modelConfig else {
                throw GRPOLearnerError.modelConfigMismatch(source: source, label: "weights",
                                                           differences: initialWeights.config.changes(to: modelConfig))
            }
            weights = initialWeights
        } else {
            weights = ModelWeights(initialFor: config)
        }
        self.config = config
        self.modelConfig = modelConfig
        self.workspaceBudgetFloats = max(1, workspaceBudgetFloats)
        self.reference = weights
        self.runModel = runModel ?? RunModel(ownModel: config.model)
        self.model = try Transformer(weights: weights)
        self.shardCount = config.grpo.gradientShards
        self.shards = try DataShards.replicas(of: model, count: config.grpo.gradientShards, GRPOShard.init)
        self.threads = max(1, threads)
        let grpo = config.grpo
        self.optimizer = AdamW(layout: weights.layout, beta1: Float(grpo.adamBeta1), beta2: Float(grpo.adamBeta2),
                               epsilon: Float(grpo.adamEps), weightDecay: Float(grpo.weightDecay))
        self.lossOptions = GRPOLossOptions(config: grpo)
        // Linear warmup to the peak, then constant (minRatio 1 makes the cosine part flat).
        self.schedule = grpo.warmupSteps > 0
            ? .warmupCosine(peak: Float(grpo.learningRate), warmupSteps: grpo.warmupSteps,
                            totalSteps: grpo.warmupSteps + 1, minRatio: 1)
            : .constant(Float(grpo.learningRate))
        self.temperature = config.rollout.temperature > 0 ? Float(config.rollout.temperature) : 1
        self.logger = logger
    }

    /// A learner starting from the SFT weights file at `initPath` (``ModelWeights/load(path:)``),
    /// which must carry `runModel`'s tokenizer, or from the run model's initial weights
    /// (``RunModel/initialWeights(config:)``: the pretrained source's, or a random init) when nil.
    public convenience init(config: Config, runModel: RunModel, initPath: String?, threads: Int = 1,
                            logger: Logger = Logger(label: "cerm.learner")) throws {
        let weights: ModelWeights
        if let initPath {
            guard FileManager.default.fileExists(atPath: initPath) else {
                throw CermError.io(path: initPath, reason: "no such SFT weights file (--init)")
            }
            let kind: CermFileKind
            do { kind = try CermFileKind.detect(path: initPath) } catch let error as CheckpointError {
                throw CermError.io(path: initPath, reason: "cannot load SFT weights (--init): \(error.reason)")
            }
            if case .checkpoint = kind {
                // The other kind of .h5 cerm writes; its policy is not an initialisation but a
                // run to continue, with its optimizer state and data cursor.
                throw CermError.invalid("\(initPath) is \(kind), not an SFT weights file: --resume \(initPath) continues that run; "
                                        + "--init takes SFT weights (`cerm sft` writes them to sft.output)")
            }
            let file: ModelWeights.StoredFile
            do {
                file = try ModelWeights.loadVerified(path: initPath)
            } catch let error as CermError {
                throw error
            } catch {
                throw CermError.io(path: initPath, reason: "cannot load SFT weights (--init): \(error)")
            }
            try runModel.checkTokenizer(file.storedTokenizer, of: initPath)
            weights = file.weights
        } else {
            weights = try runModel.initialWeights(config: config)
        }
        try self.init(config: config, runModel: runModel, initialWeights: weights,
                      source: initPath ?? runModel.source ?? "initial weights", threads: threads, logger: logger)
    }

    // MARK: Learner

    /// The coordinator's split of this machine's processors: the data shards run in parallel,
    /// at most one per processor, each with an even share of the processors as BLAS threads (at
    /// the default model size ~1.8x faster than one shard on all BLAS threads). Sets the BLAS
    /// threads and returns the shard threads for ``init(config:initPath:threads:logger:)``.
    public static func claimProcessors(shards: Int = dataShards) -> Int {
        let processors = ProcessInfo.processInfo.activeProcessorCount
        let threads = min(processors, max(1, shards))
        BLAS.setThreads(max(1, processors / threads))
        return threads
    }

    public func currentWeights() throws -> [UInt8] { model.weights.wireBytes }

    public func publishedWeights(chunkBytes: Int) throws -> PublishedWeights {
        model.weights.withWireBytes { PublishedWeights(version: policyVersion, bytes: $0, chunkBytes: chunkBytes) }
    }

    public func referenceWeights() throws -> [UInt8] { reference.wireBytes }

    public func previousPolicyWeights() throws -> [(version: UInt64, bytes: [UInt8])] {
        previousPolicies.map { ($0.version, $0.weights.wireBytes) }
    }

    public func modelDescription() -> [UInt8] { runModel.wireDescription }

    public func distributeGradients(to remote: any RemoteGradients) throws {
        self.remote = remote
        // The other replicas and their gradient buffers (0.5 GiB each at 135M) are not needed.
        shards = [summingShard]
    }

    public func update(step: Int, pairs: [TaskPair], rollouts: StepRollouts) throws -> StepMetrics {
        guard rollouts.step == UInt64(step) else { throw GRPOLearnerError.stepMismatch(expected: step, rollouts: rollouts.step) }
        // Copy-on-write: kept as it is now, copied only when the update writes the weights
        // (and only in fixed-lag mode: a reference held here costs each update a copy).
        let before = previousPoliciesKept > 0 ? (version: policyVersion, weights: model.weights) : nil
        // A failed update must not leak partial gradients into the next one.
        defer { summingShard.gradients.zero() }
        var metrics = MethodMetrics()
        let scored = try score(step: step, pairs: pairs, rollouts: rollouts.rollouts, metrics: &metrics)
        let advantages = Advantages.compute(scored.outcomes, options: AdvantageOptions(reward: config.reward, grpo: config.grpo))
        metrics.add(advantages: advantages)

        var advantageByID: [TrajectoryID: AdvantagedTrajectory] = [:]
        for entry in advantages.trajectories { advantageByID[entry.id] = entry }
        var prepared: [PreparedTrajectory] = []
        for (trajectory, prompt) in scored.trajectories {
            // Every accepted trajectory is one the rewarder scores (the plan's set).
            guard let advantage = advantageByID[trajectory.id] else {
                throw CermError.invalid("step \(step), \(trajectory.id): accepted but given no advantage")
            }
            prepared.append(prepare(trajectory, prompt: prompt, advantage: advantage))
        }

        // Pair-id order, like the trajectories: the split does not depend on how pairs were listed.
        let miniBatches = MiniBatches.partition(prepared, pairIDs: pairs.map(\.pairID).sorted(), count: config.grpo.miniBatches, id: \.id)
        var entropySum = 0.0, entropyTokens = 0
        var gradNormSum = 0.0
        for (index, batch) in miniBatches.enumerated() {
            let (pass, norm) = try train(miniBatch: batch, step: step, index: index)
            metrics.add(loss: pass.loss.metrics, value: pass.loss.loss)
            entropySum += pass.entropySum
            entropyTokens += pass.tokens
            gradNormSum += norm
        }
        if entropyTokens > 0 { metrics.entropy = entropySum / Double(entropyTokens) }
        if !miniBatches.isEmpty { metrics.gradNorm = gradNormSum / Double(miniBatches.count) }
        policyVersion += 1
        if let before { previousPolicies = Array((previousPolicies + [before]).suffix(previousPoliciesKept)) }

        let summary = metrics.summary
        let singleStage = summary.rewardMean[.judgment] ?? summary.rewardMean[.comparison]
        return StepMetrics(
            step: step, policyVersion: policyVersion,
            meanCriteriaReward: summary.rewardMean[.criteria] ?? 0,
            meanEvaluationReward: summary.rewardMean[.evaluation] ?? singleStage ?? 0,
            pairwiseAccuracy: summary.pairwiseAccuracy ?? 0, validFormatRate: summary.validFormatRate ?? 0,
            kl: summary.kl ?? 0, loss: summary.loss ?? 0, clipFraction: summary.clipFraction ?? 0,
            entropy: summary.entropy ?? 0, gradNorm: summary.gradNorm ?? 0, fracZeroStd: summary.fracZeroStd ?? 0,
            generatedTokens: rollouts.trajectories.reduce(0) { $0 + $1.tokens.count },
            trajectories: rollouts.trajectories.count)
    }

    /// The state's tensors share the learner's own buffers (policy, reference, AdamW moments)
    /// instead of copying them, so writing a checkpoint costs no memory beyond training's; they
    /// keep their values should the learner change afterwards (copy-on-write).
    public func trainingState(step: Int, dataCursor: DataCursor) throws -> TrainingState {
        let layout = model.weights.layout
        func named(_ values: [Float], prefix: String = "") throws -> [NamedTensor] {
            guard values.count == layout.totalCount else {
                throw CermError.invalid("learner buffer of \(values.count) values, the model has \(layout.totalCount)")
            }
            return layout.specs.map {
                NamedTensor(name: prefix + $0.name, shape: $0.shape, sharing: values, range: $0.range)
            }
        }
        return TrainingState(
            step: step, policyVersion: policyVersion,
            tensors: try named(model.weights.values) + named(reference.values, prefix: Self.referencePrefix)
                + previousPolicies.flatMap { try named($0.weights.values, prefix: "\(TrainingState.previousPolicyPrefix)\(policyVersion - $0.version).") },
            adamM: try named(optimizer.m), adamV: try named(optimizer.v), adamStep: optimizer.step,
            dataCursor: dataCursor, rngState: [], configText: config.renderTOML(),
            modelConfigJSON: modelConfig.jsonString(),
            tokenizerDescription: modelTokenizer?.description ?? ByteTokenizer().description, tokenizer: modelTokenizer,
            // The reference is the weights the run started from (restored with it on resume),
            // so `cerm pipeline` can tell a run trained from other SFT weights.
            extra: ["learner": "grpo", "reward_mode": config.reward.mode.rawValue,
                    TrainingState.initWeightsChecksumKey: CheckpointFormat.hex(reference.checksum)])
    }

    /// Restores policy, AdamW state, version and previous policies (fixed-lag; those beyond
    /// `cluster.max_staleness` are dropped). The reference weights come from the
    /// checkpoint's `reference.` tensors; a checkpoint without them keeps this learner's
    /// reference (the `--init` weights), with a warning.
    public func restore(from state: TrainingState) throws {
        try runModel.checkTokenizer(state.tokenizer, of: "the checkpoint of step \(state.step)")
        let found: TransformerConfig
        do { found = try TransformerConfig.fromJSON(state.modelConfigJSON) } catch {
            throw CermError.invalid("checkpoint model config is not readable: \(error)")
        }
        guard found == modelConfig else {
            throw GRPOLearnerError.modelConfigMismatch(source: "checkpoint of step \(state.step)", label: "checkpoint",
                                                       differences: found.changes(to: modelConfig))
        }
        let layout = model.weights.layout
        func plain(_ tensors: [NamedTensor]) -> [(name: String, shape: [Int], values: [Float])] {
            tensors.map { ($0.name, $0.shape, $0.values) }
        }
        let policyTensors = state.policyTensors
        let referenceTensors = state.referenceTensors
        let policy = try ModelWeights(config: modelConfig, values: layout.flatten(plain(policyTensors)))
        let m = try layout.flatten(plain(state.adamM))
        let v = try layout.flatten(plain(state.adamV))
        if referenceTensors.isEmpty {
            logger.warning("checkpoint has no reference weights: keeping the initial weights as the reference",
                           metadata: ["step": "\(state.step)"])
        } else {
            reference = try ModelWeights(config: modelConfig, values: layout.flatten(plain(referenceTensors)))
        }
        let previous = try state.previousPolicyTensors().map {
            (version: state.policyVersion - $0.back, weights: try ModelWeights(config: modelConfig, values: layout.flatten(plain($0.tensors))))
        }
        model.weights = policy
        optimizer.m = m
        optimizer.v = v
        optimizer.step = state.adamStep
        policyVersion = state.policyVersion
        previousPolicies = Array(previous.suffix(previousPoliciesKept))
        summingShard.gradients.zero()
    }

    // MARK: Update pieces

    /// Rewards each pair of the step's accepted rollouts. Returns the outcomes (every expected
    /// trajectory of every pair) and the trajectories in canonical order with their prompts.
    func score(step: Int, pairs: [TaskPair], rollouts: [AcceptedRollout], metrics: inout MethodMetrics) throws
        -> (outcomes: [TrajectoryOutcome], trajectories: [(Trajectory, [TokenID])]) {
        let pairIDs = pairs.map(\.pairID).sorted()
        // Pairs in id order: canonical order does not depend on the order of `pairs`.
        let sorted = rollouts.sorted { $0.pairID < $1.pairID }
        guard sorted.map(\.pairID) == pairIDs else {
            throw GRPOLearnerError.pairsMismatch(step: step, pairs: pairIDs, rollouts: sorted.map(\.pairID))
        }
        let rewarder = PairRewarder(reward: config.reward, rollout: config.rollout, chat: runModel.chat, runSeed: config.run.seed,
                                    step: UInt64(step))
        var outcomes: [TrajectoryOutcome] = []
        var trajectories: [(Trajectory, [TokenID])] = []
        for rollout in sorted {
            guard let prompts = rollout.prompts else { throw GRPOLearnerError.unplannedRollout(step: step, pairID: rollout.pairID) }
            trajectories.append(contentsOf: zip(rollout.trajectories, prompts).map { ($0, $1) })
            let scoring = rewarder.score(pairID: rollout.pairID, outputs: rollout.outputs)
            metrics.add(scoring: scoring)
            outcomes.append(contentsOf: scoring.outcomes)
        }
        return (outcomes, trajectories)
    }

    /// One accepted trajectory joined to its prompt, with its advantage. An empty output (a
    /// prompt that did not fit the context: finish `context`) is scored as invalid output and
    /// never forwarded.
    func prepare(_ trajectory: Trajectory, prompt: [TokenID], advantage: AdvantagedTrajectory) -> PreparedTrajectory {
        PreparedTrajectory(
            id: trajectory.id, sequence: prompt + trajectory.tokens.map { TokenID(truncatingIfNeeded: $0) }, promptLength: prompt.count,
            behaviourLogprobs: trajectory.behaviourLogprobs.map(Double.init),
            referenceLogprobs: trajectory.referenceLogprobs.map(Double.init),
            advantage: advantage.advantage, included: advantage.inLoss)
    }

    /// One mini-batch's forward, backward and AdamW step on the clipped gradient (skipped, with a
    /// warning, when its norm is not finite). Returns the pass and the gradient norm before clipping.
    func train(miniBatch batch: [PreparedTrajectory], step: Int, index: Int = 0) throws -> (pass: MiniBatchPass, gradNorm: Double) {
        defer { summingShard.gradients.zero() }
        let pass = try runMiniBatch(batch, backward: true, step: step, index: index)
        let norm = summingShard.gradients.clipGlobalNorm(maxNorm: config.grpo.maxGradNorm)
        if norm.isFinite {
            try optimizer.step(weights: &model.weights, gradients: summingShard.gradients, learningRate: schedule.rate(at: optimizer.step))
        } else {
            logger.warning("non-finite gradient norm: optimizer step skipped", metadata: ["step": "\(step)"])
        }
        return (pass, norm)
    }

    /// The GRPO loss of one mini-batch under the current policy and, with `backward`, its
    /// gradient in ``summingShard``'s buffer (zero before: ``train(miniBatch:step:index:)`` clears
    /// it after each step). Trajectories without output tokens take no part. The rows are split
    /// into ``shardCount`` shards (``DataShards``), each computed by ``GRPOShard`` on its own
    /// model replica, ``threads`` at a time, or by the workers (``distributeGradients(to:)``);
    /// their gradients are summed in shard order (0 + g₀ + g₁ + …, as into a zeroed buffer), so
    /// the bits depend neither on the thread count nor on where a shard ran. Each row's tokens
    /// weigh ``GRPOLoss/tokenScales(outputCounts:included:aggregation:)`` in the loss, known
    /// from lengths alone, so a shard needs no other shard's log-probs; the loss and its metrics
    /// are computed from every row's log-probs afterwards.
    func runMiniBatch(_ batch: [PreparedTrajectory], backward: Bool, step: Int = 0, index: Int = 0) throws -> MiniBatchPass {
        let kept = batch.filter { $0.outputCount > 0 }
        let scales = GRPOLoss.tokenScales(outputCounts: kept.map(\.outputCount), included: kept.map(\.included),
                                          aggregation: lossOptions.aggregation)
        let rows = zip(kept, scales).map { trajectory, scale in
            GradientRow(id: trajectory.id, sequence: trajectory.sequence, promptLength: trajectory.promptLength,
                        behaviourLogprobs: trajectory.behaviourLogprobs, referenceLogprobs: trajectory.referenceLogprobs,
                        advantage: trajectory.advantage, scale: scale)
        }
        let assignment = DataShards.assignment(lengths: rows.map(\.sequence.count), shards: shardCount)
        let rowIndices = (0..<shardCount).map { shard in assignment.indices.filter { assignment[$0] == shard } }
        let passes: [ShardPass]
        do {
            if let remote {
                do {
                    passes = try remoteGradients(remote, rows: rows, rowIndices: rowIndices, step: step, index: index)
                } catch let unavailable as RemoteGradientsUnavailable {
                    logger.notice("step \(step), mini-batch \(index): \(unavailable); computing its \(shardCount) shards here")
                    passes = try localGradients(rows: rows, assignment: assignment)
                }
            } else {
                passes = try localGradients(rows: rows, assignment: assignment)
            }
        } catch {
            // A failed mini-batch must not leave partial gradients in a shard for the next one.
            for shard in shards { shard.gradients.zero() }
            throw error
        }
        if !backward { summingShard.gradients.zero() }
        var logprobs = [[Double]](repeating: [], count: rows.count)
        var entropySums = [Double](repeating: 0, count: rows.count)
        for (pass, indices) in zip(passes, rowIndices) {
            for (local, row) in indices.enumerated() {
                logprobs[row] = pass.logprobs[local].map(Double.init)
                entropySums[row] = pass.entropySums[local]
            }
        }
        let loss: GRPOLossResult
        do {
            loss = try GRPOLoss.compute(zip(rows, logprobs).map { $0.lossInput(logProbs: $1) }, options: lossOptions)
        } catch {
            summingShard.gradients.zero()
            // The loss names the row; name the trajectory instead.
            let row: Int = switch error {
            case let .lengthMismatch(trajectory, _, _, _): trajectory
            case let .nonFinite(trajectory, _): trajectory
            }
            throw CermError.invalid("\(rows[row].id): \(error)")
        }
        return MiniBatchPass(loss: loss, entropySum: entropySums.reduce(0, +), tokens: rows.reduce(0) { $0 + $1.outputCount },
                             microBatches: passes.reduce(0) { $0 + $1.microBatches })
    }

    /// The shards computed here, ``threads`` at a time, and summed into ``summingShard``. A
    /// learner whose shards the workers compute makes the replicas for the occasion (a stop
    /// during a distributed update) and lets them go afterwards.
    private func localGradients(rows: [GradientRow], assignment: [Int]) throws -> [ShardPass] {
        if shards.count < shardCount {
            let summing = summingShard
            shards = [summing] + (try (1..<shardCount).map { _ in GRPOShard(model: try Transformer(weights: model.weights)) })
        }
        defer { if remote != nil { shards = [summingShard] } }
        for (index, shard) in shards.enumerated() {
            shard.take(rows, assignment: assignment, index: index, weights: model.weights)
        }
        // The replicas let go of the policy until the next mini-batch takes it again, so that the
        // AdamW step updates it in place instead of copying it (0.5 GiB at 135M parameters); they
        // hold the reference weights meanwhile, which cost nothing more.
        defer { for shard in shards where shard.model !== model { shard.model.weights = reference } }
        let shards = shards
        let (budget, temperature, options) = (workspaceBudgetFloats, temperature, lossOptions)
        DataShards.run(count: shards.count, threads: threads) { shards[$0].compute(budget: budget, temperature: temperature, options: options) }
        for shard in shards { if let error = shard.error { throw error } }
        let summing = summingShard
        summing.gradients.beginSum()
        for shard in shards where shard !== summing {
            try summing.gradients.add(shard.gradients)
            shard.gradients.zero()
        }
        return shards.map(\.pass)
    }

    /// The shards computed by the workers at the current weights (published as the policy
    /// version for the first mini-batch, as an intermediate version after it) and summed into
    /// ``summingShard`` in shard order. An empty shard is not sent: its gradient is zero, and
    /// leaving it out of the sum changes no bit (``ModelGradients/beginSum()`` already made
    /// every −0 a +0, the only value adding +0 changes).
    private func remoteGradients(_ remote: any RemoteGradients, rows: [GradientRow], rowIndices: [[Int]], step: Int,
                                 index: Int) throws -> [ShardPass] {
        let sent = rowIndices.indices.filter { !rowIndices[$0].isEmpty }
        guard !sent.isEmpty else { return rowIndices.map { _ in ShardPass(logprobs: [], entropySums: [], microBatches: 0) } }
        let weights: GradientWeights = index == 0
            ? .published(version: policyVersion)
            : .intermediate(version: WeightsVersion.intermediate(step: step, miniBatch: index), weights: model.weights)
        let settings = GradientSettings(temperature: temperature, loss: lossOptions, workspaceFloats: workspaceBudgetFloats,
                                        parameterCount: model.weights.layout.totalCount)
        var results = try remote.compute(step: step, miniBatch: index, shards: sent.map { rowIndices[$0].map { rows[$0] } },
                                         weights: weights, settings: settings)
        guard results.count == sent.count else {
            throw CermError.invalid("step \(step), mini-batch \(index): \(results.count) shard gradients for \(sent.count) shards")
        }
        let summing = summingShard
        var passes = rowIndices.map { _ in ShardPass(logprobs: [], entropySums: [], microBatches: 0) }
        for (position, shard) in sent.enumerated() {
            guard results[position].gradient.count == summing.gradients.values.count else {
                throw CermError.invalid("step \(step), mini-batch \(index), shard \(shard): a gradient of \(results[position].gradient.count) values, the model has \(summing.gradients.values.count)")
            }
            if position == 0 {
                // Moved, not shared: beginSum would otherwise copy it (0.5 GiB at 135M).
                summing.gradients.values = results[position].gradient
                results[position].gradient = []
                summing.gradients.beginSum()
            } else {
                try summing.gradients.add(values: results[position].gradient)
            }
            passes[shard] = results[position].pass
        }
        return passes
    }

    /// The accumulated gradients (tests).
    var accumulatedGradients: ModelGradients { summingShard.gradients }

    /// Clears the accumulated gradients (tests).
    func zeroGradients() { summingShard.gradients.zero() }

    /// Replaces the policy weights without touching the optimizer (tests, finite differences).
    func setPolicy(_ weights: ModelWeights) { model.weights = weights }
}

extension TrainingState {
    /// Tensor-name prefix of a fixed-lag run's previous policies inside a checkpoint's `/model`
    /// group: `previous.<k>.<name>` is the policy `k` versions before `policy_version`.
    public static let previousPolicyPrefix = "previous."

    /// The policy's tensors: every `/model` tensor not named with ``GRPOLearner/referencePrefix``
    /// or ``previousPolicyPrefix``.
    public var policyTensors: [NamedTensor] {
        tensors.filter { !$0.name.hasPrefix(GRPOLearner.referencePrefix) && !$0.name.hasPrefix(Self.previousPolicyPrefix) }
    }

    /// A fixed-lag run's previous policies, oldest first: each one's distance `back` from
    /// `policy_version` (k of `previous.<k>.`) and its tensors with the prefix removed. A name
    /// whose k is not a positive integer is an error naming it.
    public func previousPolicyTensors() throws -> [(back: UInt64, tensors: [NamedTensor])] {
        var byBack: [UInt64: [NamedTensor]] = [:]
        for tensor in tensors where tensor.name.hasPrefix(Self.previousPolicyPrefix) {
            let rest = tensor.name.dropFirst(Self.previousPolicyPrefix.count)
            guard let dot = rest.firstIndex(of: "."), let back = UInt64(rest[..<dot]), back >= 1, back <= policyVersion else {
                throw CermError.invalid("tensor \(tensor.name): expected previous.<k>.<name> with 1 ≤ k ≤ policy_version (\(policyVersion))")
            }
            var renamed = tensor
            renamed.name = String(rest[rest.index(after: dot)...])
            byBack[back, default: []].append(renamed)
        }
        return byBack.keys.sorted(by: >).map { ($0, byBack[$0]!) }
    }

    /// The frozen reference model's tensors, their names without the `reference.` prefix.
    public var referenceTensors: [NamedTensor] {
        tensors.filter { $0.name.hasPrefix(GRPOLearner.referencePrefix) }.map {
            var tensor = $0
            tensor.name = String(tensor.name.dropFirst(GRPOLearner.referencePrefix.count))
            return tensor
        }
    }
}
