import Foundation
import Shared

/// Picks the next token from a row of logits: greedy, temperature or nucleus (top-p) sampling,
/// and reports the behaviour log-probability of the pick.
///
/// Rules (the contract the learner relies on):
/// - `temperature == 0` is greedy: the highest logit wins, ties go to the lowest token id; the
///   random number is not used.
/// - `temperature > 0` samples from `softmax(logits / temperature)`. With `topP < 1` only the
///   smallest set of most-probable tokens whose probability mass reaches `topP` is kept (sorted by
///   probability descending, ties by lower id first; at least one token), renormalised.
/// - The inverse-CDF draw walks the candidates (token-id order without top-p, probability order
///   with top-p) and picks the first whose cumulative mass exceeds `u · mass`.
/// - The returned log-probability is always `log_softmax(logits / T)[token]` with `T` the request's
///   temperature (`T = 1` when greedy). Top-p truncation is deliberately **not** reflected: it is
///   the log-probability of the untruncated tempered policy, the quantity an importance ratio
///   against a recomputed `log_softmax(logits / T)` needs.
/// - Exponentials and sums are taken in `Double`, so the pick is insensitive to summation order.
///
/// A sampler owns scratch buffers sized for one vocabulary and never allocates while sampling.
/// It is not thread-safe; use one per thread.
public final class TokenSampler {
    /// Vocabulary size the scratch buffers are sized for.
    public let vocabSize: Int
    private let weights: UnsafeMutablePointer<Double>
    private let heap: UnsafeMutablePointer<Int32>

    /// A sampler for logits rows of `vocabSize` entries.
    public init(vocabSize: Int) {
        self.vocabSize = max(1, vocabSize)
        weights = .allocate(capacity: self.vocabSize)
        heap = .allocate(capacity: self.vocabSize)
    }

    deinit {
        weights.deallocate()
        heap.deallocate()
    }

    /// Chooses a token from `logits` (exactly `vocabSize` finite values).
    ///
    /// - Parameters:
    ///   - temperature: `0` for greedy, else the softmax temperature (> 0).
    ///   - topP: nucleus mass in `(0, 1]`; `1` disables truncation.
    ///   - uniform: a number in `[0, 1)`, normally ``CounterRNG/uniform(seed:index:)``.
    /// - Returns: the token and `log_softmax(logits / T)[token]` (`T = 1` when greedy).
    public func sample(logits: UnsafeBufferPointer<Float>, temperature: Float, topP: Float, uniform: Double)
        -> (token: TokenID, logProb: Float)
    {
        let count = min(logits.count, vocabSize)
        guard count > 0, let base = logits.baseAddress else { return (0, -.infinity) }
        let greedy = !(temperature > 0)
        let divisor: Float = greedy ? 1 : temperature

        // Tempered maximum and argmax of the raw logits (same index: dividing by T > 0 is monotone,
        // and ties keep the lowest index because only a strictly larger value replaces the best).
        var best = 0
        var bestLogit = base[0]
        for i in 1..<count where base[i] > bestLogit {
            best = i
            bestLogit = base[i]
        }
        let maxScaled = Double(bestLogit / divisor)
        var total = 0.0
        for i in 0..<count {
            let w = Foundation.exp(Double(base[i] / divisor) - maxScaled)
            weights[i] = w
            total += w
        }
        let logNormaliser = maxScaled + Foundation.log(total)

        let chosen: Int
        if greedy {
            chosen = best
        } else if topP >= 1 {
            chosen = drawInIdOrder(count: count, target: uniform * total)
        } else {
            chosen = drawFromNucleus(count: count, topP: Double(max(topP, 0)), total: total, uniform: uniform)
        }
        let logProb = Float(Double(base[chosen] / divisor) - logNormaliser)
        return (TokenID(chosen), logProb)
    }

    /// Array convenience for ``sample(logits:temperature:topP:uniform:)``.
    public func sample(logits: [Float], temperature: Float, topP: Float, uniform: Double) -> (token: TokenID, logProb: Float) {
        logits.withUnsafeBufferPointer { sample(logits: $0, temperature: temperature, topP: topP, uniform: uniform) }
    }

    /// `log_softmax(logits / T)[token]` (`T = 0` → `1`), with exactly the arithmetic of
    /// ``sample(logits:temperature:topP:uniform:)``, so scoring a sampled token under the same
    /// logits reproduces its behaviour log-probability bit for bit.
    public func logProbability(of token: TokenID, logits: UnsafeBufferPointer<Float>, temperature: Float) -> Float {
        let count = min(logits.count, vocabSize)
        guard count > 0, let base = logits.baseAddress, token >= 0, Int(token) < count else { return -.infinity }
        let divisor: Float = temperature > 0 ? temperature : 1
        var bestLogit = base[0]
        for i in 1..<count where base[i] > bestLogit { bestLogit = base[i] }
        let maxScaled = Double(bestLogit / divisor)
        var total = 0.0
        for i in 0..<count { total += Foundation.exp(Double(base[i] / divisor) - maxScaled) }
        return Float(Double(base[Int(token)] / divisor) - (maxScaled + Foundation.log(total)))
    }

    private func drawInIdOrder(count: Int, target: Double) -> Int {
        var cumulative = 0.0
        var lastPositive = 0
        for i in 0..<count where weights[i] > 0 {
            cumulative += weights[i]
            lastPositive = i
            if cumulative > target { return i }
        }
        // Rounding can leave `target` at or just above the accumulated mass.
        return lastPositive
    }

    /// Pops tokens from a max-heap (probability descending, lower id first on ties) until the
    /// popped mass reaches `topP · total`, then draws among the popped tokens in popping order.
    /// Popped tokens are moved to the tail of `heap`, so the nucleus ends up in
    /// `heap[count - kept ..< count]` in reverse popping order.
    private func drawFromNucleus(count: Int, topP: Double, total: Double, uniform: Double) -> Int {
        for i in 0..<count { heap[i] = Int32(i) }
        var size = count
        var start = count / 2
        while start > 0 {
            start -= 1
            siftDown(start, size)
        }
        let needed = topP * total
        var kept = 0.0
        while size > 0 {
            let top = heap[0]
            size -= 1
            heap[0] = heap[size]
            heap[size] = top
            siftDown(0, size)
            kept += weights[Int(top)]
            if kept >= needed { break }
        }
        let target = uniform * kept
        var cumulative = 0.0
        var index = count - 1
        while index >= size {
            let token = Int(heap[index])
            cumulative += weights[token]
            if cumulative > target { return token }
            index -= 1
        }
        return Int(heap[size])
    }

    @inline(__always)
    private func ranksBefore(_ a: Int32, _ b: Int32) -> Bool {
        let wa = weights[Int(a)], wb = weights[Int(b)]
        return wa > wb || (wa == wb && a < b)
    }

    private func siftDown(_ start: Int, _ size: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            if left >= size { return }
            var child = left
            if left + 1 < size && ranksBefore(heap[left + 1], heap[left]) { child = left + 1 }
            if !ranksBefore(heap[child], heap[parent]) { return }
            let swap = heap[child]
            heap[child] = heap[parent]
            heap[parent] = swap
            parent = child
        }
    }
}
