import Foundation
import Shared

/// The training path of the transformer: a batched forward pass that returns per-token
/// log-probs and entropies and retains its activations, and a backward pass that turns
/// per-token weights on those log-probs into gradients for every parameter.
///
/// Typical learner step (SFT: `dLogprobs = −1/N` on scored tokens; GRPO: the per-token
/// derivative of the surrogate loss with respect to `logπθ`):
///
///     let model = try Transformer(weights: ModelWeights(config: cfg, seed: 1, initStd: 0.02))
///     var grads = ModelGradients(config: cfg)
///     var adam = AdamW(layout: model.weights.layout)
///     let pass = try model.forward(batch, temperature: 1)       // phase 1: log-probs
///     let dLogp = lossGradient(pass.logprobs)                   // ∂L/∂logp, shape [b][t]
///     try model.backward(dLogprobs: dLogp, into: &grads)         // phase 2: grads += ∂L/∂θ
///     let norm = grads.clipGlobalNorm(maxNorm: 1)
///     try adam.step(weights: &model.weights, gradients: grads, learningRate: lr)
///     grads.zero()
///
/// Several forward/backward pairs may be accumulated into the same gradients before a step.
/// Each `forward` replaces the retained pass; `backward` consumes it. The instance owns
/// reusable buffers and is meant for one thread at a time (it is not `Sendable`).
///
/// Internally all rows of the batch are packed into one `[N, hidden]` matrix (no padding), all
/// projections are single `BLAS.sgemm` calls over N rows (the LM head over chunks of rows once
/// N × vocab exceeds ``lmHeadChunkFloats``), and attention runs per (row, head)
/// in blocks of 64 query rows, each two sgemms around a causal softmax over only the keys the
/// block can see.
public final class Transformer {
    /// The weights used by the next ``forward(_:temperature:returnLogits:)``. Optimizers
    /// update them in place (`adam.step(weights: &model.weights, ...)`).
    /// (A stored property without observers, so in-place updates do not copy the buffer.)
    /// Replacing them with weights of another config makes the next forward throw.
    public var weights: ModelWeights
    /// The architecture this instance was built for.
    public let config: TransformerConfig
    /// RoPE angles for positions `0 ..< config.maxSeqLen`.
    public let rope: RoPETable

    private let offsets: ParameterOffsets
    let workspace: TrainingWorkspace

    /// Query rows per causal attention block: scores are computed for `[rows, r0 + rows]`
    /// blocks, so about half of the masked triangle is skipped. Results do not depend on it
    /// beyond float rounding; tests use small blocks to exercise the blocking.
    public let attentionBlockRows: Int

    /// Most logits the LM head holds at once: a pass with more (tokens × vocab) computes them
    /// in chunks of rows (``lmHeadChunkRows(tokens:vocab:chunkFloats:)``) and backward computes
    /// each chunk again instead of keeping them. Tests set it low to force several chunks.
    public let lmHeadChunkFloats: Int

    /// Throws if the weights' config is not runnable (see ``TransformerConfig/validate()``),
    /// `attentionBlockRows < 1` or `lmHeadChunkFloats < 1`.
    public init(weights: ModelWeights, attentionBlockRows: Int = Transformer.defaultAttentionBlockRows,
                lmHeadChunkFloats: Int = Transformer.defaultLMHeadChunkFloats) throws {
        try weights.config.validate()
        guard attentionBlockRows >= 1 else {
            throw CermError.invalid("Transformer: attentionBlockRows must be at least 1, got \(attentionBlockRows)")
        }
        guard lmHeadChunkFloats >= 1 else {
            throw CermError.invalid("Transformer: lmHeadChunkFloats must be at least 1, got \(lmHeadChunkFloats)")
        }
        self.attentionBlockRows = attentionBlockRows
        self.lmHeadChunkFloats = lmHeadChunkFloats
        self.weights = weights
        self.config = weights.config
        let c = weights.config
        self.rope = RoPETable(headDim: c.headDim, theta: c.ropeTheta, positions: c.maxSeqLen)
        self.offsets = ParameterOffsets(weights.layout, config: c)
        self.workspace = TrainingWorkspace(layers: c.layers)
    }

    /// Floats of workspace a forward + backward over rows of `lengths` needs (multiply by 4
    /// for bytes), so learners can split large batches into micro-batches that fit in memory
    /// and accumulate their gradients. It grows with tokens `N` and with the attention
    /// probabilities, `heads · attentionScoreEntries(len)` (≈ heads·len²/2) per row, but not with
    /// the vocabulary beyond one chunk of `R = lmHeadChunkRows(...)` rows of logits:
    ///
    ///     (layers+1)·N·H + layers·(N·(3H + 2Q + 2K + 3F + 2) + Σ heads·entries(len) [+ N·(Q + K + heads + kvHeads)])
    ///     + N·(3H + 2F + 2Q + 2K + 5) + R·V + max(min(len, 64)·len) [+ N·(Q + K)]   (brackets: QK-norm)
    ///     [+ R·(2H + 3) when R < N: the chunked head's gathered rows]
    ///
    /// (With `returnLogits` a forward keeps all N·V logits, whatever the chunking.)
    public static func workspaceFloats(config c: TransformerConfig, lengths: [Int],
                                       attentionBlockRows: Int = defaultAttentionBlockRows,
                                       lmHeadChunkFloats: Int = defaultLMHeadChunkFloats) -> Int {
        let n = lengths.reduce(0, +)
        let h = c.hiddenSize, q = c.qDim, k = c.kvDim, f = c.ffnSize, v = c.vocabSize
        let probs = lengths.reduce(0) { $0 + c.heads * attentionScoreEntries(length: $1, blockRows: attentionBlockRows) }
        var perBlock = n * (3 * h + 2 * q + 2 * k + 3 * f + 2) + probs
        if c.qkNorm { perBlock += n * (q + k + c.heads + c.kvHeads) }
        var total = (c.layers + 1) * n * h + c.layers * perBlock
        total += n * (3 * h + 2 * f + 2 * q + 2 * k + 5)
        let lmHeadRows = lmHeadChunkRows(tokens: n, vocab: v, chunkFloats: lmHeadChunkFloats)
        total += lmHeadRows * v
        if lmHeadRows < n { total += lmHeadRows * (2 * h + 3) }  // gathered scored rows, their gradients and stats
        total += lengths.map { min($0, attentionBlockRows) * $0 }.max() ?? 0
        if c.qkNorm { total += n * (q + k) }
        return total
    }

