/// Well-known weight versions of cerm protocol v2 (docs/PROTOCOL.md, "Weights").
public enum WeightsVersion {
    /// The frozen reference model's weights. Policy versions count up from the learner's first
    /// version and never reach this value, so the reference never collides with a policy version
    /// and is never evicted by newer ones. A worker fetches it once per process.
    public static let reference: UInt64 = .max
}
