import Shared

/// The wire form of weights: the flat buffer's float32 values as little-endian bytes, in
/// ``ParameterLayout`` order. The coordinator publishes it per policy version and workers
/// rebuild the exact same bits from it (the architecture comes from the shared config, whose
/// hash the handshake checks).
extension ModelWeights {
    /// `layout.totalCount · 4` bytes, little-endian float32.
    public var wireBytes: [UInt8] {
        values.withUnsafeBufferPointer { floats in
            var bytes = [UInt8](repeating: 0, count: floats.count * 4)
            bytes.withUnsafeMutableBufferPointer { out in
                for (i, f) in floats.enumerated() {
                    let bits = f.bitPattern.littleEndian
                    out[4 * i] = UInt8(truncatingIfNeeded: bits)
                    out[4 * i + 1] = UInt8(truncatingIfNeeded: bits >> 8)
                    out[4 * i + 2] = UInt8(truncatingIfNeeded: bits >> 16)
                    out[4 * i + 3] = UInt8(truncatingIfNeeded: bits >> 24)
                }
            }
            return bytes
        }
    }

    /// Rebuilds weights of `config` from ``wireBytes``; the byte count must match the layout.
    public init(config: TransformerConfig, wireBytes bytes: [UInt8]) throws {
        let layout = ParameterLayout(config)
        guard bytes.count == layout.totalCount * 4 else {
            throw CermError.invalid("weights: \(bytes.count) bytes received, the model config needs \(layout.totalCount * 4) (\(layout.totalCount) float32 values)")
        }
        var values = [Float](repeating: 0, count: layout.totalCount)
        bytes.withUnsafeBufferPointer { b in
            for i in 0..<values.count {
                let bits = UInt32(b[4 * i]) | UInt32(b[4 * i + 1]) << 8 | UInt32(b[4 * i + 2]) << 16 | UInt32(b[4 * i + 3]) << 24
                values[i] = Float(bitPattern: bits)
            }
        }
        try self.init(config: config, values: values)
    }
}
