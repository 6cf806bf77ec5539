/// Well-known weight versions of cerm protocol v4 (docs/PROTOCOL.md, "Weights").
public enum WeightsVersion {
    /// The frozen reference model's weights. Policy versions count up from the learner's first
    /// version and never reach these values, so the reference never collides with a policy version
    /// and is never evicted by newer ones. A worker fetches it once per process.
    public static let reference: UInt64 = .max
    /// The run's model: its architecture and tokenizer as the coordinator describes them
    /// (EngineConfiguration's `RunModel.wireDescription`), so a worker needs no model file of
    /// its own. Fetched once per process, before the reference; never evicted either.
    public static let model: UInt64 = .max - 1

    /// Weights inside a distributed update (`grpo.distributed_update`): after mini-batch m − 1
    /// of step s, the weights mini-batch m's gradient tasks are computed at are published as
    /// `firstIntermediate + s · 4096 + m` (``intermediate(step:miniBatch:)``). Policy versions
    /// stay below it.
    public static let firstIntermediate: UInt64 = 1 << 62

    /// The version of the weights mini-batch `miniBatch` (≥ 1, < 4096 = the most
    /// `grpo.mini_batches` allows) of step `step`'s update is computed at.
    public static func intermediate(step: Int, miniBatch: Int) -> UInt64 {
        firstIntermediate + UInt64(step) * 4096 + UInt64(miniBatch)
    }

    /// Whether `version` names weights inside an update.
    public static func isIntermediate(_ version: UInt64) -> Bool { version >= firstIntermediate && version < model }
}
