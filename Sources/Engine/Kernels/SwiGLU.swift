import Foundation

/// The SwiGLU gate of the feed-forward block: `act = silu(gate) · up`, `silu(g) = g·σ(g)`.
public enum SwiGLUKernel {
    /// `act[i] = silu(gate[i]) · up[i]` over `count` elements.
    public static func forward(gate: UnsafePointer<Float>, up: UnsafePointer<Float>, act: UnsafeMutablePointer<Float>, count: Int) {
        @inline(__always) func lanes(_ g: SIMD8<Float>, _ u: SIMD8<Float>) -> SIMD8<Float> {
            g / (1 + VectorMath.exp(-g)) * u
        }
        var i = 0
        while i + 8 <= count {
            VectorMath.store8(lanes(VectorMath.load8(gate + i), VectorMath.load8(up + i)), act + i)
            i += 8
        }
        if i < count {
            let rest = count - i
            VectorMath.storePartial(lanes(VectorMath.loadPartial(gate + i, rest), VectorMath.loadPartial(up + i, rest)), act + i, rest)
        }
    }

    /// Given `dAct` = ∂L/∂act, writes `dGate = dAct·up·σ(g)(1 + g(1−σ(g)))` and
    /// `dUp = dAct·silu(g)`. `dGate` may alias `dAct` (each element is read before written).
    public static func backward(
        dAct: UnsafePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>,
        dGate: UnsafeMutablePointer<Float>, dUp: UnsafeMutablePointer<Float>, count: Int
    ) {
        @inline(__always) func lanes(_ d: SIMD8<Float>, _ g: SIMD8<Float>, _ u: SIMD8<Float>) -> (SIMD8<Float>, SIMD8<Float>) {
            let sig = 1 / (1 + VectorMath.exp(-g))
            return (d * u * sig * (1 + g * (1 - sig)), d * g * sig)
        }
        var i = 0
        while i + 8 <= count {
            let (dg, du) = lanes(VectorMath.load8(dAct + i), VectorMath.load8(gate + i), VectorMath.load8(up + i))
            VectorMath.store8(du, dUp + i)
            VectorMath.store8(dg, dGate + i)
            i += 8
        }
        if i < count {
            let rest = count - i
            let (dg, du) = lanes(VectorMath.loadPartial(dAct + i, rest), VectorMath.loadPartial(gate + i, rest), VectorMath.loadPartial(up + i, rest))
            VectorMath.storePartial(du, dUp + i, rest)
            VectorMath.storePartial(dg, dGate + i, rest)
        }
    }

    /// Naive reference forward (Double) for tests.
    public static func referenceForward(gate: [Float], up: [Float]) -> [Float] {
        zip(gate, up).map { g, u in
            let gd = Double(g)
            return Float(gd / (1 + Foundation.exp(-gd)) * Double(u))
        }
    }

    /// Naive reference backward for tests: derivative of `g·σ(g)` written as `σ + g·σ'`.
    public static func referenceBackward(dAct: [Float], gate: [Float], up: [Float]) -> (dGate: [Float], dUp: [Float]) {
        var dGate = [Float](), dUp = [Float]()
        for i in gate.indices {
            let g = Double(gate[i])
            let sig = 1 / (1 + Foundation.exp(-g))
            let dsig = sig * (1 - sig)
            dGate.append(Float(Double(dAct[i]) * Double(up[i]) * (sig + g * dsig)))
            dUp.append(Float(Double(dAct[i]) * g * sig))
        }
        return (dGate, dUp)
    }
}
