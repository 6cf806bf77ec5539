/// The little-endian `u64`s and `u64`-length-prefixed byte strings of cerm's own byte formats
/// (a stored tokenizer's canonical bytes, the model description a coordinator sends workers):
/// written by ``append(u64:to:)`` and ``append(lengthPrefixed:to:)``, read by a ``Reader``
/// whose ``Reader/Fault`` the caller turns into an error naming its field.
public enum LittleEndianFields {
    public static func append(u64 value: UInt64, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }

    /// The length as a `u64`, then the bytes.
    public static func append(lengthPrefixed value: [UInt8], to bytes: inout [UInt8]) {
        append(u64: UInt64(value.count), to: &bytes)
        bytes += value
    }

    public struct Reader {
        public enum Fault: Error, Equatable {
            /// Fewer than 8 bytes are left for a `u64`.
            case endsEarly
            /// A length prefix counts more bytes than are left.
            case lengthPastEnd(UInt64)
        }

        public let bytes: [UInt8]
        /// Offset of the next unread byte.
        public private(set) var offset: Int

        public init(_ bytes: [UInt8], offset: Int = 0) {
            self.bytes = bytes
            self.offset = offset
        }

        public var isAtEnd: Bool { offset == bytes.count }

        public mutating func u64() throws(Fault) -> UInt64 {
            guard bytes.count - offset >= 8 else { throw .endsEarly }
            var value: UInt64 = 0
            for i in 0..<8 { value |= UInt64(bytes[offset + i]) << (8 * i) }
            offset += 8
            return value
        }

        /// A `u64` length, then that many bytes.
        public mutating func lengthPrefixed() throws(Fault) -> [UInt8] {
            let length = try u64()
            guard length <= UInt64(bytes.count - offset) else { throw .lengthPastEnd(length) }
            defer { offset += Int(length) }
            return Array(bytes[offset..<(offset + Int(length))])
        }
    }
}
