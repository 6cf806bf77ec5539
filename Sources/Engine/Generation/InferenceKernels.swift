import Foundation

/// Row kernels of the inference path. Every reduction has a fixed order that depends only on the
/// vector length (never on the batch), which is what keeps generation batch-invariant.
///
/// Products and sums are separate operations (no `addProduct`): Swift compiles for baseline
/// x86-64 here, where a vector fused multiply-add becomes a libm call per lane.
enum InferenceKernels {
    typealias Vector = SIMD8<Float>

    @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> Vector {
        UnsafeRawPointer(p).loadUnaligned(as: Vector.self)
    }

    @inline(__always)
    static func store(_ v: Vector, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: Vector.self)
    }

    /// `Σ a[i]·b[i]` with two SIMD accumulators, then a scalar tail.
    @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc0 = Vector(), acc1 = Vector()
        var i = 0
        while i + 16 <= n {
            acc0 += load(a + i) * load(b + i)
            acc1 += load(a + i + 8) * load(b + i + 8)
            i += 16
        }
        if i + 8 <= n {
            acc0 += load(a + i) * load(b + i)
            i += 8
        }
        var sum = (acc0 + acc1).sum()
        while i < n {
            sum += a[i] * b[i]
            i += 1
        }
        return sum
    }

    /// `y[i] += alpha · x[i]`.
    @inline(__always)
    static func axpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        let a = Vector(repeating: alpha)
        var i = 0
        while i + 8 <= n {
            store(load(y + i) + a * load(x + i), y + i)
            i += 8
        }
        while i < n {
            y[i] += alpha * x[i]
            i += 1
        }
    }

    /// HF RMSNorm of one row: `out = (x · 1/sqrt(mean(x²) + eps)) · weight`.
    @inline(__always)
    static func rmsNorm(_ x: UnsafePointer<Float>, _ weight: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                        _ n: Int, eps: Float) {
        let meanSquare = dot(x, x, n) / Float(n)
        let scale = 1 / (meanSquare + eps).squareRoot()
        let s = Vector(repeating: scale)
        var i = 0
        while i + 8 <= n {
            store(load(x + i) * s * load(weight + i), out + i)
            i += 8
        }
        while i < n {
            out[i] = x[i] * scale * weight[i]
            i += 1
        }
    }

    /// Rotate-half RoPE of one head vector in place; `cosines`/`sines` hold `headDim/2` entries.
    @inline(__always)
    static func rope(_ v: UnsafeMutablePointer<Float>, _ cosines: UnsafePointer<Float>, _ sines: UnsafePointer<Float>,
                     half: Int) {
        for i in 0..<half {
            let x1 = v[i], x2 = v[i + half]
            v[i] = x1 * cosines[i] - x2 * sines[i]
            v[i + half] = x2 * cosines[i] + x1 * sines[i]
        }
    }

    /// `gate[i] = silu(gate[i]) · up[i]`.
    @inline(__always)
    static func swiglu(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, _ n: Int) {
        for i in 0..<n {
            let g = gate[i]
            gate[i] = g / (1 + Foundation.exp(-g)) * up[i]
        }
    }
}
