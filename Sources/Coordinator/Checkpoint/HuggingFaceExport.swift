import Engine
import Foundation
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
        let tensors = try weights.layout.tensors(of: weights.values).map { NamedTensor(name: $0.name, shape: $0.shape, values: $0.values) }
        let weightsPath = (directory as NSString).appendingPathComponent("model.safetensors")
        try writeSafetensors(tensors, metadata: metadata.merging(["format": "pt"]) { _, pt in pt }, to: weightsPath)
        try atomicWrite(configPath) { try $0.write(contentsOf: Data(config.utf8)) }
        return [weightsPath, configPath]
    }

    /// The safetensors header for `tensors`: JSON with `__metadata__` first and tensors sorted by
    /// name (UTF-8 byte order), each `{"dtype":"F32","shape":[...],"data_offsets":[begin,end]}`,
    /// padded with spaces to a multiple of 8 bytes. Also returns the tensors in data order.
    static func safetensorsHeader(_ tensors: [NamedTensor], metadata: [String: String]) -> (header: [UInt8], order: [NamedTensor]) {
        let order = tensors.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
        var entries: [String] = []
        if !metadata.isEmpty {
            let meta = metadata.sorted { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
                .map { CheckpointFormat.jsonString($0.key) + ":" + CheckpointFormat.jsonString($0.value) }
            entries.append("\"__metadata__\":{" + meta.joined(separator: ",") + "}")
        }
        var offset = 0
        for tensor in order {
            let end = offset + tensor.values.count * 4
            entries.append(CheckpointFormat.jsonString(tensor.name)
                + ":{\"dtype\":\"F32\",\"shape\":[" + tensor.shape.map(String.init).joined(separator: ",")
                + "],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        var header = Array(("{" + entries.joined(separator: ",") + "}").utf8)
        while header.count % 8 != 0 { header.append(UInt8(ascii: " ")) }
        return (header, order)
    }

    /// Writes a float32 safetensors file (little-endian), through a temporary file and rename.
    public static func writeSafetensors(_ tensors: [NamedTensor], metadata: [String: String], to path: String) throws {
        var seen = Set<String>()
        for tensor in tensors {
            guard seen.insert(tensor.name).inserted else { throw CermError.io(path: path, reason: "duplicate tensor \(tensor.name)") }
            guard tensor.shape.reduce(1, *) == tensor.values.count else {
                throw CermError.io(path: path, reason: "tensor \(tensor.name) has shape \(tensor.shape) but \(tensor.values.count) values")
            }
        }
        let (header, order) = safetensorsHeader(tensors, metadata: metadata)
        try atomicWrite(path) { handle in
            try handle.write(contentsOf: withUnsafeBytes(of: UInt64(header.count).littleEndian) { Data($0) })
            try handle.write(contentsOf: Data(header))
            for tensor in order {
                try tensor.values.withUnsafeBytes { try handle.write(contentsOf: Data($0)) }
            }
        }
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

    /// Writes `path` through `.<name>.tmp` in the same directory, fsyncs and renames.
    static func atomicWrite(_ path: String, _ body: (FileHandle) throws -> Void) throws {
        let directory = (path as NSString).deletingLastPathComponent
        let tmp = (directory as NSString).appendingPathComponent("." + (path as NSString).lastPathComponent + ".tmp")
        guard FileManager.default.createFile(atPath: tmp, contents: nil), let handle = FileHandle(forWritingAtPath: tmp) else {
            throw CermError.io(path: tmp, reason: "cannot create")
        }
        do {
            try body(handle)
            try handle.synchronize()
            try handle.close()
            guard rename(tmp, path) == 0 else { throw CermError.io(path: path, reason: "rename: \(String(cString: strerror(errno)))") }
        } catch {
            try? handle.close()
            try? FileManager.default.removeItem(atPath: tmp)
            if let error = error as? CermError { throw error }
            throw CermError.io(path: path, reason: "write failed: \(error.localizedDescription)")
        }
    }
}
