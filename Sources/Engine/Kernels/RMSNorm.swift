import Foundation

/// RMSNorm over the last dimension, in float32 as Hugging Face computes it:
/// `y = x · rstd · w` with `rstd = 1 / sqrt(mean(x²) + eps)`.
///
/// Used for the block norms (rows = tokens, dim = hidden) and for Qwen3's QK-norm
/// (rows = tokens · heads, dim = headDim). Forward and backward are side by side; the
/// `reference*` functions are naive Double-precision versions for tests.
public enum RMSNormKernel {
    /// Forward. `x`, `out`: [rows, dim]; `weight`: [dim]; `rstd`: [rows] (saved for backward).
    /// `out` may alias `x`.
    public static func forward(
        x: UnsafePointer<Float>, weight: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
        rstd: UnsafeMutablePointer<Float>, rows: Int, dim: Int, eps: Float
    ) {
        let invDim = 1 / Float(dim)
        for r in 0..<rows {
            let xr = x + r * dim
            let yr = out + r * dim
            let s = 1 / (VectorMath.sumOfSquares(xr, dim) * invDim + eps).squareRoot()
            rstd[r] = s
            for i in 0..<dim { yr[i] = xr[i] * s * weight[i] }
        }
    }

    /// Backward. Given `dOut` = ∂L/∂y [rows, dim], adds ∂L/∂x to `dx` (when `accumulate`, else
    /// overwrites it) and adds ∂L/∂w to `dWeight` [dim]:
    ///
    ///     ∂L/∂x_i = rstd·w_i·dy_i − x_i · rstd³/dim · Σ_j dy_j w_j x_j
    ///     ∂L/∂w_i += Σ_rows dy_i · x_i · rstd
    ///
    /// `dx` may alias `dOut` only when `accumulate` is false.
    public static func backward(
        dOut: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        rstd: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>,
        rows: Int, dim: Int, accumulate: Bool
    ) {
        let invDim = 1 / Float(dim)
        for r in 0..<rows {
            let xr = x + r * dim
            let dyr = dOut + r * dim
            let dxr = dx + r * dim
            let s = rstd[r]
            let c = VectorMath.dot3(dyr, weight, xr, dim) * s * s * s * invDim
            for i in 0..<dim { dWeight[i] += dyr[i] * xr[i] * s }
            if accumulate {
                for i in 0..<dim { dxr[i] += s * weight[i] * dyr[i] - xr[i] * c }
            } else {
                for i in 0..<dim { dxr[i] = s * weight[i] * dyr[i] - xr[i] * c }
            }
        }
    }

    /// Naive reference forward (Double accumulation) for tests. Returns `(out, rstd)`.
    public static func referenceForward(x: [Float], weight: [Float], rows: Int, dim: Int, eps: Float) -> (out: [Float], rstd: [Float]) {
        var out = [Float](repeating: 0, count: rows * dim)
        var rstd = [Float](repeating: 0, count: rows)
        for r in 0..<rows {
            var ss = 0.0
            for i in 0..<dim { ss += Double(x[r * dim + i]) * Double(x[r * dim + i]) }
            let s = 1 / (ss / Double(dim) + Double(eps)).squareRoot()
            rstd[r] = Float(s)
            for i in 0..<dim { out[r * dim + i] = Float(Double(x[r * dim + i]) * s * Double(weight[i])) }
        }
        return (out, rstd)
    }

    /// Naive reference backward for tests: differentiates the forward formula directly,
    /// `∂y_j/∂x_i = w_j·(δ_ij·s − x_j x_i s³/dim)`. Returns `(dx, dWeight)`.
    public static func referenceBackward(dOut: [Float], x: [Float], weight: [Float], rows: Int, dim: Int, eps: Float) -> (dx: [Float], dWeight: [Float]) {
        var dx = [Float](repeating: 0, count: rows * dim)
        var dw = [Double](repeating: 0, count: dim)
        for r in 0..<rows {
            var ss = 0.0
            for i in 0..<dim { ss += Double(x[r * dim + i]) * Double(x[r * dim + i]) }
            let s = 1 / (ss / Double(dim) + Double(eps)).squareRoot()
            for i in 0..<dim {
                var g = 0.0
                for j in 0..<dim {
                    let jac = Double(weight[j]) * ((i == j ? s : 0) - Double(x[r * dim + j]) * Double(x[r * dim + i]) * s * s * s / Double(dim))
                    g += Double(dOut[r * dim + j]) * jac
                }
                dx[r * dim + i] = Float(g)
                dw[i] += Double(dOut[r * dim + i]) * Double(x[r * dim + i]) * s
            }
        }
        return (dx, dw.map { Float($0) })
    }
}
