import Configuration
import Engine
import Foundation
import Runtime
import Shared

/// Hyper-parameters of one SFT run (the `[sft]` section plus the run seed and a time cap).
public struct SFTOptions: Sendable, Equatable {
    public var learningRate: Float
    public var batchSize: Int
    public var epochs: Int
    public var schedule: LRSchedule
    public var warmupSteps: Int
    public var weightDecay: Float
    public var maxGradNorm: Double
    /// Seeds the per-epoch shuffles.
    public var seed: UInt64
    /// Wall-clock cap in seconds; training stops before the first step that starts later.
    public var maxSeconds: Double?
    /// Upper bound on the floats of one forward/backward workspace; larger batches are split
    /// into micro-batches whose gradients are accumulated (same result, bounded memory).
    public var microBatchFloatBudget: Int
    /// Data shards per batch: each batch is split into this many groups of sequences
    /// (balanced by tokens, see ``DataShards/assignment(lengths:shards:)``) whose gradients
    /// are computed into separate buffers and summed in shard order. It fixes the arithmetic,
    /// so the weights do not depend on ``threads``.
    public var shards: Int
    /// Shards computed at once, one thread each. A 128-wide model leaves OpenBLAS's second
    /// thread mostly spinning, so on 2 cores two shards with one BLAS thread each train about
    /// 1.9 times faster than one shard with two BLAS threads
    /// (docs/experiments/2026-12-01-data-parallel-sft-and-criteria-turn.md).
    public var threads: Int

    public init(learningRate: Float, batchSize: Int, epochs: Int, schedule: LRSchedule = .warmupCosine,
                warmupSteps: Int = 0, weightDecay: Float = 0, maxGradNorm: Double = 1, seed: UInt64,
                maxSeconds: Double? = nil, microBatchFloatBudget: Int = 96 << 20, shards: Int = DataShards.standardCount, threads: Int = 1) {
        self.learningRate = learningRate
        self.batchSize = batchSize
        self.epochs = epochs
        self.schedule = schedule
        self.warmupSteps = warmupSteps
        self.weightDecay = weightDecay
        self.maxGradNorm = maxGradNorm
        self.seed = seed
        self.maxSeconds = maxSeconds
        self.microBatchFloatBudget = microBatchFloatBudget
        self.shards = shards
        self.threads = threads
    }

    /// The options of a run's `[sft]` section.
    public init(sft: SFTConfig, seed: UInt64, maxSeconds: Double? = nil, threads: Int = 1) {
        self.init(learningRate: Float(sft.learningRate), batchSize: sft.batchSize, epochs: sft.epochs,
                  schedule: sft.schedule, warmupSteps: sft.warmupSteps, weightDecay: Float(sft.weightDecay),
                  maxGradNorm: sft.maxGradNorm, seed: seed, maxSeconds: maxSeconds, threads: threads)
    }
}

/// A snapshot of training progress, reported after every optimizer step.
public struct SFTProgress: Sendable, Equatable {
    /// 1-based epoch.
    public var epoch: Int
    public var epochs: Int
    /// Optimizer steps done.
    public var step: Int
    public var totalSteps: Int
    /// The mean target-token NLL of the last batch.
    public var loss: Double
    /// Exponential moving average of the batch losses (α = 0.05, started at the first loss).
    public var lossEMA: Double
    public var learningRate: Float
    /// Tokens (prompt and target) processed per second since the start.
    public var tokensPerSecond: Double
    public var elapsedSeconds: Double
    /// Projected seconds to the last step at the average pace so far.
    public var etaSeconds: Double
}

/// What an SFT run produced.
public struct SFTResult: Sendable {
    public var weights: ModelWeights
    public var steps: Int
    public var totalSteps: Int
    /// Loss of the very first batch (before any update).
    public var firstLoss: Double?
    /// Loss EMA at the end.
    public var finalLossEMA: Double?
    /// Mean loss of each completed or partial epoch.
    public var epochLosses: [Double]
    /// True when the time cap or a stop request ended training before `totalSteps`.
    public var stoppedEarly: Bool
    /// The signal of the stop request that ended training (``SFTTrainer/train(_:stop:progress:)``), if one did.
    public var stopSignal: Int32? = nil
    public var elapsedSeconds: Double
    public var tokens: Int
    /// Steps whose gradient norm was not finite (skipped).
    public var skippedSteps: Int
}

