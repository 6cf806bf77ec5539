import Configuration
import Foundation
import Shared

// GRPO's clipped surrogate with a KL penalty (docs/DESIGN.md §4), as a value and per-token weights.
//
// The learner runs the policy forward on each trajectory's prompt + output, takes logπθ of
// the output tokens, calls `GRPOLoss.compute`, and backpropagates Σ_t w_t · logπθ_t: the
// weights are ∂L/∂logπθ_t, so ∂L/∂θ = Σ_t w_t ∇θ logπθ_t.

/// One trajectory's input to the loss. The three arrays are aligned: entry t is the t-th
/// generated token (prompt tokens are context and never appear here).
public struct LossTrajectory: Sendable, Equatable {
    public var advantage: Double
    /// logπθ(token_t) under the current policy.
    public var logProbs: [Double]
    /// Behaviour log-probs recorded by the worker that sampled the trajectory.
    public var oldLogProbs: [Double]
    /// Log-probs under the frozen reference model.
    public var refLogProbs: [Double]
    /// False leaves the trajectory out of the loss and its denominator (weights 0); see
    /// ``AdvantagedTrajectory/inLoss``.
    public var included: Bool

    public init(advantage: Double, logProbs: [Double], oldLogProbs: [Double], refLogProbs: [Double], included: Bool = true) {
        self.advantage = advantage
        self.logProbs = logProbs
        self.oldLogProbs = oldLogProbs
        self.refLogProbs = refLogProbs
        self.included = included
    }
}

/// The loss's hyper-parameters.
public struct GRPOLossOptions: Sendable, Equatable {
    /// ε_low: the ratio is clipped below at 1 − clipLow.
    public var clipLow: Double
    /// ε_high: the ratio is clipped above at 1 + clipHigh.
    public var clipHigh: Double
    /// β, the KL coefficient.
    public var klCoef: Double
    public var klEstimator: KLEstimator
    public var aggregation: LossAggregation

    public init(clipLow: Double = 0.2, clipHigh: Double = 0.2, klCoef: Double = 1e-3, klEstimator: KLEstimator = .k3,
                aggregation: LossAggregation = .tokenMean) {
        self.clipLow = clipLow
        self.clipHigh = clipHigh
        self.klCoef = klCoef
        self.klEstimator = klEstimator
        self.aggregation = aggregation
    }

    /// The options of a run's `[grpo]` section.
    public init(config: GRPOConfig) {
        self.init(clipLow: config.clipLow, clipHigh: config.clipHigh, klCoef: config.klCoef,
                  klEstimator: config.klEstimator, aggregation: config.aggregation)
    }
}

/// Diagnostics of one loss evaluation, over the included tokens.
public struct LossMetrics: Sendable, Equatable {
    /// Included generated tokens.
    public var tokens: Int
    /// The aggregated −surrogate (the policy-gradient part of the loss).
    public var policyLoss: Double
    /// The aggregated KL estimate (before multiplying by β).
    public var klLoss: Double
    /// Plain token mean of the per-token KL estimate.
    public var klMean: Double
    /// Fraction of tokens whose clipped term is active (their gradient is zero).
    public var clipFraction: Double
    public var ratioMean: Double
    public var ratioMin: Double
    public var ratioMax: Double
}

/// The loss value, the weights for the backward pass, and metrics.
public struct GRPOLossResult: Sendable, Equatable {
    public var loss: Double
    /// `tokenWeights[i][t]` = ∂L/∂logπθ of token t of trajectory i (0 for excluded trajectories).
    public var tokenWeights: [[Double]]
    public var metrics: LossMetrics
}

/// Inputs the loss refuses, naming the trajectory at fault.
public enum GRPOLossError: Error, Equatable, CustomStringConvertible {
    /// The three log-prob arrays of a trajectory differ in length.
    case lengthMismatch(trajectory: Int, logProbs: Int, oldLogProbs: Int, refLogProbs: Int)
    /// A log-prob or advantage is NaN or infinite.
    case nonFinite(trajectory: Int, token: Int?)

    public var description: String {
        switch self {
        case let .lengthMismatch(t, a, b, c):
            return "trajectory \(t): log-prob arrays differ in length (current \(a), behaviour \(b), reference \(c))"
        case let .nonFinite(t, token):
            return "trajectory \(t): non-finite " + (token.map { "log-prob at token \($0)" } ?? "advantage")
        }
    }
}

