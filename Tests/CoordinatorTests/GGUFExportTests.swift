import Engine
import Foundation
import ModelFormats
import Shared
import TestSupport
import Testing
import Tokenizers

/// `GGUFExport` of a tiny llama with the tiny ChatML tokenizer of GenerateCommandTests, read back
/// by cerm's own GGUF reader.
@Suite struct GGUFExportTests {
    /// GGUF stores θ and ε as float32: values a float32 holds come back exactly (an imported
    /// GGUF's already are).
    static let config = TransformerConfig(family: .llama, hiddenSize: 16, layers: 2, heads: 4, kvHeads: 2, headDim: 4, ffnSize: 24,
                                          vocabSize: 34, maxSeqLen: 64, ropeTheta: 100_000, rmsNormEps: Double(Float(1e-5)), qkNorm: false,
                                          qkvBias: false, tieEmbeddings: false)
    static let tokenizer = StoredTokenizer(
        tokenizerJSON: Array(GenerateCommandTests.tokenizerJSON.utf8), bosToken: "<|im_start|>", eosToken: "<|im_end|>",
        padToken: "<|endoftext|>", unkToken: nil, chatTemplate: "chatml", chatTemplateSystem: nil,
        chatTemplateJinja: "{% for message in messages %}<|im_start|>{{ message['content'] }}<|im_end|>{% endfor %}")

    /// Random weights of ``config`` exported with ``tokenizer`` to a GGUF file in a new temporary
    /// directory, given to `check` with the file's path.
    static func withExport(f16: Bool, _ check: (ModelWeights, String) throws -> Void) throws {
        let dir = try makeTemporaryDirectory("gguf-export")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let weights = ModelWeights(config: config, seed: 11, initStd: 0.3)
        let path = (dir as NSString).appendingPathComponent("tiny.gguf")
        try GGUFExport.write(weights, tokenizer: tokenizer, f16: f16, to: path, source: "tiny.h5")
        try check(weights, path)
    }

    @Test func anF32GGUFReadsBackToTheSameWeightsAndTokenizer() throws {
        try Self.withExport(f16: false) { weights, path in
            let imported = try ModelImport.load(path: path)
            #expect(imported.config == Self.config)
            #expect(imported.weights.values.map(\.bitPattern) == weights.values.map(\.bitPattern))
            let file = try GGUFFile(path: path)
            // The llama Q rows are stored in ggml's interleaved order: GGUF row 1 is HF row D/2 = 2.
            let q = try file.floats(try #require(file.tensor("blk.0.attn_q.weight")))
            let hfQ = try weights.tensor("model.layers.0.self_attn.q_proj.weight")
            #expect(Array(q[16..<32]) == Array(hfQ[32..<48]))
            #expect(try file.string("tokenizer.ggml.pre") == "gpt2")
            #expect(try file.strings("tokenizer.ggml.tokens").suffix(3) == ["Ċ", "[PAD32]", "[PAD33]"])
            #expect(try file.ints("tokenizer.ggml.token_type").suffix(6) == [3, 3, 3, 1, 5, 5])

            // The tokenizer and template the GGUF carries give the stored one's ids.
            let stored = try Self.tokenizer.chatEncoder(source: "tiny.h5")
            let read = try imported.tokenizer.tokenizer(source: path)
            for text in ["ab c<|im_end|>", "abba\nzz ab"] { #expect(read.encode(text) == stored.tokenizer.encode(text)) }
            #expect(read.eosID == 30)
            #expect(read.padID == 28)
            #expect(try imported.tokenizer.chatTemplateText() == Self.tokenizer.chatTemplateJinja)
        }
    }

    @Test func anF16GGUFRoundsMatricesAndKeepsNormsExact() throws {
        try Self.withExport(f16: true) { weights, path in
            let imported = try ModelImport.load(path: path)
            for spec in weights.layout.specs {
                let original = weights.values[spec.offset..<(spec.offset + spec.count)]
                let expected = spec.shape.count > 1 ? original.map { Float(Float16($0)) } : Array(original)
                #expect(Array(imported.weights.values[spec.offset..<(spec.offset + spec.count)]) == expected, "\(spec.name)")
            }
            let file = try GGUFFile(path: path)
            #expect(file.tensor("blk.0.attn_norm.weight")?.type == .f32)
            #expect(file.tensor("blk.0.ffn_up.weight")?.type == .f16)
            #expect(try file.int("general.file_type") == 1)
        }
    }

    @Test func aTokenizerWiderThanTheModelIsRefused() throws {
        var small = Self.config
        small.vocabSize = 16
        #expect(throws: CermError.io(path: "tiny.h5", reason: "the tokenizer has 32 ids but the model only 16 embedding rows")) {
            try GGUFExport.write(ModelWeights(config: small, seed: 1, initStd: 0.1), tokenizer: Self.tokenizer, f16: false,
                                 to: "/nonexistent/x.gguf", source: "tiny.h5")
        }
    }
}
