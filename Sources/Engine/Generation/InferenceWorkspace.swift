import Shared

/// One row of a forward pass: token `token` of cache slot `slot` at absolute position `position`.
struct InferenceRow {
    var slot: Int
    var position: Int
    var token: TokenID
}

/// Scratch buffers of the inference forward pass, sized for a number of rows (sequences in a
/// decode step, or tokens in a prefill chunk).
///
/// Buffers only grow, and only in ``reserve(rows:)``, which the generator calls once per
/// `generate`/`score`/`prefill` call before its loops; the per-token decode loop therefore never
/// allocates. ``allocationCount`` lets tests verify that.
final class InferenceWorkspace {
    private(set) var rowCapacity = 0
    /// Times the buffers were (re)allocated.
    private(set) var allocationCount = 0

    private let hidden: Int, qDim: Int, kvDim: Int, ffn: Int, vocab: Int
    let scoreStride: Int
    private let group: Int

    /// Residual stream `[rows, hidden]`.
    private(set) var residual: UnsafeMutablePointer<Float>
    /// Normalised activations `[rows, hidden]`.
    private(set) var normed: UnsafeMutablePointer<Float>
    private(set) var queries: UnsafeMutablePointer<Float>
    private(set) var keys: UnsafeMutablePointer<Float>
    private(set) var values: UnsafeMutablePointer<Float>
    private(set) var attention: UnsafeMutablePointer<Float>
    private(set) var gate: UnsafeMutablePointer<Float>
    private(set) var up: UnsafeMutablePointer<Float>
    /// Final-normed rows whose logits are wanted, compacted `[rows, hidden]`.
    private(set) var logitInput: UnsafeMutablePointer<Float>
    /// Logits `[rows, vocab]`, in the order of ``logitRows``.
    private(set) var logits: UnsafeMutablePointer<Float>
    private(set) var rows: UnsafeMutablePointer<InferenceRow>
    /// Indices into ``rows`` whose logits are computed.
    private(set) var logitRows: UnsafeMutablePointer<Int>
    /// Attention scores: ``scoreParts`` thread-private blocks of ``scorePartSize`` floats, each
    /// `[heads per kv head, scoreStride]`.
    let scores: UnsafeMutablePointer<Float>
    let scoreParts = 8
    let scorePartSize: Int

    init(config: TransformerConfig) {
        hidden = config.hiddenSize
        qDim = config.qDim
        kvDim = config.kvDim
        ffn = config.ffnSize
        vocab = config.vocabSize
        group = max(1, config.heads / max(1, config.kvHeads))
        scoreStride = max(1, config.maxSeqLen)
        scorePartSize = group * scoreStride
        scores = .allocate(capacity: scoreParts * scorePartSize)
        residual = .allocate(capacity: 1)
        normed = .allocate(capacity: 1)
        queries = .allocate(capacity: 1)
        keys = .allocate(capacity: 1)
        values = .allocate(capacity: 1)
        attention = .allocate(capacity: 1)
        gate = .allocate(capacity: 1)
        up = .allocate(capacity: 1)
        logitInput = .allocate(capacity: 1)
        logits = .allocate(capacity: 1)
        rows = .allocate(capacity: 1)
        logitRows = .allocate(capacity: 1)
    }

    deinit {
        releaseRowBuffers()
        scores.deallocate()
    }

    private func releaseRowBuffers() {
        residual.deallocate(); normed.deallocate(); queries.deallocate(); keys.deallocate()
        values.deallocate(); attention.deallocate(); gate.deallocate(); up.deallocate()
        logitInput.deallocate(); logits.deallocate(); rows.deallocate(); logitRows.deallocate()
    }

    /// Makes every buffer hold at least `count` rows.
    func reserve(rows count: Int) {
        guard count > rowCapacity else { return }
        releaseRowBuffers()
        residual = .allocate(capacity: count * hidden)
        normed = .allocate(capacity: count * hidden)
        queries = .allocate(capacity: count * qDim)
        keys = .allocate(capacity: count * kvDim)
        values = .allocate(capacity: count * kvDim)
        attention = .allocate(capacity: count * qDim)
        gate = .allocate(capacity: count * ffn)
        up = .allocate(capacity: count * ffn)
        logitInput = .allocate(capacity: count * hidden)
        logits = .allocate(capacity: count * vocab)
        rows = .allocate(capacity: count)
        logitRows = .allocate(capacity: count)
        rowCapacity = count
        allocationCount += 1
    }
}
