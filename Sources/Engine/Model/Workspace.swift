/// A growable float scratch buffer: raw memory, no bounds checks or copy-on-write in hot
/// loops. Grows (without preserving contents) when a larger size is requested; never shrinks.
final class ScratchBuffer {
    private(set) var pointer: UnsafeMutablePointer<Float>
    private(set) var capacity: Int

    init() {
        pointer = .allocate(capacity: 1)
        capacity = 0
    }

    /// A pointer to at least `count` floats (contents undefined after growth).
    @discardableResult
    func reserve(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > capacity {
            pointer.deallocate()
            // Headroom so slowly growing batches do not reallocate every call.
            let newCapacity = max(count, capacity + capacity / 4)
            pointer = .allocate(capacity: newCapacity)
            capacity = newCapacity
        }
        return pointer
    }

    /// `reserve(count)` and zero the first `count` floats.
    @discardableResult
    func zeroed(_ count: Int) -> UnsafeMutablePointer<Float> {
        let p = reserve(count)
        p.update(repeating: 0, count: count)
        return p
    }

    deinit { pointer.deallocate() }
}

/// Activations of one transformer block saved by the forward pass for the backward pass.
/// Shapes in comments: N = tokens in the batch (all rows packed), H = hidden, Q = heads·headDim,
/// K = kvHeads·headDim, F = ffn, P = Σ_b heads·attentionScoreEntries(len_b).
final class BlockActivations {
    let xn1 = ScratchBuffer()     // [N, H]  input_layernorm(x)
    let rstd1 = ScratchBuffer()   // [N]
    let qPre = ScratchBuffer()    // [N, Q]  q_proj output before QK-norm (QK-norm models only)
    let kPre = ScratchBuffer()    // [N, K]
    let qRstd = ScratchBuffer()   // [N·heads]
    let kRstd = ScratchBuffer()   // [N·kvHeads]
    let q = ScratchBuffer()       // [N, Q]  after QK-norm and RoPE
    let k = ScratchBuffer()       // [N, K]  after QK-norm and RoPE
    let v = ScratchBuffer()       // [N, K]
    let probs = ScratchBuffer()   // [P]     attention probabilities per (row, head): packed causal blocks
    let attn = ScratchBuffer()    // [N, Q]  attention output before o_proj
    let xMid = ScratchBuffer()    // [N, H]  residual after attention
    let xn2 = ScratchBuffer()     // [N, H]  post_attention_layernorm(xMid)
    let rstd2 = ScratchBuffer()   // [N]
    let gate = ScratchBuffer()    // [N, F]
    let up = ScratchBuffer()      // [N, F]
    let act = ScratchBuffer()     // [N, F]  silu(gate)·up
}

/// Everything a forward/backward pass needs besides the weights, reused across calls.
final class TrainingWorkspace {
    // Batch geometry of the retained pass.
    var tokens: [Int32] = []       // [N]
    var targets: [Int32] = []      // [N]
    var positions: [Int32] = []    // [N]
    var rowOffsets: [Int] = []     // [B] first packed row of each sequence
    var rowLengths: [Int] = []     // [B]
    var probOffsets: [Int] = []    // [B] offset of each sequence's attention probabilities
    var tokenCount = 0

    // Residual stream: residual[l] is the input of block l, residual[layers] the final output.
    var residual: [ScratchBuffer] = []
    var blocks: [BlockActivations] = []
    let xnFinal = ScratchBuffer()  // [N, H]
    let rstdFinal = ScratchBuffer() // [N]
    let logits = ScratchBuffer()   // [R, V] one LM-head chunk of rows, [N, V] unchunked; backward turns it into dLogits in place
    let lse = ScratchBuffer()      // [N] logsumexp of tempered logits
    let logprobs = ScratchBuffer() // [N]
    let entropy = ScratchBuffer()  // [N]
    // The chunked LM head's scored rows (nil when it runs over all rows) and one chunk of them
    // gathered: xnFinal rows [R, H], their ∂L/∂xn [R, H], and log-probs, entropies, lse [3R].
    var scoredRows: [Int]?
    let lmHeadRows = ScratchBuffer()
    let lmHeadRowGrads = ScratchBuffer()
    let lmHeadRowStats = ScratchBuffer()

    // Backward scratch.
    let dx = ScratchBuffer()       // [N, H] ∂L/∂residual
    let dxn = ScratchBuffer()      // [N, H]
    let dFFN = ScratchBuffer()     // [N, F] ∂L/∂act, then ∂L/∂gate
    let dUp = ScratchBuffer()      // [N, F]
    let dAttn = ScratchBuffer()    // [N, Q]
    let dq = ScratchBuffer()       // [N, Q]
    let dk = ScratchBuffer()       // [N, K]
    let dv = ScratchBuffer()       // [N, K]
    let dqPre = ScratchBuffer()    // [N, Q]
    let dkPre = ScratchBuffer()    // [N, K]
    let dScores = ScratchBuffer()  // [maxLen²]
    let dLogprobs = ScratchBuffer() // [N]

    // The retained pass: the weights it used (so a later optimizer step on the model's weights
    // cannot desynchronise backward) and its temperature.
    var passWeights: ModelWeights?
    var passTemperature: Float = 1

    init(layers: Int) {
        residual = (0...layers).map { _ in ScratchBuffer() }
        blocks = (0..<layers).map { _ in BlockActivations() }
    }

    /// Floats currently allocated by all buffers (for tests of the memory estimate).
    var allocatedFloats: Int {
        let blockBuffers = blocks.flatMap { a in
            [a.xn1, a.rstd1, a.qPre, a.kPre, a.qRstd, a.kRstd, a.q, a.k, a.v, a.probs, a.attn, a.xMid, a.xn2, a.rstd2, a.gate, a.up, a.act]
        }
        let others = [xnFinal, rstdFinal, logits, lse, logprobs, entropy, lmHeadRows, lmHeadRowGrads, lmHeadRowStats,
                      dx, dxn, dFFN, dUp, dAttn, dq, dk, dv, dqPre, dkPre, dScores, dLogprobs]
        return (residual + blockBuffers + others).reduce(0) { $0 + $1.capacity }
    }
}
