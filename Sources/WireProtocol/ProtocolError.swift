import Configuration

/// Why a received cerm message was rejected (docs/PROTOCOL.md, section 3). Every case says what
/// is wrong and where; the receiver logs it with the peer and drops the message.
public enum ProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A message is exactly two data frames (header, body).
    case wrongFrameCount(Int)
    /// The header frame is not 12 bytes.
    case badHeaderSize(Int)
    /// The first four bytes are not `CERM`.
    case badMagic([UInt8])
    /// The header names another protocol version.
    case unsupportedVersion(received: UInt16, supported: UInt16)
    /// The type byte names no message of this version.
    case unknownMessageType(UInt8)
    /// Flag bits that this version does not define are set.
    case unknownFlags(UInt8)
    /// Header + body exceed `max_message_bytes`.
    case messageTooLarge(bytes: Int, limit: Int)
    /// The header's body length disagrees with the body frame.
    case bodyLengthMismatch(declared: Int, actual: Int)
    /// A field runs past the end of the body.
    case truncated(field: String, needed: Int, remaining: Int)
    /// Bytes are left after the last field.
    case trailingBytes(message: String, count: Int)
    /// A count exceeds its limit.
    case countOverLimit(field: String, count: Int, limit: Int)
    /// A string or byte string exceeds its limit.
    case tooLong(field: String, length: Int, limit: Int)
    /// A string is not valid UTF-8.
    case invalidUTF8(field: String)
    /// An enumerated field holds a value this version does not define.
    case invalidEnumValue(field: String, value: UInt8)
    /// Arrays that must have one element per token have different lengths.
    case arrayLengthMismatch(field: String, expected: Int, actual: Int)
    /// A number that must be finite is NaN or infinite.
    case nonFinite(field: String, index: Int?, value: Double)
    /// A log-probability is above 0.
    case positiveLogprob(field: String, index: Int, value: Float)
    /// A token id is not below the vocabulary size.
    case tokenOutOfRange(field: String, index: Int, token: UInt32, vocabularySize: UInt32)
    /// A weights chunk's data does not match its checksum.
    case checksumMismatch(version: UInt64, chunk: UInt32, declared: UInt64, actual: UInt64)
    /// A field's value is outside what the protocol allows.
    case invalidValue(field: String, reason: String)

    public var description: String {
        switch self {
        case let .wrongFrameCount(n):
            return "expected 2 data frames (header, body), got \(n)"
        case let .badHeaderSize(n):
            return "header frame must be \(MessageCodec.headerSize) bytes, got \(n)"
        case let .badMagic(bytes):
            return "bad magic \(bytes.map { String($0, radix: 16) }.joined(separator: " ")) (expected 43 45 52 4d \"CERM\")"
        case let .unsupportedVersion(received, supported):
            return "protocol version \(received) not supported (this side speaks cerm protocol v\(supported))"
        case let .unknownMessageType(t):
            return "unknown message type \(t)"
        case let .unknownFlags(f):
            return "unknown flag bits 0x\(String(f, radix: 16)) (v1 defines none)"
        case let .messageTooLarge(bytes, limit):
            return "message of \(bytes) bytes exceeds max_message_bytes \(limit)"
        case let .bodyLengthMismatch(declared, actual):
            return "header declares a \(declared)-byte body, body frame has \(actual) bytes"
        case let .truncated(field, needed, remaining):
            return "truncated at \(field): needs \(needed) bytes, \(remaining) left"
        case let .trailingBytes(message, count):
            return "\(count) trailing bytes after a complete \(message) body"
        case let .countOverLimit(field, count, limit):
            return "\(field): count \(count) exceeds limit \(limit)"
        case let .tooLong(field, length, limit):
            return "\(field): length \(length) exceeds limit \(limit)"
        case let .invalidUTF8(field):
            return "\(field): invalid UTF-8"
        case let .invalidEnumValue(field, value):
            return "\(field): undefined value \(value)"
        case let .arrayLengthMismatch(field, expected, actual):
            return "\(field): \(actual) entries for \(expected) generated tokens"
        case let .nonFinite(field, index, value):
            return "\(field)\(index.map { "[\($0)]" } ?? ""): \(value.isNaN ? "NaN" : "infinite") value"
        case let .positiveLogprob(field, index, value):
            return "\(field)[\(index)]: log-probability \(value) is above 0"
        case let .tokenOutOfRange(field, index, token, vocabularySize):
            return "\(field)[\(index)]: token id \(token) not below vocabulary size \(vocabularySize)"
        case let .checksumMismatch(version, chunk, declared, actual):
            return "weights v\(version) chunk \(chunk): checksum 0x\(String(actual, radix: 16)) does not match declared 0x\(String(declared, radix: 16))"
        case let .invalidValue(field, reason):
            return "\(field): \(reason)"
        }
    }
}

/// Bounds on what a received message may contain (docs/PROTOCOL.md, section 3).
public struct ProtocolLimits: Sendable, Equatable {
    /// Header + body, bytes (`cluster.max_message_bytes`).
    public var maxMessageBytes: Int
    /// Queries, responses and generated text, bytes.
    public var maxStringBytes: Int
    /// Worker names, bytes.
    public var maxNameBytes: Int
    /// REFUSE / GOODBYE reasons, bytes.
    public var maxReasonBytes: Int
    public var maxPairsPerTask: Int
    public var maxResponsesPerPair: Int
    public var maxTrajectoriesPerResult: Int
    public var maxTokensPerTrajectory: Int
    /// Token ids must be below this (`model.vocab_size`).
    public var vocabularySize: UInt32

    public init(maxMessageBytes: Int = 64 << 20, maxStringBytes: Int = 1 << 20, maxNameBytes: Int = 256,
                maxReasonBytes: Int = 4096, maxPairsPerTask: Int = 4096, maxResponsesPerPair: Int = 16,
                maxTrajectoriesPerResult: Int = 1 << 20, maxTokensPerTrajectory: Int = 1 << 20,
                vocabularySize: UInt32 = .max) {
        self.maxMessageBytes = maxMessageBytes
        self.maxStringBytes = maxStringBytes
        self.maxNameBytes = maxNameBytes
        self.maxReasonBytes = maxReasonBytes
        self.maxPairsPerTask = maxPairsPerTask
        self.maxResponsesPerPair = maxResponsesPerPair
        self.maxTrajectoriesPerResult = maxTrajectoriesPerResult
        self.maxTokensPerTrajectory = maxTokensPerTrajectory
        self.vocabularySize = vocabularySize
    }

    /// The limits a run's configuration implies (both sides run the same configuration, the
    /// handshake checks its hash): message size from `cluster.max_message_bytes`, pairs per task
    /// from `cluster.pairs_per_task`, generated tokens from `model.max_seq_len` (nothing
    /// generated can outgrow the context), token ids from `model.vocab_size`.
    public init(config: Config) {
        self.init(maxMessageBytes: config.cluster.maxMessageBytes, maxPairsPerTask: config.cluster.pairsPerTask,
                  maxTokensPerTrajectory: config.model.maxSeqLen, vocabularySize: UInt32(clamping: config.model.vocabSize))
    }
}
