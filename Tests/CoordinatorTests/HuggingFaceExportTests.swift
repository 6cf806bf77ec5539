@testable import Coordinator
import Engine
import Foundation
import Shared
import TestSupport
import Testing

/// `cerm export`: a transformers `config.json` for the model's family and the policy tensors.
/// (That transformers loads the pair and computes the engine's logits is checked by hand with
/// `scripts/check_hf_export.py`; these tests pin what is written.)
@Suite struct HuggingFaceExportTests {
    static func tinyConfig(_ family: ModelFamily) -> TransformerConfig {
        TransformerConfig(family: family, hiddenSize: 8, layers: 1, heads: 2, kvHeads: 1, headDim: 4, ffnSize: 12,
                          vocabSize: 264, maxSeqLen: 16, ropeTheta: 10000, rmsNormEps: 1e-6, qkNorm: family == .qwen3,
                          qkvBias: family == .qwen2, tieEmbeddings: family == .qwen3)
    }

    /// The safetensors header's tensor names and the `__metadata__` entry.
    static func safetensorsHeader(_ path: String) throws -> [String: Any] {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let length = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        return try #require(try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + length)])) as? [String: Any])
    }

    @Test func qwen3ConfigHasTheHuggingFaceKeysAndValues() throws {
        #expect(try HuggingFaceExport.configJSON(for: Self.tinyConfig(.qwen3), source: "m.h5") == """
            {
              "architectures": ["Qwen3ForCausalLM"],
              "attention_bias": false,
              "bos_token_id": 257,
              "eos_token_id": 258,
              "head_dim": 4,
              "hidden_act": "silu",
              "hidden_size": 8,
              "intermediate_size": 12,
              "max_position_embeddings": 16,
              "model_type": "qwen3",
              "num_attention_heads": 2,
              "num_hidden_layers": 1,
              "num_key_value_heads": 1,
              "rms_norm_eps": 1e-06,
              "rope_theta": 10000.0,
              "tie_word_embeddings": true,
              "torch_dtype": "float32",
              "vocab_size": 264
            }

            """)
    }

    @Test func llamaAndQwen2UseTheirOwnClasses() throws {
        var llama = Self.tinyConfig(.llama)
        llama.ropeTheta = 500000
        llama.rmsNormEps = 1e-5
        let llamaJSON = try HuggingFaceExport.configJSON(for: llama, source: "m.h5")
        let llamaObject = try #require(try JSONSerialization.jsonObject(with: Data(llamaJSON.utf8)) as? [String: Any])
        #expect(Set(llamaObject.keys) == ["architectures", "attention_bias", "bos_token_id", "eos_token_id", "head_dim", "hidden_act",
                                          "hidden_size", "intermediate_size", "max_position_embeddings", "mlp_bias", "model_type",
                                          "num_attention_heads", "num_hidden_layers", "num_key_value_heads", "rms_norm_eps",
                                          "rope_theta", "tie_word_embeddings", "torch_dtype", "vocab_size"])
        #expect(llamaObject["architectures"] as? [String] == ["LlamaForCausalLM"])
        #expect(llamaObject["model_type"] as? String == "llama")
        #expect(llamaObject["mlp_bias"] as? Bool == false)
        #expect(llamaObject["attention_bias"] as? Bool == false)
        #expect(llamaObject["tie_word_embeddings"] as? Bool == false)
        #expect(llamaJSON.contains("\n  \"rope_theta\": 500000.0,\n") && llamaJSON.contains("\n  \"rms_norm_eps\": 1e-05,\n"))

        let qwen2JSON = try HuggingFaceExport.configJSON(for: Self.tinyConfig(.qwen2), source: "m.h5")
        let qwen2Object = try #require(try JSONSerialization.jsonObject(with: Data(qwen2JSON.utf8)) as? [String: Any])
        // Qwen2 has no attention_bias switch: its q/k/v biases are always there.
        #expect(Set(qwen2Object.keys) == Set(llamaObject.keys).subtracting(["attention_bias", "mlp_bias"]))
        #expect(qwen2Object["architectures"] as? [String] == ["Qwen2ForCausalLM"])
        #expect(qwen2Object["model_type"] as? String == "qwen2")
        #expect(qwen2Object["head_dim"] as? Int == 4)
    }

    @Test(arguments: [
        (ModelFamily.qwen3, false, false, "cannot export as Qwen3ForCausalLM: it always applies QK-norm, but the model config has qk_norm = false"),
        (.qwen3, true, true, "cannot export as Qwen3ForCausalLM: its attention_bias also biases o_proj, but the model config has qkv_bias = true (q/k/v only)"),
        (.qwen2, false, false, "cannot export as Qwen2ForCausalLM: it always has q/k/v biases, but the model config has qkv_bias = false"),
        (.qwen2, true, true, "cannot export as Qwen2ForCausalLM: it has no QK-norm, but the model config has qk_norm = true"),
        (.llama, true, false, "cannot export as LlamaForCausalLM: it has no QK-norm, but the model config has qk_norm = true"),
        (.llama, false, true, "cannot export as LlamaForCausalLM: its attention_bias also biases o_proj, but the model config has qkv_bias = true (q/k/v only)"),
    ])
    func flagsTheFamilysClassCannotExpressAreRefused(family: ModelFamily, qkNorm: Bool, qkvBias: Bool, reason: String) {
        var config = Self.tinyConfig(family)
        config.qkNorm = qkNorm
        config.qkvBias = qkvBias
        #expect(throws: CermError.io(path: "step_2.h5", reason: reason)) {
            _ = try HuggingFaceExport.configJSON(for: config, source: "step_2.h5")
        }
    }

    /// A checkpoint with a reference model exports the policy's tensors only: the count the
    /// command prints is the safetensors entry count, and config.json is the family's.
    @Test func checkpointExportWritesThePolicyAndTheFamilyConfig() throws {
        let dir = try makeTemporaryDirectory("hf-export")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = Self.tinyConfig(.qwen3)
        let policy = ModelWeights(config: config, seed: 3, initStd: 0.1)
        let reference = ModelWeights(config: config, seed: 4, initStd: 0.1)
        let named = { (weights: ModelWeights, prefix: String) in
            try weights.layout.tensors(of: weights.values).map { NamedTensor(name: prefix + $0.name, shape: $0.shape, values: $0.values) }
        }
        let state = TrainingState(step: 5, policyVersion: 5, tensors: try named(policy, "") + named(reference, GRPOLearner.referencePrefix),
                                  modelConfigJSON: config.jsonString())
        #expect(state.tensors.count == 2 * policy.layout.specs.count)

        let written = try HuggingFaceExport.export(state, to: dir, source: "step_5.h5")
        #expect(written.map { ($0 as NSString).lastPathComponent } == ["model.safetensors", "config.json"])
        let header = try Self.safetensorsHeader(written[0])
        #expect(Set(header.keys) == Set(policy.layout.specs.map(\.name) + ["__metadata__"]))
        #expect(header.count - 1 == policy.layout.specs.count)
        #expect(header["__metadata__"] as? [String: String] == ["format": "pt", "cerm_step": "5", "cerm_policy_version": "5"])
        #expect(try String(contentsOfFile: written[1], encoding: .utf8) == HuggingFaceExport.configJSON(for: config, source: "x"))

        // Policy tensors that are not the model config's are an error naming the checkpoint.
        var broken = state
        broken.tensors.removeAll { $0.name == "model.norm.weight" }
        #expect(throws: CermError.io(path: "step_5.h5", reason: "policy tensors do not match the stored model config: missing tensor model.norm.weight")) {
            try HuggingFaceExport.export(broken, to: dir, source: "step_5.h5")
        }
    }

    /// A checkpoint with a stored tokenizer (the tiny ChatML one of GenerateCommandTests) also
    /// gets tokenizer.json as stored, tokenizer_config.json with the Jinja template and token
    /// names, generation_config.json with the stop tokens, and config.json the tokenizer's ids.
    @Test func aStoredTokenizerIsExportedWithItsTemplateAndStopTokens() throws {
        let dir = try makeTemporaryDirectory("hf-export-tokenizer")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = Self.tinyConfig(.qwen3)
        let policy = ModelWeights(config: config, seed: 3, initStd: 0.1)
        let tokenizer = StoredTokenizer(
            tokenizerJSON: Array(GenerateCommandTests.tokenizerJSON.utf8), bosToken: "<|im_start|>", eosToken: "<|endoftext|>",
            padToken: nil, unkToken: nil, chatTemplate: "chatml", chatTemplateSystem: nil, chatTemplateJinja: "{{ messages }}\n")
        let state = TrainingState(step: 2, policyVersion: 2, tensors: try policy.layout.tensors(of: policy.values)
            .map { NamedTensor(name: $0.name, shape: $0.shape, values: $0.values) }, modelConfigJSON: config.jsonString(), tokenizer: tokenizer)
        let written = try HuggingFaceExport.export(state, to: dir, source: "step_2.h5")
        #expect(written.map { ($0 as NSString).lastPathComponent }
            == ["model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"])
        #expect(try Array(Data(contentsOf: URL(fileURLWithPath: written[2]))) == tokenizer.tokenizerJSON)
        #expect(try String(contentsOfFile: written[3], encoding: .utf8) == """
            {
              "tokenizer_class": "PreTrainedTokenizerFast",
              "bos_token": "<|im_start|>",
              "eos_token": "<|endoftext|>",
              "pad_token": null,
              "unk_token": null,
              "model_max_length": \(config.maxSeqLen),
              "clean_up_tokenization_spaces": false,
              "chat_template": "{{ messages }}\\n"
            }

            """)
        // ChatML stops at <|im_end|> (30) and at the EOS (28); the first is the model's end of turn.
        #expect(try String(contentsOfFile: written[4], encoding: .utf8) == """
            {
              "bos_token_id": 29,
              "eos_token_id": [30, 28],
              "pad_token_id": null
            }

            """)
        let configJSON = try String(contentsOfFile: written[1], encoding: .utf8)
        #expect(configJSON.contains("  \"bos_token_id\": 29,\n"))
        #expect(configJSON.contains("  \"eos_token_id\": 30,\n"))

        // A stored tokenizer that does not read is an error naming the checkpoint, before any file is written.
        var broken = state
        broken.tokenizer?.tokenizerJSON = Array("{}".utf8)
        let other = (dir as NSString).appendingPathComponent("other")
        #expect(throws: CermError.io(path: "step_2.h5 (stored tokenizer.json)", reason: "model: missing or not an object")) {
            try HuggingFaceExport.export(broken, to: other, source: "step_2.h5")
        }
        #expect(!FileManager.default.fileExists(atPath: other))
    }
}
