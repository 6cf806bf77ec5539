import Engine
import Foundation
import Shared

/// A Hugging Face model directory (`save_pretrained` layout) as cerm weights:
///
/// - `config.json`: `model_type` llama, mistral (no sliding window), qwen2 or qwen3 and the
///   sizes under their transformers names;
/// - `model.safetensors`, or shards listed by `model.safetensors.index.json` (`weight_map`:
///   tensor name → shard file), tensors F32, F16 or BF16 under the names of ``ParameterLayout``.
public enum HuggingFaceModel {
    public static let configFile = "config.json"
    public static let weightsFile = "model.safetensors"
    public static let indexFile = "model.safetensors.index.json"

    /// The parsed JSON file at `path` (`config.json`, the shard index); errors name it.
    static func readJSON(_ path: String) throws -> JSONValue {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw CermError.io(path: path, reason: "cannot read (\(error.localizedDescription))")
        }
        let text = try decodeUTF8(data, path: path, what: "the file")
        do {
            return try JSONParser.parse(Array(text.utf8))
        } catch {
            throw CermError.io(path: path, reason: "not valid JSON (byte \(error.offset): \(error.message))")
        }
    }

    /// The transformer config of `config.json` at `path` (errors name the file and the key).
    public static func config(path: String) throws -> TransformerConfig {
        let json = try readJSON(path)
        guard case .object = json else { throw CermError.io(path: path, reason: "expected a JSON object") }
        func fail(_ key: String, _ reason: String) -> CermError { CermError.io(path: path, reason: "\(key) \(reason)") }
        func present(_ key: String) -> JSONValue? {
            guard let value = json[key], value != .null else { return nil }
            return value
        }
        func int(_ key: String, default fallback: Int? = nil) throws -> Int {
            guard let value = present(key) else {
                if let fallback { return fallback }
                throw fail(key, "is missing")
            }
            guard case let .number(number, true) = value, let int = Int(exactly: number),
                  (1...GGUFModel.maxDimension).contains(int) else {
                throw fail(key, "must be an integer in 1...\(GGUFModel.maxDimension)")
            }
            return int
        }
        func double(_ key: String, in object: JSONValue? = nil, default fallback: Double) throws -> Double {
            guard let value = object.map({ $0[key] ?? .null }) ?? present(key), value != .null else { return fallback }
            guard case let .number(number, _) = value else { throw fail(key, "must be a number") }
            return number
        }
        func bool(_ key: String, default fallback: Bool) throws -> Bool {
            guard let value = present(key) else { return fallback }
            guard case let .bool(bool) = value else { throw fail(key, "must be true or false") }
            return bool
        }

        guard case let .string(modelType) = present("model_type") ?? .null else { throw fail("model_type", "is missing or not a string") }
        let family: ModelFamily
        switch modelType {
        case "llama": family = .llama
        case "mistral":
            family = .llama
            if let window = present("sliding_window") {
                throw fail("sliding_window", "is \(describe(window)): cerm has no sliding-window attention (a mistral model needs sliding_window null)")
            }
        case "qwen2": family = .qwen2
        case "qwen3": family = .qwen3
        default:
            throw fail("model_type", "\(modelType) is not supported (cerm reads llama, mistral, qwen2 and qwen3)")
        }
        if try bool("use_sliding_window", default: false) {
            throw fail("use_sliding_window", "is true: cerm has no sliding-window attention")
        }
        if let scaling = present("rope_scaling") {
            throw fail("rope_scaling", "is \(describe(scaling)): RoPE scaling is not supported")
        }
        // transformers ≥ 5 writes rope_theta inside rope_parameters.
        var ropeTheta = try double("rope_theta", default: 10_000)
        if let parameters = present("rope_parameters") {
            guard case .object = parameters else { throw fail("rope_parameters", "must be an object") }
            if let type = parameters["rope_type"], type != .string("default") {
                throw fail("rope_parameters.rope_type", "is \(describe(type)): RoPE scaling is not supported")
            }
            ropeTheta = try double("rope_theta", in: parameters, default: ropeTheta)
        }
        if let activation = present("hidden_act"), activation != .string("silu") {
            throw fail("hidden_act", "is \(describe(activation)), cerm's feed-forward is SwiGLU (silu)")
        }
        if try bool("mlp_bias", default: false) { throw fail("mlp_bias", "is true: cerm's feed-forward has no biases") }
        // Qwen2 always biases q/k/v; llama's and qwen3's attention_bias would also bias o_proj.
        if family != .qwen2, try bool("attention_bias", default: false) {
            throw fail("attention_bias", "is true: cerm has q/k/v biases only for qwen2 and no o_proj bias")
        }
        let hidden = try int("hidden_size"), heads = try int("num_attention_heads")
        let headDim: Int
        if present("head_dim") != nil {
            headDim = try int("head_dim")
        } else {
            guard hidden % heads == 0 else { throw fail("head_dim", "is missing and hidden_size is not a multiple of num_attention_heads") }
            headDim = hidden / heads
        }
        let config = TransformerConfig(
            family: family, hiddenSize: hidden, layers: try int("num_hidden_layers"), heads: heads,
            kvHeads: try int("num_key_value_heads", default: heads), headDim: headDim,
            ffnSize: try int("intermediate_size"), vocabSize: try int("vocab_size"),
            maxSeqLen: try int("max_position_embeddings"), ropeTheta: ropeTheta,
            rmsNormEps: try double("rms_norm_eps", default: 1e-6), qkNorm: family == .qwen3, qkvBias: family == .qwen2,
            tieEmbeddings: try bool("tie_word_embeddings", default: false))
        do {
            try config.validate()
        } catch let CermError.invalid(message) {
            throw CermError.io(path: path, reason: message)
        }
        return config
    }

    static func describe(_ value: JSONValue) -> String {
        switch value {
        case let .string(s): "\"\(s)\""
        case let .number(n, isInteger): isInteger ? Int(exactly: n).map(String.init) ?? "\(n)" : "\(n)"
        case let .bool(b): "\(b)"
        default: "a JSON \(value.typeName)"
        }
    }

    /// The safetensors files of `directory`: the shards the index names, or the single file.
    static func weightFiles(in directory: String) throws -> [String] {
        let indexPath = (directory as NSString).appendingPathComponent(indexFile)
        guard FileManager.default.fileExists(atPath: indexPath) else {
            let single = (directory as NSString).appendingPathComponent(weightsFile)
            guard FileManager.default.fileExists(atPath: single) else {
                throw CermError.io(path: directory, reason: "has neither \(weightsFile) nor \(indexFile)")
            }
            return [single]
        }
        guard case let .object(map) = try readJSON(indexPath)["weight_map"] ?? .null else {
            throw CermError.io(path: indexPath, reason: "weight_map is missing or not an object")
        }
        var files: [String] = []
        for (tensor, value) in map {
            // A shard name is a plain file name inside the directory.
            guard case let .string(file) = value, !file.isEmpty, !file.contains("/"), file != "..", file != "." else {
                throw CermError.io(path: indexPath, reason: "weight_map \(tensor) must name a file in the directory")
            }
            if !files.contains(file) { files.append(file) }
        }
        return files.sorted().map { (directory as NSString).appendingPathComponent($0) }
    }

    /// The weights of the model directory `directory`.
    public static func weights(directory: String) throws -> ModelWeights {
        let configPath = (directory as NSString).appendingPathComponent(configFile)
        let config = try config(path: configPath)
        var found: [String: (file: SafetensorsFile, tensor: SafetensorsFile.Tensor)] = [:]
        for path in try weightFiles(in: directory) {
            let file = try SafetensorsFile(path: path)
            // Older checkpoints store RoPE's inverse frequencies, which are computed, not learnt.
            for (name, tensor) in file.tensors where !name.hasSuffix(".rotary_emb.inv_freq") {
                if let other = found[name] {
                    throw CermError.io(path: path, reason: "tensor \(name) is also in \(other.file.path)")
                }
                found[name] = (file, tensor)
            }
        }
        // Each layer has at least 9 tensors: a layer count the files cannot hold is refused
        // before the layout is built.
        guard config.layers <= found.count / 9 else {
            throw CermError.io(path: configPath, reason: "num_hidden_layers \(config.layers) needs more tensors than the \(found.count) in the safetensors files")
        }
        let layout = ParameterLayout(config)
        if let extra = found.keys.filter({ layout.spec($0) == nil }).sorted().first, let (file, _) = found[extra] {
            throw CermError.io(path: file.path, reason: "tensor \(extra) is not part of a \(config.family.rawValue) model with this config.json")
        }
        // Every tensor present with its shape and a float dtype before the buffer is allocated.
        for spec in layout.specs {
            guard let (file, tensor) = found[spec.name] else {
                throw CermError.io(path: directory, reason: "tensor \(spec.name) is missing")
            }
            guard tensor.shape == spec.shape else {
                throw CermError.io(path: file.path, reason: "tensor \(spec.name) has shape \(tensor.shape), config.json needs \(spec.shape)")
            }
            guard SafetensorsFile.floatDTypes[tensor.dtype] != nil else {
                throw CermError.io(path: file.path, reason: "tensor \(spec.name) has dtype \(tensor.dtype); cerm reads F32, F16 and BF16")
            }
        }
        var weights = ModelWeights(config: config)
        try weights.values.withUnsafeMutableBufferPointer { flat in
            for spec in layout.specs {
                guard let (file, tensor) = found[spec.name] else { continue }
                try file.floats(tensor, into: UnsafeMutableBufferPointer(rebasing: flat[spec.range]))
            }
        }
        return weights
    }
}
