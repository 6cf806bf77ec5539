@testable import Engine
import Foundation
import Testing

/// Each fast kernel against its naive reference on odd sizes (not multiples of the SIMD width).
@Suite struct KernelTests {
    static func maxRelError(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count)
        let scale = max(b.map { abs($0) }.max() ?? 0, 1e-6)
        return zip(a, b).map { abs($0 - $1) }.max().map { $0 / scale } ?? 0
    }

    @Test(arguments: [(1, 1), (3, 4), (5, 13), (2, 64), (7, 37)])
    func rmsNormForwardAndBackwardMatchReference(shape: (Int, Int)) {
        let (rows, dim) = shape
        let x = TrainingTestData.floats(rows * dim, seed: 1, scale: 2)
        let w = TrainingTestData.floats(dim, seed: 2)
        let dy = TrainingTestData.floats(rows * dim, seed: 3)
        let eps: Float = 1e-5
        var out = [Float](repeating: 0, count: rows * dim), rstd = [Float](repeating: 0, count: rows)
        RMSNormKernel.forward(x: x, weight: w, out: &out, rstd: &rstd, rows: rows, dim: dim, eps: eps)
        let ref = RMSNormKernel.referenceForward(x: x, weight: w, rows: rows, dim: dim, eps: eps)
        #expect(Self.maxRelError(out, ref.out) < 1e-5)
        #expect(Self.maxRelError(rstd, ref.rstd) < 1e-5)

        // Backward accumulates into dx and dWeight: start both from known non-zero values.
        let dx0 = TrainingTestData.floats(rows * dim, seed: 4), dw0 = TrainingTestData.floats(dim, seed: 5)
        var dx = dx0, dw = dw0
        RMSNormKernel.backward(dOut: dy, x: x, weight: w, rstd: rstd, dx: &dx, dWeight: &dw, rows: rows, dim: dim, accumulate: true)
        let refB = RMSNormKernel.referenceBackward(dOut: dy, x: x, weight: w, rows: rows, dim: dim, eps: eps)
        #expect(Self.maxRelError(zip(dx, dx0).map { $0 - $1 }, refB.dx) < 1e-4)
        #expect(Self.maxRelError(zip(dw, dw0).map { $0 - $1 }, refB.dWeight) < 1e-4)
        var dxOverwrite = dx0
        var dwScratch = [Float](repeating: 0, count: dim)
        RMSNormKernel.backward(dOut: dy, x: x, weight: w, rstd: rstd, dx: &dxOverwrite, dWeight: &dwScratch, rows: rows, dim: dim, accumulate: false)
        #expect(Self.maxRelError(dxOverwrite, refB.dx) < 1e-4)
    }

    @Test(arguments: [2, 4, 10, 64])
    func ropeMatchesHuggingFaceRotateHalfAndInvertsExactly(headDim: Int) {
        let rows = 6, heads = 3, theta = 10000.0
        let positions = [0, 1, 2, 5, 9, 15]
        let table = RoPETable(headDim: headDim, theta: theta, positions: 16)
        let x = TrainingTestData.floats(rows * heads * headDim, seed: 11)
        var y = x
        let pos32 = positions.map { Int32($0) }
        RoPEKernel.forward(&y, rows: rows, heads: heads, headDim: headDim, rowStride: heads * headDim,
                           positions: pos32, cos: table.cos, sin: table.sin)
        let ref = RoPEKernel.referenceForward(x: x, rows: rows, heads: heads, headDim: headDim, positions: positions, theta: theta)
        #expect(Self.maxRelError(y, ref) < 1e-5)
        // Position 0 is the identity.
        #expect(Array(y[0..<(heads * headDim)]) == Array(x[0..<(heads * headDim)]))

        let dy = TrainingTestData.floats(rows * heads * headDim, seed: 12)
        var dx = dy
        RoPEKernel.backward(&dx, rows: rows, heads: heads, headDim: headDim, rowStride: heads * headDim,
                            positions: pos32, cos: table.cos, sin: table.sin)
        let refB = RoPEKernel.referenceBackward(dy: dy, rows: rows, heads: heads, headDim: headDim, positions: positions, theta: theta)
        #expect(Self.maxRelError(dx, refB) < 1e-5)
        // Backward of a rotation is its inverse.
        var roundTrip = y
        RoPEKernel.backward(&roundTrip, rows: rows, heads: heads, headDim: headDim, rowStride: heads * headDim,
                            positions: pos32, cos: table.cos, sin: table.sin)
        #expect(Self.maxRelError(roundTrip, x) < 1e-5)
    }

    @Test func ropeRotatesPairsIAndIPlusHalf() {
        // headDim 4: pairs (0,2) and (1,3); at position 1 with theta 100 the angles are 1 and 0.1.
        let table = RoPETable(headDim: 4, theta: 100, positions: 2)
        var x: [Float] = [1, 0, 0, 0]
        RoPEKernel.forward(&x, rows: 1, heads: 1, headDim: 4, rowStride: 4, positions: [1], cos: table.cos, sin: table.sin)
        #expect(abs(x[0] - Float(cos(1.0))) < 1e-6)
        #expect(abs(x[2] - Float(sin(1.0))) < 1e-6)
        #expect(x[1] == 0 && x[3] == 0)
        var y: [Float] = [0, 1, 0, 0]
        RoPEKernel.forward(&y, rows: 1, heads: 1, headDim: 4, rowStride: 4, positions: [1], cos: table.cos, sin: table.sin)
        #expect(abs(y[1] - Float(cos(0.1))) < 1e-6)
        #expect(abs(y[3] - Float(sin(0.1))) < 1e-6)
    }

    @Test(arguments: [1, 3, 9, 17])
    func causalSoftmaxMatchesReference(size: Int) {
        let s = TrainingTestData.floats(size * size, seed: UInt64(size), scale: 5)
        var p = s
        CausalSoftmaxKernel.forward(&p, rows: size, cols: size, ld: size)
        let ref = CausalSoftmaxKernel.referenceForward(s, rows: size, cols: size)
        #expect(Self.maxRelError(p, ref) < 1e-5)
        for i in 0..<size {
            for j in (i + 1)..<max(i + 1, size) { #expect(p[i * size + j] == 0) }
            #expect(abs(p[(i * size)..<(i * size + size)].reduce(0, +) - 1) < 1e-5)
        }
        let dp = TrainingTestData.floats(size * size, seed: 99)
        var ds = dp
        CausalSoftmaxKernel.backward(p: p, dp: &ds, rows: size, cols: size, ld: size)
        let refB = CausalSoftmaxKernel.referenceBackward(p: ref, dp: dp, rows: size, cols: size)
        #expect(Self.maxRelError(ds, refB) < 1e-5)
    }

    @Test func causalSoftmaxWithOffsetSeesCachedColumns() {
        // 2 query rows after 3 cached positions: row 0 sees 4 columns, row 1 all 5.
        let s = TrainingTestData.floats(10, seed: 5)
        var p = s
        CausalSoftmaxKernel.forward(&p, rows: 2, cols: 5, ld: 5, offset: 3)
        #expect(p[4] == 0)
        #expect(p[9] != 0)
        #expect(Self.maxRelError(p, CausalSoftmaxKernel.referenceForward(s, rows: 2, cols: 5, offset: 3)) < 1e-5)
    }

    @Test func swigluMatchesReference() {
        let n = 29
        let g = TrainingTestData.floats(n, seed: 1, scale: 6), u = TrainingTestData.floats(n, seed: 2, scale: 3)
        var act = [Float](repeating: 0, count: n)
        SwiGLUKernel.forward(gate: g, up: u, act: &act, count: n)
        #expect(Self.maxRelError(act, SwiGLUKernel.referenceForward(gate: g, up: u)) < 1e-6)
        // silu(0) = 0, silu(x) → x for large x.
        var probe = [Float](repeating: 0, count: 2)
        SwiGLUKernel.forward(gate: [0, 30], up: [1, 1], act: &probe, count: 2)
        #expect(probe == [0, 30])

        let d = TrainingTestData.floats(n, seed: 3)
        var dGate = d, dUp = [Float](repeating: 0, count: n)
        SwiGLUKernel.backward(dAct: dGate, gate: g, up: u, dGate: &dGate, dUp: &dUp, count: n)  // in place on dGate
        let ref = SwiGLUKernel.referenceBackward(dAct: d, gate: g, up: u)
        #expect(Self.maxRelError(dGate, ref.dGate) < 1e-5)
        #expect(Self.maxRelError(dUp, ref.dUp) < 1e-5)
    }

    @Test(arguments: [Float(1), 0.6, 2.5])
    func logProbsEntropyAndBackwardMatchReference(temperature: Float) {
        let rows = 5, vocab = 37
        let logits = TrainingTestData.floats(rows * vocab, seed: 8, scale: 4)
        let targets: [Int32] = [3, -1, 36, 0, 17]
        let g: [Float] = [0.5, 2, -1.5, 1, 0]
        var lp = [Float](repeating: 0, count: rows), ent = lp, lse = lp
        LogProbKernel.forward(logits: logits, targets: targets, rows: rows, vocab: vocab, temperature: temperature,
                              logprobs: &lp, entropy: &ent, lse: &lse)
        var dLogits = [Float](repeating: 9, count: rows * vocab)
        LogProbKernel.backward(logits: logits, targets: targets, lse: lse, dLogprobs: g, rows: rows, vocab: vocab,
                               temperature: temperature, dLogits: &dLogits)
        for r in 0..<rows {
            let row = Array(logits[(r * vocab)..<((r + 1) * vocab)])
            let ref = LogProbKernel.reference(logits: row, target: Int(targets[r]), temperature: temperature)
            #expect(abs(lp[r] - ref.logprob) < 1e-5)
            #expect(abs(ent[r] - ref.entropy) < 1e-5)
            let refB = LogProbKernel.referenceBackward(logits: row, target: Int(targets[r]), temperature: temperature, dLogprob: g[r])
            let got = Array(dLogits[(r * vocab)..<((r + 1) * vocab)])
            for j in 0..<vocab { #expect(abs(got[j] - refB[j]) < 1e-6, "row \(r) col \(j)") }
        }
        #expect(lp[1] == 0)
        // Uniform logits: entropy log V, log-prob −log V.
        var u1: [Float] = [0], u2: [Float] = [0], u3: [Float] = [0]
        LogProbKernel.forward(logits: [Float](repeating: 3, count: 8), targets: [2], rows: 1, vocab: 8, temperature: temperature,
                              logprobs: &u1, entropy: &u2, lse: &u3)
        #expect(abs(u1[0] + log(8)) < 1e-6)
        #expect(abs(u2[0] - log(8)) < 1e-6)
    }
}

@Suite struct VectorExpTests {
    @Test func vectorExpIsWithinTwoUlpOfLibm() {
        var worst: Float = 0
        var x: Float = -87
        while x < 88 {
            let lanes = SIMD8<Float>((0..<8).map { x + Float($0) * 0.001 })
            let got = VectorMath.exp(lanes)
            for j in 0..<8 {
                let ref = Float(Foundation.exp(Double(lanes[j])))
                worst = max(worst, abs(got[j] - ref) / ref.ulp)
            }
            x += 0.0137
        }
        #expect(worst <= 2, "worst error \(worst) ulp")
        #expect(VectorMath.exp(SIMD8(repeating: 0)) == SIMD8(repeating: 1))
        // Below the clamp: tiny but positive, never NaN.
        let low = VectorMath.exp(SIMD8(repeating: -1000))
        #expect(low[0] > 0 && low[0] < 1e-37)
    }

    @Test func shiftedExpSumsTheWrittenValues() {
        for n in [1, 7, 8, 13, 64] {
            var v = TrainingTestData.floats(n, seed: UInt64(n), scale: 3)
            let ref = v.map { Foundation.exp(Double($0) - 1) }
            let sum = v.withUnsafeMutableBufferPointer { VectorMath.expShiftedInPlace($0.baseAddress!, n, shift: 1) }
            #expect(abs(Double(sum) - ref.reduce(0, +)) < 1e-5 * ref.reduce(0, +))
            #expect(abs(Double(sum) - v.reduce(0.0) { $0 + Double($1) }) < 1e-5 * Double(sum))
            for i in 0..<n { #expect(abs(Double(v[i]) - ref[i]) < 1e-6 * ref[i]) }
        }
    }
}
