/// ggml's block formats to float32, written from `ggml/src/ggml-quants.c` (`dequantize_row_*`)
/// and the block structs of `ggml/src/ggml-common.h`, with the same float operations in the same
/// order, so the results are bit for bit those of ggml and of gguf-py's `gguf.quants`.
/// (`d` and `dmin` are IEEE half floats; `QK_K` = 256.)
enum Dequantize {
    /// Converts `source` (whole blocks of `type`) into `output` (`blocks · type.blockSize` floats).
    /// The caller guarantees the sizes (``GGUFFile`` checked them against the file).
    static func blocks(of type: GGMLType, from source: UnsafeRawBufferPointer, into output: UnsafeMutableBufferPointer<Float>) {
        let blockCount = source.count / type.typeSize
        precondition(blockCount * type.typeSize == source.count && blockCount * type.blockSize == output.count)
        let kernel: (UnsafeRawBufferPointer, UnsafeMutableBufferPointer<Float>) -> Void
        switch type.rawValue {
        case GGMLType.f32.rawValue:
            for i in 0..<blockCount {
                output[i] = Float(bitPattern: UInt32(littleEndian: source.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
            }
            return
        case GGMLType.f16.rawValue:
            for i in 0..<blockCount { output[i] = half(source, at: 2 * i) }
            return
        case GGMLType.bf16.rawValue:
            for i in 0..<blockCount {
                output[i] = Float(bitPattern: UInt32(UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16)
            }
            return
        case GGMLType.q8_0.rawValue: kernel = q8_0
        case GGMLType.q4_0.rawValue: kernel = q4_0
        case GGMLType.q4_1.rawValue: kernel = q4_1
        case GGMLType.q4_K.rawValue: kernel = q4_K
        case GGMLType.q5_K.rawValue: kernel = q5_K
        case GGMLType.q6_K.rawValue: kernel = q6_K
        default: preconditionFailure("Dequantize: \(type) is not in GGMLType.dequantizable")
        }
        for block in 0..<blockCount {
            kernel(UnsafeRawBufferPointer(rebasing: source[(block * type.typeSize)..<((block + 1) * type.typeSize)]),
                   UnsafeMutableBufferPointer(rebasing: output[(block * type.blockSize)..<((block + 1) * type.blockSize)]))
        }
    }

    /// IEEE binary16 → binary32 (exact; NaN payloads kept, as numpy's `astype(float32)`).
    static func halfToFloat(_ bits: UInt16) -> Float {
        let sign = UInt32(bits & 0x8000) << 16
        let exponent = UInt32(bits >> 10) & 0x1F
        let mantissa = UInt32(bits & 0x3FF)
        switch exponent {
        case 0:
            // Zero or subnormal: mantissa · 2⁻²⁴, exact in float32.
            let magnitude = Float(mantissa) * 0x1p-24
            return sign == 0 ? magnitude : -magnitude
        case 31:
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        default:
            return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
        }
    }

    @inline(__always)
    static func half(_ x: UnsafeRawBufferPointer, at offset: Int) -> Float {
        halfToFloat(UInt16(littleEndian: x.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
    }

    /// `block_q8_0 { half d; int8 qs[32]; }`: y = qs · d.
    static func q8_0(_ x: UnsafeRawBufferPointer, _ y: UnsafeMutableBufferPointer<Float>) {
        let d = half(x, at: 0)
        for j in 0..<32 { y[j] = Float(Int8(bitPattern: x[2 + j])) * d }
    }

    /// `block_q4_0 { half d; uint8 qs[16]; }`: low nibbles are elements 0–15, high 16–31;
    /// y = (q − 8) · d.
    static func q4_0(_ x: UnsafeRawBufferPointer, _ y: UnsafeMutableBufferPointer<Float>) {
        let d = half(x, at: 0)
        for j in 0..<16 {
            let q = x[2 + j]
            y[j] = Float(Int(q & 0x0F) - 8) * d
            y[j + 16] = Float(Int(q >> 4) - 8) * d
        }
    }

    /// `block_q4_1 { half d; half m; uint8 qs[16]; }`: y = q · d + m.
    static func q4_1(_ x: UnsafeRawBufferPointer, _ y: UnsafeMutableBufferPointer<Float>) {
        let d = half(x, at: 0), m = half(x, at: 2)
        for j in 0..<16 {
            let q = x[4 + j]
            y[j] = Float(q & 0x0F) * d + m
            y[j + 16] = Float(q >> 4) * d + m
        }
    }

    /// The 6-bit scale and min of sub-block `j` (0–7) packed in 12 bytes (`get_scale_min_k4`).
    @inline(__always)
    static func scaleMin(_ j: Int, _ q: UnsafeRawBufferPointer) -> (scale: Float, min: Float) {
        if j < 4 {
            return (Float(q[j] & 63), Float(q[j + 4] & 63))
        }
        return (Float((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4)), Float((q[j + 4] >> 4) | ((q[j] >> 6) << 4)))
    }

    /// `block_q4_K { half d; half dmin; uint8 scales[12]; uint8 qs[128]; }`: 8 sub-blocks of 32;
    /// y = (d · scale) · q − dmin · min.
    static func q4_K(_ x: UnsafeRawBufferPointer, _ y: UnsafeMutableBufferPointer<Float>) {
        let d = half(x, at: 0), dmin = half(x, at: 2)
        let scales = UnsafeRawBufferPointer(rebasing: x[4..<16])
        var out = 0, q = 16
        for pair in 0..<4 {
            let (sc1, m1) = scaleMin(2 * pair, scales), (sc2, m2) = scaleMin(2 * pair + 1, scales)
            let d1 = d * sc1, min1 = dmin * m1, d2 = d * sc2, min2 = dmin * m2
            for l in 0..<32 { y[out + l] = d1 * Float(x[q + l] & 0x0F) - min1 }
            for l in 0..<32 { y[out + 32 + l] = d2 * Float(x[q + l] >> 4) - min2 }
            out += 64
            q += 32
        }
    }

    /// `block_q5_K { half d; half dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128]; }`: as
    /// Q4_K with a fifth bit per element from `qh` (bit 2·pair for the low nibbles, 2·pair+1
    /// for the high).
    static func q5_K(_ x: UnsafeRawBufferPointer, _ y: UnsafeMutableBufferPointer<Float>) {
        let d = half(x, at: 0), dmin = half(x, at: 2)
        let scales = UnsafeRawBufferPointer(rebasing: x[4..<16])
        let qh = 16, qs = 48
        var out = 0, q = qs
        var u1: UInt8 = 1, u2: UInt8 = 2
        for pair in 0..<4 {
            let (sc1, m1) = scaleMin(2 * pair, scales), (sc2, m2) = scaleMin(2 * pair + 1, scales)
            let d1 = d * sc1, min1 = dmin * m1, d2 = d * sc2, min2 = dmin * m2
            for l in 0..<32 {
                y[out + l] = d1 * Float((x[q + l] & 0x0F) + (x[qh + l] & u1 != 0 ? 16 : 0)) - min1
            }
            for l in 0..<32 {
                y[out + 32 + l] = d2 * Float((x[q + l] >> 4) + (x[qh + l] & u2 != 0 ? 16 : 0)) - min2
            }
            out += 64
            q += 32
            u1 <<= 2
            u2 <<= 2
        }
    }

    /// `block_q6_K { uint8 ql[128]; uint8 qh[64]; int8 scales[16]; half d; }`: two halves of
    /// 128; y = (d · scale) · (q − 32) with q = 4 low bits from `ql` and 2 high bits from `qh`.
    static func q6_K(_ x: UnsafeRawBufferPointer, _ y: UnsafeMutableBufferPointer<Float>) {
        let d = half(x, at: 208)
        for half in 0..<2 {
            let ql = 64 * half, qh = 128 + 32 * half, sc = 192 + 8 * half, out = 128 * half
            for l in 0..<32 {
                let scale = l / 16
                let h = x[qh + l]
                let q1 = Int((x[ql + l] & 0x0F) | ((h & 3) << 4)) - 32
                let q2 = Int((x[ql + l + 32] & 0x0F) | (((h >> 2) & 3) << 4)) - 32
                let q3 = Int((x[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32
                let q4 = Int((x[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32
                y[out + l] = d * Float(Int8(bitPattern: x[sc + scale])) * Float(q1)
                y[out + l + 32] = d * Float(Int8(bitPattern: x[sc + scale + 2])) * Float(q2)
                y[out + l + 64] = d * Float(Int8(bitPattern: x[sc + scale + 4])) * Float(q3)
                y[out + l + 96] = d * Float(Int8(bitPattern: x[sc + scale + 6])) * Float(q4)
            }
        }
    }
}
