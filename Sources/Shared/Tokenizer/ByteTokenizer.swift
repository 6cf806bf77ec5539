/// Token ids as the engine and the wire protocol carry them.
public typealias TokenID = Int32

/// Byte-level tokenizer: ids 0–255 are the bytes themselves, ids 256… are special tokens.
///
/// Text is encoded as its UTF-8 bytes with no special-token parsing, so any model output (even
/// invalid UTF-8) round-trips losslessly; prompt formats insert special tokens explicitly.
public struct ByteTokenizer: Sendable, Equatable {
    /// Special tokens, with fixed ids (part of the checkpoint format: changing them is a version bump).
    public enum Special: TokenID, CaseIterable, Sendable {
        case pad = 256, bos = 257, eos = 258, user = 259, assistant = 260, system = 261, sep = 262, reserved = 263

        /// The printable name, e.g. `<|eos|>`.
        public var text: String {
            switch self {
            case .pad: "<|pad|>"
            case .bos: "<|bos|>"
            case .eos: "<|eos|>"
            case .user: "<|user|>"
            case .assistant: "<|assistant|>"
            case .system: "<|system|>"
            case .sep: "<|sep|>"
            case .reserved: "<|reserved|>"
            }
        }
    }

    /// 256 bytes plus the specials.
    public static let vocabularySize = 256 + Special.allCases.count

    public init() {}

    /// Number of token ids; the model's vocabulary must be at least this large.
    public var vocabularySize: Int { Self.vocabularySize }

    /// A one-line description stored in checkpoints.
    public var description: String {
        "byte-level v1: ids 0-255 = bytes; " + Special.allCases.map { "\($0.rawValue)=\($0.text)" }.joined(separator: " ")
    }

    /// The UTF-8 bytes of `text` as token ids.
    public func encode(_ text: String) -> [TokenID] { text.utf8.map { TokenID($0) } }

    /// Raw bytes as token ids.
    public func encode(bytes: [UInt8]) -> [TokenID] { bytes.map { TokenID($0) } }

    /// The bytes of the byte tokens in `tokens`; special tokens are skipped.
    public func decodeBytes(_ tokens: [TokenID]) -> [UInt8] {
        tokens.compactMap { (0...255).contains($0) ? UInt8($0) : nil }
    }

    /// Text of `tokens`: byte tokens decoded as UTF-8 (invalid sequences become U+FFFD),
    /// special tokens as their names when `showSpecials`, else skipped. Out-of-range ids are skipped.
    public func decode(_ tokens: [TokenID], showSpecials: Bool = false) -> String {
        var out = ""
        var pending: [UInt8] = []
        func flush() {
            if !pending.isEmpty { out += String(decoding: pending, as: UTF8.self); pending.removeAll() }
        }
        for t in tokens {
            if (0...255).contains(t) {
                pending.append(UInt8(t))
            } else if let special = Special(rawValue: t) {
                flush()
                if showSpecials { out += special.text }
            }
        }
        flush()
        return out
    }

    /// Whether `token` is a valid id of this tokenizer.
    public func isValid(_ token: TokenID) -> Bool { token >= 0 && Int(token) < vocabularySize }
}
