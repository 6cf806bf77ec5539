import Engine
import Foundation
import ModelFormats
import Shared

/// Exports a model in the Hugging Face layout: `model.safetensors` (float32) and a
/// transformers `config.json` (`AutoModelForCausalLM.from_pretrained(DIR)` loads the pair;
/// `scripts/check_hf_export.py` checks that it computes the engine's logits).
public enum HuggingFaceExport {
    /// Writes `model.safetensors` and `config.json` for the policy of `state` into `directory`
    /// (created when missing) and returns the written paths. The policy tensors must be exactly
    /// those of the stored model config (``WeightsFile/policyWeights(of:path:)``); the frozen
    /// `reference.*` tensors are not exported. `source` names the checkpoint in errors.
    @discardableResult
    public static func export(_ state: TrainingState, to directory: String, source: String) throws -> [String] {
        try export(WeightsFile.policyWeights(of: state, path: source), to: directory, source: source,
                   metadata: ["cerm_step": "\(state.step)", "cerm_policy_version": "\(state.policyVersion)"])
    }

    /// Writes `model.safetensors` (one entry per parameter of `weights.config`, so
    /// `weights.layout.specs.count` tensors, plus `metadata` and `"format": "pt"` in its
    /// `__metadata__`) and `config.json` (``configJSON(for:source:)``) into `directory`, and
    /// returns the two paths. The config is built before anything is written: a model the
    /// Hugging Face classes cannot express fails before any file is touched.
    @discardableResult
    public static func export(_ weights: ModelWeights, to directory: String, source: String,
                              metadata: [String: String] = [:]) throws -> [String] {
        let config = try configJSON(for: weights.config, source: source)
        let configPath = (directory as NSString).appendingPathComponent("config.json")
        try createParentDirectory(of: configPath)
        let weightsPath = (directory as NSString).appendingPathComponent("model.safetensors")
        try SafetensorsFile.write(weights.layout.tensors(of: weights.values), metadata: metadata.merging(["format": "pt"]) { _, pt in pt },
                                  to: weightsPath)
        try AtomicFile.write(configPath) { try $0.write(contentsOf: Data(config.utf8)) }
        return [weightsPath, configPath]
    }

    /// The transformers `config.json` of `config`: the architecture of its family
    /// (`LlamaForCausalLM`, `Qwen2ForCausalLM`, `Qwen3ForCausalLM`) with the engine's sizes under
    /// their Hugging Face names, float32, the byte tokenizer's `⟨bos⟩`/`⟨eos⟩` ids, keys sorted,
    /// two-space indentation (as transformers writes it). Every field of `TransformerConfig` is
    /// recoverable from it: `qk_norm` and `qkv_bias` are implied by the architecture, which is why
    /// a model whose flags its family's class cannot express is refused (the class would build
    /// different layers and silently compute something else).
    public static func configJSON(for config: TransformerConfig, source: String) throws -> String {
        let architecture: String
        var members: [String: String] = [:]
        func refuse(_ reason: String) -> CermError {
            CermError.io(path: source, reason: "cannot export as \(architecture): \(reason)")
        }
        switch config.family {
        case .llama:
            architecture = "LlamaForCausalLM"
            if config.qkNorm { throw refuse("it has no QK-norm, but the model config has qk_norm = true") }
            // attention_bias would add an o_proj bias too, which the engine does not have.
            if config.qkvBias { throw refuse("its attention_bias also biases o_proj, but the model config has qkv_bias = true (q/k/v only)") }
            members["attention_bias"] = "false"
            members["mlp_bias"] = "false"
        case .qwen2:
            architecture = "Qwen2ForCausalLM"
            if config.qkNorm { throw refuse("it has no QK-norm, but the model config has qk_norm = true") }
            if !config.qkvBias { throw refuse("it always has q/k/v biases, but the model config has qkv_bias = false") }
        case .qwen3:
            architecture = "Qwen3ForCausalLM"
            if !config.qkNorm { throw refuse("it always applies QK-norm, but the model config has qk_norm = false") }
            if config.qkvBias { throw refuse("its attention_bias also biases o_proj, but the model config has qkv_bias = true (q/k/v only)") }
            members["attention_bias"] = "false"
        }
        members["architectures"] = "[" + CheckpointFormat.jsonString(architecture) + "]"
        members["model_type"] = CheckpointFormat.jsonString(config.family.rawValue)
        members["hidden_size"] = String(config.hiddenSize)
        members["intermediate_size"] = String(config.ffnSize)
        members["num_hidden_layers"] = String(config.layers)
        members["num_attention_heads"] = String(config.heads)
        members["num_key_value_heads"] = String(config.kvHeads)
        members["head_dim"] = String(config.headDim)
        members["vocab_size"] = String(config.vocabSize)
        members["max_position_embeddings"] = String(config.maxSeqLen)
        for (key, value) in [("rope_theta", config.ropeTheta), ("rms_norm_eps", config.rmsNormEps)] {
            guard let number = jsonNumber(value) else {
                throw CermError.io(path: source, reason: "cannot export: \(key) is \(value), which JSON cannot hold")
            }
            members[key] = number
        }
        members["tie_word_embeddings"] = String(config.tieEmbeddings)
        members["hidden_act"] = CheckpointFormat.jsonString("silu")
        members["bos_token_id"] = String(ByteTokenizer.Special.bos.rawValue)
        members["eos_token_id"] = String(ByteTokenizer.Special.eos.rawValue)
        members["torch_dtype"] = CheckpointFormat.jsonString("float32")
        let lines = members.sorted { $0.key < $1.key }.map { "  " + CheckpointFormat.jsonString($0.key) + ": " + $0.value }
        return "{\n" + lines.joined(separator: ",\n") + "\n}\n"
    }

    /// A double as JSON, in Swift's shortest round-trip spelling (`10000.0`, `1e-06`), which is
    /// also how Python's json writes these values; nil for infinities and NaN, which JSON lacks.
    static func jsonNumber(_ value: Double) -> String? {
        value.isFinite ? "\(value)" : nil
    }
}
