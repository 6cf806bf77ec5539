import Engine
import Foundation
import Shared
import Tokenizers

/// Writes cerm weights with their stored tokenizer as a GGUF v3 file that llama.cpp, gguf-py and
/// transformers' GGUF loader read, and that ``GGUFModel`` reads back to the same weights: the
/// metadata llama.cpp's `convert_hf_to_gguf.py` writes for the family, tensors under their GGUF
/// names (``TensorNames``) as F32, or F16 for matrices with `f16` (norms stay F32, as the converter
/// keeps 1-D tensors), llama's Q and K rows permuted into ggml's interleaved RoPE order.
public enum GGUFExport {
    /// Writes `weights` and `tokenizer` to `path` (atomically). `source` names the weights in errors.
    public static func write(_ weights: ModelWeights, tokenizer stored: StoredTokenizer, f16: Bool, to path: String, source: String) throws {
        let config = weights.config
        let encoder = try stored.chatEncoder(source: source)
        let tokenizer = encoder.tokenizer
        guard tokenizer.vocabularySize <= config.vocabSize else {
            throw CermError.io(path: source, reason: "the tokenizer has \(tokenizer.vocabularySize) ids but the model only \(config.vocabSize) embedding rows")
        }
        let vocabulary = tokenizer.ggufVocabulary(count: config.vocabSize)
        guard let pre = vocabulary.pre else {
            throw CermError.io(path: source, reason: "cannot export as GGUF: no tokenizer.ggml.pre name stands for the tokenizer's pre-tokenizer \(tokenizer.preTokenizer)")
        }
        let architecture = config.family.rawValue
        var writer = GGUFWriter()
        func set(_ key: String, _ value: GGUFValue) { writer.metadata.append((key, value)) }
        func setArch(_ key: String, _ value: Int) { set("\(architecture).\(key)", .uint32(UInt32(value))) }
        set("general.architecture", .string(architecture))
        set("general.name", .string((source as NSString).lastPathComponent))
        // llama_ftype: 0 all F32, 1 mostly F16.
        set("general.file_type", .uint32(f16 ? 1 : 0))
        setArch("vocab_size", config.vocabSize)
        setArch("context_length", config.maxSeqLen)
        setArch("embedding_length", config.hiddenSize)
        setArch("block_count", config.layers)
        setArch("feed_forward_length", config.ffnSize)
        setArch("attention.head_count", config.heads)
        setArch("attention.head_count_kv", config.kvHeads)
        setArch("attention.key_length", config.headDim)
        setArch("attention.value_length", config.headDim)
        setArch("rope.dimension_count", config.headDim)
        set("\(architecture).rope.freq_base", .float32(Float(config.ropeTheta)))
        set("\(architecture).attention.layer_norm_rms_epsilon", .float32(Float(config.rmsNormEps)))
        set("tokenizer.ggml.model", .string("gpt2"))
        set("tokenizer.ggml.pre", .string(pre))
        set("tokenizer.ggml.tokens", .array(vocabulary.tokens.map(GGUFValue.string)))
        set("tokenizer.ggml.token_type", .array(vocabulary.tokenTypes.map(GGUFValue.int32)))
        set("tokenizer.ggml.merges", .array(vocabulary.merges.map(GGUFValue.string)))
        for (key, id) in [("bos_token_id", tokenizer.bosID), ("eos_token_id", tokenizer.eosID), ("padding_token_id", tokenizer.padID),
                          ("unknown_token_id", tokenizer.unkID)] {
            if let id { set("tokenizer.ggml.\(key)", .uint32(UInt32(id))) }
        }
        // encode() adds no BOS: prompts carry their markers through the chat template.
        set("tokenizer.ggml.add_bos_token", .bool(false))
        if let jinja = stored.chatTemplateJinja { set("tokenizer.chat_template", .string(jinja)) }

        let values = weights.values
        for spec in weights.layout.specs {
            guard let name = TensorNames.gguf(huggingFace: spec.name) else {
                throw CermError.invalid("GGUFExport: no GGUF name for \(spec.name)")
            }
            let type: GGMLType = f16 && spec.shape.count > 1 ? .f16 : .f32
            let permutedHeads: Int? = switch (config.family, name.hasSuffix(".attn_q.weight"), name.hasSuffix(".attn_k.weight")) {
            case (.llama, true, _): config.heads
            case (.llama, _, true): config.kvHeads
            default: nil
            }
            writer.tensors.append(GGUFWriter.Tensor(name: name, dimensions: spec.shape.reversed(), type: type,
                                                    byteCount: spec.count * type.typeSize) {
                var tensor = Array(values[spec.range])
                if let heads = permutedHeads { tensor = permuteRoPERows(tensor, heads: heads, rowLength: config.hiddenSize) }
                return type == .f16 ? littleEndianBytes(tensor.map { Float16($0).bitPattern }) : littleEndianBytes(tensor.map(\.bitPattern))
            })
        }
        try writer.write(to: path)
    }

    /// `LlamaModel.permute` of llama.cpp's converter on a `[heads·D, rowLength]` matrix, the
    /// inverse of ``GGUFModel/unpermuteRoPERows(_:heads:rowLength:into:)``: output row
    /// `h·D + 2i + half` ← input row `h·D + half·D/2 + i`.
    static func permuteRoPERows(_ input: [Float], heads: Int, rowLength: Int) -> [Float] {
        let headDim = input.count / rowLength / heads
        var output = [Float](repeating: 0, count: input.count)
        for h in 0..<heads {
            for half in 0..<2 {
                for i in 0..<(headDim / 2) {
                    let from = (h * headDim + half * headDim / 2 + i) * rowLength
                    let to = (h * headDim + 2 * i + half) * rowLength
                    output[to..<(to + rowLength)] = input[from..<(from + rowLength)]
                }
            }
        }
        return output
    }

    private static func littleEndianBytes<T: FixedWidthInteger>(_ words: [T]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(words.count * MemoryLayout<T>.size)
        for word in words { withUnsafeBytes(of: word.littleEndian) { bytes.append(contentsOf: $0) } }
        return bytes
    }
}
