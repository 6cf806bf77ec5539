import Configuration
import Shared

/// The `cerm` format: CE-RM's structure in full sentences, for instruction-tuned models
/// (docs/FORMATS.md, section `cerm`).
///
/// Criteria turn: the query between `[Start of Query]`/`[End of Query]`; the model writes a
/// brief analysis, then numbered criteria between `[Start of Criteria]`/`[End of Criteria]`.
/// Evaluation turn: the response between `[Start of Response]`/`[End of Response]`; the model
/// writes, per criterion, an analysis and a 0–5 score in `\boxed{}`, optionally an
/// "Other Points" item scored the same way, and an overall 0–10 score in the last `\boxed{}`.
public struct CermFormat: PromptFormat {
    public let chat: any ChatCodec

    public init(chat: any ChatCodec = ByteChat()) { self.chat = chat }

    public var name: PromptFormatName { .cerm }

    /// How every criteria turn is to be written (the last paragraph of both criteria prompts).
    static let criteriaRequest = """
        First analyse briefly what the query asks for. Then list concise, non-overlapping \
        criteria, most important first, numbered 1., 2., 3., … between [Start of Criteria] \
        and [End of Criteria].
        """

    static let criteriaInstruction = """
        You are an impartial evaluator. Before seeing any response, decide what a good answer \
        to the query below must achieve.

        [Start of Query]
        {query}
        [End of Query]


        """ + criteriaRequest

    /// The criteria request with the response shown: the response between the query and the
    /// same ``criteriaRequest``, so the two prompts differ in what the criteria are written from.
    static let responseConditionedCriteriaInstruction = """
        You are an impartial evaluator. Read the query and the response below, then decide what a \
        good answer to the query must achieve, with this response in view.

        [Start of Query]
        {query}
        [End of Query]

        [Start of Response]
        {response}
        [End of Response]


        """ + criteriaRequest

    static let evaluationInstruction = """
        Evaluate the response below against your criteria.

        [Start of Response]
        {response}
        [End of Response]

        For each criterion in order, write "Criterion i:", a short analysis and a score from 0 \
        to 5 in \\boxed{}. If the response has strengths or flaws that the criteria miss, add \
        "Other Points:" with an analysis and a score from 0 to 5 in \\boxed{}. Finish with \
        "Overall:" and a score from 0 to 10 in \\boxed{}. Scores are integers or halves.
        """

    public func criteriaPrompt(query: String) -> [TokenID] {
        let text = Tok.fill(Self.criteriaInstruction, ["query": query])
        return chat.firstTurn(user: text)
    }

    public func criteriaPrompt(query: String, response: String) -> [TokenID] {
        chat.firstTurn(user: Tok.fill(Self.responseConditionedCriteriaInstruction, ["query": query, "response": response]))
    }

    public func evaluationPrompt(criteriaPrompt: [TokenID], criteriaOutput: [TokenID], response: String) -> [TokenID] {
        let text = Tok.fill(Self.evaluationInstruction, ["response": response])
        return criteriaPrompt + chat.completedTurn(criteriaOutput) + chat.nextTurn(user: text)
    }

    /// The criteria output text (what a teacher writes), without `⟨eos⟩`.
    public func criteriaText(analysis: String, items: [String]) -> String {
        var lines = [analysis, "", "[Start of Criteria]"]
        for (index, item) in items.enumerated() { lines.append("\(index + 1). \(item)") }
        lines.append("[End of Criteria]")
        return lines.joined(separator: "\n")
    }

    /// The evaluation output text (what a teacher writes), without `⟨eos⟩`.
    public func evaluationText(items: [ScoredItem], otherPoint: ScoredItem?, overall: Double) -> String {
        var lines: [String] = []
        for (index, item) in items.enumerated() {
            lines.append("Criterion \(index + 1): \(item.analysis) Score: \\boxed{\(ScoreFormatting.half(item.score))}")
        }
        if let otherPoint {
            lines.append("Other Points: \(otherPoint.analysis) Score: \\boxed{\(ScoreFormatting.half(otherPoint.score))}")
        }
        lines.append("Overall: \\boxed{\(ScoreFormatting.half(overall))}")
        return lines.joined(separator: "\n")
    }

    private static let startCriteria = Array("[Start of Criteria]".utf8)
    private static let endCriteria = Array("[End of Criteria]".utf8)
    private static let boxOpen = Array("\\boxed{".utf8)
    private static let otherPointMarker = Array("Other Point".utf8)

