import Foundation

/// Row-wise causal softmax of attention scores, forward and backward.
///
/// Row `i` of a `[rows, cols]` score block attends to columns `0 ... i + offset` (offset 0 for
/// a full causal square; the number of cached positions when queries follow a KV cache).
/// Masked entries of the output are set to exactly 0, so products with them vanish.
public enum CausalSoftmaxKernel {
    /// In place: `p[i, j] = exp(s[i, j] − max_i) / Σ` for `j ≤ i + offset`, else 0.
    /// `ld` is the row stride.
    public static func forward(_ s: UnsafeMutablePointer<Float>, rows: Int, cols: Int, ld: Int, offset: Int = 0) {
        for i in 0..<rows {
            let row = s + i * ld
            let valid = min(cols, i + offset + 1)
            let m = VectorMath.max(row, valid)
            let inv = 1 / VectorMath.expShiftedInPlace(row, valid, shift: m)
            for j in 0..<valid { row[j] *= inv }
            for j in valid..<cols { row[j] = 0 }
        }
    }

    /// In place: turns `dp` = ∂L/∂P into ∂L/∂S, `ds[i, j] = p[i, j]·(dp[i, j] − Σ_k p[i, k]·dp[i, k])`;
    /// masked entries become 0.
    public static func backward(p: UnsafePointer<Float>, dp: UnsafeMutablePointer<Float>, rows: Int, cols: Int, ld: Int, offset: Int = 0) {
        for i in 0..<rows {
            let pr = p + i * ld
            let dr = dp + i * ld
            let valid = min(cols, i + offset + 1)
            let c = VectorMath.dot(pr, dr, valid)
            for j in 0..<valid { dr[j] = pr[j] * (dr[j] - c) }
            for j in valid..<cols { dr[j] = 0 }
        }
    }

    /// Naive reference forward (Double) for tests; `[rows, cols]` dense.
    public static func referenceForward(_ s: [Float], rows: Int, cols: Int, offset: Int = 0) -> [Float] {
        var out = [Float](repeating: 0, count: rows * cols)
        for i in 0..<rows {
            let valid = min(cols, i + offset + 1)
            let m = (0..<valid).map { Double(s[i * cols + $0]) }.max() ?? 0
            let z = (0..<valid).reduce(0.0) { $0 + Foundation.exp(Double(s[i * cols + $1]) - m) }
            for j in 0..<valid { out[i * cols + j] = Float(Foundation.exp(Double(s[i * cols + j]) - m) / z) }
        }
        return out
    }

    /// Naive reference backward: the full softmax Jacobian `∂p_j/∂s_k = p_j(δ_jk − p_k)`.
    public static func referenceBackward(p: [Float], dp: [Float], rows: Int, cols: Int) -> [Float] {
        var ds = [Float](repeating: 0, count: rows * cols)
        for i in 0..<rows {
            for k in 0..<cols {
                var g = 0.0
                for j in 0..<cols {
                    let jac = Double(p[i * cols + j]) * ((j == k ? 1 : 0) - Double(p[i * cols + k]))
                    g += Double(dp[i * cols + j]) * jac
                }
                ds[i * cols + k] = Float(g)
            }
        }
        return ds
    }
}
