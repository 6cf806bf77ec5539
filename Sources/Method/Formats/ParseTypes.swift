import Shared

// Values and failure reasons shared by every prompt format's parsers.
//
// Parsers work on bytes, never on `String` indices, so that any token sequence (invalid UTF-8,
// special tokens, megabytes of noise) parses to a value or a named reason without trapping.

/// Why a model output failed to parse. `rawValue` is stable: it is the metric key under which
/// failures are counted (`parse_failures.<rawValue>` in `metrics.jsonl`).
public enum ParseFailure: String, CaseIterable, Sendable, Hashable, Codable {
    /// No `⟨eos⟩` in the generated tokens: the output hit its token budget.
    case truncated
    /// A special token other than the final `⟨eos⟩` inside the output text.
    case unexpectedSpecialToken = "unexpected_special_token"
    /// Criteria turn: no start-of-criteria marker.
    case missingStartMarker = "missing_start_marker"
    /// Criteria turn: no end-of-criteria marker after the start marker.
    case missingEndMarker = "missing_end_marker"
    /// Criteria turn: nothing between the markers.
    case noCriteriaItems = "no_criteria_items"
    /// Criteria turn: items not numbered 1…k consecutively, or text between the markers that
    /// is not an item.
    case badItemNumbering = "bad_item_numbering"
    /// Criteria turn: an item with no text.
    case emptyItem = "empty_item"
    /// Non-blank text after the end-of-criteria marker.
    case trailingText = "trailing_text"
    /// Evaluation/judgment: no final (overall) score.
    case noScore = "no_score"
    /// A score that is not a number of the required form, or an item line without a score.
    case malformedScore = "malformed_score"
    /// A score outside its range (items 0–5, overall 0–10).
    case scoreOutOfRange = "score_out_of_range"
    /// Evaluation: the scored items do not match the criteria (count or numbering).
    case itemCountMismatch = "item_count_mismatch"
    /// `par`: a required tag is absent.
    case missingTags = "missing_tags"
    /// `par`: the required tags are present but not in the required order.
    case misorderedTags = "misordered_tags"
    /// `pairwise`: neither `[[A]]` nor `[[B]]` appears.
    case noVerdict = "no_verdict"
    /// `pairwise`: both `[[A]]` and `[[B]]` appear.
    case bothVerdicts = "both_verdicts"
}

/// The outcome of parsing one model output: a value, or the named reason it is invalid (⊥).
public enum ParseResult<Value: Sendable & Equatable>: Sendable, Equatable {
    case valid(Value)
    case invalid(reason: ParseFailure)

    /// The parsed value, or nil when invalid.
    public var value: Value? {
        if case let .valid(value) = self { return value }
        return nil
    }

    /// The failure reason, or nil when valid.
    public var failure: ParseFailure? {
        if case let .invalid(reason) = self { return reason }
        return nil
    }

    /// Whether the output parsed.
    public var isValid: Bool { value != nil }
}

/// A criteria set parsed from the criteria turn.
public struct ParsedCriteria: Sendable, Equatable {
    /// The brief analysis written before the criteria (may be empty).
    public var analysis: String
    /// The criteria in order, most important first; never empty, no item empty.
    public var items: [String]

    public init(analysis: String, items: [String]) {
        self.analysis = analysis
        self.items = items
    }
}

/// One scored item of an evaluation.
public struct ScoredItem: Sendable, Equatable {
    /// The analysis text written for the item.
    public var analysis: String
    /// The score (0–5).
    public var score: Double

    public init(analysis: String, score: Double) {
        self.analysis = analysis
        self.score = score
    }
}

/// An evaluation parsed from the evaluation turn.
public struct ParsedEvaluation: Sendable, Equatable {
    /// One entry per criterion, in the criteria's order.
    public var items: [ScoredItem]
    /// The optional "Other Point(s)" item for strengths or flaws outside the criteria.
    public var otherPoint: ScoredItem?
    /// The overall score (0–10); the only score rewards use.
    public var overall: Double

    public init(items: [ScoredItem], otherPoint: ScoredItem?, overall: Double) {
        self.items = items
        self.otherPoint = otherPoint
        self.overall = overall
    }

    /// The per-criterion scores in order.
    public var itemScores: [Double] { items.map(\.score) }
}

/// Which of the two responses a pairwise judgment prefers, by position in the prompt.
public enum PairwiseVerdict: String, Sendable, Equatable, CaseIterable {
    case a = "A"
    case b = "B"
}

/// A PaTaRM-style pointwise judgment.
public struct ParsedJudgment: Sendable, Equatable {
    /// The `<rubric>` section (the rubric the model generated for this response).
    public var rubric: String
    /// The score in `<answer>` (0–10, any decimal).
    public var score: Double

    public init(rubric: String, score: Double) {
        self.rubric = rubric
        self.score = score
    }
}

// MARK: - Byte-level helpers (internal)

enum Bytes {
    static let newline = UInt8(ascii: "\n")

