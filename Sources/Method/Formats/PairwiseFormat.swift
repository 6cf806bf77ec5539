import Shared

/// The `pairwise` format of reward mode `pairwise` (RM-R1's Chain-of-Rubrics, in our own
/// wording; docs/FORMATS.md, section `pairwise`): one prompt holds the query and both responses
/// as A and B; the model writes a rubric, compares, and ends with `<answer>[[A]]</answer>` or
/// `<answer>[[B]]</answer>`.
///
/// Only the verdict is parsed (RM-R1 gives no format reward): exactly one of `[[A]]` / `[[B]]`
/// must appear in the output, any number of times.
public struct PairwiseFormat: Sendable {
    public let chat: any ChatCodec

    public init(chat: any ChatCodec = ByteChat()) { self.chat = chat }

    static let instruction = """
        Decide which response answers the query better. Write a rubric for this query in \
        <rubric></rubric>, compare both responses against it in <eval></eval>, then give your \
        verdict as <answer>[[A]]</answer> or <answer>[[B]]</answer>. Ignore order and length.

        [Start of Query]
        {query}
        [End of Query]

        [Start of Response A]
        {a}
        [End of Response A]

        [Start of Response B]
        {b}
        [End of Response B]
        """

    /// Prompt tokens with `responseA` in position A and `responseB` in position B.
    public func prompt(query: String, responseA: String, responseB: String) -> [TokenID] {
        let text = Tok.fill(Self.instruction, ["query": query, "a": responseA, "b": responseB])
        return chat.firstTurn(user: text)
    }

    /// Prompt tokens for a preference pair, the chosen response in position A when `chosenIsA`.
    public func prompt(query: String, chosen: String, rejected: String, chosenIsA: Bool) -> [TokenID] {
        chosenIsA ? prompt(query: query, responseA: chosen, responseB: rejected)
                  : prompt(query: query, responseA: rejected, responseB: chosen)
    }

    /// Where the chosen response goes for the sample with `seed` (the trajectory's seed from
    /// ``TrajectoryID/seed(runSeed:step:)``): position A when bit 0 of a further SplitMix64
    /// step of the seed is 1. Deterministic, so rewards can recompute it.
    public static func chosenIsA(seed: UInt64) -> Bool {
        SeedMixer.splitMix64(seed ^ 0xA5A5_5A5A_0F0F_F0F0) & 1 == 1
    }

    /// The output text a teacher writes, without `⟨eos⟩`.
    public func outputText(rubric: String, evaluation: String, verdict: PairwiseVerdict) -> String {
        "<rubric>\(rubric)</rubric>\n<eval>\(evaluation)</eval>\n<answer>[[\(verdict.rawValue)]]</answer>"
    }

    /// Parses generated tokens (must end in `⟨eos⟩`, else `.truncated`).
    public func parseVerdict(tokens: [TokenID]) -> ParseResult<PairwiseVerdict> {
        switch chat.replyBytes(tokens) {
        case let .valid(bytes): return parseVerdict(bytes: bytes)
        case let .invalid(reason): return .invalid(reason: reason)
        }
    }

    /// Parses complete output text.
    public func parseVerdict(text: String) -> ParseResult<PairwiseVerdict> { parseVerdict(bytes: Array(text.utf8)) }

    /// Parses complete output bytes.
    public func parseVerdict(bytes: [UInt8]) -> ParseResult<PairwiseVerdict> {
        let hasA = Bytes.find(Array("[[A]]".utf8), in: bytes[...]) != nil
        let hasB = Bytes.find(Array("[[B]]".utf8), in: bytes[...]) != nil
        switch (hasA, hasB) {
        case (true, true): return .invalid(reason: .bothVerdicts)
        case (false, false): return .invalid(reason: .noVerdict)
        case (true, false): return .valid(.a)
        case (false, true): return .valid(.b)
        }
    }
}
