/// Appends little-endian binary fields to a byte buffer (cerm protocol v4 body encoding).
public struct ByteWriter: Sendable {
    /// The bytes written so far.
    public private(set) var bytes: [UInt8]

    public init(reservingCapacity capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func u8(_ value: UInt8) { bytes.append(value) }
    public mutating func u16(_ value: UInt16) { appendLittleEndian(value) }
    public mutating func u32(_ value: UInt32) { appendLittleEndian(value) }
    public mutating func u64(_ value: UInt64) { appendLittleEndian(value) }
    public mutating func f32(_ value: Float) { appendLittleEndian(value.bitPattern) }
    public mutating func f64(_ value: Double) { appendLittleEndian(value.bitPattern) }

    /// A `u32` length then the raw bytes.
    public mutating func bytes(_ value: some Collection<UInt8>) {
        u32(UInt32(truncatingIfNeeded: value.count))
        bytes.append(contentsOf: value)
    }

    /// The raw bytes, no length.
    public mutating func raw(_ value: some Collection<UInt8>) { bytes.append(contentsOf: value) }

    /// A `u32` byte length then the UTF-8 bytes.
    public mutating func string(_ value: String) { bytes(Array(value.utf8)) }

    /// A `u32` count then the values (no per-element framing).
    public mutating func u32Array(_ values: [UInt32]) {
        u32(UInt32(truncatingIfNeeded: values.count))
        for v in values { u32(v) }
    }

    /// A `u32` count then the values' bit patterns.
    public mutating func f32Array(_ values: [Float]) {
        u32(UInt32(truncatingIfNeeded: values.count))
        for v in values { u32(v.bitPattern) }
    }

    /// A `u32` count then the values' bit patterns.
    public mutating func f64Array(_ values: [Double]) {
        u32(UInt32(truncatingIfNeeded: values.count))
        for v in values { u64(v.bitPattern) }
    }

    private mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        var v = value.littleEndian
        withUnsafeBytes(of: &v) { bytes.append(contentsOf: $0) }
    }
}

/// Reads little-endian binary fields from a byte buffer. Every read names the field it reads so
/// that a short buffer becomes ``ProtocolError/truncated(field:needed:remaining:)`` with the
/// field's name; nothing traps on any input.
public struct ByteReader: Sendable {
    private let bytes: [UInt8]
    /// Offset of the next unread byte.
    public private(set) var offset: Int

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        offset = 0
    }

    /// Bytes not yet read.
    public var remaining: Int { bytes.count - offset }

    private mutating func take(_ count: Int, _ field: String) throws(ProtocolError) -> ArraySlice<UInt8> {
        guard count >= 0, count <= remaining else {
            throw .truncated(field: field, needed: count, remaining: remaining)
        }
        let slice = bytes[offset..<(offset + count)]
        offset += count
        return slice
    }

    private mutating func littleEndian<T: FixedWidthInteger>(_ field: String, as _: T.Type) throws(ProtocolError) -> T {
        let slice = try take(MemoryLayout<T>.size, field)
        var value: T = 0
        for (shift, byte) in slice.enumerated() { value |= T(byte) << (shift * 8) }
        return value
    }

    public mutating func u8(_ field: String) throws(ProtocolError) -> UInt8 { try take(1, field).first ?? 0 }
    public mutating func u16(_ field: String) throws(ProtocolError) -> UInt16 { try littleEndian(field, as: UInt16.self) }
    public mutating func u32(_ field: String) throws(ProtocolError) -> UInt32 { try littleEndian(field, as: UInt32.self) }
    public mutating func u64(_ field: String) throws(ProtocolError) -> UInt64 { try littleEndian(field, as: UInt64.self) }
    public mutating func f32(_ field: String) throws(ProtocolError) -> Float { Float(bitPattern: try u32(field)) }
    public mutating func f64(_ field: String) throws(ProtocolError) -> Double { Double(bitPattern: try u64(field)) }

    /// Reads a `u32` count, checks it against `limit` and against the bytes left (each element
    /// takes at least `minimumElementSize` bytes), so a forged count never allocates.
    public mutating func count(_ field: String, limit: Int, minimumElementSize: Int) throws(ProtocolError) -> Int {
        let n = Int(try u32(field))
        guard n <= limit else { throw .countOverLimit(field: field, count: n, limit: limit) }
        let needed = n.multipliedReportingOverflow(by: max(minimumElementSize, 0))
        guard !needed.overflow, needed.partialValue <= remaining else {
            throw .truncated(field: field, needed: needed.overflow ? Int.max : needed.partialValue, remaining: remaining)
        }
        return n
    }

    /// A `u32` length (≤ `limit`) then that many bytes.
    public mutating func bytes(_ field: String, limit: Int) throws(ProtocolError) -> [UInt8] {
        let n = Int(try u32(field))
        guard n <= limit else { throw .tooLong(field: field, length: n, limit: limit) }
        return Array(try take(n, field))
    }

    /// Like ``bytes(_:limit:)``, as a slice of the buffer read (no copy).
    public mutating func byteSlice(_ field: String, limit: Int) throws(ProtocolError) -> ArraySlice<UInt8> {
        let n = Int(try u32(field))
        guard n <= limit else { throw .tooLong(field: field, length: n, limit: limit) }
        return try take(n, field)
    }

    /// A `u32` byte length (≤ `limit`) then UTF-8, validated.
    public mutating func string(_ field: String, limit: Int) throws(ProtocolError) -> String {
        let raw = try bytes(field, limit: limit)
        guard let s = String(validating: raw, as: UTF8.self) else { throw .invalidUTF8(field: field) }
        return s
    }

    /// A `u32` count (≤ `limit`) then that many `u32`s.
    public mutating func u32Array(_ field: String, limit: Int) throws(ProtocolError) -> [UInt32] {
        let n = try count(field, limit: limit, minimumElementSize: 4)
        var out = [UInt32]()
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try u32(field)) }
        return out
    }

    /// A `u32` count (≤ `limit`) then that many `f32`s.
    public mutating func f32Array(_ field: String, limit: Int) throws(ProtocolError) -> [Float] {
        let n = try count(field, limit: limit, minimumElementSize: 4)
        var out = [Float]()
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try f32(field)) }
        return out
    }

    /// A `u32` count (≤ `limit`) then that many `f64`s.
    public mutating func f64Array(_ field: String, limit: Int) throws(ProtocolError) -> [Double] {
        let n = try count(field, limit: limit, minimumElementSize: 8)
        var out = [Double]()
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try f64(field)) }
        return out
    }

    /// Fails with ``ProtocolError/trailingBytes(message:count:)`` unless every byte was read.
    public func expectEnd(_ message: String) throws(ProtocolError) {
        if remaining != 0 { throw .trailingBytes(message: message, count: remaining) }
    }
}
