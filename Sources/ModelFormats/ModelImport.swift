import Engine
import Foundation
import Shared

/// A pretrained model read from another tool's files: weights, config, and the raw tokenizer
/// material for the tokenizer to build itself from.
public struct ImportedModel: Sendable {
    public var weights: ModelWeights
    public var config: TransformerConfig { weights.config }
    /// What was read, for logs: `GGUF v3 file PATH (llama)` or `Hugging Face directory PATH (qwen3)`.
    public var source: String
    public var tokenizer: TokenizerMaterial
}

/// Where the tokenizer and chat template of an imported model are, as plain data.
public enum TokenizerMaterial: Sendable, Equatable {
    /// The `tokenizer.*` metadata of a GGUF file.
    case gguf(GGUFTokenizerMetadata)
    /// The tokenizer files of a Hugging Face directory (absolute paths; nil when absent).
    case huggingFace(tokenizerJSON: String?, tokenizerConfigJSON: String?, generationConfigJSON: String?)
}

/// llama.cpp's `tokenizer.ggml.*` keys and `tokenizer.chat_template` (nil or empty when absent).
public struct GGUFTokenizerMetadata: Sendable, Equatable {
    /// `tokenizer.ggml.model` (`gpt2` for byte-level BPE, `llama` for SentencePiece).
    public var model: String?
    /// `tokenizer.ggml.pre`: the pre-tokenizer's name (`smollm`, `qwen2`, `llama-bpe`, …).
    public var pre: String?
    public var tokens: [String]
    /// `tokenizer.ggml.token_type` (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
    public var tokenTypes: [Int]
    /// BPE merges, `"left right"`, in priority order.
    public var merges: [String]
    public var bosTokenID: Int?
    public var eosTokenID: Int?
    public var padTokenID: Int?
    public var unknownTokenID: Int?
    public var addBOS: Bool?
    public var addEOS: Bool?
    public var chatTemplate: String?

    /// Reads the keys from `file`; a key present with the wrong type is an error naming it.
    public init(_ file: GGUFFile) throws {
        func optional<T>(_ key: String, _ read: (String) throws -> T) throws -> T? {
            file.metadata[key] == nil ? nil : try read(key)
        }
        model = try optional("tokenizer.ggml.model", file.string)
        pre = try optional("tokenizer.ggml.pre", file.string)
        tokens = try optional("tokenizer.ggml.tokens", file.strings) ?? []
        tokenTypes = try optional("tokenizer.ggml.token_type", file.ints) ?? []
        merges = try optional("tokenizer.ggml.merges", file.strings) ?? []
        bosTokenID = try optional("tokenizer.ggml.bos_token_id", file.int)
        eosTokenID = try optional("tokenizer.ggml.eos_token_id", file.int)
        padTokenID = try optional("tokenizer.ggml.padding_token_id", file.int)
        unknownTokenID = try optional("tokenizer.ggml.unknown_token_id", file.int)
        addBOS = try optional("tokenizer.ggml.add_bos_token", file.bool)
        addEOS = try optional("tokenizer.ggml.add_eos_token", file.bool)
        chatTemplate = try optional("tokenizer.chat_template", file.string)
    }
}

/// The one entry point for pretrained models: a GGUF file or a Hugging Face model directory.
public enum ModelImport {
    /// What a model path turned out to be.
    enum Source {
        case gguf(GGUFFile)
        case huggingFace(directory: String)
    }

    /// Reads the model at `path`: a file starting with the GGUF magic, or a directory holding
    /// `config.json`. Anything else is an error naming the path and what was expected.
    public static func load(path: String) throws -> ImportedModel {
        switch try open(path: path) {
        case let .huggingFace(directory):
            let weights = try HuggingFaceModel.weights(directory: directory)
            return ImportedModel(weights: weights, source: "Hugging Face directory \(directory) (\(weights.config.family.rawValue))",
                                 tokenizer: tokenizerFiles(directory: directory))
        case let .gguf(gguf):
            let weights = try GGUFModel.weights(of: gguf)
            return ImportedModel(weights: weights, source: "GGUF v\(gguf.version) file \(path) (\(try gguf.string("general.architecture")))",
                                 tokenizer: .gguf(try GGUFTokenizerMetadata(gguf)))
        }
    }

    /// The architecture of the model at `path`, without reading its weights.
    public static func config(path: String) throws -> TransformerConfig {
        switch try open(path: path) {
        case let .huggingFace(directory): try HuggingFaceModel.config(path: (directory as NSString).appendingPathComponent(HuggingFaceModel.configFile))
        case let .gguf(gguf): try GGUFModel.config(of: gguf)
        }
    }

    /// The tokenizer material of the model at `path`, without reading its weights.
    public static func tokenizerMaterial(path: String) throws -> TokenizerMaterial {
        switch try open(path: path) {
        case let .huggingFace(directory): tokenizerFiles(directory: directory)
        case let .gguf(gguf): .gguf(try GGUFTokenizerMetadata(gguf))
        }
    }

    /// Whether `path` is a source ``load(path:)`` takes rather than a file of cerm's own: a
    /// directory (``load(path:)`` names a missing `config.json`) or a file that starts with the
    /// GGUF magic. Reads at most four bytes.
    public static func isModelSource(path: String) -> Bool {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return false }
        if isDirectory.boolValue { return true }
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        return (try? handle.read(upToCount: 4)).map { $0.elementsEqual(GGUFFile.magic) } ?? false
    }

    static func open(path: String) throws -> Source {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw CermError.io(path: path, reason: "does not exist (expected a GGUF file or a Hugging Face model directory)")
        }
        if isDirectory.boolValue {
            let configPath = (path as NSString).appendingPathComponent(HuggingFaceModel.configFile)
            guard FileManager.default.fileExists(atPath: configPath) else {
                throw CermError.io(path: path, reason: "is a directory without \(HuggingFaceModel.configFile) (expected a Hugging Face model directory or a GGUF file)")
            }
            return .huggingFace(directory: path)
        }
        let file = try MappedFile(path: path)
        guard file.bytes.count >= 4, file.bytes.prefix(4).elementsEqual(GGUFFile.magic) else {
            throw CermError.io(path: path, reason: "is neither a GGUF file (it does not start with \"GGUF\") nor a Hugging Face model directory")
        }
        return .gguf(try GGUFFile(file: file))
    }

    private static func tokenizerFiles(directory: String) -> TokenizerMaterial {
        func optionalFile(_ name: String) -> String? {
            let file = (directory as NSString).appendingPathComponent(name)
            return FileManager.default.fileExists(atPath: file) ? file : nil
        }
        return .huggingFace(tokenizerJSON: optionalFile("tokenizer.json"), tokenizerConfigJSON: optionalFile("tokenizer_config.json"),
                            generationConfigJSON: optionalFile("generation_config.json"))
    }
}
