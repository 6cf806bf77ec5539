import Foundation
import Shared

/// Architecture of a decoder-only transformer of the Llama / Qwen2 / Qwen3 family.
///
/// Llama: no biases, no QK-norm. Qwen2: bias on q/k/v projections. Qwen3: QK-norm (RMSNorm over
/// each head's dimension, before RoPE). Every variant: RMSNorm, RoPE (rotate-half layout),
/// SwiGLU feed-forward, grouped-query attention, optional tied embeddings.
public struct TransformerConfig: Sendable, Equatable, Codable {
    public var family: ModelFamily
    public var hiddenSize: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var ffnSize: Int
    public var vocabSize: Int
    public var maxSeqLen: Int
    public var ropeTheta: Double
    public var rmsNormEps: Double
    public var qkNorm: Bool
    public var qkvBias: Bool
    public var tieEmbeddings: Bool

    public init(family: ModelFamily, hiddenSize: Int, layers: Int, heads: Int, kvHeads: Int, headDim: Int,
                ffnSize: Int, vocabSize: Int, maxSeqLen: Int, ropeTheta: Double, rmsNormEps: Double,
                qkNorm: Bool, qkvBias: Bool, tieEmbeddings: Bool) {
        self.family = family
        self.hiddenSize = hiddenSize
        self.layers = layers
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.ffnSize = ffnSize
        self.vocabSize = vocabSize
        self.maxSeqLen = maxSeqLen
        self.ropeTheta = ropeTheta
        self.rmsNormEps = rmsNormEps
        self.qkNorm = qkNorm
        self.qkvBias = qkvBias
        self.tieEmbeddings = tieEmbeddings
    }

    /// Query projection width (`heads · headDim`).
    public var qDim: Int { heads * headDim }
    /// Key/value projection width (`kvHeads · headDim`).
    public var kvDim: Int { kvHeads * headDim }

    private enum CodingKeys: String, CodingKey {
        case family, hiddenSize = "hidden_size", layers, heads, kvHeads = "kv_heads", headDim = "head_dim"
        case ffnSize = "ffn_size", vocabSize = "vocab_size", maxSeqLen = "max_seq_len", ropeTheta = "rope_theta"
        case rmsNormEps = "rms_norm_eps", qkNorm = "qk_norm", qkvBias = "qkv_bias", tieEmbeddings = "tie_embeddings"
    }

    /// JSON with the same snake_case keys as the engine fixtures' `config_json` (sorted keys).
    public func jsonString() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Encoding plain numbers, strings and bools cannot fail.
        let data = (try? encoder.encode(self)) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    /// Parses ``jsonString()`` (or a fixture's `config_json`).
    public static func fromJSON(_ text: String) throws -> TransformerConfig {
        try JSONDecoder().decode(TransformerConfig.self, from: Data(text.utf8))
    }
}

/// One named parameter tensor inside the flat parameter buffer.
public struct ParameterSpec: Sendable, Equatable {
    /// Hugging Face name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    public let name: String
    /// Shape in Hugging Face convention (`[out, in]` for linear weights).
    public let shape: [Int]
    /// Offset of the first element in the flat buffer.
    public let offset: Int
    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }
    /// Its elements' indices in the flat buffer.
    public var range: Range<Int> { offset..<(offset + count) }
}

/// The order, names, shapes and offsets of every parameter of a ``TransformerConfig``.
///
/// Parameters (and gradients, and AdamW moments) live in one flat `Float` buffer in this order,
/// so optimizer steps, checksums and weight transfer are single loops over contiguous memory.
public struct ParameterLayout: Sendable, Equatable {
    public let specs: [ParameterSpec]
    /// Total number of floats.
    public let totalCount: Int
    private let index: [String: Int]

    public init(_ config: TransformerConfig) {
        var specs: [ParameterSpec] = []
        var offset = 0
        func add(_ name: String, _ shape: [Int]) {
            specs.append(ParameterSpec(name: name, shape: shape, offset: offset))
            offset += shape.reduce(1, *)
        }
        let h = config.hiddenSize
        add("model.embed_tokens.weight", [config.vocabSize, h])
        for l in 0..<config.layers {
            let p = "model.layers.\(l)."
            add(p + "input_layernorm.weight", [h])
            add(p + "self_attn.q_proj.weight", [config.qDim, h])
            if config.qkvBias { add(p + "self_attn.q_proj.bias", [config.qDim]) }
            add(p + "self_attn.k_proj.weight", [config.kvDim, h])
            if config.qkvBias { add(p + "self_attn.k_proj.bias", [config.kvDim]) }
            add(p + "self_attn.v_proj.weight", [config.kvDim, h])
            if config.qkvBias { add(p + "self_attn.v_proj.bias", [config.kvDim]) }
            if config.qkNorm {
                add(p + "self_attn.q_norm.weight", [config.headDim])
                add(p + "self_attn.k_norm.weight", [config.headDim])
            }
            add(p + "self_attn.o_proj.weight", [h, config.qDim])
            add(p + "post_attention_layernorm.weight", [h])
            add(p + "mlp.gate_proj.weight", [config.ffnSize, h])
            add(p + "mlp.up_proj.weight", [config.ffnSize, h])
            add(p + "mlp.down_proj.weight", [h, config.ffnSize])
        }
        add("model.norm.weight", [h])
        if !config.tieEmbeddings { add("lm_head.weight", [config.vocabSize, h]) }
        self.specs = specs
        self.totalCount = offset
        var index: [String: Int] = [:]
        for (i, s) in specs.enumerated() { index[s.name] = i }
        self.index = index
    }

    /// The spec of parameter `name`, if the architecture has it.
    public func spec(_ name: String) -> ParameterSpec? { index[name].map { specs[$0] } }
}