/// Cold-start supervised fine-tuning: token-mean negative log-likelihood of the target tokens,
/// AdamW with global-norm clipping and the configured learning-rate schedule, one seeded
/// shuffle per epoch. Each batch is computed as ``SFTOptions/shards`` data shards (in parallel
/// on ``SFTOptions/threads`` threads) whose gradients are summed in shard order.
public final class SFTTrainer {
    public let options: SFTOptions
    /// The model being trained; ``train(_:progress:)`` returns its weights.
    public let model: Transformer
    private var optimizer: AdamW
    /// One replica and gradient buffer per shard; shard 0's replica is ``model``.
    private let shardStates: [SFTShard]

    public init(weights: ModelWeights, options: SFTOptions) throws {
        guard options.batchSize > 0, options.epochs > 0 else {
            throw CermError.invalid("SFT: batch_size and epochs must be positive (got \(options.batchSize), \(options.epochs))")
        }
        guard options.shards > 0, options.threads > 0 else {
            throw CermError.invalid("SFT: shards and threads must be positive (got \(options.shards), \(options.threads))")
        }
        self.options = options
        model = try Transformer(weights: weights)
        optimizer = AdamW(layout: weights.layout, weightDecay: options.weightDecay)
        shardStates = try DataShards.replicas(of: model, count: options.shards, SFTShard.init)
    }

    /// Optimizer steps of a run over `sequenceCount` sequences.
    public static func totalSteps(sequenceCount: Int, batchSize: Int, epochs: Int) -> Int {
        guard batchSize > 0 else { return 0 }
        return (sequenceCount + batchSize - 1) / batchSize * max(0, epochs)
    }

    /// The order of the sequences in `epoch` (0-based): a Fisher–Yates permutation drawn from
    /// SplitMix64(seed, epoch), so it depends on nothing but the seed.
    public static func epochOrder(count: Int, seed: UInt64, epoch: Int) -> [Int] {
        var rng = SplitMix64(seed: seed, streams: 0x5346_5453_4855_4646, UInt64(epoch))
        return rng.shuffled(Array(0..<count))
    }

    /// The learning rate of optimizer step `step` (0-based) in a run of `totalSteps`.
    public func learningRate(at step: Int, totalSteps: Int) -> Float {
        switch options.schedule {
        case .constant:
            return LearningRateSchedule.constant(options.learningRate).rate(at: step)
        case .warmupCosine:
            return LearningRateSchedule.warmupCosine(peak: options.learningRate, warmupSteps: options.warmupSteps,
                                                     totalSteps: totalSteps, minRatio: 0.1).rate(at: step)
        }
    }

    /// Mean negative log-probability of the target tokens of `sequences` under the current
    /// weights, without updating them.
    public func loss(of sequences: [SFTSequence]) throws -> Double {
        var total = 0.0
        var count = 0
        for micro in Self.microBatches(sequences, config: model.config, budgetFloats: options.microBatchFloatBudget) {
            let batch = SFTSequenceBuilder.batch(micro)
            let pass = try model.forward(batch)
            for (row, targets) in batch.targets.enumerated() {
                for (t, target) in targets.enumerated() where target >= 0 {
                    total -= Double(pass.logprobs[row][t])
                    count += 1
                }
            }
        }
        return count == 0 ? 0 : total / Double(count)
    }

    /// One optimizer step on `sequences`: returns the batch's loss before the update and
    /// whether the update was applied (not when the gradient norm is not finite).
    func step(_ sequences: [SFTSequence], learningRate: Float) throws -> (loss: Double, applied: Bool) {
        let scored = sequences.reduce(0) { $0 + $1.targetCount }
        guard scored > 0 else { return (0, false) }
        let weight = -1 / Float(scored)
        let assignment = DataShards.assignment(lengths: sequences.map(\.tokens.count), shards: shardStates.count)
        for (index, shard) in shardStates.enumerated() {
            shard.take(sequences, assignment: assignment, index: index, weights: model.weights)
        }
        let states = shardStates
        let budget = options.microBatchFloatBudget
        DataShards.run(count: states.count, threads: options.threads) { states[$0].run(weight: weight, budget: budget) }
        // A failed step must not leak partial gradients into the next one.
        defer { for shard in states { shard.gradients.zero() } }
        var total = 0.0
        for shard in states {
            if let error = shard.error { throw error }
            total += shard.negativeLogLikelihood
        }
        let sum = states[0]
        for shard in states.dropFirst() { try sum.gradients.add(shard.gradients) }
        let norm = sum.gradients.clipGlobalNorm(maxNorm: options.maxGradNorm)
        guard norm.isFinite else { return (total / Double(scored), false) }
        try optimizer.step(weights: &model.weights, gradients: sum.gradients, learningRate: learningRate)
        return (total / Double(scored), true)
    }

