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
                acc = pointwiseMax(acc, load8(a + i))
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

    /// `y[i] += x[i]` over `n` elements.
    @inline(__always) @usableFromInline
    static func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n { y[i] += x[i] }
    }
}
