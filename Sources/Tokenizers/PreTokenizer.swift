/// How text is cut into words before BPE: a sequence of splits, each applied to every piece the
/// previous one produced (as `tokenizers`' `Sequence` pre-tokenizer and llama.cpp's list of
/// regexes do), then the ByteLevel step, which may prefix a space and may split with GPT-2's regex.
public struct PreTokenizer: Sendable, Equatable {
    /// The splits before ByteLevel, in order.
    public var splits: [SplitPattern]
    /// ByteLevel's `add_prefix_space`: each piece reaching it that does not start with a space gets one.
    public var addPrefixSpace: Bool
    /// ByteLevel's `use_regex`: split each piece with the GPT-2 regex after the prefix space.
    public var byteLevelRegex: Bool

    public init(splits: [SplitPattern], addPrefixSpace: Bool = false, byteLevelRegex: Bool) {
        self.splits = splits
        self.addPrefixSpace = addPrefixSpace
        self.byteLevelRegex = byteLevelRegex
    }

    /// GPT-2: ByteLevel with its regex.
    public static let gpt2 = PreTokenizer(splits: [], byteLevelRegex: true)
    /// Llama 3: Split with its regex, then ByteLevel without one.
    public static let llama3 = PreTokenizer(splits: [.llama3], byteLevelRegex: false)
    /// Qwen2 (and Qwen2.5, Qwen3): as Llama 3 with single digits.
    public static let qwen2 = PreTokenizer(splits: [.qwen2], byteLevelRegex: false)
    /// SmolLM / StarCoder: every digit alone, then ByteLevel with the GPT-2 regex.
    public static let individualDigitsThenGPT2 = PreTokenizer(splits: [.digits(individual: true)], byteLevelRegex: true)
}

/// One split, written as the regex it reproduces. Matches are pieces (`behavior: Isolated`); every
/// character is matched by some alternative, so there are no gaps.
public enum SplitPattern: Sendable, Equatable {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    case llama3
    /// The Llama 3 regex with `\p{N}` in place of `\p{N}{1,3}`.
    case qwen2
    /// `tokenizers`' Digits: runs of `\p{N}` (each digit alone when `individual`) apart from the rest.
    case digits(individual: Bool)

    static let gpt2Regex = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// The pattern a Split regex of tokenizer.json spells, or nil for one not implemented.
    static func fromRegex(_ regex: String) -> SplitPattern? {
        switch regex {
        case gpt2Regex: .gpt2
        case llama3Regex: .llama3
        case qwen2Regex: .qwen2
        default: nil
        }
    }
}

/// The character classes the regexes distinguish, as Oniguruma sees them: `\p{L}` is general
/// category L*, `\p{N}` is N*, `\s` is the White_Space property.
enum CharacterClass: UInt8 {
    case letter, number, whitespace, other
}

/// Text decoded to Unicode scalars with their classes and UTF-8 offsets, which the scanners walk.
struct ScannedText {
    var scalars: [UInt32] = []
    var classes: [CharacterClass] = []
    /// Byte offset of each scalar in `bytes`, plus the end offset.
    var offsets: [Int] = []
    var bytes: [UInt8] = []

    private static let asciiClasses: [CharacterClass] = (0..<128).map { classify(Unicode.Scalar(UInt8($0))) }

    static func classify(_ scalar: Unicode.Scalar) -> CharacterClass {
        let properties = scalar.properties
        if properties.isWhitespace { return .whitespace }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

    /// Fills the arrays from UTF-8 bytes (valid, as they come from a Swift String).
    mutating func load(_ utf8: some Collection<UInt8>) {
        bytes.removeAll(keepingCapacity: true)
        bytes.append(contentsOf: utf8)
        scalars.removeAll(keepingCapacity: true)
        classes.removeAll(keepingCapacity: true)
        offsets.removeAll(keepingCapacity: true)
        var index = 0
        let count = bytes.count
        while index < count {
            let lead = bytes[index]
            let length: Int
            var value: UInt32
            if lead < 0x80 {
                length = 1; value = UInt32(lead)
            } else if lead < 0xE0 {
                length = 2; value = UInt32(lead & 0x1F)
            } else if lead < 0xF0 {
                length = 3; value = UInt32(lead & 0x0F)
            } else {
                length = 4; value = UInt32(lead & 0x07)
            }
            var next = index + 1
            while next < min(index + length, count) {
                value = value << 6 | UInt32(bytes[next] & 0x3F)
                next += 1
            }
            offsets.append(index)
            scalars.append(value)
            if value < 128 {
                classes.append(Self.asciiClasses[Int(value)])
            } else {
                classes.append(Unicode.Scalar(value).map(Self.classify) ?? .other)
            }
            index = next
        }
        offsets.append(count)
    }
}

extension SplitPattern {
    /// Appends the pieces of `range` (scalar indices of `text`) to `pieces`.
    func split(_ text: ScannedText, _ range: Range<Int>, into pieces: inout [Range<Int>]) {
        var start = range.lowerBound
        while start < range.upperBound {
            let end: Int
            switch self {
            case .gpt2: end = Self.gpt2Match(text, start, range.upperBound)
            case .llama3: end = Self.llama3Match(text, start, range.upperBound, maxDigits: 3)
            case .qwen2: end = Self.llama3Match(text, start, range.upperBound, maxDigits: 1)
            case let .digits(individual):
                let isNumber = text.classes[start] == .number
                if isNumber && individual {
                    end = start + 1
                } else {
                    var next = start + 1
                    while next < range.upperBound && (text.classes[next] == .number) == isNumber { next += 1 }
                    end = next
                }
            }
            pieces.append(start..<end)
            start = end
        }
    }