/// GRPO's per-token loss and its aggregation.
///
/// Per token: `ρ = exp(logπθ − logπold)`, surrogate `min(ρA, clip(ρ, 1−ε_low, 1+ε_high)·A)`,
/// `ℓ = −surrogate + β·KL` with, for `d = logπθ − logπref`, k1 = `d`, k2 = `½d²`,
/// k3 = `exp(−d) + d − 1` (= exp(ref − logπθ) − (ref − logπθ) − 1).
/// Aggregation: `token-mean` L = Σ ℓ / (included tokens of the mini-batch); `seq-mean-token-mean`
/// L = mean over included non-empty trajectories of their token mean.
///
/// Gradient per token: ∂surrogate/∂logπθ = ρA where the unclipped term is the minimum
/// (ties included — inside the clip range both terms agree), 0 where the clipped term is
/// strictly smaller; ∂KL/∂logπθ = 1 (k1), d (k2), 1 − exp(−d) (k3). With A = 0 the surrogate
/// and its gradient are 0 exactly (avoids ∞·0 for extreme ratios).
public enum GRPOLoss {
    /// Per-token KL estimate and its derivative with respect to logπθ.
    public static func kl(logProb: Double, refLogProb: Double, estimator: KLEstimator) -> (value: Double, derivative: Double) {
        let d = logProb - refLogProb
        switch estimator {
        case .k1: return (d, 1)
        case .k2: return (0.5 * d * d, d)
        case .k3:
            let e = Foundation.exp(-d)
            return (e + d - 1, 1 - e)
        }
    }

    /// Each trajectory's share of the aggregated loss per token (0 for one left out): `token-mean`
    /// 1 / (included tokens of the mini-batch), `seq-mean-token-mean` 1 / (included non-empty
    /// trajectories · its tokens). It depends on lengths alone, so a shard of the mini-batch
    /// computed elsewhere (a worker's gradient task) is given it and weighs its tokens with
    /// exactly the bits ``compute(_:options:)`` gives them.
    public static func tokenScales(outputCounts: [Int], included: [Bool], aggregation: LossAggregation) -> [Double] {
        let counted = zip(outputCounts, included).filter { $0.1 && $0.0 > 0 }
        let totalTokens = counted.reduce(0) { $0 + $1.0 }
        return zip(outputCounts, included).map { n, inLoss in
            guard inLoss, n > 0 else { return 0 }
            return switch aggregation {
            case .tokenMean: 1 / Double(totalTokens)
            case .seqMeanTokenMean: 1 / (Double(counted.count) * Double(n))
            }
        }
    }

    /// ∂L/∂logπθ of every output token of one trajectory whose tokens weigh `scale` each
    /// (``tokenScales(outputCounts:included:aggregation:)``); what ``compute(_:options:)`` puts
    /// in its row of ``GRPOLossResult/tokenWeights``.
    public static func tokenWeights(_ trajectory: LossTrajectory, scale: Double, options: GRPOLossOptions) -> [Double] {
        guard scale > 0 else { return [Double](repeating: 0, count: trajectory.logProbs.count) }
        return trajectory.logProbs.indices.map { token(trajectory, $0, scale: scale, options: options).weight }
    }

    /// Token t's ratio, surrogate, KL estimate and weight `scale · (−∂surrogate + β·∂KL)`.
    private static func token(_ trajectory: LossTrajectory, _ t: Int, scale: Double, options: GRPOLossOptions)
        -> (ratio: Double, surrogate: Double, clipped: Bool, kl: Double, weight: Double) {
        let a = trajectory.advantage
        let ratio = Foundation.exp(trajectory.logProbs[t] - trajectory.oldLogProbs[t])
        var surrogate = 0.0, surrogateGradient = 0.0, clipped = false
        if a != 0 {
            let unclipped = ratio * a
            let clippedTerm = min(max(ratio, 1 - options.clipLow), 1 + options.clipHigh) * a
            if clippedTerm < unclipped {
                surrogate = clippedTerm
                clipped = true
            } else {
                surrogate = unclipped
                surrogateGradient = unclipped
            }
        }
        let (klValue, klDerivative) = kl(logProb: trajectory.logProbs[t], refLogProb: trajectory.refLogProbs[t],
                                         estimator: options.klEstimator)
        return (ratio, surrogate, clipped, klValue, scale * (-surrogateGradient + options.klCoef * klDerivative))
    }

