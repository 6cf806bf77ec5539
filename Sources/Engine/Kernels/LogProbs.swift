import Foundation

/// Per-token log-probabilities and entropies of tempered logits, and their backward.
///
/// With `z = logits / T`: `logp = z[target] − logsumexp(z)` and
/// `entropy = −Σ p log p = logsumexp(z) − Σ p·z`. Rows whose target is negative get `logp = 0`
/// (they are ignored) but still get an entropy.
public enum LogProbKernel {
    /// Forward over `rows` rows of `vocab` logits. Writes `logprobs[r]`, `entropy[r]` and the
    /// row's `logsumexp(z)` into `lse[r]` (saved for backward).
    public static func forward(
        logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>, rows: Int, vocab: Int, temperature: Float,
        logprobs: UnsafeMutablePointer<Float>, entropy: UnsafeMutablePointer<Float>, lse: UnsafeMutablePointer<Float>
    ) {
        let invT = 1 / temperature
        for r in 0..<rows {
            let row = logits + r * vocab
            let m = VectorMath.max(row, vocab) * invT
            // Double accumulation keeps the entropy of nearly one-hot rows accurate.
            var sum = 0.0, weighted = 0.0
            for j in 0..<vocab {
                let z = Double(row[j] * invT - m)
                let e = Foundation.exp(z)
                sum += e
                weighted += e * z
            }
            let logZ = Foundation.log(sum)
            lse[r] = Float(logZ + Double(m))
            entropy[r] = Float(logZ - weighted / sum)
            let t = Int(targets[r])
            logprobs[r] = t >= 0 ? Float(Double(row[t] * invT - m) - logZ) : 0
        }
    }

    /// Backward: `dLogits[r, j] = g_r/T · (δ_{j,target} − p_j)` where `g_r = dLogprobs[r]`
    /// (rows with a negative target or zero weight get zeros). `dLogits` may alias `logits`.
    public static func backward(
        logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>, lse: UnsafePointer<Float>,
        dLogprobs: UnsafePointer<Float>, rows: Int, vocab: Int, temperature: Float,
        dLogits: UnsafeMutablePointer<Float>
    ) {
        let invT = 1 / temperature
        for r in 0..<rows {
            let row = logits + r * vocab
            let out = dLogits + r * vocab
            let t = Int(targets[r])
            let g = dLogprobs[r]
            if t < 0 || g == 0 {
                for j in 0..<vocab { out[j] = 0 }
                continue
            }
            let scale = g * invT
            let l = lse[r]
            var j = 0
            while j + 8 <= vocab {
                VectorMath.store8(-scale * VectorMath.exp(VectorMath.load8(row + j) * invT - l), out + j)
                j += 8
            }
            if j < vocab {
                let rest = vocab - j
                VectorMath.storePartial(-scale * VectorMath.exp(VectorMath.loadPartial(row + j, rest) * invT - l), out + j, rest)
            }
            out[t] += scale
        }
    }

    /// Naive reference (Double) for tests: `(logprob, entropy)` of one row.
    public static func reference(logits: [Float], target: Int, temperature: Float) -> (logprob: Float, entropy: Float) {
        let z = logits.map { Double($0) / Double(temperature) }
        let m = z.max() ?? 0
        let logZ = Foundation.log(z.reduce(0) { $0 + Foundation.exp($1 - m) }) + m
        let p = z.map { Foundation.exp($0 - logZ) }
        let entropy = -zip(p, z).reduce(0.0) { $0 + $1.0 * ($1.1 - logZ) }
        return (target >= 0 ? Float(z[target] - logZ) : 0, Float(entropy))
    }

    /// Naive reference backward of `g · logp` with respect to the logits of one row.
    public static func referenceBackward(logits: [Float], target: Int, temperature: Float, dLogprob: Float) -> [Float] {
        guard target >= 0 else { return [Float](repeating: 0, count: logits.count) }
        let z = logits.map { Double($0) / Double(temperature) }
        let m = z.max() ?? 0
        let logZ = Foundation.log(z.reduce(0) { $0 + Foundation.exp($1 - m) }) + m
        return z.indices.map { j in
            Float(Double(dLogprob) / Double(temperature) * ((j == target ? 1 : 0) - Foundation.exp(z[j] - logZ)))
        }
    }
}
