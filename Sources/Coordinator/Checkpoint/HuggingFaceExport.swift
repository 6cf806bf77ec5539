import Engine
import Foundation
import ModelFormats
import Shared
import Tokenizers

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
        try export(WeightsFile.policyWeights(of: state, path: source), tokenizer: state.tokenizer, to: directory, source: source,
                   metadata: ["cerm_step": "\(state.step)", "cerm_policy_version": "\(state.policyVersion)"])
    }

    /// Writes `model.safetensors` (one entry per parameter of `weights.config`, so
    /// `weights.layout.specs.count` tensors, plus `metadata` and `"format": "pt"` in its
    /// `__metadata__`) and `config.json` (``configJSON(for:source:)``) into `directory`, and
    /// returns the two paths. With a pretrained model's `tokenizer` also `tokenizer.json`,
    /// `tokenizer_config.json` and `generation_config.json` (``tokenizerFiles(_:config:source:)``),
    /// and config.json's BOS/EOS ids are the tokenizer's. The config is built before anything is
    /// written: a model the Hugging Face classes cannot express fails before any file is touched.
    @discardableResult
    public static func export(_ weights: ModelWeights, tokenizer: StoredTokenizer? = nil, to directory: String, source: String,
                              metadata: [String: String] = [:]) throws -> [String] {
        let files = try tokenizer.map { try tokenizerFiles($0, config: weights.config, source: source) }
        let config = try configJSON(for: weights.config, source: source, specialTokens: files?.ids ?? .byteTokenizer)
        let configPath = (directory as NSString).appendingPathComponent("config.json")
        try createParentDirectory(of: configPath)
        let weightsPath = (directory as NSString).appendingPathComponent("model.safetensors")
        try SafetensorsFile.write(weights.layout.tensors(of: weights.values), metadata: metadata.merging(["format": "pt"]) { _, pt in pt },
                                  to: weightsPath)
        try AtomicFile.write(configPath) { try $0.write(contentsOf: Data(config.utf8)) }
        var written = [weightsPath, configPath]
        for (name, bytes) in files?.contents ?? [] {
            let path = (directory as NSString).appendingPathComponent(name)
            try AtomicFile.write(path) { try $0.write(contentsOf: Data(bytes)) }
            written.append(path)
        }
        return written
    }

    /// The token ids config.json and generation_config.json name.
    public struct SpecialTokenIDs: Sendable, Equatable {
        public var bos: TokenID?
        public var eos: [TokenID]
        public var pad: TokenID?

        /// cerm's byte tokenizer: `⟨bos⟩` and `⟨eos⟩`.
        public static let byteTokenizer = SpecialTokenIDs(bos: ByteTokenizer.Special.bos.rawValue, eos: [ByteTokenizer.Special.eos.rawValue], pad: nil)
    }

    /// A pretrained model's tokenizer files: `tokenizer.json` as stored; `tokenizer_config.json`
    /// with the special-token names, the model's Jinja `chat_template` (when kept) and
    /// `model_max_length`; `generation_config.json` whose `eos_token_id` lists the template's stop
    /// tokens (what `generate` stops at). `ids` are the BOS, stop and pad ids. Errors name `source`.
    public static func tokenizerFiles(_ tokenizer: StoredTokenizer, config: TransformerConfig, source: String) throws
        -> (contents: [(name: String, bytes: [UInt8])], ids: SpecialTokenIDs) {
        let encoder = try tokenizer.chatEncoder(source: source)
        let ids = SpecialTokenIDs(bos: encoder.tokenizer.bosID, eos: encoder.stopTokens, pad: encoder.tokenizer.padID)
        var settings: [(String, String)] = [("tokenizer_class", JSONWriter.quote("PreTrainedTokenizerFast"))]
        for (key, name) in [("bos_token", tokenizer.bosToken), ("eos_token", tokenizer.eosToken), ("pad_token", tokenizer.padToken),
                            ("unk_token", tokenizer.unkToken)] {
            settings.append((key, name.map(JSONWriter.quote) ?? "null"))
        }
        settings.append(("model_max_length", String(config.maxSeqLen)))
        settings.append(("clean_up_tokenization_spaces", "false"))
        if let jinja = tokenizer.chatTemplateJinja { settings.append(("chat_template", JSONWriter.quote(jinja))) }
        func idJSON(_ id: TokenID?) -> String { id.map(String.init) ?? "null" }
        let eos = ids.eos.count == 1 ? String(ids.eos[0]) : "[" + ids.eos.map(String.init).joined(separator: ", ") + "]"
        let generation = [("bos_token_id", idJSON(ids.bos)), ("eos_token_id", eos), ("pad_token_id", idJSON(ids.pad))]
        return ([("tokenizer.json", tokenizer.tokenizerJSON), ("tokenizer_config.json", Array(prettyObject(settings).utf8)),
                 ("generation_config.json", Array(prettyObject(generation).utf8))], ids)
    }

    /// A JSON object with members in the given order, two-space indented, as transformers writes.
    private static func prettyObject(_ members: [(String, String)]) -> String {
        "{\n" + members.map { "  " + JSONWriter.quote($0.0) + ": " + $0.1 }.joined(separator: ",\n") + "\n}\n"
    }

    /// The transformers `config.json` of `config`: the architecture of its family
    /// (`LlamaForCausalLM`, `Qwen2ForCausalLM`, `Qwen3ForCausalLM`) with the engine's sizes under
    /// their Hugging Face names, float32, the BOS and EOS ids of `specialTokens`, keys sorted,
    /// two-space indentation (as transformers writes it). Every field of `TransformerConfig` is
    /// recoverable from it: `qk_norm` and `qkv_bias` are implied by the architecture, which is why
    /// a model whose flags its family's class cannot express is refused (the class would build
    /// different layers and silently compute something else).
    public static func configJSON(for config: TransformerConfig, source: String, specialTokens: SpecialTokenIDs = .byteTokenizer) throws -> String {
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
        members["bos_token_id"] = specialTokens.bos.map(String.init) ?? "null"
        // The model's EOS: the first stop token is the template's end of turn, which the model ends a reply with.
        members["eos_token_id"] = specialTokens.eos.first.map(String.init) ?? "null"
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
