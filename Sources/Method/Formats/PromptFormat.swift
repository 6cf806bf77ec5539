import Configuration
import Shared

/// A CE-RM prompt format: turns (query, criteria, response) into token sequences for the byte
/// tokenizer and parses the model's criteria and evaluation outputs back.
///
/// The two turns form one conversation: the evaluation prompt is the criteria prompt, the
/// criteria output tokens (ending in `⟨eos⟩`), then the evaluation request with the response.
/// Every parser is total: any token sequence or text yields `.valid` or `.invalid(reason:)`.
/// See `docs/FORMATS.md` for each format's exact text.
public protocol PromptFormat: Sendable {
    /// The format's name as written in `rollout.format`.
    var name: PromptFormatName { get }

    /// The model's tokenizer and chat template.
    var chat: any ChatCodec { get }

    /// Tokens of the criteria-turn prompt for `query`, ending in `⟨assistant⟩`.
    func criteriaPrompt(query: String) -> [TokenID]

    /// Tokens of the criteria-turn prompt for `query` with `response` in view, ending in
    /// `⟨assistant⟩`: the `response-conditioned` ablation (`eval.criteria`), criteria written per
    /// response as pointwise GRMs write principles. The criteria output and the evaluation turn
    /// that follows are the same as after ``criteriaPrompt(query:)``, so that the two modes differ
    /// in what the criteria were written from and nothing else.
    func criteriaPrompt(query: String, response: String) -> [TokenID]

    /// Tokens of the evaluation-turn prompt: `criteriaPrompt`, then `criteriaOutput` cut after
    /// its first `⟨eos⟩` (an `⟨eos⟩` is appended when it has none), then the evaluation request
    /// for `response`, ending in `⟨assistant⟩`.
    func evaluationPrompt(criteriaPrompt: [TokenID], criteriaOutput: [TokenID], response: String) -> [TokenID]

    /// Parses the complete text of a criteria turn given as bytes (no `⟨eos⟩`); any bytes,
    /// including invalid UTF-8, give a value or a reason. The token and text variants in the
    /// extension wrap this.
    func parseCriteria(bytes: [UInt8]) -> ParseResult<ParsedCriteria>

    /// Parses the complete text of an evaluation turn given as bytes against a criteria set
    /// of `criteriaCount` items.
    func parseEvaluation(bytes: [UInt8], criteriaCount: Int) -> ParseResult<ParsedEvaluation>

    /// The criteria turn's output text for an analysis and numbered `items` (what a teacher
    /// writes), without `⟨eos⟩`.
    func criteriaText(analysis: String, items: [String]) -> String

    /// The evaluation turn's output text (what a teacher writes), without `⟨eos⟩`.
    func evaluationText(items: [ScoredItem], otherPoint: ScoredItem?, overall: Double) -> String
}

extension PromptFormat {
    /// Parses generated criteria tokens; they must contain `⟨eos⟩` (else `.truncated`) and no
    /// other special token before it (else `.unexpectedSpecialToken`).
    public func parseCriteria(tokens: [TokenID]) -> ParseResult<ParsedCriteria> {
        switch chat.replyBytes(tokens) {
        case let .valid(bytes): return parseCriteria(bytes: bytes)
        case let .invalid(reason): return .invalid(reason: reason)
        }
    }

    /// Parses complete criteria text (no `⟨eos⟩` involved, e.g. a teacher trace).
    public func parseCriteria(text: String) -> ParseResult<ParsedCriteria> {
        parseCriteria(bytes: Array(text.utf8))
    }

    /// Parses generated evaluation tokens (same `⟨eos⟩` rules as criteria) against a criteria
    /// set of `criteriaCount` items.
    public func parseEvaluation(tokens: [TokenID], criteriaCount: Int) -> ParseResult<ParsedEvaluation> {
        switch chat.replyBytes(tokens) {
        case let .valid(bytes): return parseEvaluation(bytes: bytes, criteriaCount: criteriaCount)
        case let .invalid(reason): return .invalid(reason: reason)
        }
    }

    /// Parses complete evaluation text against a criteria set of `criteriaCount` items.
    public func parseEvaluation(text: String, criteriaCount: Int) -> ParseResult<ParsedEvaluation> {
        parseEvaluation(bytes: Array(text.utf8), criteriaCount: criteriaCount)
    }

    /// The tokens a model must generate to produce `text` as a complete turn: its tokens and
    /// the end-of-turn token. Used to build SFT targets and to feed teacher criteria into evaluation prompts.
    public func outputTokens(text: String) -> [TokenID] { chat.replyTokens(text: text) }
}

/// Prompt-text helpers.
enum Tok {
    /// `template` with each `{name}` in `values` replaced in one pass, so that braces inside
    /// substituted text (queries, responses) are never expanded again.
    static func fill(_ template: String, _ values: [String: String]) -> String {
        var out = ""
        var rest = Substring(template)
        while let open = rest.firstIndex(of: "{") {
            out += rest[..<open]
            if let close = rest[open...].firstIndex(of: "}"),
               let value = values[String(rest[rest.index(after: open)..<close])] {
                out += value
                rest = rest[rest.index(after: close)...]
            } else {
                out += "{"
                rest = rest[rest.index(after: open)...]
            }
        }
        return out + rest
    }
}

/// The CE-RM prompt format named in the configuration.
public func makePromptFormat(_ name: PromptFormatName, chat: any ChatCodec = ByteChat()) -> any PromptFormat {
    switch name {
    case .compact: CompactFormat(chat: chat)
    case .cerm: CermFormat(chat: chat)
    }
}
