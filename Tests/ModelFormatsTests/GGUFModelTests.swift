import Engine
import Foundation
import Testing
@testable import ModelFormats
import Shared

/// Reference logits of the tiny fixture models (transformers, float32) and the engine's check.
enum ReferenceLogits {
    struct File: Decodable { let tokens: [Int32]; let logits: [String: [[Float]]] }
    static func load() throws -> File {
        try JSONDecoder().decode(File.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("reference_logits.json"))))
    }

    /// Max |Δ| of the engine's logits for the reference tokens against transformers', and the
    /// largest |reference logit|.
    static func deviation(_ weights: ModelWeights, family: String) throws -> (error: Float, scale: Float) {
        let reference = try load()
        let want = try #require(reference.logits[family])
        let model = try Transformer(weights: weights)
        let tokens = reference.tokens.map { TokenID($0) }
        let pass = try model.forward(TokenBatch(inputs: [tokens], targets: [Array(tokens.dropFirst()) + [0]]), returnLogits: true)
        let got = try #require(pass.logits?.first)
        let vocab = weights.config.vocabSize
        var error: Float = 0, scale: Float = 0
        for t in 0..<tokens.count {
            for v in 0..<vocab {
                error = max(error, abs(got[t * vocab + v] - want[t][v]))
                scale = max(scale, abs(want[t][v]))
            }
        }
        return (error, scale)
    }
}

@Suite struct GGUFModelTests {
    /// The tiny models' configs as transformers saved them.
    static func expectedConfig(_ family: String) -> TransformerConfig {
        TransformerConfig(family: ModelFamily(rawValue: family)!, hiddenSize: 8, layers: 2, heads: 2, kvHeads: 1, headDim: 4,
                          ffnSize: 16, vocabSize: 32, maxSeqLen: 64,
                          ropeTheta: ["llama": 10_000, "qwen2": 100_000, "qwen3": 1_000_000][family]!,
                          rmsNormEps: Double(Float(1e-5)), qkNorm: family == "qwen3", qkvBias: family == "qwen2",
                          tieEmbeddings: family == "llama")
    }

    @Test(arguments: ["llama", "qwen2", "qwen3"])
    func loadsWithTransformersLogits(family: String) throws {
        let weights = try GGUFModel.weights(of: GGUFFile(path: Fixtures.path("\(family)_tiny.gguf")))
        #expect(weights.config == Self.expectedConfig(family))
        let (error, scale) = try ReferenceLogits.deviation(weights, family: family)
        #expect(scale > 1)
        #expect(error <= 1e-4 * scale, "\(family): max |Δlogit| \(error), max |logit| \(scale)")
    }

    /// Without undoing the converter's Q/K permutation the llama logits are wrong: the check
    /// above would catch a missing or wrong unpermute.
    @Test func permutedRowsMatterForLlama() throws {
        let file = try GGUFFile(path: Fixtures.path("llama_tiny.gguf"))
        var weights = try GGUFModel.weights(of: file)
        let name = "model.layers.0.self_attn.q_proj.weight"
        try weights.setTensor(name, file.floats(#require(file.tensor("blk.0.attn_q.weight"))))
        let (error, scale) = try ReferenceLogits.deviation(weights, family: "llama")
        #expect(error > 1e-3 * scale)
    }

    /// The llama fixture with `change` applied, written to a temporary file; returns its path.
    static func damaged(_ change: (inout GGUFBuilder) -> Void, in directory: String) throws -> String {
        var builder = GGUFBuilder(copying: try GGUFFile(path: Fixtures.path("llama_tiny.gguf")))
        change(&builder)
        return try Fixtures.write(try builder.bytes(), named: "damaged.gguf", in: directory)
    }

    @Test func badModelsAreErrorsNamingFileAndTensorOrKey() throws {
        let directory = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cases: [(String, (inout GGUFBuilder) -> Void)] = [
            ("tensor blk.1.ffn_up.weight (model.layers.1.mlp.up_proj.weight) is missing",
             { $0.tensors.removeAll { $0.name == "blk.1.ffn_up.weight" } }),
            ("tensor rope_freqs.weight is not part of a llama model (1 unexpected tensor); it holds Llama 3 RoPE scaling, which cerm does not support",
             { $0.tensors.append(.init(name: "rope_freqs.weight", dimensions: [2], type: .f32, bytes: [UInt8](repeating: 0, count: 8))) }),
            ("tensor blk.0.attn_v.weight (model.layers.0.self_attn.v_proj.weight) has shape [2, 16], the config needs [4, 8]",
             { b in b.tensors[b.tensors.firstIndex { $0.name == "blk.0.attn_v.weight" }!].dimensions = [16, 2] }),
            ("unknown architecture gpt2 (general.architecture); cerm reads llama (also Mistral), qwen2 and qwen3",
             { $0.set("general.architecture", .string("gpt2")) }),
            ("metadata key llama.attention.layer_norm_rms_epsilon is missing",
             { $0.metadata.removeAll { $0.key == "llama.attention.layer_norm_rms_epsilon" } }),
            ("metadata llama.block_count = 3000 but the file has only 20 tensors",
             { $0.set("llama.block_count", .uint32(3000)) }),
            ("metadata llama.embedding_length = 4294967295 is outside 1...16777216",
             { $0.set("llama.embedding_length", .uint32(.max)) }),
            ("metadata llama.rope.scaling.type = string(\"yarn\"): RoPE scaling is not supported",
             { $0.set("llama.rope.scaling.type", .string("yarn")) }),
        ]
        for (reason, change) in cases {
            let path = try Self.damaged(change, in: directory)
            #expect(throws: CermError.io(path: path, reason: reason)) {
                try GGUFModel.weights(of: GGUFFile(path: path))
            }
        }
    }
}
