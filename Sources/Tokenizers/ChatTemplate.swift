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

    /// A stretch of rendered prompt: plain text, or a marker the template writes (`<|im_start|>`),
    /// which is one special token of the model's vocabulary.
    public enum Piece: Sendable, Equatable {
        case text(String)
        case marker(String)

        var string: String {
            switch self {
            case let .text(text), let .marker(text): text
            }
        }
    }

    /// The prompt text; with `addGenerationPrompt` it ends where the assistant's reply begins.
    public func render(messages: [Message], addGenerationPrompt: Bool) -> String {
        pieces(messages: messages, addGenerationPrompt: addGenerationPrompt).map(\.string).joined()
    }

    /// The prompt as pieces; joined, they are ``render(messages:addGenerationPrompt:)``.
    public func pieces(messages: [Message], addGenerationPrompt: Bool) -> [Piece] {
        var pieces: [Piece] = []
        switch self {
        case let .chatml(defaultSystemPrompt):
            if let defaultSystemPrompt, let first = messages.first, first.role != "system" {
                pieces += Self.chatmlTurn(role: "system", content: defaultSystemPrompt)
            }
            for message in messages { pieces += Self.chatmlTurn(role: message.role, content: message.content) }
            if addGenerationPrompt { pieces += [.marker("<|im_start|>"), .text("assistant\n")] }
        case .llama3:
            pieces = [.marker("<|begin_of_text|>")]
            for message in messages { pieces += Self.llama3Turn(role: message.role, content: message.content) }
            if addGenerationPrompt { pieces += Self.llama3Header(role: "assistant") }
        case .none:
            pieces = [.text(messages.map(\.content).joined(separator: "\n"))]
        }
        return pieces
    }

    /// What follows a reply that ended with ``endOfTurnMarker``: the text the template writes after
    /// that marker, the user's next turn and the generation prompt. A prompt built as
    /// `pieces([user]) + reply + endOfTurnMarker + nextTurnPieces(user2)` equals
    /// `pieces([user, assistant: reply, user2])` (`.none`: turns joined by newlines).
    public func nextTurnPieces(user: String) -> [Piece] {
        switch self {
        case .chatml:
            return [.text("\n")] + Self.chatmlTurn(role: "user", content: user) + [.marker("<|im_start|>"), .text("assistant\n")]
        case .llama3:
            return Self.llama3Turn(role: "user", content: user) + Self.llama3Header(role: "assistant")
        case .none:
            return [.text("\n" + user)]
        }
    }

    /// The marker that ends a reply as the template writes it; nil for `.none` (the model's EOS).
    public var endOfTurnMarker: String? {
        switch self {
        case .chatml: "<|im_end|>"
        case .llama3: "<|eot_id|>"
        case .none: nil
        }
    }

    private static func chatmlTurn(role: String, content: String) -> [Piece] {
        [.marker("<|im_start|>"), .text("\(role)\n\(content)"), .marker("<|im_end|>"), .text("\n")]
    }

    private static func llama3Header(role: String) -> [Piece] {
        [.marker("<|start_header_id|>"), .text(role), .marker("<|end_header_id|>"), .text("\n\n")]
    }

    private static func llama3Turn(role: String, content: String) -> [Piece] {
        [.marker("<|start_header_id|>"), .text(role), .marker("<|end_header_id|>"),
         .text("\n\n" + pythonStrip(content)), .marker("<|eot_id|>")]
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

    /// Every marker the template writes.
    var markers: [String] {
        switch self {
        case .chatml: ["<|im_start|>", "<|im_end|>"]
        case .llama3: ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
        case .none: []
        }
    }

    /// Jinja's `trim`, which is Python's `str.strip()`: White_Space plus the separators U+001C–U+001F.
    private static func pythonStrip(_ text: String) -> String {
        func isSpace(_ scalar: Unicode.Scalar) -> Bool { scalar.properties.isWhitespace || (0x1C...0x1F).contains(scalar.value) }
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !isSpace($0) }), let last = scalars.lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(scalars[first...last])
    }
}
