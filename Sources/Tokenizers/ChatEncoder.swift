import Shared

/// A chat template bound to a tokenizer: prompts as token ids, each marker as its one special
/// token and the text between markers encoded without special-token parsing, so a query or
/// response that contains `<|im_end|>` stays text and cannot end a turn. (transformers'
/// `apply_chat_template` parses such text as the special token; on text without special-token
/// strings the ids are the same.)
public struct ChatEncoder: Sendable {
    public let tokenizer: BPETokenizer
    public let template: ChatTemplate
    /// The token that ends a reply as the template writes it (the model's EOS for `.none`).
    public let endOfTurn: TokenID
    /// The tokens that end generation: ``endOfTurn`` first, then the template's other stops.
    public let stopTokens: [TokenID]
    private let markerIDs: [String: TokenID]

    /// Fails, naming the marker, when a marker the template writes is not one token of the
    /// vocabulary, or when a template without end-of-turn marker meets a tokenizer without EOS.
    public init(tokenizer: BPETokenizer, template: ChatTemplate) throws {
        var markerIDs: [String: TokenID] = [:]
        for marker in template.markers {
            guard let id = tokenizer.id(of: marker) else {
                throw CermError.invalid("chat template \(template.name): the tokenizer has no token \(marker), which the template writes; "
                                        + "set model.chat_template to the model's template")
            }
            markerIDs[marker] = id
        }
        guard let endOfTurn = template.endOfTurnMarker.flatMap({ markerIDs[$0] }) ?? tokenizer.eosID else {
            throw CermError.invalid("chat template none: the tokenizer has no EOS token to end a reply")
        }
        self.tokenizer = tokenizer
        self.template = template
        self.endOfTurn = endOfTurn
        self.stopTokens = [endOfTurn] + template.stopTokenIDs(for: tokenizer).filter { $0 != endOfTurn }
        self.markerIDs = markerIDs
    }

    /// The ids of `pieces`: adjacent text pieces are encoded as one text (as the rendered string
    /// is between two markers), markers as their token.
    public func tokens(_ pieces: [ChatTemplate.Piece]) -> [TokenID] {
        var ids: [TokenID] = []
        var text = ""
        for piece in pieces {
            switch piece {
            case let .text(more):
                text += more
            case let .marker(marker):
                ids += tokenizer.encode(text, parseSpecial: false)
                text = ""
                // init checked that every marker of the template has an id.
                if let id = markerIDs[marker] { ids.append(id) }
            }
        }
        return ids + tokenizer.encode(text, parseSpecial: false)
    }
}

extension ChatTemplate {
    /// The name `model.chat_template` uses for this template.
    public var name: String {
        switch self {
        case .chatml: "chatml"
        case .llama3: "llama3"
        case .none: "none"
        }
    }
}
