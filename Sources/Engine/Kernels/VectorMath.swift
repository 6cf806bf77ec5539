import Foundation

/// Small vectorised building blocks shared by the kernels.
///
/// Reductions use eight `SIMD8<Float>` lanes: LLVM does not vectorise floating-point reductions
/// by itself (it may not reassociate), so they are written out. Element-wise loops over raw
/// pointers are left to the auto-vectoriser.
@usableFromInline
enum VectorMath {
    @inline(__always) @usableFromInline
    static func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }

    @inline(__always) @usableFromInline
    static func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
    }

    /// Lane-wise maximum / minimum. The standard library's generic `pointwiseMax` is not
    /// inlined in release builds (it showed up at 5% of a training profile); this unrolled
    /// lane loop compiles to single `vmaxps`/`vminps` instructions.
    @inline(__always) @usableFromInline
    static func lanesMax(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
        var r = a
        for i in 0..<8 where b[i] > a[i] { r[i] = b[i] }
        return r
    }

    @inline(__always) @usableFromInline
    static func lanesMin(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
        var r = a
        for i in 0..<8 where b[i] < a[i] { r[i] = b[i] }
        return r
    }

    /// Loads `count < 8` elements, the other lanes `fill`.
    @inline(__always) @usableFromInline
    static func loadPartial(_ p: UnsafePointer<Float>, _ count: Int, fill: Float = 0) -> SIMD8<Float> {
        var v = SIMD8<Float>(repeating: fill)
        for j in 0..<count { v[j] = p[j] }
        return v
    }

    /// Stores the first `count < 8` lanes.
    @inline(__always) @usableFromInline
    static func storePartial(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>, _ count: Int) {
        for j in 0..<count { p[j] = v[j] }
    }

    /// `Σ a[i]·b[i]` over `n` elements.
    @inline(__always) @usableFromInline
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = SIMD8<Float>(repeating: 0)
        var i = 0
        while i + 8 <= n {
            acc += load8(a + i) * load8(b + i)
            i += 8
        }
        var sum = acc.sum()
        while i < n {
            sum += a[i] * b[i]
            i += 1
        }
        return sum
    }

    /// `Σ a[i]²` over `n` elements.
    @inline(__always) @usableFromInline
    static func sumOfSquares(_ a: UnsafePointer<Float>, _ n: Int) -> Float {
        dot(a, a, n)
    }

    /// `Σ a[i]·b[i]·c[i]` over `n` elements.
    @inline(__always) @usableFromInline
    static func dot3(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = SIMD8<Float>(repeating: 0)
        var i = 0
        while i + 8 <= n {
            acc += load8(a + i) * load8(b + i) * load8(c + i)
            i += 8
        }
        var sum = acc.sum()
        while i < n {
            sum += a[i] * b[i] * c[i]
            i += 1
        }
        return sum
    }

    /// Maximum of `n ≥ 1` elements.
    @inline(__always) @usableFromInline
    static func max(_ a: UnsafePointer<Float>, _ n: Int) -> Float {
        var i = 0
        var m = -Float.infinity
        if n >= 8 {
            var acc = load8(a)
            i = 8
            while i + 8 <= n {
                acc = lanesMax(acc, load8(a + i))
                i += 8
            }
            m = acc.max()
        }
        while i < n {
            m = Swift.max(m, a[i])
            i += 1
        }
        return m
    }

    /// `e^x` lane-wise, Cephes `expf` style: `x = n·ln2 + r` with |r| ≤ ln2/2, a degree-6
    /// polynomial for `e^r` (≤ 2 ulp over the clamped range), and `2^n` built in the exponent
    /// bits. Inputs are clamped to [−87, 88] (so results ≥ 1.6e-38 instead of denormals / 0,
    /// harmless for softmax sums and sigmoids); NaN inputs are not supported.
    @inline(__always) @usableFromInline
    static func exp(_ v: SIMD8<Float>) -> SIMD8<Float> {
        let x = lanesMin(lanesMax(v, SIMD8(repeating: -87)), SIMD8(repeating: 88))
        // Round x·log2(e) to the nearest integer by adding 1.5·2^23: the sum's low mantissa bits
        // then hold the integer (generic `rounded` and Int conversions are not vectorised).
        let magic = SIMD8<Float>(repeating: 12_582_912)
        let shifted = x * 1.442_695_040_888_963_4 + magic
        let n = shifted - magic
        let nInt = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- unsafeBitCast(magic, to: SIMD8<Int32>.self)
        let r = x - n * 0.693_359_375 + n * 2.121_944_400_546_905_8e-4
        var p = SIMD8<Float>(repeating: 1.987_569_150_0e-4)
        p = p * r + 1.398_199_950_7e-3
        p = p * r + 8.333_451_907_3e-3
        p = p * r + 4.166_579_589_4e-2
        p = p * r + 1.666_666_545_9e-1
        p = p * r + 5.000_000_120_1e-1
        p = p * r * r + r + 1
        let bits = (nInt &+ 127) &<< 23
        return p * unsafeBitCast(bits, to: SIMD8<Float>.self)
    }

    /// `p[i] = e^(p[i] − shift)` in place over `n` elements; returns `Σ` of the results.
    @inline(__always) @usableFromInline
    static func expShiftedInPlace(_ p: UnsafeMutablePointer<Float>, _ n: Int, shift: Float) -> Float {
        var acc = SIMD8<Float>(repeating: 0)
        var i = 0
        while i + 8 <= n {
            let e = exp(load8(p + i) - shift)
            store8(e, p + i)
            acc += e
            i += 8
        }
        if i < n {
            // Tail through the same polynomial so every element is computed identically.
            var tail = SIMD8<Float>(repeating: -.infinity)
            for j in i..<n { tail[j - i] = p[j] - shift }
            let e = exp(tail)
            for j in i..<n {
                p[j] = e[j - i]
                acc[j - i] += e[j - i]
            }
        }
        return acc.sum()
    }

    /// `y[i] += x[i]` over `n` elements.
    @inline(__always) @usableFromInline
    static func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n { y[i] += x[i] }
    }
}
