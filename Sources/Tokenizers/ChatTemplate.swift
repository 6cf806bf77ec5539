import Shared

/// The prompt formats cerm renders itself, equal to what the models' Jinja templates render:
///
///     chatml:  [<|im_start|>system\n{default}<|im_end|>\n]  <|im_start|>{role}\n{content}<|im_end|>\n …  [<|im_start|>assistant\n]
///     llama3:  <|begin_of_text|>  <|start_header_id|>{role}<|end_header_id|>\n\n{content, stripped}<|eot_id|> …
///              [<|start_header_id|>assistant<|end_header_id|>\n\n]
///     none:    the contents joined by newlines (base models without a template)
///
/// The ChatML default system message is what SmolLM2 (and Qwen2/2.5) insert when the conversation
/// starts without one; Qwen3's template has none.
public enum ChatTemplate: Sendable, Equatable {
    case chatml(defaultSystemPrompt: String?)
    case llama3
    case none

    /// One turn of a conversation. (Kept here rather than Shared's `ChatMessage` of the data
    /// loader, so this module needs only the core of Shared.)
    public struct Message: Sendable, Equatable, Codable {
        public var role: String
        public var content: String

        public init(role: String, content: String) {
            self.role = role
            self.content = content
        }
    }

    /// The template `model.chat_template` names: nil for "auto" (detect it from the model's template
    /// text), else the override ("chatml" has no default system message).
    public static func named(_ name: String) throws -> ChatTemplate? {
        switch name {
        case "auto": return nil
        case "chatml": return .chatml(defaultSystemPrompt: nil)
        case "llama3": return .llama3
        case "none": return ChatTemplate.none  // spelled out: a bare .none would be Optional.none
        default: throw CermError.invalid("model.chat_template: \"\(name)\" is not one of \"auto\", \"chatml\", \"llama3\", \"none\"")
        }
    }

    /// Recognises a model's Jinja chat template by its markers.
    public static func detect(fromTemplate template: String) throws -> ChatTemplate {
        if template.contains("<|im_start|>") && template.contains("<|im_end|>") {
            return .chatml(defaultSystemPrompt: defaultSystemPrompt(in: template))
        }
        if template.contains("<|start_header_id|>") && template.contains("<|eot_id|>") && !template.contains("Cutting Knowledge Date") {
            return .llama3
        }
        let excerpt = template.count > 80 ? String(template.prefix(80)) + "…" : template
        throw CermError.invalid(
            "the model's chat template is not one cerm renders (ChatML or Llama 3): \(excerpt.debugDescription); "
                + "set model.chat_template = \"chatml\" | \"llama3\" | \"none\"")
    }

    /// The literal system message a ChatML template writes itself: `<|im_start|>system` + newline +
    /// text up to `<|im_end|>`, all inside one string literal.
    private static func defaultSystemPrompt(in template: String) -> String? {
        for header in ["<|im_start|>system\n", "<|im_start|>system\\n"] {
            var rest = template[...]
            while let headerRange = rest.range(of: header) {
                rest = rest[headerRange.upperBound...]
                guard let end = rest.range(of: "<|im_end|>") else { break }
                let text = rest[..<end.lowerBound]
                if !text.isEmpty && !text.contains("'") && !text.contains("\"") && !text.contains("{") {
                    return header.hasSuffix("\\n") ? text.replacingOccurrences(of: "\\n", with: "\n") : String(text)
                }
            }
        }
        return nil
    }

    /// The prompt text; with `addGenerationPrompt` it ends where the assistant's reply begins.
    public func render(messages: [Message], addGenerationPrompt: Bool) -> String {
        var text = ""
        switch self {
        case let .chatml(defaultSystemPrompt):
            if let defaultSystemPrompt, let first = messages.first, first.role != "system" {
                text += "<|im_start|>system\n\(defaultSystemPrompt)<|im_end|>\n"
            }
            for message in messages { text += "<|im_start|>\(message.role)\n\(message.content)<|im_end|>\n" }
            if addGenerationPrompt { text += "<|im_start|>assistant\n" }
        case .llama3:
            text = "<|begin_of_text|>"
            for message in messages {
                text += "<|start_header_id|>\(message.role)<|end_header_id|>\n\n\(Self.pythonStrip(message.content))<|eot_id|>"
            }
            if addGenerationPrompt { text += "<|start_header_id|>assistant<|end_header_id|>\n\n" }
        case .none:
            text = messages.map(\.content).joined(separator: "\n")
        }
        return text
    }

    /// The ids that end a reply: the end-of-turn marker the template writes, and the tokenizer's EOS.
    public func stopTokenIDs(for tokenizer: BPETokenizer) -> [TokenID] {
        let markers: [String]
        switch self {
        case .chatml: markers = ["<|im_end|>"]
        case .llama3: markers = ["<|eot_id|>", "<|end_of_text|>"]
        case .none: markers = []
        }
        var ids: [TokenID] = []
        for id in markers.compactMap(tokenizer.id(of:)) + [tokenizer.eosID].compactMap({ $0 }) where !ids.contains(id) { ids.append(id) }
        return ids
    }

    /// Jinja's `trim`, which is Python's `str.strip()`: White_Space plus the separators U+001C–U+001F.
    private static func pythonStrip(_ text: String) -> String {
        func isSpace(_ scalar: Unicode.Scalar) -> Bool { scalar.properties.isWhitespace || (0x1C...0x1F).contains(scalar.value) }
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !isSpace($0) }), let last = scalars.lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(scalars[first...last])
    }
}