    /// Splits `sequences` into consecutive groups whose workspace fits `budgetFloats`.
    static func microBatches(_ sequences: [SFTSequence], config: TransformerConfig, budgetFloats: Int) -> [[SFTSequence]] {
        Transformer.microBatches(config: config, lengths: sequences.map { max(0, $0.tokens.count - 1) },
                                 budgetFloats: budgetFloats).map { Array(sequences[$0]) }
    }

    /// Trains on `sequences` for the configured epochs (or until the time cap), calling
    /// `progress` after every step.
    /// Trains on `sequences` for the options' epochs; a request on `stop` (Ctrl-C) ends training
    /// before the next step, like the time cap, and the result says which signal it was.
    public func train(_ sequences: [SFTSequence], stop: StopSignal? = nil, progress: (SFTProgress) -> Void = { _ in }) throws -> SFTResult {
        let start = Date()
        let batchesPerEpoch = (sequences.count + options.batchSize - 1) / options.batchSize
        let totalSteps = batchesPerEpoch * options.epochs
        var step = 0
        var tokens = 0
        var ema: Double?
        var firstLoss: Double?
        var epochLosses: [Double] = []
        var skipped = 0
        var stoppedEarly = false
        var stopSignal: Int32?
        training: for epoch in 0..<options.epochs {
            let order = Self.epochOrder(count: sequences.count, seed: options.seed, epoch: epoch)
            var epochLoss = 0.0
            var epochBatches = 0
            defer { if epochBatches > 0 { epochLosses.append(epochLoss / Double(epochBatches)) } }
            for batchIndex in 0..<batchesPerEpoch {
                if let cap = options.maxSeconds, Date().timeIntervalSince(start) >= cap {
                    stoppedEarly = true
                    break training
                }
                if let signal = stop?.signal {
                    stoppedEarly = true
                    stopSignal = signal
                    break training
                }
                let range = (batchIndex * options.batchSize)..<min(sequences.count, (batchIndex + 1) * options.batchSize)
                let batch = range.map { sequences[order[$0]] }
                let rate = learningRate(at: step, totalSteps: totalSteps)
                let (loss, applied) = try self.step(batch, learningRate: rate)
                if !applied { skipped += 1 }
                step += 1
                tokens += batch.reduce(0) { $0 + $1.tokens.count }
                if firstLoss == nil { firstLoss = loss }
                ema = ema.map { 0.95 * $0 + 0.05 * loss } ?? loss
                epochLoss += loss
                epochBatches += 1
                let elapsed = Date().timeIntervalSince(start)
                progress(SFTProgress(epoch: epoch + 1, epochs: options.epochs, step: step, totalSteps: totalSteps,
                                     loss: loss, lossEMA: ema ?? loss, learningRate: rate,
                                     tokensPerSecond: elapsed > 0 ? Double(tokens) / elapsed : 0, elapsedSeconds: elapsed,
                                     etaSeconds: elapsed / Double(step) * Double(totalSteps - step)))
            }
        }
        return SFTResult(weights: model.weights, steps: step, totalSteps: totalSteps, firstLoss: firstLoss,
                         finalLossEMA: ema, epochLosses: epochLosses, stoppedEarly: stoppedEarly, stopSignal: stopSignal,
                         elapsedSeconds: Date().timeIntervalSince(start), tokens: tokens, skippedSteps: skipped)
    }
}

/// One data shard of an SFT step: its rows are the batch's sequences assigned to it.
private final class SFTShard: DataShard<SFTSequence>, @unchecked Sendable {
    /// −Σ log p over the shard's target tokens in the last run.
    var negativeLogLikelihood = 0.0

    /// Adds `weight · ∂(Σ log p)/∂θ` over the shard's target tokens to ``gradients``.
    func run(weight: Float, budget: Int) {
        negativeLogLikelihood = 0
        error = nil
        do {
            for micro in SFTTrainer.microBatches(rows, config: model.config, budgetFloats: budget) {
                let batch = SFTSequenceBuilder.batch(micro)
                try model.forwardBackward(batch, into: &gradients) { pass in
                    var dL: [[Float]] = []
                    dL.reserveCapacity(batch.count)
                    for (row, targets) in batch.targets.enumerated() {
                        var rowWeights = [Float](repeating: 0, count: targets.count)
                        for (t, target) in targets.enumerated() where target >= 0 {
                            rowWeights[t] = weight
                            negativeLogLikelihood -= Double(pass.logprobs[row][t])
                        }
                        dL.append(rowWeights)
                    }
                    return dL
                }
            }
        } catch {
            self.error = error
        }
    }
}
