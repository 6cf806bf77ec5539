import Configuration
import Shared

/// The `compact` format for small byte-level models trained from scratch (docs/FORMATS.md,
/// section `compact`, is the specification; this type implements it exactly).
///
/// Criteria prompt `⟨bos⟩⟨user⟩Q: {query}\nCriteria?⟨assistant⟩`; criteria output
/// `{analysis}\n[C]\n1. …\n[/C]`; evaluation request `⟨user⟩R: {response}\nEvaluate.⟨assistant⟩`;
/// evaluation output `1. {analysis}: {score}/5\n…[+. {other}: {score}/5\n]=> {overall}/10`.
public struct CompactFormat: PromptFormat {
    public let chat: any ChatCodec

    public init(chat: any ChatCodec = ByteChat()) { self.chat = chat }

    public var name: PromptFormatName { .compact }

    public func criteriaPrompt(query: String) -> [TokenID] {
        chat.firstTurn(user: "Q: \(query)\nCriteria?")
    }

    /// `⟨bos⟩⟨user⟩Q: {query}\nR: {response}\nCriteria?⟨assistant⟩`: the response between the query
    /// and the request, marked as in the evaluation turn.
    public func criteriaPrompt(query: String, response: String) -> [TokenID] {
        chat.firstTurn(user: "Q: \(query)\nR: \(response)\nCriteria?")
    }

    public func evaluationPrompt(criteriaPrompt: [TokenID], criteriaOutput: [TokenID], response: String) -> [TokenID] {
        criteriaPrompt + chat.completedTurn(criteriaOutput) + chat.nextTurn(user: "R: \(response)\nEvaluate.")
    }

    /// The criteria output text for `items` (what a teacher writes), without `⟨eos⟩`.
    public func criteriaText(analysis: String, items: [String]) -> String {
        var lines = [analysis, "[C]"]
        for (index, item) in items.enumerated() { lines.append("\(index + 1). \(item)") }
        lines.append("[/C]")
        return lines.joined(separator: "\n")
    }

    /// The evaluation output text (what a teacher writes), without `⟨eos⟩`. Scores are written
    /// as integers or halves (`3`, `3.5`).
    public func evaluationText(items: [ScoredItem], otherPoint: ScoredItem?, overall: Double) -> String {
        var lines: [String] = []
        for (index, item) in items.enumerated() {
            lines.append("\(index + 1). \(item.analysis): \(ScoreFormatting.half(item.score))/5")
        }
        if let otherPoint { lines.append("+. \(otherPoint.analysis): \(ScoreFormatting.half(otherPoint.score))/5") }
        lines.append("=> \(ScoreFormatting.half(overall))/10")
        return lines.joined(separator: "\n")
    }

    public func parseCriteria(bytes: [UInt8]) -> ParseResult<ParsedCriteria> {
        let lines = Bytes.lines(bytes)
        guard let start = lines.firstIndex(where: { Bytes.equals(Bytes.trim($0), "[C]") }) else {
            return .invalid(reason: .missingStartMarker)
        }
        guard let end = lines[(start + 1)...].firstIndex(where: { Bytes.equals(Bytes.trim($0), "[/C]") }) else {
            return .invalid(reason: .missingEndMarker)
        }
        // Blank lines between items are tolerated; every other line must be an item.
        let body = lines[(start + 1)..<end].filter { !Bytes.isBlank($0) }
        if body.isEmpty { return .invalid(reason: .noCriteriaItems) }
        var texts: [ArraySlice<UInt8>] = []
        for (index, line) in body.enumerated() {
            guard let text = Self.itemText(Bytes.trim(line), number: index + 1) else {
                return .invalid(reason: .badItemNumbering)
            }
            texts.append(text)
        }
        if texts.contains(where: Bytes.isBlank) { return .invalid(reason: .emptyItem) }
        if lines[(end + 1)...].contains(where: { !Bytes.isBlank($0) }) { return .invalid(reason: .trailingText) }
        let analysis = lines[..<start].map { Bytes.text(Bytes.trim($0)) }.filter { !$0.isEmpty }.joined(separator: "\n")
        return .valid(ParsedCriteria(analysis: analysis, items: texts.map { Bytes.text(Bytes.trim($0)) }))
    }

    /// The text of item line `N. text` when it is numbered `number`; `N.` alone gives empty text.
    private static func itemText(_ line: ArraySlice<UInt8>, number: Int) -> ArraySlice<UInt8>? {
        guard let dot = line.firstIndex(of: UInt8(ascii: ".")),
              Bytes.isNumeral(line[line.startIndex..<dot], number) else { return nil }
        let rest = line[(dot + 1)...]
        if rest.isEmpty { return rest }
        guard rest.first == UInt8(ascii: " ") else { return nil }
        return rest.dropFirst()
    }

    public func parseEvaluation(bytes: [UInt8], criteriaCount: Int) -> ParseResult<ParsedEvaluation> {
        let lines = Bytes.lines(bytes).map(Bytes.trim).filter { !$0.isEmpty }
        guard let last = lines.last, Bytes.hasPrefix(last, "=>"), Bytes.hasSuffix(last, "/10"),
              last.count >= 5 else {
            return .invalid(reason: .noScore)
        }
        guard let overall = ScoreText.integerOrHalf(last[(last.startIndex + 2)..<(last.endIndex - 3)]) else {
            return .invalid(reason: .malformedScore)
        }
        var scored: [(label: ArraySlice<UInt8>?, item: ScoredItem)] = []
        for line in lines.dropLast() {
            guard Bytes.hasSuffix(line, "/5"),
                  let colon = Bytes.findLast(Array(": ".utf8), in: line),
                  let score = ScoreText.integerOrHalf(line[(colon + 2)..<(line.endIndex - 2)]) else {
                return .invalid(reason: .malformedScore)
            }
            let head = line[line.startIndex..<colon]
            let label = Bytes.find(Array(". ".utf8), in: head).map { head[head.startIndex..<$0] }
                ?? (Bytes.hasSuffix(head, ".") ? head.dropLast() : nil)
            let analysisStart = label.map { min(head.endIndex, $0.endIndex + 2) } ?? head.startIndex
            scored.append((label, ScoredItem(analysis: Bytes.text(head[analysisStart...]), score: score)))
        }
        if !(0...10).contains(overall) || scored.contains(where: { !(0...5).contains($0.item.score) }) {
            return .invalid(reason: .scoreOutOfRange)
        }
        var items: [ScoredItem] = []
        var otherPoint: ScoredItem?
        for (label, item) in scored {
            guard let label, otherPoint == nil else { return .invalid(reason: .itemCountMismatch) }
            if Bytes.equals(label, "+") {
                otherPoint = item
            } else if Bytes.isNumeral(label, items.count + 1) {
                items.append(item)
            } else {
                return .invalid(reason: .itemCountMismatch)
            }
        }
        guard items.count == criteriaCount else { return .invalid(reason: .itemCountMismatch) }
        return .valid(ParsedEvaluation(items: items, otherPoint: otherPoint, overall: overall))
    }
}

/// Writing scores the way the formats parse them.
public enum ScoreFormatting {
    /// `3` for 3.0, `3.5` for 3.5; other values are rounded to the nearest half first.
    public static func half(_ value: Double) -> String {
        guard value.isFinite, abs(value) < 1e15 else { return "0" }
        let halves = (value * 2).rounded()
        let whole = Int(halves / 2)
        if halves.truncatingRemainder(dividingBy: 2) == 0 { return "\(whole)" }
        return halves < 0 && whole == 0 ? "-0.5" : "\(whole).5"
    }
}
