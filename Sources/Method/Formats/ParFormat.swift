import Shared

/// The `par` format of reward mode `par` (PaTaRM's pointwise judgment with a rubric inside, in
/// our own wording; docs/FORMATS.md, section `par`): one prompt holds the query and one
/// response; the model writes `<think>…</think>`, `<rubric>…</rubric>` (PaTaRM's
/// `generate_rubrics`), `<eval>…</eval>` and `<answer>{score}</answer>` in this order, the score
/// a decimal in 0–10.
public struct ParFormat: Sendable {
    public let chat: any ChatCodec

    public init(chat: any ChatCodec = ByteChat()) { self.chat = chat }

    /// The required tags, in the required order.
    public static let tags = ["<think>", "</think>", "<rubric>", "</rubric>", "<eval>", "</eval>", "<answer>", "</answer>"]

    static let instruction = """
        Rate the response to the query. Think in <think></think>, write a rubric for this query \
        in <rubric></rubric>, apply it in <eval></eval>, then give a score from 0 to 10 as \
        <answer>score</answer>.

        [Start of Query]
        {query}
        [End of Query]

        [Start of Response]
        {response}
        [End of Response]
        """

    /// Prompt tokens for judging `response` to `query`.
    public func prompt(query: String, response: String) -> [TokenID] {
        chat.firstTurn(user: Tok.fill(Self.instruction, ["query": query, "response": response]))
    }

    /// The output text a teacher writes, without `⟨eos⟩`.
    public func outputText(thought: String, rubric: String, evaluation: String, score: Double) -> String {
        "<think>\(thought)</think>\n<rubric>\(rubric)</rubric>\n<eval>\(evaluation)</eval>\n<answer>\(ScoreFormatting.half(score))</answer>"
    }

    /// Parses generated tokens (must end in `⟨eos⟩`, else `.truncated`).
    public func parseJudgment(tokens: [TokenID]) -> ParseResult<ParsedJudgment> {
        switch chat.replyBytes(tokens) {
        case let .valid(bytes): return parseJudgment(bytes: bytes)
        case let .invalid(reason): return .invalid(reason: reason)
        }
    }

    /// Parses complete output text.
    public func parseJudgment(text: String) -> ParseResult<ParsedJudgment> { parseJudgment(bytes: Array(text.utf8)) }

    /// Parses complete output bytes. Each tag is searched after the previous one; a tag that is
    /// absent everywhere gives `.missingTags`, one present only out of order `.misorderedTags`.
    public func parseJudgment(bytes: [UInt8]) -> ParseResult<ParsedJudgment> {
        let all = bytes[...]
        let tagBytes = Self.tags.map { Array($0.utf8) }
        if tagBytes.contains(where: { Bytes.find($0, in: all) == nil }) { return .invalid(reason: .missingTags) }
        var positions: [Int] = []
        var cursor = all.startIndex
        for tag in tagBytes {
            guard let position = Bytes.find(tag, in: all, from: cursor) else { return .invalid(reason: .misorderedTags) }
            positions.append(position)
            cursor = position + tag.count
        }
        let rubric = all[(positions[2] + tagBytes[2].count)..<positions[3]]
        let answer = all[(positions[6] + tagBytes[6].count)..<positions[7]]
        if Bytes.isBlank(answer) { return .invalid(reason: .noScore) }
        guard let score = ScoreText.decimal(answer) else { return .invalid(reason: .malformedScore) }
        guard (0...10).contains(score) else { return .invalid(reason: .scoreOutOfRange) }
        return .valid(ParsedJudgment(rubric: Bytes.text(Bytes.trim(rubric)), score: score))
    }
}
