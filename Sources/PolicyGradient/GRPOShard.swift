import Engine
import Method

/// What one shard's pass measured: per row, the output tokens' log-probs under the weights the
/// gradient was taken at and their Σ entropy; and the forward passes it took.
public struct ShardPass: Sendable, Equatable {
    public var logprobs: [[Float]]
    public var entropySums: [Double]
    public var microBatches: Int

    public init(logprobs: [[Float]], entropySums: [Double], microBatches: Int) {
        self.logprobs = logprobs
        self.entropySums = entropySums
        self.microBatches = microBatches
    }
}

/// A shard's computed gradient (flat, in the model's parameter layout) with its pass: what a
/// worker sends back for a gradient task, and what the learner sums.
public struct ShardGradient: Sendable {
    public var gradient: [Float]
    public var pass: ShardPass

    public init(gradient: [Float], pass: ShardPass) {
        self.gradient = gradient
        self.pass = pass
    }
}

/// One data shard of a GRPO mini-batch: a model replica, its gradient buffer and its rows.
/// The coordinator's learner runs ``DataShards/standardCount`` of them on its own threads; a
/// worker runs one per gradient task. Both call ``compute(budget:temperature:options:)``, so a
/// shard's gradient has the same bits wherever it is computed.
public final class GRPOShard: DataShard<GradientRow>, @unchecked Sendable {
    /// What the last ``compute(budget:temperature:options:)`` measured.
    public private(set) var pass = ShardPass(logprobs: [], entropySums: [], microBatches: 0)

    /// Adds the gradient of Σ_rows Σ_t w_t · logπθ_t to ``gradients``, where w_t is the token's
    /// ∂L/∂logπθ (``GRPOLoss/tokenWeights(_:scale:options:)``, from the log-probs of this very
    /// forward pass and the row's scale). Rows over the workspace budget `budget` (floats) are
    /// split into micro-batches, taken last first (the order the sum depends on); each is
    /// forwarded once and back-propagated at once. Rows without output tokens take no part.
    /// Sets ``pass``, or ``error`` when a forward or backward fails.
    public func compute(budget: Int, temperature: Float, options: GRPOLossOptions) {
        error = nil
        let microBatches = Transformer.microBatches(config: model.config, lengths: rows.map { $0.sequence.count - 1 },
                                                    budgetFloats: budget)
        var logprobs = [[Float]](repeating: [], count: rows.count)
        var entropySums = [Double](repeating: 0, count: rows.count)
        do {
            for range in microBatches.reversed() {
                let batch = TokenBatch(sequences: rows[range].map(\.sequence), scoredFrom: rows[range].map(\.promptLength))
                let forward = try model.forward(batch, temperature: temperature)
                var dLogprobs: [[Float]] = []
                for (local, row) in range.enumerated() {
                    let trajectory = rows[row]
                    let first = trajectory.promptLength - 1
                    let outputs = first..<(first + trajectory.outputCount)
                    logprobs[row] = Array(forward.logprobs[local][outputs])
                    entropySums[row] = forward.entropy[local][outputs].reduce(0.0) { $0 + Double($1) }
                    let weights = GRPOLoss.tokenWeights(trajectory.lossInput(logProbs: logprobs[row].map(Double.init)),
                                                        scale: trajectory.scale, options: options)
                    var perPosition = [Float](repeating: 0, count: trajectory.sequence.count - 1)
                    for (t, w) in weights.enumerated() { perPosition[first + t] = Float(w) }
                    dLogprobs.append(perPosition)
                }
                try model.backward(dLogprobs: dLogprobs, into: &gradients)
            }
        } catch {
            self.error = error
        }
        pass = ShardPass(logprobs: logprobs, entropySums: entropySums, microBatches: microBatches.count)
    }
}