    /// Consecutive micro-batches of rows with position counts `lengths` whose workspace
    /// (``workspaceFloats(config:lengths:attentionBlockRows:)``) fits `budgetFloats`, as index
    /// ranges in order; a row that alone exceeds the budget gets a micro-batch of its own.
    public static func microBatches(config: TransformerConfig, lengths: [Int], budgetFloats: Int) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        var start = 0
        for end in lengths.indices {
            // Row `end` joins the open micro-batch unless that would exceed the budget.
            if end > start, workspaceFloats(config: config, lengths: Array(lengths[start...end])) > budgetFloats {
                ranges.append(start..<end)
                start = end
            }
        }
        if start < lengths.count { ranges.append(start..<lengths.count) }
        return ranges
    }

    /// Default query rows per causal attention block.
    public static let defaultAttentionBlockRows = 64

    /// Default ``lmHeadChunkFloats``: 2^24 logits (64 MiB), 341 rows of SmolLM2's 49,152-token
    /// vocabulary. It is also the threshold below which the LM head runs as one product over
    /// all N rows, exactly as before chunking existed: chunking changes the row count of the
    /// sgemms and the order in which dW_lm sums rows, so it changes float rounding. The default
    /// model (vocab 264) would need 63,551 tokens in one pass to chunk; at its ≈10k workspace
    /// floats per token its micro-batches under the trainers' budgets (SFT 96·2^20, GRPO 2^28
    /// floats) hold at most ~25k, so its results stay bit-identical.
    public static let defaultLMHeadChunkFloats = 1 << 24

    /// Rows per LM-head chunk of a pass over `tokens` rows: all of them when `tokens · vocab`
    /// fits `chunkFloats` (one product, no recomputation), else `max(1, chunkFloats / vocab)`.
    /// It depends on the shapes alone, never on threads, so chunked results are deterministic.
    public static func lmHeadChunkRows(tokens: Int, vocab: Int, chunkFloats: Int) -> Int {
        tokens * vocab <= chunkFloats ? tokens : max(1, chunkFloats / vocab)
    }

    /// `Σ rows·cols` over the causal attention blocks of a sequence of `length` tokens: the
    /// score entries computed per head (about `length²/2` for long sequences).
    public static func attentionScoreEntries(length: Int, blockRows: Int = defaultAttentionBlockRows) -> Int {
        stride(from: 0, to: length, by: blockRows).reduce(0) { acc, r0 in
            let rows = min(blockRows, length - r0)
            return acc + rows * (r0 + rows)
        }
    }

    /// Whether a forward pass is retained and awaiting ``backward(dLogprobs:into:)``.
    public var hasRetainedPass: Bool { workspace.passWeights != nil }

    // MARK: Forward

    /// Runs the model over `batch` and returns, per position, `log softmax(logits/T)[target]`
    /// (0 where the target is negative) and the entropy of `softmax(logits/T)`; with
    /// `returnLogits` also the raw logits. Retains the activations for ``backward(dLogprobs:into:)``.
    ///
    /// Throws (naming the row and position) on token ids outside the vocabulary, targets ≥ vocab,
    /// rows longer than `maxSeqLen`, mismatched input/target shapes, or a temperature that is
    /// not a positive finite number.
    public func forward(_ batch: TokenBatch, temperature: Float = 1, returnLogits: Bool = false) throws -> ForwardResult {
        try prepare(batch, temperature: temperature)
        let ws = workspace
        let c = config
        let n = ws.tokenCount
        let h = c.hiddenSize, vocab = c.vocabSize
        let o = offsets
        // An all-empty batch has nothing to compute (and empty arrays need not have storage).
        if n > 0 { weights.values.withUnsafeBufferPointer { wbuf in
            let w = wbuf.baseAddress!
            // Embedding lookup: residual[0][r] = embed[token r].
            let x0 = ws.residual[0].reserve(n * h)
            for r in 0..<n {
                (x0 + r * h).update(from: w + o.embed + Int(ws.tokens[r]) * h, count: h)
            }
            for l in 0..<c.layers {
                blockForward(layer: l, w: w)
            }
            // Final norm, then the LM head.
            let xf = ws.residual[c.layers].pointer
            RMSNormKernel.forward(x: xf, weight: w + o.finalNorm, out: ws.xnFinal.reserve(n * h), rstd: ws.rstdFinal.reserve(n),
                                  rows: n, dim: h, eps: Float(c.rmsNormEps))
            lmHeadForward(w: w, temperature: temperature, keepLogits: returnLogits)
        } }
        ws.passWeights = weights
        ws.passTemperature = temperature

        var result = ForwardResult(logprobs: [], entropy: [], logits: returnLogits ? [] : nil)
        for (start, len) in zip(ws.rowOffsets, ws.rowLengths) {
            result.logprobs.append(Array(UnsafeBufferPointer(start: ws.logprobs.pointer + start, count: len)))
            result.entropy.append(Array(UnsafeBufferPointer(start: ws.entropy.pointer + start, count: len)))
            if returnLogits {
                result.logits?.append(Array(UnsafeBufferPointer(start: ws.logits.pointer + start * vocab, count: len * vocab)))
            }
        }
        return result
    }

    /// Validates the batch and fills the workspace's packed geometry.
    private func prepare(_ batch: TokenBatch, temperature: Float) throws {
        let c = config
        guard weights.config == c else {
            throw CermError.invalid("Transformer.forward: weights were replaced by weights of another config (\(weights.config.jsonString())); this instance is built for \(c.jsonString())")
        }
        guard temperature.isFinite, temperature > 0 else {
            throw CermError.invalid("Transformer.forward: temperature must be positive and finite, got \(temperature)")
        }
        guard batch.inputs.count == batch.targets.count else {
            throw CermError.invalid("Transformer.forward: \(batch.inputs.count) input rows but \(batch.targets.count) target rows")
        }
        let ws = workspace
        ws.passWeights = nil
        ws.tokens.removeAll(keepingCapacity: true)
        ws.targets.removeAll(keepingCapacity: true)
        ws.positions.removeAll(keepingCapacity: true)
        ws.rowOffsets.removeAll(keepingCapacity: true)
        ws.rowLengths.removeAll(keepingCapacity: true)
        ws.probOffsets.removeAll(keepingCapacity: true)
        var probTotal = 0
        for b in 0..<batch.inputs.count {
            let row = batch.inputs[b], tgt = batch.targets[b]
            guard row.count == tgt.count else {
                throw CermError.invalid("Transformer.forward: row \(b) has \(row.count) inputs but \(tgt.count) targets")
            }
            guard row.count <= c.maxSeqLen else {
                throw CermError.invalid("Transformer.forward: row \(b) has \(row.count) tokens, max_seq_len is \(c.maxSeqLen)")
            }
            ws.rowOffsets.append(ws.tokens.count)
            ws.rowLengths.append(row.count)
            ws.probOffsets.append(probTotal)
            probTotal += c.heads * Self.attentionScoreEntries(length: row.count, blockRows: attentionBlockRows)
            for t in 0..<row.count {
                guard row[t] >= 0, Int(row[t]) < c.vocabSize else {
                    throw CermError.invalid("Transformer.forward: row \(b) position \(t): token \(row[t]) outside vocabulary 0..<\(c.vocabSize)")
                }
                guard Int(tgt[t]) < c.vocabSize else {
                    throw CermError.invalid("Transformer.forward: row \(b) position \(t): target \(tgt[t]) outside vocabulary 0..<\(c.vocabSize)")
                }
                ws.tokens.append(row[t])
                ws.targets.append(tgt[t] < 0 ? -1 : tgt[t])
                ws.positions.append(Int32(t))
            }
        }
        ws.tokenCount = ws.tokens.count
        // Size every activation once per pass so hot loops only take pointers.
        let n = ws.tokenCount
        for x in ws.residual { x.reserve(n * c.hiddenSize) }
        for a in ws.blocks {
            a.xn1.reserve(n * c.hiddenSize); a.rstd1.reserve(n)
            if c.qkNorm {
                a.qPre.reserve(n * c.qDim); a.kPre.reserve(n * c.kvDim)
                a.qRstd.reserve(n * c.heads); a.kRstd.reserve(n * c.kvHeads)
            }
            a.q.reserve(n * c.qDim); a.k.reserve(n * c.kvDim); a.v.reserve(n * c.kvDim)
            a.probs.reserve(probTotal); a.attn.reserve(n * c.qDim)
            a.xMid.reserve(n * c.hiddenSize); a.xn2.reserve(n * c.hiddenSize); a.rstd2.reserve(n)
            a.gate.reserve(n * c.ffnSize); a.up.reserve(n * c.ffnSize); a.act.reserve(n * c.ffnSize)
        }
    }

    /// One transformer block, forward (shapes: N tokens, H hidden, Q = heads·d, K = kvHeads·d, F ffn):
    ///
    ///     xn1 = input_layernorm(x)                           [N, H]
    ///     q, k, v = xn1·Wqᵀ (+bq), xn1·Wkᵀ (+bk), xn1·Wvᵀ (+bv)   [N, Q], [N, K], [N, K]
    ///     q, k = rmsnorm_per_head(q), rmsnorm_per_head(k)     (Qwen3 QK-norm, before RoPE)
    ///     q, k = rope(q), rope(k)
    ///     attn = causal_softmax(q·kᵀ/√d)·v  per row and head, GQA head h uses kv head h/(heads/kvHeads)
    ///            (in blocks of `attentionBlockRows` query rows against the keys they can see)
    ///     xMid = x + attn·Woᵀ                                 [N, H]
    ///     xn2 = post_attention_layernorm(xMid)
    ///     act = silu(xn2·Wgᵀ) ⊙ (xn2·Wuᵀ)                     [N, F]
    ///     out = xMid + act·Wdᵀ                                [N, H]
    private func blockForward(layer l: Int, w: UnsafePointer<Float>) {
        let c = config, ws = workspace, a = ws.blocks[l], p = offsets.blocks[l]
        let n = ws.tokenCount, h = c.hiddenSize, qd = c.qDim, kd = c.kvDim, f = c.ffnSize, hd = c.headDim
        let eps = Float(c.rmsNormEps)
        let x = ws.residual[l].pointer
        RMSNormKernel.forward(x: x, weight: w + p.inputNorm, out: a.xn1.pointer, rstd: a.rstd1.pointer, rows: n, dim: h, eps: eps)

        // Projections: into qPre/kPre when QK-norm follows, else straight into q/k.
        let qProj = c.qkNorm ? a.qPre.pointer : a.q.pointer
        let kProj = c.qkNorm ? a.kPre.pointer : a.k.pointer
        linearForward(x: a.xn1.pointer, rows: n, inDim: h, weight: w + p.q, outDim: qd, bias: p.qBias.map { w + $0 }, out: qProj)
        linearForward(x: a.xn1.pointer, rows: n, inDim: h, weight: w + p.k, outDim: kd, bias: p.kBias.map { w + $0 }, out: kProj)
        linearForward(x: a.xn1.pointer, rows: n, inDim: h, weight: w + p.v, outDim: kd, bias: p.vBias.map { w + $0 }, out: a.v.pointer)
        if let qn = p.qNorm, let kn = p.kNorm {
            RMSNormKernel.forward(x: a.qPre.pointer, weight: w + qn, out: a.q.pointer, rstd: a.qRstd.pointer, rows: n * c.heads, dim: hd, eps: eps)
            RMSNormKernel.forward(x: a.kPre.pointer, weight: w + kn, out: a.k.pointer, rstd: a.kRstd.pointer, rows: n * c.kvHeads, dim: hd, eps: eps)
        }
        rope.cos.withUnsafeBufferPointer { cosBuf in
            rope.sin.withUnsafeBufferPointer { sinBuf in
                ws.positions.withUnsafeBufferPointer { pos in
                    RoPEKernel.forward(a.q.pointer, rows: n, heads: c.heads, headDim: hd, rowStride: qd,
                                       positions: pos.baseAddress!, cos: cosBuf.baseAddress!, sin: sinBuf.baseAddress!)
                    RoPEKernel.forward(a.k.pointer, rows: n, heads: c.kvHeads, headDim: hd, rowStride: kd,
                                       positions: pos.baseAddress!, cos: cosBuf.baseAddress!, sin: sinBuf.baseAddress!)
                }
            }
        }

        // Attention per sequence and head.
        let scale = 1 / Float(hd).squareRoot()
        let group = c.heads / c.kvHeads
        for b in 0..<ws.rowOffsets.count {
            let start = ws.rowOffsets[b], len = ws.rowLengths[b]
            if len == 0 { continue }
            for head in 0..<c.heads {
                let kvHead = head / group
                let entries = Self.attentionScoreEntries(length: len, blockRows: attentionBlockRows)
                var block = a.probs.pointer + ws.probOffsets[b] + head * entries
                let qh = a.q.pointer + start * qd + head * hd
                let kh = a.k.pointer + start * kd + kvHead * hd
                let vh = a.v.pointer + start * kd + kvHead * hd
                // Causal blocks: query rows [r0, r0+rows) only see keys [0, r0+rows), so the
                // products skip (most of) the masked upper triangle.
                for r0 in stride(from: 0, to: len, by: attentionBlockRows) {
                    let rows = min(attentionBlockRows, len - r0), cols = r0 + rows
                    // Blocks are stored packed, one dense [rows, cols] matrix after another.
                    // scores = q_h[r0..] · k_h[..cols]ᵀ · scale
                    BLAS.sgemm(transB: .transpose, m: rows, n: cols, k: hd, alpha: scale, a: qh + r0 * qd, lda: qd,
                               b: kh, ldb: kd, c: block, ldc: cols)
                    CausalSoftmaxKernel.forward(block, rows: rows, cols: cols, ld: cols, offset: r0)
                    // attn_h[r0..] [rows, d] = probs · v_h[..cols]
                    BLAS.sgemm(m: rows, n: hd, k: cols, a: block, lda: cols, b: vh, ldb: kd,
                               c: a.attn.pointer + (start + r0) * qd + head * hd, ldc: qd)
                    block += rows * cols
                }
            }
        }

        // xMid = x + attn · Woᵀ
        linearForward(x: a.attn.pointer, rows: n, inDim: qd, weight: w + p.o, outDim: h, bias: nil, out: a.xMid.pointer)
        VectorMath.add(x, into: a.xMid.pointer, n * h)

        // Feed-forward.
        RMSNormKernel.forward(x: a.xMid.pointer, weight: w + p.postNorm, out: a.xn2.pointer, rstd: a.rstd2.pointer, rows: n, dim: h, eps: eps)
        linearForward(x: a.xn2.pointer, rows: n, inDim: h, weight: w + p.gate, outDim: f, bias: nil, out: a.gate.pointer)
        linearForward(x: a.xn2.pointer, rows: n, inDim: h, weight: w + p.up, outDim: f, bias: nil, out: a.up.pointer)
        SwiGLUKernel.forward(gate: a.gate.pointer, up: a.up.pointer, act: a.act.pointer, count: n * f)
        let out = ws.residual[l + 1].pointer
        linearForward(x: a.act.pointer, rows: n, inDim: f, weight: w + p.down, outDim: h, bias: nil, out: out)
        VectorMath.add(a.xMid.pointer, into: out, n * h)
    }

    // MARK: LM head

    /// The LM head, forward: per row `logits = xnFinal·W_lmᵀ` [V], then log-prob of the target,
    /// entropy and logsumexp (kept for backward), in chunks of `R` rows
    /// (``lmHeadChunkRows(tokens:vocab:chunkFloats:)``), so only `[R, V]` logits exist at once:
    ///
    ///     for each chunk of rows r0 ..< r0+R:
    ///         logits_c [R, V] = xnFinal[r0..] · W_lmᵀ
    ///         logprobs, entropy, lse [R] = LogProbKernel(logits_c / T, targets[r0..])
    ///
    /// With `keepLogits` each chunk goes to its place in an `[N, V]` buffer (for `returnLogits`).
    /// Without chunking (one chunk of N rows) the logits stay for ``lmHeadBackward(w:g:dLogprobs:vocab:)``.
    private func lmHeadForward(w: UnsafePointer<Float>, temperature: Float, keepLogits: Bool) {
        let ws = workspace, c = config, o = offsets
        let n = ws.tokenCount, h = c.hiddenSize, vocab = c.vocabSize
        let chunk = Self.lmHeadChunkRows(tokens: n, vocab: vocab, chunkFloats: lmHeadChunkFloats)
        let logits = ws.logits.reserve((keepLogits ? n : chunk) * vocab)
        let xn = ws.xnFinal.pointer
        let logprobs = ws.logprobs.reserve(n), entropy = ws.entropy.reserve(n), lse = ws.lse.reserve(n)
        ws.scoredRows = nil
        if chunk < n && !keepLogits {
            lmHeadForwardScoredRows(w: w, temperature: temperature, chunk: chunk)
            return
        }
        ws.targets.withUnsafeBufferPointer { t in
            for r0 in stride(from: 0, to: n, by: chunk) {
                let rows = min(chunk, n - r0)
                let out = keepLogits ? logits + r0 * vocab : logits
                linearForward(x: xn + r0 * h, rows: rows, inDim: h, weight: w + o.lmHead, outDim: vocab, bias: nil, out: out)
                LogProbKernel.forward(logits: out, targets: t.baseAddress! + r0, rows: rows, vocab: vocab, temperature: temperature,
                                      logprobs: logprobs + r0, entropy: entropy + r0, lse: lse + r0)
            }
        }
    }

    /// The LM head beyond one chunk, forward, over the scored rows only (a trainer's prompt
    /// tokens have no target: in SFT and GRPO batches most rows are prompt, and at a 49k
    /// vocabulary the head is a fifth of a token's FLOPs). `S` = positions with a target ≥ 0:
    ///
    ///     for each chunk S[i0 ..< i0+R]:
    ///         x_c [R, H] = xnFinal[S[i0..]]                  (gathered)
    ///         logits_c [R, V] = x_c · W_lmᵀ
    ///         logprobs, entropy, lse [S[i0..]] = LogProbKernel(logits_c / T, targets[S[i0..]])
    ///
    /// Log-prob, entropy and lse of an unscored position are 0. A row's logits are the same dot
    /// products whichever rows share its product, and a batch scored everywhere gives the same
    /// chunks as the ungathered loop.
    private func lmHeadForwardScoredRows(w: UnsafePointer<Float>, temperature: Float, chunk: Int) {
        let ws = workspace, c = config, o = offsets
        let n = ws.tokenCount, h = c.hiddenSize, vocab = c.vocabSize
        let scored = ws.targets.indices.filter { ws.targets[$0] >= 0 }
        ws.scoredRows = scored
        let xn = ws.xnFinal.pointer, logits = ws.logits.pointer
        let logprobs = ws.logprobs.zeroed(n), entropy = ws.entropy.zeroed(n), lse = ws.lse.zeroed(n)
        let x = ws.lmHeadRows.reserve(chunk * h), stats = ws.lmHeadRowStats.reserve(3 * chunk)
        var targets = [Int32](repeating: 0, count: chunk)
        for i0 in stride(from: 0, to: scored.count, by: chunk) {
            let rows = scored[i0..<min(i0 + chunk, scored.count)]
            for (i, r) in rows.enumerated() {
                (x + i * h).update(from: xn + r * h, count: h)
                targets[i] = ws.targets[r]
            }
            linearForward(x: x, rows: rows.count, inDim: h, weight: w + o.lmHead, outDim: vocab, bias: nil, out: logits)
            LogProbKernel.forward(logits: logits, targets: targets, rows: rows.count, vocab: vocab, temperature: temperature,
                                  logprobs: stats, entropy: stats + chunk, lse: stats + 2 * chunk)
            for (i, r) in rows.enumerated() {
                (logprobs[r], entropy[r], lse[r]) = (stats[i], stats[chunk + i], stats[2 * chunk + i])
            }
        }
    }

    /// The LM head, backward: writes ∂L/∂xnFinal into `workspace.dxn` [N, H] and adds ∂L/∂W_lm
    /// to `g`. Mirrors ``lmHeadForward(w:temperature:keepLogits:)`` chunk by chunk, computing
    /// each chunk's logits again when there is more than one (the same product as forward, so
    /// the same values, matching the saved lse):
    ///
    ///     dLogits_c [R, V] = dLogprobs[r0..]/T · (onehot(target) − softmax(logits_c/T))   (in place of logits_c)
    ///     dW_lm += dLogits_cᵀ · xnFinal[r0..]         dxn[r0..] [R, H] = dLogits_c · W_lm
    ///
    /// When chunked, a chunk with no weighted scored row (e.g. all prompt) adds exactly zero: it is skipped.
    private func lmHeadBackward(w: UnsafePointer<Float>, g: UnsafeMutablePointer<Float>,
                                dLogprobs dlp: UnsafePointer<Float>, vocab: Int) {
        let ws = workspace, o = offsets
        let n = ws.tokenCount, h = config.hiddenSize
        let chunk = Self.lmHeadChunkRows(tokens: n, vocab: vocab, chunkFloats: lmHeadChunkFloats)
        let recompute = chunk < n
        let logits = ws.logits.reserve(chunk * vocab)
        let xn = ws.xnFinal.pointer, dxn = ws.dxn.reserve(n * h)
        if let scored = ws.scoredRows {
            lmHeadBackwardScoredRows(scored, w: w, g: g, dLogprobs: dlp, chunk: chunk)
            return
        }
        ws.targets.withUnsafeBufferPointer { tbuf in
            let t = tbuf.baseAddress!
            for r0 in stride(from: 0, to: n, by: chunk) {
                let rows = min(chunk, n - r0)
                if recompute {
                    guard (r0..<(r0 + rows)).contains(where: { t[$0] >= 0 && dlp[$0] != 0 }) else {
                        (dxn + r0 * h).update(repeating: 0, count: rows * h)
                        continue
                    }
                    linearForward(x: xn + r0 * h, rows: rows, inDim: h, weight: w + o.lmHead, outDim: vocab, bias: nil, out: logits)
                }
                LogProbKernel.backward(logits: logits, targets: t + r0, lse: ws.lse.pointer + r0, dLogprobs: dlp + r0,
                                       rows: rows, vocab: vocab, temperature: ws.passTemperature, dLogits: logits)
                linearBackward(dOut: logits, x: xn + r0 * h, rows: rows, inDim: h, weight: w + o.lmHead, outDim: vocab,
                               dWeight: g + o.lmHead, dBias: nil, dX: dxn + r0 * h, accumulateDX: false)
            }
        }
    }

    /// Backward of ``lmHeadForwardScoredRows(w:temperature:chunk:)``, chunk by chunk over the
    /// same gathered rows; ∂L/∂xnFinal of an unscored row is 0, and a chunk without a weighted
    /// row adds exactly zero, so it is skipped:
    ///
    ///     dLogits_c [R, V] = dLogprobs[S..]/T · (onehot(target) − softmax(logits_c/T))
    ///     dW_lm += dLogits_cᵀ · x_c           dxn[S[i0..]] = dLogits_c · W_lm   (scattered)
    private func lmHeadBackwardScoredRows(_ scored: [Int], w: UnsafePointer<Float>, g: UnsafeMutablePointer<Float>,
                                          dLogprobs dlp: UnsafePointer<Float>, chunk: Int) {
        let ws = workspace, o = offsets
        let n = ws.tokenCount, h = config.hiddenSize, vocab = config.vocabSize
        let xn = ws.xnFinal.pointer, dxn = ws.dxn.zeroed(n * h), logits = ws.logits.reserve(chunk * vocab)
        let x = ws.lmHeadRows.reserve(chunk * h), dx = ws.lmHeadRowGrads.reserve(chunk * h)
        let stats = ws.lmHeadRowStats.reserve(3 * chunk)
        var targets = [Int32](repeating: 0, count: chunk)
        for i0 in stride(from: 0, to: scored.count, by: chunk) {
            let rows = scored[i0..<min(i0 + chunk, scored.count)]
            guard rows.contains(where: { dlp[$0] != 0 }) else { continue }
            for (i, r) in rows.enumerated() {
                (x + i * h).update(from: xn + r * h, count: h)
                (targets[i], stats[i], stats[chunk + i]) = (ws.targets[r], dlp[r], ws.lse.pointer[r])
            }
            linearForward(x: x, rows: rows.count, inDim: h, weight: w + o.lmHead, outDim: vocab, bias: nil, out: logits)
            LogProbKernel.backward(logits: logits, targets: targets, lse: stats + chunk, dLogprobs: stats,
                                   rows: rows.count, vocab: vocab, temperature: ws.passTemperature, dLogits: logits)
            linearBackward(dOut: logits, x: x, rows: rows.count, inDim: h, weight: w + o.lmHead, outDim: vocab,
                           dWeight: g + o.lmHead, dBias: nil, dX: dx, accumulateDX: false)
            for (i, r) in rows.enumerated() { (dxn + r * h).update(from: dx + i * h, count: h) }
        }
    }

    // MARK: Backward

    /// Both phases in one call: runs ``forward(_:temperature:returnLogits:)``, asks
    /// `dLogprobs` for ∂L/∂logprobs given the forward result (e.g. GRPO's per-token weights,
    /// which depend on the new log-probs), then ``backward(dLogprobs:into:)``. Returns the
    /// forward result.
    @discardableResult
    public func forwardBackward(_ batch: TokenBatch, temperature: Float = 1, into gradients: inout ModelGradients,
                                dLogprobs: (ForwardResult) throws -> [[Float]]) throws -> ForwardResult {
        let pass = try forward(batch, temperature: temperature)
        let weightsPerToken = try dLogprobs(pass)
        try backward(dLogprobs: weightsPerToken, into: &gradients)
        return pass
    }

    /// Back-propagates per-token weights on the retained pass's log-probs and *adds* ∂L/∂θ for
    /// every parameter to `gradients`, where `L = Σ_{b,t} dLogprobs[b][t] · logprobs[b][t]`.
    ///
    /// `dLogprobs` must have the batch's shape; entries at unscored positions are ignored.
    /// Uses the weights and temperature of the retained pass (even if ``weights`` changed since)
    /// and releases it. Throws if there is no retained pass or the shapes do not match.
    /// Entropies are outputs only: no gradient flows through them.
    public func backward(dLogprobs: [[Float]], into gradients: inout ModelGradients) throws {
        let ws = workspace
        guard let passWeights = ws.passWeights else {
            throw CermError.invalid("Transformer.backward: no retained forward pass (call forward first; backward consumes it)")
        }
        guard gradients.layout == passWeights.layout else {
            throw CermError.invalid("Transformer.backward: gradients were made for a different model config")
        }
        guard dLogprobs.count == ws.rowLengths.count else {
            throw CermError.invalid("Transformer.backward: dLogprobs has \(dLogprobs.count) rows, the pass has \(ws.rowLengths.count)")
        }
        let n = ws.tokenCount
        let dlp = ws.dLogprobs.reserve(max(n, 1))
        for b in 0..<dLogprobs.count {
            guard dLogprobs[b].count == ws.rowLengths[b] else {
                throw CermError.invalid("Transformer.backward: dLogprobs row \(b) has \(dLogprobs[b].count) entries, the pass row has \(ws.rowLengths[b])")
            }
            for t in 0..<dLogprobs[b].count {
                let g = dLogprobs[b][t]
                guard g.isFinite else {
                    throw CermError.invalid("Transformer.backward: dLogprobs[\(b)][\(t)] is not finite (\(g))")
                }
                dlp[ws.rowOffsets[b] + t] = g
            }
        }
        let c = passWeights.config
        let h = c.hiddenSize, vocab = c.vocabSize
        let o = offsets
        if n > 0 { passWeights.values.withUnsafeBufferPointer { wbuf in
            gradients.values.withUnsafeMutableBufferPointer { gbuf in
                let w = wbuf.baseAddress!, g = gbuf.baseAddress!
                // LM head (into ws.dxn) and final norm.
                lmHeadBackward(w: w, g: g, dLogprobs: dlp, vocab: vocab)
                let dxn = ws.dxn.pointer
                let dx = ws.dx.reserve(n * h)
                RMSNormKernel.backward(dOut: dxn, x: ws.residual[c.layers].pointer, weight: w + o.finalNorm, rstd: ws.rstdFinal.pointer,
                                       dx: dx, dWeight: g + o.finalNorm, rows: n, dim: h, accumulate: false)
                for l in stride(from: c.layers - 1, through: 0, by: -1) {
                    blockBackward(layer: l, w: w, g: g)
                }
                // Embedding: scatter-add ∂L/∂residual[0] into the token rows.
                for r in 0..<n {
                    VectorMath.add(dx + r * h, into: g + o.embed + Int(ws.tokens[r]) * h, h)
                }
            }
        } }
        ws.passWeights = nil
    }

    /// One block, backward. On entry `workspace.dx` holds ∂L/∂out [N, H]; on exit ∂L/∂x.
    /// Mirrors ``blockForward(layer:w:)`` in reverse.
    private func blockBackward(layer l: Int, w: UnsafePointer<Float>, g: UnsafeMutablePointer<Float>) {
        let c = config, ws = workspace, a = ws.blocks[l], p = offsets.blocks[l]
        let n = ws.tokenCount, h = c.hiddenSize, qd = c.qDim, kd = c.kvDim, f = c.ffnSize, hd = c.headDim
        let dx = ws.dx.pointer, dxn = ws.dxn.pointer

        // out = xMid + act·Wdᵀ: dAct [N, F] = dx·Wd, dWd += dxᵀ·act
        let dAct = ws.dFFN.reserve(n * f), dUp = ws.dUp.reserve(n * f)
        linearBackward(dOut: dx, x: a.act.pointer, rows: n, inDim: f, weight: w + p.down, outDim: h,
                       dWeight: g + p.down, dBias: nil, dX: dAct, accumulateDX: false)
        // act = silu(gate)·up (dGate overwrites dAct in place)
        SwiGLUKernel.backward(dAct: dAct, gate: a.gate.pointer, up: a.up.pointer, dGate: dAct, dUp: dUp, count: n * f)
        linearBackward(dOut: dAct, x: a.xn2.pointer, rows: n, inDim: h, weight: w + p.gate, outDim: f,
                       dWeight: g + p.gate, dBias: nil, dX: dxn, accumulateDX: false)
        linearBackward(dOut: dUp, x: a.xn2.pointer, rows: n, inDim: h, weight: w + p.up, outDim: f,
                       dWeight: g + p.up, dBias: nil, dX: dxn, accumulateDX: true)
        // xn2 = norm(xMid); the residual path already carries dx, so accumulate.
        RMSNormKernel.backward(dOut: dxn, x: a.xMid.pointer, weight: w + p.postNorm, rstd: a.rstd2.pointer,
                               dx: dx, dWeight: g + p.postNorm, rows: n, dim: h, accumulate: true)

        // xMid = x + attn·Woᵀ: dAttn [N, Q] = dx·Wo
        let dAttn = ws.dAttn.reserve(n * qd)
        linearBackward(dOut: dx, x: a.attn.pointer, rows: n, inDim: qd, weight: w + p.o, outDim: h,
                       dWeight: g + p.o, dBias: nil, dX: dAttn, accumulateDX: false)

        // Attention, per sequence and head:
        //   dP = dAttn_h·v_hᵀ, dv_h += Pᵀ·dAttn_h, dS = softmax_backward(P, dP),
        //   dq_h = scale·dS·k_h, dk_h += scale·dSᵀ·q_h
        let dq = ws.dq.reserve(n * qd), dk = ws.dk.zeroed(n * kd), dv = ws.dv.zeroed(n * kd)
        let scale = 1 / Float(hd).squareRoot()
        let group = c.heads / c.kvHeads
        for b in 0..<ws.rowOffsets.count {
            let start = ws.rowOffsets[b], len = ws.rowLengths[b]
            if len == 0 { continue }
            let dS = ws.dScores.reserve(min(len, attentionBlockRows) * len)  // the largest block
            for head in 0..<c.heads {
                let kvHead = head / group
                let entries = Self.attentionScoreEntries(length: len, blockRows: attentionBlockRows)
                var block = a.probs.pointer + ws.probOffsets[b] + head * entries
                let qh = a.q.pointer + start * qd + head * hd
                let kh = a.k.pointer + start * kd + kvHead * hd
                let vh = a.v.pointer + start * kd + kvHead * hd
                let dvh = dv + start * kd + kvHead * hd, dkh = dk + start * kd + kvHead * hd
                for r0 in stride(from: 0, to: len, by: attentionBlockRows) {
                    let rows = min(attentionBlockRows, len - r0), cols = r0 + rows
                    let dOut = dAttn + (start + r0) * qd + head * hd
                    // dP [rows, cols] = dAttn_h[r0..] · v_h[..cols]ᵀ;  dv_h[..cols] += Pᵀ · dAttn_h[r0..]
                    BLAS.sgemm(transB: .transpose, m: rows, n: cols, k: hd, a: dOut, lda: qd, b: vh, ldb: kd, c: dS, ldc: cols)
                    BLAS.sgemm(transA: .transpose, m: cols, n: hd, k: rows, a: block, lda: cols, b: dOut, ldb: qd,
                               beta: 1, c: dvh, ldc: kd)
                    CausalSoftmaxKernel.backward(p: block, dp: dS, rows: rows, cols: cols, ld: cols, offset: r0)
                    // dq_h[r0..] = scale · dS · k_h[..cols];  dk_h[..cols] += scale · dSᵀ · q_h[r0..]
                    BLAS.sgemm(m: rows, n: hd, k: cols, alpha: scale, a: dS, lda: cols, b: kh, ldb: kd,
                               c: dq + (start + r0) * qd + head * hd, ldc: qd)
                    BLAS.sgemm(transA: .transpose, m: cols, n: hd, k: rows, alpha: scale, a: dS, lda: cols, b: qh + r0 * qd, ldb: qd,
                               beta: 1, c: dkh, ldc: kd)
                    block += rows * cols
                }
            }
        }

        // RoPE is a rotation: its backward rotates the gradients back.
        rope.cos.withUnsafeBufferPointer { cosBuf in
            rope.sin.withUnsafeBufferPointer { sinBuf in
                ws.positions.withUnsafeBufferPointer { pos in
                    RoPEKernel.backward(dq, rows: n, heads: c.heads, headDim: hd, rowStride: qd,
                                        positions: pos.baseAddress!, cos: cosBuf.baseAddress!, sin: sinBuf.baseAddress!)
                    RoPEKernel.backward(dk, rows: n, heads: c.kvHeads, headDim: hd, rowStride: kd,
                                        positions: pos.baseAddress!, cos: cosBuf.baseAddress!, sin: sinBuf.baseAddress!)
                }
            }
        }
        var dqProj = dq, dkProj = dk
        if let qn = p.qNorm, let kn = p.kNorm {
            dqProj = ws.dqPre.reserve(n * qd)
            dkProj = ws.dkPre.reserve(n * kd)
            RMSNormKernel.backward(dOut: dq, x: a.qPre.pointer, weight: w + qn, rstd: a.qRstd.pointer, dx: dqProj,
                                   dWeight: g + qn, rows: n * c.heads, dim: hd, accumulate: false)
            RMSNormKernel.backward(dOut: dk, x: a.kPre.pointer, weight: w + kn, rstd: a.kRstd.pointer, dx: dkProj,
                                   dWeight: g + kn, rows: n * c.kvHeads, dim: hd, accumulate: false)
        }

        // q, k, v projections: dxn1 = dq·Wq + dk·Wk + dv·Wv
        linearBackward(dOut: dqProj, x: a.xn1.pointer, rows: n, inDim: h, weight: w + p.q, outDim: qd,
                       dWeight: g + p.q, dBias: p.qBias.map { g + $0 }, dX: dxn, accumulateDX: false)
        linearBackward(dOut: dkProj, x: a.xn1.pointer, rows: n, inDim: h, weight: w + p.k, outDim: kd,
                       dWeight: g + p.k, dBias: p.kBias.map { g + $0 }, dX: dxn, accumulateDX: true)
        linearBackward(dOut: dv, x: a.xn1.pointer, rows: n, inDim: h, weight: w + p.v, outDim: kd,
                       dWeight: g + p.v, dBias: p.vBias.map { g + $0 }, dX: dxn, accumulateDX: true)
        RMSNormKernel.backward(dOut: dxn, x: ws.residual[l].pointer, weight: w + p.inputNorm, rstd: a.rstd1.pointer,
                               dx: dx, dWeight: g + p.inputNorm, rows: n, dim: h, accumulate: true)
    }
}

