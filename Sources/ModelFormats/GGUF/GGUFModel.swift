import Engine
import Foundation
import Shared

/// A GGUF file of the llama, qwen2 or qwen3 architecture as cerm weights.
///
/// The config comes from the `{arch}.*` metadata, the vocabulary size from the embedding's
/// shape, tied embeddings from the absence of `output.weight`. Tensors are bound to the Hugging
/// Face names by ``TensorNames`` and dequantized one at a time straight into the flat buffer.
///
/// llama.cpp's converter (`convert_hf_to_gguf.py`, `LlamaModel.permute`) reorders the rows of
/// each llama Q and K head from rotate-half order `[x₀ … x_{D/2−1}, y₀ … y_{D/2−1}]` into ggml's
/// interleaved RoPE order `[x₀, y₀, x₁, y₁, …]`; reading undoes it as transformers does
/// (`reverse_permute_weights`): Hugging Face row `h·D + half·D/2 + i` is GGUF row
/// `h·D + 2i + half`. Qwen2/3 are converted without the permutation.
public enum GGUFModel {
    /// The largest size cerm accepts for any config dimension (a damaged file cannot make it
    /// allocate or loop more than the tensors in the file imply).
    static let maxDimension = 1 << 24

    /// The transformer config of `file` (errors name the file and the metadata key).
    public static func config(of file: GGUFFile) throws -> TransformerConfig {
        let architecture = try file.string("general.architecture")
        let family: ModelFamily
        switch architecture {
        case "llama": family = .llama
        case "qwen2": family = .qwen2
        case "qwen3": family = .qwen3
        default:
            throw CermError.io(path: file.path, reason: "unknown architecture \(architecture) (general.architecture); cerm reads llama (also Mistral), qwen2 and qwen3")
        }
        func key(_ name: String) -> String { "\(architecture).\(name)" }
        func optionalInt(_ name: String) throws -> Int? { file.metadata[key(name)] == nil ? nil : try file.int(key(name)) }
        func size(_ name: String) throws -> Int {
            let value = try file.int(key(name))
            guard (1...maxDimension).contains(value) else {
                throw CermError.io(path: file.path, reason: "metadata \(key(name)) = \(value) is outside 1...\(maxDimension)")
            }
            return value
        }
        if let scaling = file.metadata[key("rope.scaling.type")], scaling != .string("none") {
            throw CermError.io(path: file.path, reason: "metadata \(key("rope.scaling.type")) = \(scaling): RoPE scaling is not supported")
        }
        let hidden = try size("embedding_length")
        let heads = try size("attention.head_count")
        let kvHeads = file.metadata[key("attention.head_count_kv")] == nil ? heads : try size("attention.head_count_kv")
        let headDim: Int
        if file.metadata[key("attention.key_length")] != nil {
            headDim = try size("attention.key_length")
        } else {
            guard hidden % heads == 0 else {
                throw CermError.io(path: file.path, reason: "metadata \(key("embedding_length")) = \(hidden) is not a multiple of \(key("attention.head_count")) = \(heads) and \(key("attention.key_length")) is absent")
            }
            headDim = hidden / heads
        }
        for name in ["attention.value_length", "rope.dimension_count"] {
            if let value = try optionalInt(name), value != headDim {
                throw CermError.io(path: file.path, reason: "metadata \(key(name)) = \(value) differs from the head dimension \(headDim); cerm needs full-width RoPE and equal key/value heads")
            }
        }
        guard let embedding = file.tensor("token_embd.weight") else {
            throw CermError.io(path: file.path, reason: "tensor token_embd.weight is missing")
        }
        guard embedding.dimensions.count == 2, embedding.dimensions[0] == hidden, (1...maxDimension).contains(embedding.dimensions[1]) else {
            throw CermError.io(path: file.path, reason: "tensor token_embd.weight has dimensions \(embedding.dimensions), expected [\(hidden), vocabulary size]")
        }
        let config = TransformerConfig(
            family: family, hiddenSize: hidden, layers: try size("block_count"), heads: heads, kvHeads: kvHeads,
            headDim: headDim, ffnSize: try size("feed_forward_length"), vocabSize: embedding.dimensions[1],
            maxSeqLen: try size("context_length"),
            ropeTheta: file.metadata[key("rope.freq_base")] == nil ? 10_000 : try file.double(key("rope.freq_base")),
            rmsNormEps: try file.double(key("attention.layer_norm_rms_epsilon")),
            qkNorm: family == .qwen3, qkvBias: family == .qwen2, tieEmbeddings: file.tensor("output.weight") == nil)
        do {
            try config.validate()
        } catch let CermError.invalid(message) {
            throw CermError.io(path: file.path, reason: message)
        }
        return config
    }

