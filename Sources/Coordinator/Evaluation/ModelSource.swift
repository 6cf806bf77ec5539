import Engine
import Foundation
import Method
import ModelFormats
import Shared
import Tokenizers

/// A model as `cerm generate`, `cerm tokenize` and `cerm judge` take it: a GGUF file, a Hugging Face model
/// directory, a cerm weights file or RL checkpoint (`.h5`, with the tokenizer stored in it or
/// cerm's byte tokenizer), or, for its tokenizer alone, a `tokenizer.json` (or a directory
/// holding one without `config.json`).
public struct ModelSource {
    /// The pretrained model's tokenizer; nil for cerm's byte tokenizer.
    public let tokenizer: BPETokenizer?
    /// The weights, when asked for and the source has them.
    public let weights: ModelWeights?
    /// What was read, for logs.
    public let description: String
    private let chatCodec: () throws -> any ChatCodec

    /// Reads `path`. `chatTemplate` (`auto`, `chatml`, `llama3`, `none`) chooses the template of
    /// a GGUF or Hugging Face model (`auto`: detected from its template text) and overrides the
    /// stored one of a weights file when not `auto`; it is resolved only when ``chat()`` is asked.
    public static func open(_ path: String, chatTemplate: String, loadWeights: Bool) throws -> ModelSource {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw CermError.io(path: path, reason: "does not exist (expected a GGUF file, a Hugging Face model directory, "
                               + "a cerm weights file or checkpoint, or a tokenizer.json)")
        }
        let isModelDirectory = isDirectory.boolValue
            && FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent("config.json"))
        if (isDirectory.boolValue && !isModelDirectory) || (!isDirectory.boolValue && path.hasSuffix(".json")) {
            let tokenizer = try BPETokenizer(source: path)
            return ModelSource(tokenizer: tokenizer, weights: nil, description: "tokenizer \(path)") {
                throw CermError.io(path: path, reason: "is a tokenizer without a model or chat template")
            }
        }
        if !isDirectory.boolValue && HDF5File.isHDF5(path: path) { return try openCermFile(path, chatTemplate: chatTemplate, loadWeights: loadWeights) }
        let material: TokenizerMaterial
        var weights: ModelWeights?
        var description = path
        if loadWeights {
            let model = try ModelImport.load(path: path)
            material = model.tokenizer
            weights = model.weights
            description = model.source
        } else {
            material = try ModelImport.tokenizerMaterial(path: path)
        }
        let tokenizer = try material.tokenizer(source: path)
        return ModelSource(tokenizer: tokenizer, weights: weights, description: description) {
            try TemplateChat(Self.encoder(tokenizer, material.chatTemplate(setting: chatTemplate, source: path), source: path))
        }
    }

    /// A weights file or checkpoint: the weights verified against their checksum (when asked),
    /// the tokenizer from its `tokenizer/` group, or the byte tokenizer without one.
    private static func openCermFile(_ path: String, chatTemplate: String, loadWeights: Bool) throws -> ModelSource {
        let stored: StoredTokenizer?
        var weights: ModelWeights?
        var description = path
        if loadWeights {
            let loaded = try WeightsFile.load(path: path, probe: ChildProcessCheckpointProbe())
            weights = loaded.weights
            stored = loaded.tokenizer
            description = "\(loaded.kind == .checkpoint ? "RL checkpoint" : "weights file") \(path)"
        } else {
            try CheckpointReader.probeFirst(path: path, with: ChildProcessCheckpointProbe())
            _ = try CermFileKind.detect(path: path)
            let file = try HDF5File(path: path, mode: .readOnly)
            defer { try? file.close() }
            stored = try StoredTokenizer.read(from: file.root)
        }
        guard let stored else {
            return ModelSource(tokenizer: nil, weights: weights, description: description + " (byte tokenizer)") { ByteChat() }
        }
        let encoder = try stored.chatEncoder(source: path)
        return ModelSource(tokenizer: encoder.tokenizer, weights: weights, description: description) {
            // "auto": the template stored with the weights; a name overrides it.
            guard let named = try ChatTemplate.named(chatTemplate) else { return TemplateChat(encoder) }
            return TemplateChat(try Self.encoder(encoder.tokenizer, named, source: path))
        }
    }

    private static func encoder(_ tokenizer: BPETokenizer, _ template: ChatTemplate, source: String) throws -> ChatEncoder {
        do { return try ChatEncoder(tokenizer: tokenizer, template: template) } catch let CermError.invalid(message) {
            throw CermError.io(path: source, reason: message)
        }
    }

    /// The model's conversation format: its chat template, or cerm's byte format.
    public func chat() throws -> any ChatCodec { try chatCodec() }

    /// Text as ids; special-token names in it are parsed as their tokens when `parseSpecial`
    /// (as `transformers` does), else encoded as text.
    public func encode(_ text: String, parseSpecial: Bool) -> [TokenID] {
        tokenizer?.encode(text, parseSpecial: parseSpecial) ?? ByteTokenizer().encode(text)
    }

    /// The text of ids, special tokens by name unless `skipSpecial`.
    public func decode(_ ids: [TokenID], skipSpecial: Bool) -> String {
        tokenizer?.decode(ids, skipSpecial: skipSpecial) ?? ByteTokenizer().decode(ids, showSpecials: !skipSpecial)
    }

    public var vocabularySize: Int { tokenizer?.vocabularySize ?? ByteTokenizer.vocabularySize }
    /// The end-of-sequence token: the tokenizer's EOS, cerm's `<|eos|>` for the byte tokenizer.
    public var eosID: TokenID? { tokenizer == nil ? ByteTokenizer.Special.eos.rawValue : tokenizer?.eosID }
}
