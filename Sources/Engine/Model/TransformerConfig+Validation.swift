import Shared

extension TransformerConfig {
    /// Throws a ``CermError`` naming the first field the engine cannot run with: non-positive
    /// sizes, an odd head dimension (RoPE rotates pairs), `heads` not a multiple of `kvHeads`
    /// (grouped-query attention), or a non-positive epsilon or RoPE theta.
    public func validate() throws {
        let sizes: [(String, Int)] = [("hidden_size", hiddenSize), ("layers", layers), ("heads", heads), ("kv_heads", kvHeads),
                                      ("head_dim", headDim), ("ffn_size", ffnSize), ("vocab_size", vocabSize), ("max_seq_len", maxSeqLen)]
        for (key, value) in sizes where value < 1 {
            throw CermError.invalid("model config: \(key) must be at least 1, got \(value)")
        }
        guard headDim % 2 == 0 else { throw CermError.invalid("model config: head_dim must be even for RoPE, got \(headDim)") }
        guard heads % kvHeads == 0 else {
            throw CermError.invalid("model config: heads (\(heads)) must be a multiple of kv_heads (\(kvHeads))")
        }
        guard rmsNormEps > 0, rmsNormEps.isFinite else { throw CermError.invalid("model config: rms_norm_eps must be positive, got \(rmsNormEps)") }
        guard ropeTheta > 0, ropeTheta.isFinite else { throw CermError.invalid("model config: rope_theta must be positive, got \(ropeTheta)") }
    }
}