    private static let apostrophe: UInt32 = 0x27, space: UInt32 = 0x20, carriageReturn: UInt32 = 0x0D, lineFeed: UInt32 = 0x0A

    /// End of the contraction `'s 't 're 've 'm 'll 'd` at `start`, or nil. Case-insensitively,
    /// Oniguruma's case folding also takes the long s `ſ` (U+017F) for `s`.
    private static func contractionEnd(_ text: ScannedText, _ start: Int, _ end: Int, caseInsensitive: Bool) -> Int? {
        guard text.scalars[start] == apostrophe, start + 1 < end else { return nil }
        func letter(_ index: Int) -> UInt32? {
            guard index < end else { return nil }
            let value = text.scalars[index]
            guard caseInsensitive else { return value }
            if value >= 0x41 && value <= 0x5A { return value + 0x20 }
            return value == 0x17F ? UInt32(UInt8(ascii: "s")) : value
        }
        switch letter(start + 1) {
        case UInt32(UInt8(ascii: "s")), UInt32(UInt8(ascii: "t")), UInt32(UInt8(ascii: "m")), UInt32(UInt8(ascii: "d")):
            return start + 2
        case UInt32(UInt8(ascii: "r")), UInt32(UInt8(ascii: "v")):
            return letter(start + 2) == UInt32(UInt8(ascii: "e")) ? start + 3 : nil
        case UInt32(UInt8(ascii: "l")):
            return letter(start + 2) == UInt32(UInt8(ascii: "l")) ? start + 3 : nil
        default:
            return nil
        }
    }

    private static func run(of wanted: CharacterClass, _ text: ScannedText, from start: Int, _ end: Int) -> Int {
        var index = start
        while index < end && text.classes[index] == wanted { index += 1 }
        return index
    }

    /// `\s+(?!\S)|\s+` at a whitespace scalar: the whole run when it ends the text or is one scalar
    /// long, else all but its last scalar (which then leads the next word).
    private static func whitespaceEnd(_ text: ScannedText, _ start: Int, _ end: Int) -> Int {
        let runEnd = run(of: .whitespace, text, from: start, end)
        return runEnd == end || runEnd - start == 1 ? runEnd : runEnd - 1
    }

    /// Start of a word of `wanted` class at `start`, allowing one leading space (` ?X+`), or nil.
    private static func spacedStart(_ wanted: CharacterClass, _ text: ScannedText, _ start: Int, _ end: Int) -> Int? {
        if text.classes[start] == wanted { return start }
        if text.scalars[start] == space && start + 1 < end && text.classes[start + 1] == wanted { return start + 1 }
        return nil
    }

    /// The classes of ` ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+`, in the regex's order.
    private static let gpt2WordClasses: [CharacterClass] = [.letter, .number, .other]

    private static func gpt2Match(_ text: ScannedText, _ start: Int, _ end: Int) -> Int {
        if let contraction = contractionEnd(text, start, end, caseInsensitive: false) { return contraction }
        for wanted in gpt2WordClasses {
            if let wordStart = spacedStart(wanted, text, start, end) { return run(of: wanted, text, from: wordStart, end) }
        }
        return whitespaceEnd(text, start, end)
    }

    private static func llama3Match(_ text: ScannedText, _ start: Int, _ end: Int, maxDigits: Int) -> Int {
        if let contraction = contractionEnd(text, start, end, caseInsensitive: true) { return contraction }
        let scalar = text.scalars[start], kind = text.classes[start]
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if kind == .letter { return run(of: .letter, text, from: start, end) }
        if kind != .number && scalar != carriageReturn && scalar != lineFeed && start + 1 < end && text.classes[start + 1] == .letter {
            return run(of: .letter, text, from: start + 1, end)
        }
        // \p{N}{1,maxDigits}
        if kind == .number { return min(run(of: .number, text, from: start, end), start + maxDigits) }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        if let wordStart = spacedStart(.other, text, start, end) {
            var index = run(of: .other, text, from: wordStart, end)
            while index < end && (text.scalars[index] == carriageReturn || text.scalars[index] == lineFeed) { index += 1 }
            return index
        }
        // \s*[\r\n]+ : up to and including the last line break of the whitespace run.
        let runEnd = run(of: .whitespace, text, from: start, end)
        var lastBreak = runEnd - 1
        while lastBreak >= start && text.scalars[lastBreak] != carriageReturn && text.scalars[lastBreak] != lineFeed { lastBreak -= 1 }
        if lastBreak >= start { return lastBreak + 1 }
        return whitespaceEnd(text, start, end)
    }
}