// MARK: Linear layers

/// `out [rows, outDim] = x [rows, inDim] · Wᵀ (+ bias)` with `W` stored `[outDim, inDim]` (HF).
@inline(__always)
func linearForward(x: UnsafePointer<Float>, rows: Int, inDim: Int, weight: UnsafePointer<Float>, outDim: Int,
                   bias: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>) {
    BLAS.sgemm(transB: .transpose, m: rows, n: outDim, k: inDim, a: x, lda: inDim, b: weight, ldb: inDim, c: out, ldc: outDim)
    if let bias {
        for r in 0..<rows { VectorMath.add(bias, into: out + r * outDim, outDim) }
    }
}

/// Backward of ``linearForward``: `dW += dOutᵀ·x`, `dBias += Σ_rows dOut`,
/// `dX (+)= dOut·W`.
@inline(__always)
func linearBackward(dOut: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int, inDim: Int,
                    weight: UnsafePointer<Float>, outDim: Int, dWeight: UnsafeMutablePointer<Float>,
                    dBias: UnsafeMutablePointer<Float>?, dX: UnsafeMutablePointer<Float>, accumulateDX: Bool) {
    BLAS.sgemm(transA: .transpose, m: outDim, n: inDim, k: rows, a: dOut, lda: outDim, b: x, ldb: inDim,
               beta: 1, c: dWeight, ldc: inDim)
    if let dBias {
        for r in 0..<rows { VectorMath.add(dOut + r * outDim, into: dBias, outDim) }
    }
    BLAS.sgemm(m: rows, n: inDim, k: outDim, a: dOut, lda: outDim, b: weight, ldb: inDim,
               beta: accumulateDX ? 1 : 0, c: dX, ldc: inDim)
}
