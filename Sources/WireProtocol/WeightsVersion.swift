/// Well-known weight versions of cerm protocol v3 (docs/PROTOCOL.md, "Weights").
public enum WeightsVersion {
    /// The frozen reference model's weights. Policy versions count up from the learner's first
    /// version and never reach these values, so the reference never collides with a policy version
    /// and is never evicted by newer ones. A worker fetches it once per process.
    public static let reference: UInt64 = .max
    /// The run's model: its architecture and tokenizer as the coordinator describes them
    /// (EngineConfiguration's `RunModel.wireDescription`), so a worker needs no model file of
    /// its own. Fetched once per process, before the reference; never evicted either.
    public static let model: UInt64 = .max - 1
}