    /// The loss over one mini-batch of trajectories.
    public static func compute(_ batch: [LossTrajectory], options: GRPOLossOptions) throws(GRPOLossError) -> GRPOLossResult {
        for (index, trajectory) in batch.enumerated() {
            let n = trajectory.logProbs.count
            guard trajectory.oldLogProbs.count == n, trajectory.refLogProbs.count == n else {
                throw .lengthMismatch(trajectory: index, logProbs: n, oldLogProbs: trajectory.oldLogProbs.count,
                                      refLogProbs: trajectory.refLogProbs.count)
            }
            guard trajectory.advantage.isFinite else { throw .nonFinite(trajectory: index, token: nil) }
            for t in 0..<n where !(trajectory.logProbs[t].isFinite && trajectory.oldLogProbs[t].isFinite
                                   && trajectory.refLogProbs[t].isFinite) {
                throw .nonFinite(trajectory: index, token: t)
            }
        }
        let scales = Self.tokenScales(outputCounts: batch.map(\.logProbs.count), included: batch.map(\.included),
                                      aggregation: options.aggregation)
        let totalTokens = zip(batch, scales).reduce(0) { $0 + ($1.1 > 0 ? $1.0.logProbs.count : 0) }

        var weights: [[Double]] = []
        var policyLoss = 0.0, klLoss = 0.0, klSum = 0.0
        var clipped = 0
        var ratioSum = 0.0, ratioMin = Double.infinity, ratioMax = -Double.infinity
        for (trajectory, scale) in zip(batch, scales) {
            let n = trajectory.logProbs.count
            guard scale > 0 else {
                weights.append([Double](repeating: 0, count: n))
                continue
            }
            var row = [Double](repeating: 0, count: n)
            for t in 0..<n {
                let term = token(trajectory, t, scale: scale, options: options)
                policyLoss -= scale * term.surrogate
                klLoss += scale * term.kl
                klSum += term.kl
                row[t] = term.weight
                if term.clipped { clipped += 1 }
                ratioSum += term.ratio
                ratioMin = min(ratioMin, term.ratio)
                ratioMax = max(ratioMax, term.ratio)
            }
            weights.append(row)
        }
        let count = Double(max(totalTokens, 1))
        let metrics = LossMetrics(
            tokens: totalTokens, policyLoss: policyLoss, klLoss: klLoss, klMean: klSum / count,
            clipFraction: Double(clipped) / count, ratioMean: ratioSum / count,
            ratioMin: totalTokens > 0 ? ratioMin : 1, ratioMax: totalTokens > 0 ? ratioMax : 1)
        return GRPOLossResult(loss: policyLoss + options.klCoef * klLoss, tokenWeights: weights, metrics: metrics)
    }
}

/// Splits a batch into mini-batches of whole pairs.
public enum MiniBatches {
    /// `pairIDs` (the batch's canonical order, e.g. data order) cut into `count` contiguous
    /// parts whose sizes differ by at most one, the larger parts first. `count` is clamped to
    /// 1…pairIDs.count; an empty batch gives no mini-batches.
    public static func split(pairIDs: [UInt64], count: Int) -> [[UInt64]] {
        guard !pairIDs.isEmpty else { return [] }
        let parts = min(max(count, 1), pairIDs.count)
        let base = pairIDs.count / parts
        let extra = pairIDs.count % parts
        var result: [[UInt64]] = []
        var start = 0
        for part in 0..<parts {
            let size = base + (part < extra ? 1 : 0)
            result.append(Array(pairIDs[start..<(start + size)]))
            start += size
        }
        return result
    }

    /// `items` distributed over the mini-batches of `split(pairIDs:count:)`, each mini-batch in
    /// canonical trajectory order. Items of pairs not in `pairIDs` are left out.
    public static func partition<T>(_ items: [T], pairIDs: [UInt64], count: Int, id: (T) -> TrajectoryID) -> [[T]] {
        let batches = split(pairIDs: pairIDs, count: count)
        var batchOf: [UInt64: Int] = [:]
        for (index, batch) in batches.enumerated() {
            for pair in batch where batchOf[pair] == nil { batchOf[pair] = index }
        }
        var result = [[T]](repeating: [], count: batches.count)
        for item in items {
            if let index = batchOf[id(item).pairID] { result[index].append(item) }
        }
        return result.map { $0.sorted { id($0) < id($1) } }
    }
}

/// One trajectory as a shard of the GRPO gradient takes it (the learner's own data shards and
/// a worker's gradient task, docs/PROTOCOL.md "GRADIENT_TASK"): the whole token sequence, where
/// the output starts, one behaviour and one reference log-prob per output token, the advantage
/// and the weight of each of its tokens in the mini-batch's loss
/// (``GRPOLoss/tokenScales(outputCounts:included:aggregation:)``; 0 leaves it out).
public struct GradientRow: Sendable, Equatable {
    public var id: TrajectoryID
    /// Prompt + generated tokens.
    public var sequence: [TokenID]
    /// Number of prompt tokens (≥ 1).
    public var promptLength: Int
    public var behaviourLogprobs: [Double]
    public var referenceLogprobs: [Double]
    public var advantage: Double
    public var scale: Double

    public init(id: TrajectoryID, sequence: [TokenID], promptLength: Int, behaviourLogprobs: [Double],
                referenceLogprobs: [Double], advantage: Double, scale: Double) {
        self.id = id
        self.sequence = sequence
        self.promptLength = promptLength
        self.behaviourLogprobs = behaviourLogprobs
        self.referenceLogprobs = referenceLogprobs
        self.advantage = advantage
        self.scale = scale
    }

    /// Number of generated tokens.
    public var outputCount: Int { sequence.count - promptLength }

    /// The row's input to the loss, with its current log-probs.
    public func lossInput(logProbs: [Double]) -> LossTrajectory {
        LossTrajectory(advantage: advantage, logProbs: logProbs, oldLogProbs: behaviourLogprobs, refLogProbs: referenceLogprobs,
                       included: scale > 0)
    }
}
