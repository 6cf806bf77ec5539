import Foundation
import Shared

/// AdamW (Loshchilov & Hutter) over the flat parameter buffer, with decoupled weight decay
/// and bias correction:
///
///     t += 1
///     m = β1·m + (1−β1)·g
///     v = β2·v + (1−β2)·g²
///     θ -= lr·wd·θ                                   (decayed tensors only)
///     θ -= lr · (m / (1−β1ᵗ)) / (sqrt(v / (1−β2ᵗ)) + ε)
///
/// By default weight decay applies to matrices (embeddings, projections, LM head) and not to
/// norm weights or biases (``decaySpans(layout:decayNormsAndBiases:)``). The state (`m`, `v`, `step`) is public so
/// checkpoints can save and restore it exactly; the update is a single ordered loop, so it is
/// deterministic.
public struct AdamW: Sendable, Equatable {
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    public var weightDecay: Float
    /// First moments, same layout as the weights.
    public var m: [Float]
    /// Second moments, same layout as the weights.
    public var v: [Float]
    /// Number of steps taken (the `t` of bias correction).
    public var step: Int
    /// Where weight decay applies: 1 over a tensor's range of the flat buffer, 0 elsewhere. Per
    /// tensor, not per element: a per-element mask is one more buffer of the parameters' size
    /// (0.5 GiB at 135M), and the step multiplies by the same 1 or 0 either way.
    public var decay: [DecaySpan]

    /// One tensor's range of the flat buffer and its weight-decay mask value (1 or 0).
    public struct DecaySpan: Sendable, Equatable {
        public var range: Range<Int>
        public var mask: Float
    }

    /// Fresh state for `layout`. `decayNormsAndBiases` also decays 1-D tensors.
    public init(layout: ParameterLayout, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8,
                weightDecay: Float = 0.01, decayNormsAndBiases: Bool = false) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.m = [Float](repeating: 0, count: layout.totalCount)
        self.v = [Float](repeating: 0, count: layout.totalCount)
        self.step = 0
        self.decay = AdamW.decaySpans(layout: layout, decayNormsAndBiases: decayNormsAndBiases)
    }

    /// Every tensor of `layout` in order, with mask 1 for tensors of two or more dimensions and
    /// 0 for norm weights and biases (1 for all with `decayNormsAndBiases`).
    public static func decaySpans(layout: ParameterLayout, decayNormsAndBiases: Bool = false) -> [DecaySpan] {
        layout.specs.map {
            DecaySpan(range: $0.range, mask: decayNormsAndBiases || $0.shape.count >= 2 ? 1 : 0)
        }
    }

    /// One update of `weights` with `gradients` at `learningRate`. Throws if the buffers do
    /// not match this optimizer's size.
    public mutating func step(weights: inout ModelWeights, gradients: ModelGradients, learningRate: Float) throws {
        guard weights.values.count == m.count, gradients.values.count == m.count else {
            throw CermError.invalid("AdamW.step: optimizer has \(m.count) parameters, weights \(weights.values.count), gradients \(gradients.values.count)")
        }
        try step(parameters: &weights.values, gradients: gradients.values, learningRate: learningRate)
    }

    /// One update on raw flat buffers (same length as the state).
    public mutating func step(parameters: inout [Float], gradients: [Float], learningRate: Float) throws {
        guard parameters.count == m.count, gradients.count == m.count else {
            throw CermError.invalid("AdamW.step: optimizer has \(m.count) parameters, got \(parameters.count) parameters and \(gradients.count) gradients")
        }
        guard decay.last?.range.upperBound ?? 0 == m.count else {
            throw CermError.invalid("AdamW.step: the weight-decay spans cover \(decay.last?.range.upperBound ?? 0) of \(m.count) parameters")
        }
        step += 1
        let b1 = beta1, b2 = beta2, eps = epsilon
        let correction1 = Float(1 - Foundation.pow(Double(beta1), Double(step)))
        let correction2 = Float(1 - Foundation.pow(Double(beta2), Double(step)))
        let lr = learningRate
        let decayFactor = learningRate * weightDecay
        let decay = decay
        parameters.withUnsafeMutableBufferPointer { theta in
            gradients.withUnsafeBufferPointer { grad in
                m.withUnsafeMutableBufferPointer { mBuf in
                    v.withUnsafeMutableBufferPointer { vBuf in
                        for span in decay {
                            let mask = span.mask
                            for i in span.range {
                                let gi = grad[i]
                                let mi = b1 * mBuf[i] + (1 - b1) * gi
                                let vi = b2 * vBuf[i] + (1 - b2) * gi * gi
                                mBuf[i] = mi
                                vBuf[i] = vi
                                var p = theta[i]
                                p -= decayFactor * mask * p
                                p -= lr * (mi / correction1) / ((vi / correction2).squareRoot() + eps)
                                theta[i] = p
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Learning rate as a function of the optimizer step (0-based: the rate for the first step is
/// `rate(at: 0)`).
public enum LearningRateSchedule: Sendable, Equatable {
    /// The same rate at every step.
    case constant(Float)
    /// Linear warmup from `peak/warmupSteps` to `peak` over `warmupSteps` steps, then cosine
    /// decay from `peak` to `peak·minRatio` at `totalSteps`; `peak·minRatio` after that.
    case warmupCosine(peak: Float, warmupSteps: Int, totalSteps: Int, minRatio: Float)

    public func rate(at step: Int) -> Float {
        switch self {
        case let .constant(lr):
            return lr
        case let .warmupCosine(peak, warmupSteps, totalSteps, minRatio):
            if step < warmupSteps {
                return peak * Float(step + 1) / Float(warmupSteps)
            }
            let decaySteps = totalSteps - warmupSteps
            guard decaySteps > 0 else { return peak * minRatio }
            let progress = min(1, Double(step - warmupSteps) / Double(decaySteps))
            let cosine = 0.5 * (1 + Foundation.cos(Double.pi * progress))
            return peak * (minRatio + (1 - minRatio) * Float(cosine))
        }
    }
}