    public func parseCriteria(bytes: [UInt8]) -> ParseResult<ParsedCriteria> {
        let all = bytes[...]
        guard let start = Bytes.find(Self.startCriteria, in: all) else { return .invalid(reason: .missingStartMarker) }
        let bodyStart = start + Self.startCriteria.count
        guard let end = Bytes.find(Self.endCriteria, in: all, from: bodyStart) else {
            return .invalid(reason: .missingEndMarker)
        }
        let body = Array(all[bodyStart..<end])
        let lines = Bytes.lines(body).map(Bytes.trim).filter { !$0.isEmpty }
        if lines.isEmpty { return .invalid(reason: .noCriteriaItems) }
        // A line starting with `N.` or `N)` opens item N; any other line continues the open item.
        var items: [[UInt8]] = []
        for line in lines {
            if let (number, text) = Self.itemOpening(line) {
                guard number == items.count + 1 else { return .invalid(reason: .badItemNumbering) }
                items.append(Array(text))
            } else {
                guard !items.isEmpty else { return .invalid(reason: .badItemNumbering) }
                items[items.count - 1] += [UInt8(ascii: " ")] + Array(line)
            }
        }
        if items.contains(where: { Bytes.isBlank($0[...]) }) { return .invalid(reason: .emptyItem) }
        if !Bytes.isBlank(all[(end + Self.endCriteria.count)...]) { return .invalid(reason: .trailingText) }
        let analysis = Bytes.text(Bytes.trim(all[..<start]))
        return .valid(ParsedCriteria(analysis: analysis, items: items.map { Bytes.text(Bytes.trim($0[...])) }))
    }

    /// `(N, text)` for a line `N. text` or `N) text` (N of at most 4 digits, no leading zero).
    private static func itemOpening(_ line: ArraySlice<UInt8>) -> (Int, ArraySlice<UInt8>)? {
        let digits = line.prefix(while: Bytes.isDigit)
        guard !digits.isEmpty, digits.count <= 4, digits.first != UInt8(ascii: "0") || digits.count == 1 else { return nil }
        let after = digits.endIndex
        guard after < line.endIndex, line[after] == UInt8(ascii: ".") || line[after] == UInt8(ascii: ")") else { return nil }
        let rest = line[(after + 1)...]
        if let first = rest.first, !Bytes.isSpace(first) { return nil }
        let number = digits.reduce(0) { $0 * 10 + Int($1 - 0x30) }
        return (number, Bytes.trim(rest))
    }

    public func parseEvaluation(bytes: [UInt8], criteriaCount: Int) -> ParseResult<ParsedEvaluation> {
        let all = bytes[...]
        var boxes: [(analysis: ArraySlice<UInt8>, score: Double?)] = []
        var cursor = all.startIndex
        while let open = Bytes.find(Self.boxOpen, in: all, from: cursor) {
            let contentStart = open + Self.boxOpen.count
            guard let close = all[contentStart...].firstIndex(of: UInt8(ascii: "}")) else {
                return .invalid(reason: .malformedScore)
            }
            boxes.append((all[cursor..<open], ScoreText.integerOrHalf(all[contentStart..<close])))
            cursor = close + 1
        }
        if boxes.isEmpty { return .invalid(reason: .noScore) }
        var scores: [Double] = []
        for box in boxes {
            guard let score = box.score else { return .invalid(reason: .malformedScore) }
            scores.append(score)
        }
        let overall = scores[scores.count - 1]
        let itemCount = boxes.count - 1
        if !(0...10).contains(overall) || scores.dropLast().contains(where: { !(0...5).contains($0) }) {
            return .invalid(reason: .scoreOutOfRange)
        }
        let hasOtherPoint: Bool
        if itemCount == criteriaCount {
            hasOtherPoint = false
        } else if itemCount == criteriaCount + 1, Bytes.find(Self.otherPointMarker, in: all) != nil {
            hasOtherPoint = true
        } else {
            return .invalid(reason: .itemCountMismatch)
        }
        let scored = (0..<itemCount).map { ScoredItem(analysis: Bytes.text(Bytes.trim(boxes[$0].analysis)), score: scores[$0]) }
        return .valid(ParsedEvaluation(
            items: Array(scored.prefix(criteriaCount)),
            otherPoint: hasOtherPoint ? scored.last : nil,
            overall: overall))
    }
}