    /// The weights of `file`: every parameter of ``config(of:)`` must be present with its shape
    /// and no other tensor may be, all checked before the float32 buffer is allocated.
    public static func weights(of file: GGUFFile) throws -> ModelWeights {
        let config = try config(of: file)
        // Each layer has at least 9 tensors: a block count the file cannot hold is refused
        // before the layout is built.
        guard config.layers <= file.tensors.count / 9 else {
            throw CermError.io(path: file.path, reason: "metadata \(try file.string("general.architecture")).block_count = \(config.layers) but the file has only \(file.tensors.count) tensors")
        }
        let layout = ParameterLayout(config)
        var byName: [String: GGUFTensorInfo] = [:]
        for tensor in file.tensors { byName[tensor.name] = tensor }
        var sources: [(spec: ParameterSpec, tensor: GGUFTensorInfo)] = []
        for spec in layout.specs {
            guard let ggufName = TensorNames.gguf(huggingFace: spec.name) else {
                throw CermError.invalid("GGUFModel: no GGUF name for \(spec.name)")
            }
            guard let tensor = byName.removeValue(forKey: ggufName) else {
                throw CermError.io(path: file.path, reason: "tensor \(ggufName) (\(spec.name)) is missing")
            }
            guard tensor.shape == spec.shape else {
                throw CermError.io(path: file.path, reason: "tensor \(ggufName) (\(spec.name)) has shape \(tensor.shape), the config needs \(spec.shape)")
            }
            guard GGMLType.dequantizable.contains(tensor.type) else {
                throw CermError.io(path: file.path, reason: "tensor \(ggufName) has type \(tensor.type), which cerm cannot read (supported: \(GGMLType.dequantizable.map(\.name).sorted().joined(separator: ", ")))")
            }
            sources.append((spec, tensor))
        }
        if let extra = byName.keys.sorted().first {
            // Llama 3.1+ GGUFs carry their RoPE frequency scaling as this tensor.
            let hint = extra == "rope_freqs.weight" ? "; it holds Llama 3 RoPE scaling, which cerm does not support" : ""
            throw CermError.io(path: file.path, reason: "tensor \(extra) is not part of a \(config.family.rawValue) model (\(byName.count) unexpected tensor\(byName.count == 1 ? "" : "s"))\(hint)")
        }

        var weights = ModelWeights(config: config)
        try weights.values.withUnsafeMutableBufferPointer { flat in
            for (spec, tensor) in sources {
                let destination = UnsafeMutableBufferPointer(rebasing: flat[spec.range])
                let permutedHeads: Int? = switch (config.family, tensor.name.hasSuffix(".attn_q.weight"), tensor.name.hasSuffix(".attn_k.weight")) {
                case (.llama, true, _): config.heads
                case (.llama, _, true): config.kvHeads
                default: nil
                }
                if let heads = permutedHeads {
                    let interleaved = try file.floats(tensor)
                    unpermuteRoPERows(interleaved, heads: heads, rowLength: config.hiddenSize, into: destination)
                } else {
                    try file.dequantize(tensor, into: destination)
                }
            }
        }
        return weights
    }

    /// Undoes `LlamaModel.permute` on a `[heads·D, rowLength]` matrix: output row
    /// `h·D + half·D/2 + i` ← input row `h·D + 2i + half`.
    static func unpermuteRoPERows(_ input: [Float], heads: Int, rowLength: Int, into output: UnsafeMutableBufferPointer<Float>) {
        let headDim = input.count / rowLength / heads
        input.withUnsafeBufferPointer { source in
            for h in 0..<heads {
                for half in 0..<2 {
                    for i in 0..<(headDim / 2) {
                        let to = (h * headDim + half * headDim / 2 + i) * rowLength
                        let from = (h * headDim + 2 * i + half) * rowLength
                        for c in 0..<rowLength { output[to + c] = source[from + c] }
                    }
                }
            }
        }
    }
}
