/// Flat-buffer offsets of every parameter, resolved once from the layout's HF names; the
/// training ``Transformer`` and the inference ``Generator`` read the parameters through them.
struct ParameterOffsets {
    struct Block {
        var inputNorm = 0, q = 0, k = 0, v = 0, o = 0, postNorm = 0, gate = 0, up = 0, down = 0
        var qBias: Int?, kBias: Int?, vBias: Int?, qNorm: Int?, kNorm: Int?
    }
    var embed = 0, finalNorm = 0, lmHead = 0
    var blocks: [Block] = []

    init(_ layout: ParameterLayout, config: TransformerConfig) {
        // The layout is built from the same config, so every name below exists.
        func at(_ name: String) -> Int { layout.spec(name)!.offset }
        func maybe(_ name: String) -> Int? { layout.spec(name)?.offset }
        embed = at("model.embed_tokens.weight")
        finalNorm = at("model.norm.weight")
        lmHead = config.tieEmbeddings ? embed : at("lm_head.weight")
        for l in 0..<config.layers {
            let pre = "model.layers.\(l)."
            var b = Block()
            b.inputNorm = at(pre + "input_layernorm.weight")
            b.q = at(pre + "self_attn.q_proj.weight")
            b.k = at(pre + "self_attn.k_proj.weight")
            b.v = at(pre + "self_attn.v_proj.weight")
            b.o = at(pre + "self_attn.o_proj.weight")
            b.qBias = maybe(pre + "self_attn.q_proj.bias")
            b.kBias = maybe(pre + "self_attn.k_proj.bias")
            b.vBias = maybe(pre + "self_attn.v_proj.bias")
            b.qNorm = maybe(pre + "self_attn.q_norm.weight")
            b.kNorm = maybe(pre + "self_attn.k_norm.weight")
            b.postNorm = at(pre + "post_attention_layernorm.weight")
            b.gate = at(pre + "mlp.gate_proj.weight")
            b.up = at(pre + "mlp.up_proj.weight")
            b.down = at(pre + "mlp.down_proj.weight")
            blocks.append(b)
        }
    }
}
