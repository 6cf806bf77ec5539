/// The one table between GGUF tensor names (llama.cpp's `gguf-py/gguf/constants.py`
/// `TENSOR_NAMES`) and the Hugging Face names cerm's ``ParameterLayout`` uses.
///
/// | GGUF                      | Hugging Face                                  |
/// |---------------------------|-----------------------------------------------|
/// | `token_embd.weight`       | `model.embed_tokens.weight`                   |
/// | `output_norm.weight`      | `model.norm.weight`                           |
/// | `output.weight`           | `lm_head.weight`                              |
/// | `blk.N.attn_norm.weight`  | `model.layers.N.input_layernorm.weight`       |
/// | `blk.N.attn_q.weight`     | `model.layers.N.self_attn.q_proj.weight`      |
/// | … (``perLayer``)          |                                               |
public enum TensorNames {
    /// Tensors outside the layers.
    public static let global: [(gguf: String, huggingFace: String)] = [
        ("token_embd.weight", "model.embed_tokens.weight"),
        ("output_norm.weight", "model.norm.weight"),
        ("output.weight", "lm_head.weight"),
    ]

    /// Tensors of layer N, without the `blk.N.` / `model.layers.N.` prefixes.
    public static let perLayer: [(gguf: String, huggingFace: String)] = [
        ("attn_norm.weight", "input_layernorm.weight"),
        ("attn_q.weight", "self_attn.q_proj.weight"),
        ("attn_q.bias", "self_attn.q_proj.bias"),
        ("attn_k.weight", "self_attn.k_proj.weight"),
        ("attn_k.bias", "self_attn.k_proj.bias"),
        ("attn_v.weight", "self_attn.v_proj.weight"),
        ("attn_v.bias", "self_attn.v_proj.bias"),
        ("attn_q_norm.weight", "self_attn.q_norm.weight"),
        ("attn_k_norm.weight", "self_attn.k_norm.weight"),
        ("attn_output.weight", "self_attn.o_proj.weight"),
        ("ffn_norm.weight", "post_attention_layernorm.weight"),
        ("ffn_gate.weight", "mlp.gate_proj.weight"),
        ("ffn_up.weight", "mlp.up_proj.weight"),
        ("ffn_down.weight", "mlp.down_proj.weight"),
    ]

    private static let layerToGGUF = Dictionary(uniqueKeysWithValues: perLayer.map { ($0.huggingFace, $0.gguf) })
    private static let globalToGGUF = Dictionary(uniqueKeysWithValues: global.map { ($0.huggingFace, $0.gguf) })

    /// The GGUF name of a Hugging Face parameter name, or nil for a name outside the table.
    public static func gguf(huggingFace name: String) -> String? {
        if let global = globalToGGUF[name] { return global }
        let prefix = "model.layers."
        guard name.hasPrefix(prefix) else { return nil }
        let rest = name.dropFirst(prefix.count)
        guard let dot = rest.firstIndex(of: "."), let layer = Int(rest[..<dot]), layer >= 0,
              let suffix = layerToGGUF[String(rest[rest.index(after: dot)...])] else { return nil }
        return "blk.\(layer).\(suffix)"
    }
}
