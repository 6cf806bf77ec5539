import Shared
import Tokenizers

/// How the turns of a judge's conversation become the model's tokens, and a generated turn
/// becomes text again: the tokenizer and its chat template, bound once.
///
/// A CE-RM conversation is the criteria request, the model's criteria, the evaluation request
/// and the model's evaluation. Prompts are built turn by turn, so the model's own criteria tokens
/// enter the evaluation prompt as generated, never re-tokenized:
///
///     criteria prompt   = firstTurn(criteria request)
///     evaluation prompt = criteria prompt + completedTurn(criteria output) + nextTurn(evaluation request)
///
/// Two encodings: ``ByteChat`` (cerm's byte tokenizer with its own special tokens, for the models
/// cerm initialises) and ``TemplateChat`` (a pretrained model's BPE tokenizer and chat template).
public protocol ChatCodec: Sendable {
    /// The first user turn of a conversation and the prompt for the model's reply.
    func firstTurn(user: String) -> [TokenID]
    /// What follows a completed reply: the next user turn and the prompt for the model's reply.
    func nextTurn(user: String) -> [TokenID]
    /// Text as tokens inside a turn; special-token names in it stay text.
    func encode(_ text: String) -> [TokenID]
    /// The bytes of `tokens`; special tokens as their names when `showSpecials`, else left out.
    func bytes(_ tokens: [TokenID], showSpecials: Bool) -> [UInt8]
    /// Whether `token` is a special token (a marker, not text).
    func isSpecial(_ token: TokenID) -> Bool
    /// The token that ends a reply as the template writes it.
    var endOfTurn: TokenID { get }
    /// The tokens that end generation, ``endOfTurn`` first.
    var stopTokens: [TokenID] { get }
}

extension ChatCodec {
    /// The tokens a model must generate to write `text` as a whole reply: its tokens and
    /// ``endOfTurn``. SFT targets and teacher criteria fed into evaluation prompts.
    public func replyTokens(text: String) -> [TokenID] { encode(text) + [endOfTurn] }

    /// `output` cut after its first stop token, or with ``endOfTurn`` appended when it has none.
    public func completedTurn(_ output: [TokenID]) -> [TokenID] {
        if let end = output.firstIndex(where: stopTokens.contains) { return Array(output[...end]) }
        return output + [endOfTurn]
    }

    /// The text of a generated reply as bytes: what comes before its first stop token. Without a
    /// stop token the reply is `.truncated`; a special token before it is `.unexpectedSpecialToken`.
    /// Tokens after the stop are ignored (the sampler stops there).
    public func replyBytes(_ tokens: [TokenID]) -> ParseResult<[UInt8]> {
        guard let end = tokens.firstIndex(where: stopTokens.contains) else { return .invalid(reason: .truncated) }
        if tokens[..<end].contains(where: isSpecial) { return .invalid(reason: .unexpectedSpecialToken) }
        return .valid(bytes(Array(tokens[..<end]), showSpecials: false))
    }

    /// `tokens` as text (invalid UTF-8 as U+FFFD); special tokens by name when `showSpecials`
    /// (transcripts, logs), else left out.
    public func text(_ tokens: [TokenID], showSpecials: Bool = false) -> String {
        String(decoding: bytes(tokens, showSpecials: showSpecials), as: UTF8.self)
    }
}

/// cerm's byte-level conversation: `⟨bos⟩⟨user⟩{text}⟨assistant⟩`, replies end in `⟨eos⟩`, the next
/// turn is `⟨user⟩{text}⟨assistant⟩` (docs/FORMATS.md).
public struct ByteChat: ChatCodec {
    private static let bos = ByteTokenizer.Special.bos.rawValue
    private static let user = ByteTokenizer.Special.user.rawValue
    private static let assistant = ByteTokenizer.Special.assistant.rawValue

    public init() {}

    public func firstTurn(user: String) -> [TokenID] { [Self.bos] + nextTurn(user: user) }
    public func nextTurn(user: String) -> [TokenID] { [Self.user] + encode(user) + [Self.assistant] }
    public func encode(_ text: String) -> [TokenID] { ByteTokenizer().encode(text) }
    public func isSpecial(_ token: TokenID) -> Bool { !(0...255).contains(token) }
    public var endOfTurn: TokenID { ByteTokenizer.Special.eos.rawValue }
    public var stopTokens: [TokenID] { [endOfTurn] }

    /// Byte tokens as themselves (invalid UTF-8 kept: parsers take bytes), other ids skipped.
    public func bytes(_ tokens: [TokenID], showSpecials: Bool) -> [UInt8] {
        var bytes: [UInt8] = []
        for token in tokens {
            if let byte = UInt8(exactly: token) {
                bytes.append(byte)
            } else if showSpecials, let special = ByteTokenizer.Special(rawValue: token) {
                bytes += Array(special.text.utf8)
            }
        }
        return bytes
    }
}

/// A pretrained model's conversation: its BPE tokenizer and chat template (``ChatEncoder``).
public struct TemplateChat: ChatCodec {
    public let encoder: ChatEncoder

    public init(_ encoder: ChatEncoder) { self.encoder = encoder }

    public func firstTurn(user: String) -> [TokenID] {
        encoder.tokens(encoder.template.pieces(messages: [.init(role: "user", content: user)], addGenerationPrompt: true))
    }

    public func nextTurn(user: String) -> [TokenID] { encoder.tokens(encoder.template.nextTurnPieces(user: user)) }
    public func encode(_ text: String) -> [TokenID] { encoder.tokenizer.encode(text, parseSpecial: false) }
    public func isSpecial(_ token: TokenID) -> Bool { encoder.tokenizer.isSpecial(token) }
    public func bytes(_ tokens: [TokenID], showSpecials: Bool) -> [UInt8] {
        encoder.tokenizer.decodeBytes(tokens, skipSpecial: !showSpecials)
    }
    public var endOfTurn: TokenID { encoder.endOfTurn }
    public var stopTokens: [TokenID] { encoder.stopTokens }
}
