/// Content checksums for weight chunks, checkpoints and config hashes.
public enum Checksum {
    /// 64-bit FNV-1a over bytes. Not cryptographic: it detects corruption, not tampering
    /// (CURVE authenticates peers).
    @inlinable
    public static func fnv1a64(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 {
        var h = seed
        for b in bytes {
            h ^= UInt64(b)
            h &*= 0x0000_0100_0000_01B3
        }
        return h
    }

    /// 64-bit FNV-1a over a byte array.
    @inlinable
    public static func fnv1a64(_ bytes: [UInt8]) -> UInt64 {
        bytes.withUnsafeBytes { fnv1a64($0) }
    }

    /// 64-bit FNV-1a over the raw bytes of a float buffer (bit-exact: distinguishes -0 and NaN payloads).
    @inlinable
    public static func fnv1a64(_ floats: UnsafeBufferPointer<Float>, seed: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 {
        fnv1a64(UnsafeRawBufferPointer(floats), seed: seed)
    }
}
