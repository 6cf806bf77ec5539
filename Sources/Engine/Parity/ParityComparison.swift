import Shared

/// How far cerm's logits of one prompt are from a ``ParityFixture``'s reference.
public struct LogitAgreement: Sendable, Equatable {
    /// Positions compared (the prompt's length).
    public let positions: Int
    /// Max over positions of max |Δ| over the stored entries (top-k logits, sampled logits and
    /// the max |logit| itself) divided by the reference's max |logit| at that position.
    public let maxRelativeDifference: Float
    /// Where that maximum is, and which entry ("id 123" or "max|logit|").
    public let worstPosition: Int
    public let worstEntry: String
    /// Positions where cerm's argmax is not the reference's (near-ties may differ within tolerance).
    public let argmaxDisagreements: Int

    public func isWithin(_ tolerance: Float) -> Bool { maxRelativeDifference <= tolerance }
}

/// Whether cerm's greedy continuation of one prompt is the reference's.
public struct GreedyAgreement: Sendable, Equatable {
    /// First step where the tokens differ, nil when identical.
    public let firstDivergence: Int?
    /// The reference's top-2 logit margin at that step (small: a near-tie that float rounding flips).
    public let referenceMarginAtDivergence: Float?

    public var isIdentical: Bool { firstDivergence == nil }
}

/// The comparisons of `cerm check-parity` (issue 23, point 5).
public enum ParityComparison {
    /// Allowed max |Δ| relative to max |logit|.
    public static let relativeTolerance: Float = 1e-3

    /// Compares `logits` (`[position · vocab + id]`, the whole prompt's) with the fixture's
    /// entries for prompt `prompt`.
    public static func logits(_ logits: [Float], prompt: Int, fixture: ParityFixture) throws -> LogitAgreement {
        let positions = fixture.prompts[prompt].tokens.count
        let vocab = fixture.vocabSize
        guard logits.count == positions * vocab else {
            throw CermError.invalid("parity: prompt \(prompt): \(logits.count) logits, expected \(positions) positions × \(vocab)")
        }
        var worst: (relative: Float, position: Int, entry: String) = (-1, 0, "")
        var argmaxDisagreements = 0
        for position in 0..<positions {
            let reference = fixture.row(prompt: prompt, position: position)
            guard reference.maxAbsoluteLogit > 0, reference.maxAbsoluteLogit.isFinite else {
                throw CermError.invalid("parity: prompt \(prompt) position \(position): the reference max|logit| is \(reference.maxAbsoluteLogit)")
            }
            let row = logits[(position * vocab)..<((position + 1) * vocab)]
            if let bad = row.firstIndex(where: { !$0.isFinite }) {
                return LogitAgreement(positions: positions, maxRelativeDifference: .infinity, worstPosition: position,
                                      worstEntry: "id \(bad - row.startIndex) is \(row[bad])", argmaxDisagreements: argmaxDisagreements)
            }
            var maxAbsolute: Float = 0
            var argmax = row.startIndex
            for index in row.indices {
                maxAbsolute = max(maxAbsolute, abs(row[index]))
                if row[index] > row[argmax] { argmax = index }
            }
            if Int32(argmax - row.startIndex) != reference.topIDs.first { argmaxDisagreements += 1 }

            var entries: [(Float, Float, String)] = [(maxAbsolute, reference.maxAbsoluteLogit, "max|logit|")]
            for (id, value) in zip(reference.topIDs, reference.topLogits) {
                entries.append((row[row.startIndex + Int(id)], value, "id \(id)"))
            }
            for (id, value) in zip(fixture.vocabSample, reference.sampleLogits) {
                entries.append((row[row.startIndex + id], value, "id \(id)"))
            }
            for (mine, theirs, name) in entries {
                let relative = abs(mine - theirs) / reference.maxAbsoluteLogit
                if relative > worst.relative { worst = (relative, position, name) }
            }
        }
        return LogitAgreement(positions: positions, maxRelativeDifference: worst.relative, worstPosition: worst.position,
                              worstEntry: worst.entry, argmaxDisagreements: argmaxDisagreements)
    }

    /// Compares a greedy continuation with the fixture's for prompt `prompt` (all
    /// ``ParityFixture/greedyTokens`` tokens; a shorter continuation differs where it ends).
    public static func greedy(_ tokens: [TokenID], prompt: Int, fixture: ParityFixture) -> GreedyAgreement {
        let reference = fixture.prompts[prompt]
        guard let step = (0..<reference.greedyTokens.count).first(where: {
            $0 >= tokens.count || tokens[$0] != reference.greedyTokens[$0]
        }) else {
            // Equal on the reference's length: identical, or one token too many.
            return GreedyAgreement(firstDivergence: tokens.count == reference.greedyTokens.count ? nil : reference.greedyTokens.count,
                                   referenceMarginAtDivergence: nil)
        }
        return GreedyAgreement(firstDivergence: step, referenceMarginAtDivergence: reference.greedyMargins[step])
    }
}
