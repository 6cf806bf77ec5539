import Shared

/// The wire form of weights: the flat buffer's float32 values as little-endian bytes, in
/// ``ParameterLayout`` order. The coordinator publishes it per policy version and workers
/// rebuild the exact same bits from it (the architecture comes from the shared config, whose
/// hash the handshake checks).
extension ModelWeights {
    /// `layout.totalCount · 4` bytes, little-endian float32.
    public var wireBytes: [UInt8] {
        values.withUnsafeBytes { floats in
            // Every byte is written below: no zero-filling of 0.5 GB first.
            [UInt8](unsafeUninitializedCapacity: floats.count) { out, initialized in
                #if _endian(little)
                // The wire order is the memory order: one copy instead of a loop over bytes.
                UnsafeMutableRawBufferPointer(out).copyMemory(from: floats)
                #else
                for i in 0..<floats.count / 4 {
                    UnsafeMutableRawBufferPointer(out).storeBytes(of: floats.load(fromByteOffset: 4 * i, as: UInt32.self).littleEndian,
                                                                  toByteOffset: 4 * i, as: UInt32.self)
                }
                #endif
                initialized = floats.count
            }
        }
    }

    /// Calls `body` with ``wireBytes``: on a little-endian host the values' own memory, so
    /// publishing a version copies the weights once (into its chunks), not twice.
    public func withWireBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        #if _endian(little)
        try values.withUnsafeBytes(body)
        #else
        try wireBytes.withUnsafeBytes(body)
        #endif
    }

    /// Rebuilds weights of `config` from ``wireBytes``; the byte count must match the layout.
    public init(config: TransformerConfig, wireBytes bytes: [UInt8]) throws {
        let count = ParameterLayout(config).totalCount
        try Self.checkWire(bytes, count: count)
        // Every value is written by the decode: no zero-filling first.
        let values = [Float](unsafeUninitializedCapacity: count) { out, initialized in
            Self.decodeWire(bytes, into: out)
            initialized = count
        }
        try self.init(config: config, values: values)
    }

    /// Throws unless `bytes` holds `count` float32 values.
    public static func checkWire(_ bytes: [UInt8], count: Int) throws {
        guard bytes.count == count * 4 else {
            throw CermError.invalid("weights: \(bytes.count) bytes received, the model config needs \(count * 4) (\(count) float32 values)")
        }
    }

    /// Decodes ``wireBytes`` (checked with ``checkWire(_:count:)``) into `out`.
    public static func decodeWire(_ bytes: [UInt8], into out: UnsafeMutableBufferPointer<Float>) {
        bytes.withUnsafeBytes { b in
            #if _endian(little)
            UnsafeMutableRawBufferPointer(out).copyMemory(from: b)
            #else
            for i in 0..<out.count {
                out[i] = Float(bitPattern: UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
            }
            #endif
        }
    }
}
