import Foundation
import Shared
import Tokenizers

/// A pretrained model's tokenizer and chat template, built from its files' tokenizer material.
extension TokenizerMaterial {
    /// The byte-level BPE tokenizer: from the GGUF's `tokenizer.ggml.*` keys (`model = "gpt2"`), or
    /// from the directory's `tokenizer.json`. `source` names the model in errors. `preTokenizer`
    /// replaces the one a GGUF's `tokenizer.ggml.pre` names (transformers' GGUF loader reads
    /// "smollm" as plain GPT-2, for instance).
    public func tokenizer(source: String, preTokenizer: PreTokenizer? = nil) throws -> BPETokenizer {
        switch self {
        case let .gguf(metadata):
            guard metadata.model == "gpt2" else {
                throw CermError.io(path: source, reason: "tokenizer.ggml.model: \(metadata.model.map { "\"\($0)\"" } ?? "absent") is not supported "
                                   + "(cerm reads byte-level BPE, \"gpt2\"; SentencePiece models are not supported)")
            }
            guard let pre = metadata.pre else {
                throw CermError.io(path: source, reason: "tokenizer.ggml.pre is absent: the pre-tokenizer cannot be known")
            }
            func id(_ value: Int?, _ key: String) throws -> TokenID? {
                guard let value else { return nil }
                guard let id = TokenID(exactly: value) else { throw CermError.io(path: source, reason: "\(key): \(value) is not a token id") }
                return id
            }
            var types: [Int32] = []
            types.reserveCapacity(metadata.tokenTypes.count)
            for (index, type) in metadata.tokenTypes.enumerated() {
                guard let value = Int32(exactly: type) else {
                    throw CermError.io(path: source, reason: "tokenizer.ggml.token_type[\(index)]: \(type) is not a token type")
                }
                types.append(value)
            }
            return try BPETokenizer(ggufTokens: metadata.tokens, merges: metadata.merges, tokenTypes: types, pre: pre,
                                    bosID: id(metadata.bosTokenID, "tokenizer.ggml.bos_token_id"),
                                    eosID: id(metadata.eosTokenID, "tokenizer.ggml.eos_token_id"),
                                    padID: id(metadata.padTokenID, "tokenizer.ggml.padding_token_id"),
                                    unkID: id(metadata.unknownTokenID, "tokenizer.ggml.unknown_token_id"),
                                    preTokenizer: preTokenizer, source: source)
        case let .huggingFace(tokenizerJSON, _, _):
            guard let tokenizerJSON else {
                throw CermError.io(path: source, reason: "has no tokenizer.json (cerm reads the fast tokenizer's tokenizer.json)")
            }
            return try BPETokenizer(tokenizerJSON: tokenizerJSON)
        }
    }

    /// The model's Jinja chat template text: the GGUF's `tokenizer.chat_template`, or the
    /// directory's `chat_template.jinja` or `tokenizer_config.json`'s `chat_template` (a string, or
    /// the list of named templates, whose `default` is taken). Nil when the model has none.
    public func chatTemplateText() throws -> String? {
        switch self {
        case let .gguf(metadata):
            return metadata.chatTemplate.flatMap { $0.isEmpty ? nil : $0 }
        case let .huggingFace(tokenizerJSON, tokenizerConfigJSON, _):
            let directory = ((tokenizerConfigJSON ?? tokenizerJSON ?? "") as NSString).deletingLastPathComponent
            let jinja = (directory as NSString).appendingPathComponent("chat_template.jinja")
            if FileManager.default.fileExists(atPath: jinja) {
                do { return try String(contentsOfFile: jinja, encoding: .utf8) } catch {
                    throw CermError.io(path: jinja, reason: "cannot be read as UTF-8 text: \(error.localizedDescription)")
                }
            }
            guard let tokenizerConfigJSON else { return nil }
            let object: Any
            do {
                object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: tokenizerConfigJSON)))
            } catch {
                throw CermError.io(path: tokenizerConfigJSON, reason: "is not valid JSON: \(error.localizedDescription)")
            }
            guard let config = object as? [String: Any], let template = config["chat_template"], !(template is NSNull) else { return nil }
            if let text = template as? String { return text }
            if let named = template as? [[String: Any]],
               let text = named.first(where: { $0["name"] as? String == "default" })?["template"] as? String {
                return text
            }
            throw CermError.io(path: tokenizerConfigJSON, reason: "chat_template: neither a string nor a list with a \"default\" template")
        }
    }

    /// The chat template `setting` names (`model.chat_template`): `auto` detects it from the model's
    /// template text; an unknown or missing template is an error naming the override.
    public func chatTemplate(setting: String, source: String) throws -> ChatTemplate {
        if let named = try ChatTemplate.named(setting) { return named }
        guard let text = try chatTemplateText() else {
            throw CermError.io(path: source, reason: "has no chat template; set model.chat_template = \"chatml\" | \"llama3\" | \"none\"")
        }
        do {
            return try ChatTemplate.detect(fromTemplate: text)
        } catch let CermError.invalid(message) {
            throw CermError.io(path: source, reason: message)
        }
    }
}

extension TokenizerMaterial {
    /// The tokenizer and the template `setting` names, as a weights file stores them, with the
    /// model's Jinja template text kept for export. Errors name `source`.
    public func storedTokenizer(chatTemplate setting: String, source: String) throws -> StoredTokenizer {
        let tokenizer = try tokenizer(source: source)
        let template = try chatTemplate(setting: setting, source: source)
        do {
            return StoredTokenizer(try ChatEncoder(tokenizer: tokenizer, template: template), jinja: try chatTemplateText())
        } catch let CermError.invalid(message) {
            throw CermError.io(path: source, reason: message)
        }
    }
}
