import Shared

/// A batch of variable-length token sequences for a training / scoring forward pass.
///
/// Row `b` has `inputs[b].count` positions (0 ..< len, no padding: rows are ragged). At
/// position `t` the model reads `inputs[b][0...t]` and is scored on `targets[b][t]`, the token
/// that should come next; a negative target means "not scored" (log-prob 0, no gradient).
/// Both arrays must have the same shape; empty rows are allowed.
public struct TokenBatch: Sendable, Equatable {
    public var inputs: [[TokenID]]
    public var targets: [[TokenID]]

    public init(inputs: [[TokenID]], targets: [[TokenID]]) {
        self.inputs = inputs
        self.targets = targets
    }

    /// Next-token batch from whole sequences: row `b` reads `sequences[b].dropLast()` and the
    /// target at position `t` is `sequences[b][t + 1]`, scored only when `t + 1 ≥ scoredFrom[b]`
    /// (e.g. the index of the first completion token after a prompt; 0 or 1 scores everything).
    /// So `logprobs[b][t]` of the forward result is log p(`sequences[b][t + 1]` | prefix).
    public init(sequences: [[TokenID]], scoredFrom: [Int]) {
        precondition(sequences.count == scoredFrom.count, "TokenBatch: one scoredFrom per sequence")
        self.init(sequences: sequences, scoredRanges: zip(sequences, scoredFrom).map { seq, start in [start..<max(start, seq.count)] })
    }

    /// Next-token batch scoring only the tokens whose indices lie in `scoredRanges[b]` (e.g.
    /// several target turns of one conversation): the target at position `t` is
    /// `sequences[b][t + 1]` when `t + 1` is in a range, −1 otherwise. Index 0 is never scored.
    public init(sequences: [[TokenID]], scoredRanges: [[Range<Int>]]) {
        precondition(sequences.count == scoredRanges.count, "TokenBatch: one list of scored ranges per sequence")
        var inputs: [[TokenID]] = [], targets: [[TokenID]] = []
        for (seq, ranges) in zip(sequences, scoredRanges) {
            guard seq.count >= 2 else {
                inputs.append([]); targets.append([])
                continue
            }
            var rowTargets = [TokenID](repeating: -1, count: seq.count - 1)
            for range in ranges {
                for index in range where index >= 1 && index < seq.count { rowTargets[index - 1] = seq[index] }
            }
            inputs.append(Array(seq.dropLast()))
            targets.append(rowTargets)
        }
        self.inputs = inputs
        self.targets = targets
    }

    /// Number of sequences.
    public var count: Int { inputs.count }
    /// Total number of positions over all rows.
    public var tokenCount: Int { inputs.reduce(0) { $0 + $1.count } }
    /// Number of positions with a target ≥ 0.
    public var scoredCount: Int { targets.reduce(0) { $0 + $1.filter { $0 >= 0 }.count } }
}

/// What a forward pass returns; shapes follow the batch (`[b][t]`, ragged).
public struct ForwardResult: Sendable {
    /// `log softmax(logits / T)[target]` per position; 0 where the target is negative.
    public var logprobs: [[Float]]
    /// Entropy of `softmax(logits / T)` per position: every position when the LM head runs as
    /// one product (N·V within ``Transformer/lmHeadChunkFloats``, or logits returned); beyond,
    /// the chunked head computes scored positions only, and an unscored one's entropy is 0.
    public var entropy: [[Float]]
    /// Raw (untempered) logits per row, `[t · vocab + v]`, when requested.
    public var logits: [[Float]]?
}
