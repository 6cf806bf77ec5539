import Foundation

/// The SwiGLU gate of the feed-forward block: `act = silu(gate) · up`, `silu(g) = g·σ(g)`.
public enum SwiGLUKernel {
    /// `act[i] = silu(gate[i]) · up[i]` over `count` elements.
    public static func forward(gate: UnsafePointer<Float>, up: UnsafePointer<Float>, act: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count {
            let g = gate[i]
            act[i] = g / (1 + Foundation.exp(-g)) * up[i]
        }
    }

    /// Given `dAct` = ∂L/∂act, writes `dGate = dAct·up·σ(g)(1 + g(1−σ(g)))` and
    /// `dUp = dAct·silu(g)`. `dGate` may alias `dAct` (each element is read before written).
    public static func backward(
        dAct: UnsafePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>,
        dGate: UnsafeMutablePointer<Float>, dUp: UnsafeMutablePointer<Float>, count: Int
    ) {
        for i in 0..<count {
            let g = gate[i]
            let d = dAct[i]
            let sig = 1 / (1 + Foundation.exp(-g))
            dUp[i] = d * g * sig
            dGate[i] = d * up[i] * sig * (1 + g * (1 - sig))
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