    static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D || byte == 0x0B || byte == 0x0C
    }

    static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

    static func trim(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var lower = bytes.startIndex
        var upper = bytes.endIndex
        while lower < upper && isSpace(bytes[lower]) { lower += 1 }
        while upper > lower && isSpace(bytes[upper - 1]) { upper -= 1 }
        return bytes[lower..<upper]
    }

    static func isBlank(_ bytes: ArraySlice<UInt8>) -> Bool { bytes.allSatisfy(isSpace) }

    /// Lines split at `\n`; a `\r` before the `\n` is dropped so CRLF text parses the same.
    static func lines(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        var result: [ArraySlice<UInt8>] = []
        var start = 0
        for index in bytes.indices where bytes[index] == newline {
            result.append(dropCarriageReturn(bytes[start..<index]))
            start = index + 1
        }
        result.append(dropCarriageReturn(bytes[start..<bytes.count]))
        return result
    }

    private static func dropCarriageReturn(_ line: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        if let last = line.last, last == 0x0D { return line.dropLast() }
        return line
    }

    static func text(_ bytes: ArraySlice<UInt8>) -> String { String(decoding: bytes, as: UTF8.self) }

    static func equals(_ bytes: ArraySlice<UInt8>, _ literal: String) -> Bool {
        bytes.elementsEqual(literal.utf8)
    }

    static func hasPrefix(_ bytes: ArraySlice<UInt8>, _ literal: String) -> Bool {
        bytes.starts(with: literal.utf8)
    }

    static func hasSuffix(_ bytes: ArraySlice<UInt8>, _ literal: String) -> Bool {
        let suffix = Array(literal.utf8)
        return bytes.count >= suffix.count && bytes.suffix(suffix.count).elementsEqual(suffix)
    }

    /// Start index of the first occurrence of `needle` in `haystack` at or after `from`.
    static func find(_ needle: [UInt8], in haystack: ArraySlice<UInt8>, from: Int? = nil) -> Int? {
        guard let first = needle.first else { return nil }
        var index = max(from ?? haystack.startIndex, haystack.startIndex)
        let limit = haystack.endIndex - needle.count
        while index <= limit {
            if haystack[index] == first && haystack[index..<(index + needle.count)].elementsEqual(needle) {
                return index
            }
            index += 1
        }
        return nil
    }

    /// Start index of the last occurrence of `needle` in `haystack`.
    static func findLast(_ needle: [UInt8], in haystack: ArraySlice<UInt8>) -> Int? {
        guard !needle.isEmpty, haystack.count >= needle.count else { return nil }
        var index = haystack.endIndex - needle.count
        while index >= haystack.startIndex {
            if haystack[index..<(index + needle.count)].elementsEqual(needle) { return index }
            index -= 1
        }
        return nil
    }

    /// Whether `bytes` is exactly the decimal numeral of `number` (no sign, no leading zeros).
    static func isNumeral(_ bytes: ArraySlice<UInt8>, _ number: Int) -> Bool {
        bytes.elementsEqual(String(number).utf8)
    }
}

/// Score numerals in model output.
enum ScoreText {
    /// An integer or a half: `3`, `3.5`, `3.0` (at most 6 integer digits). Surrounding spaces
    /// are allowed. Nil when malformed.
    static func integerOrHalf(_ raw: ArraySlice<UInt8>) -> Double? {
        let bytes = Bytes.trim(raw)
        guard let dot = bytes.firstIndex(of: UInt8(ascii: ".")) else {
            return integer(bytes)
        }
        guard let whole = integer(bytes[bytes.startIndex..<dot]) else { return nil }
        let fraction = bytes[(dot + 1)...]
        if Bytes.equals(fraction, "5") { return whole + 0.5 }
        if Bytes.equals(fraction, "0") { return whole }
        return nil
    }

    /// A non-negative or negative decimal: `7`, `7.25`, `-1`, `.5` (at most 12 digits in all).
    static func decimal(_ raw: ArraySlice<UInt8>) -> Double? {
        var bytes = Bytes.trim(raw)
        var sign = 1.0
        if let first = bytes.first, first == UInt8(ascii: "-") {
            sign = -1
            bytes = bytes.dropFirst()
        }
        var value = 0.0
        var scale = 1.0
        var digits = 0
        var seenDot = false
        for byte in bytes {
            if Bytes.isDigit(byte) {
                digits += 1
                if digits > 12 { return nil }
                if seenDot {
                    scale /= 10
                    value += Double(byte - 0x30) * scale
                } else {
                    value = value * 10 + Double(byte - 0x30)
                }
            } else if byte == UInt8(ascii: "."), !seenDot {
                seenDot = true
            } else {
                return nil
            }
        }
        return digits > 0 ? sign * value : nil
    }

    private static func integer(_ bytes: ArraySlice<UInt8>) -> Double? {
        guard !bytes.isEmpty, bytes.count <= 6, bytes.allSatisfy(Bytes.isDigit) else { return nil }
        return Double(bytes.reduce(0) { $0 * 10 + Int($1 - 0x30) })
    }
}
