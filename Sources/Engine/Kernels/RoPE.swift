import Foundation

/// Rotary position embedding tables in Hugging Face's `rotate_half` layout.
///
/// For a head vector `x` of `headDim` elements and `half = headDim/2`, element `i < half` is
/// paired with `i + half` and both are rotated by the angle `pos · invFreq[i]`, where
/// `invFreq[i] = theta^(−2i/headDim)`. The angle and its cosine/sine are computed the way
/// `transformers` does in float32 (`invFreq` as float32, `pos · invFreq` rounded to float32,
/// then cos/sin), so positions far from 0 match the reference bit-closely.
public struct RoPETable: Sendable {
    public let headDim: Int
    public let theta: Double
    /// Number of positions covered (0 ..< positions).
    public let positions: Int
    /// `cos[pos · half + i]`, `sin[pos · half + i]` for `i < half`.
    public let cos: [Float]
    public let sin: [Float]

    public init(headDim: Int, theta: Double, positions: Int) {
        precondition(headDim % 2 == 0, "RoPE needs an even head dimension")
        self.headDim = headDim
        self.theta = theta
        self.positions = positions
        let half = headDim / 2
        let invFreq: [Float] = (0..<half).map { i in
            1 / Float(Foundation.pow(theta, Double(2 * i) / Double(headDim)))
        }
        var c = [Float](repeating: 0, count: positions * half)
        var s = [Float](repeating: 0, count: positions * half)
        for p in 0..<positions {
            for i in 0..<half {
                let angle = Double(Float(p) * invFreq[i])
                c[p * half + i] = Float(Foundation.cos(angle))
                s[p * half + i] = Float(Foundation.sin(angle))
            }
        }
        self.cos = c
        self.sin = s
    }
}

/// Applies / back-propagates RoPE in place on `[rows, heads, headDim]` tensors.
public enum RoPEKernel {
    /// Forward, in place: for each row r (a token at `positions[r]`) and head,
    /// `y[i] = x[i]·cos − x[i+half]·sin`, `y[i+half] = x[i+half]·cos + x[i]·sin`.
    /// `rowStride` is the distance between rows (≥ heads·headDim).
    public static func forward(
        _ x: UnsafeMutablePointer<Float>, rows: Int, heads: Int, headDim: Int, rowStride: Int,
        positions: UnsafePointer<Int32>, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>
    ) {
        rotate(x, rows: rows, heads: heads, headDim: headDim, rowStride: rowStride, positions: positions,
               cos: cos, sin: sin, sinSign: 1)
    }

    /// Backward, in place: the rotation's transpose (rotation by −angle),
    /// `dx[i] = dy[i]·cos + dy[i+half]·sin`, `dx[i+half] = dy[i+half]·cos − dy[i]·sin`.
    public static func backward(
        _ dy: UnsafeMutablePointer<Float>, rows: Int, heads: Int, headDim: Int, rowStride: Int,
        positions: UnsafePointer<Int32>, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>
    ) {
        rotate(dy, rows: rows, heads: heads, headDim: headDim, rowStride: rowStride, positions: positions,
               cos: cos, sin: sin, sinSign: -1)
    }

    /// Rotation by +angle (`sinSign` 1) or −angle (`sinSign` −1). Negating sin is exact, so
    /// the backward pass is bit-identical to writing its formula out.
    @inline(__always)
    private static func rotate(
        _ x: UnsafeMutablePointer<Float>, rows: Int, heads: Int, headDim: Int, rowStride: Int,
        positions: UnsafePointer<Int32>, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>, sinSign: Float
    ) {
        let half = headDim / 2
        for r in 0..<rows {
            let c = cos + Int(positions[r]) * half
            let s = sin + Int(positions[r]) * half
            for h in 0..<heads {
                let a = x + r * rowStride + h * headDim
                let b = a + half
                for i in 0..<half {
                    let x1 = a[i], x2 = b[i], si = sinSign * s[i]
                    a[i] = x1 * c[i] - x2 * si
                    b[i] = x2 * c[i] + x1 * si
                }
            }
        }
    }

    /// Naive reference: Hugging Face's `x·cos + rotate_half(x)·sin` with `cos`, `sin` the
    /// duplicated `[cos(θ), cos(θ)]` vectors, angles in Double. `x`: [rows, heads·headDim].
    public static func referenceForward(x: [Float], rows: Int, heads: Int, headDim: Int, positions: [Int], theta: Double) -> [Float] {
        var y = x
        let half = headDim / 2
        for r in 0..<rows {
            for h in 0..<heads {
                let base = r * heads * headDim + h * headDim
                let v = Array(x[base..<(base + headDim)])
                let rotated = (0..<headDim).map { i in i < half ? -v[i + half] : v[i - half] }
                for i in 0..<headDim {
                    let freq = 1 / Foundation.pow(theta, Double(2 * (i % half)) / Double(headDim))
                    let angle = Double(positions[r]) * freq
                    y[base + i] = Float(Double(v[i]) * Foundation.cos(angle) + Double(rotated[i]) * Foundation.sin(angle))
                }
            }
        }
        return y
    }

    /// Naive reference backward: `dx = Rᵀ dy` with the rotation matrix R built explicitly.
    public static func referenceBackward(dy: [Float], rows: Int, heads: Int, headDim: Int, positions: [Int], theta: Double) -> [Float] {
        var dx = dy
        let half = headDim / 2
        for r in 0..<rows {
            for h in 0..<heads {
                let base = r * heads * headDim + h * headDim
                // R[j][i] = ∂y_j/∂x_i.
                var rot = [[Double]](repeating: [Double](repeating: 0, count: headDim), count: headDim)
                for i in 0..<half {
                    let angle = Double(positions[r]) / Foundation.pow(theta, Double(2 * i) / Double(headDim))
                    rot[i][i] = Foundation.cos(angle); rot[i][i + half] = -Foundation.sin(angle)
                    rot[i + half][i + half] = Foundation.cos(angle); rot[i + half][i] = Foundation.sin(angle)
                }
                for i in 0..<headDim {
                    var g = 0.0
                    for j in 0..<headDim { g += rot[j][i] * Double(dy[base + j]) }
                    dx[base + i] = Float(g)
                }
            }
        }
        return dx
    }
}
