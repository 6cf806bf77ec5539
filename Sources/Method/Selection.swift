import Foundation

// Data selection rules of the seeds: ReasonGRM's R* trace selection and hard-case mining, and
// CE-RM's uncertainty filter for curation. Pure functions over numbers the engine measured.

/// ReasonGRM's selection rules (docs/DESIGN.md §3, options b and c).
public enum ReasonGRMSelection {
    /// R* = (mean token probability of the reasoning) × (mean token probability of the answer),
    /// from per-token log-probs. Nil when either part has no tokens.
    public static func rStar(reasoningLogProbs: [Double], answerLogProbs: [Double]) -> Double? {
        guard !reasoningLogProbs.isEmpty, !answerLogProbs.isEmpty else { return nil }
        func meanProbability(_ logProbs: [Double]) -> Double { mean(logProbs.map { exp($0) }) }
        return meanProbability(reasoningLogProbs) * meanProbability(answerLogProbs)
    }

    /// One candidate trace of a query: whether its answer is correct and its R*.
    public struct Candidate: Sendable, Equatable {
        public var correct: Bool
        public var rStar: Double

        public init(correct: Bool, rStar: Double) {
            self.correct = correct
            self.rStar = rStar
        }
    }

    /// The index of the correct candidate with the highest R* (the lowest index on ties), or
    /// nil when no candidate is correct. NaN R* values never win.
    public static func bestTrace(_ candidates: [Candidate]) -> Int? {
        var best: (index: Int, rStar: Double)?
        for (index, candidate) in candidates.enumerated() where candidate.correct && !candidate.rStar.isNaN {
            if candidate.rStar > (best?.rStar ?? -Double.infinity) { best = (index, candidate.rStar) }
        }
        return best?.index
    }

    /// Hard-case mining: keep a query unless the model was correct on all its samples.
    /// A query without samples is kept (nothing shows it is easy).
    public static func isHardCase(correct: [Bool]) -> Bool { correct.contains(false) || correct.isEmpty }
}

/// CE-RM's curation filter: keep pairs the base model is uncertain about.
public enum CurationFilter {
    /// Whether a pair whose k sampled judgments were correct `correctCount` times is kept:
    /// accuracy `correctCount / k ≤ threshold` (CE-RM: 0.6). No samples: not kept.
    public static func isUncertain(correctCount: Int, samples: Int, threshold: Double = 0.6) -> Bool {
        guard samples > 0 else { return false }
        return Double(correctCount) / Double(samples) <= threshold
    }
}
