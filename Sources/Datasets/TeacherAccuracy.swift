import Foundation

/// Accumulated accuracy: `credit` sums 1 per correct judgement, ½ per tie.
public struct AccuracyTally: Sendable, Equatable {
    public var count = 0
    public var credit = 0.0
    /// The sum of the squared credits: with ``credit`` and ``count`` it gives the spread of the
    /// credits, so the ``standardError`` counts a tie's ½ as the half-win it is.
    public var squaredCredit = 0.0

    /// A tally of `count` judgements worth `credit` in all; `squaredCredit` defaults to
    /// `credit`, the value when every credit is 0 or 1.
    public init(count: Int = 0, credit: Double = 0, squaredCredit: Double? = nil) {
        self.count = count
        self.credit = credit
        self.squaredCredit = squaredCredit ?? credit
    }

    /// credit / count, 0 when empty.
    public var accuracy: Double { count == 0 ? 0 : credit / Double(count) }

    /// The standard error of ``accuracy`` as the mean of the per-judgement credits: the sample
    /// standard deviation (n − 1) over √n; nil below two judgements. With 0/1 credits it is the
    /// binomial √(p(1 − p)/(n − 1)).
    public var standardError: Double? {
        guard count >= 2 else { return nil }
        let n = Double(count)
        let variance = max(0, (squaredCredit - credit * credit / n) / (n - 1))
        return (variance / n).squareRoot()
    }

    /// Adds one judgement's credit (1, ½, 1/(t+1) or 0).
    public mutating func add(_ value: Double) {
        count += 1
        credit += value
        squaredCredit += value * value
    }

    /// Adds the judgements of another tally.
    public mutating func add(_ other: AccuracyTally) {
        count += other.count
        credit += other.credit
        squaredCredit += other.squaredCredit
    }
}

/// The credit rules of held-out accuracy, shared by every judge (the teacher, `cerm eval`).
///
/// A response without a valid score (nil) ranks below every response with one; two responses
/// without one tie.
public enum EvaluationScoring {
    /// 1 when `chosen` beats `rejected`, ½ on a tie (equal scores, or both invalid), else 0.
    public static func pairwiseCredit(chosen: Double?, rejected: Double?) -> Double {
        let c = chosen ?? -.infinity
        let r = rejected ?? -.infinity
        if c > r { return 1 }
        return c == r ? 0.5 : 0
    }

    /// 1 when response `best` has the strictly highest score; 1/(t+1) when it ties at the top
    /// with t others; 0 when another response scores higher (or `best` is out of range).
    public static func bestOfNCredit(scores: [Double?], best: Int) -> Double {
        guard scores.indices.contains(best) else { return 0 }
        let ranked = scores.map { $0 ?? -.infinity }
        let top = ranked.max() ?? -.infinity
        guard ranked[best] == top else { return 0 }
        return 1 / Double(ranked.filter { $0 == top }.count)
    }
}

/// The teacher's accuracy on a split: pairwise and Best-of-N, overall and per task type.
public struct TeacherAccuracyReport: Sendable, Equatable {
    public var pairwise = AccuracyTally()
    public var pairwiseByType: [String: AccuracyTally] = [:]
    public var bestOfN = AccuracyTally()
    public var bestOfNByType: [String: AccuracyTally] = [:]
    /// Records whose query the teacher does not know (not synthetic); not counted above.
    public var unsupported = 0

    public init() {}

    /// A human-readable table, one line per figure.
    public var summary: String {
        func pct(_ t: AccuracyTally) -> String { String(format: "%.1f%% (%d)", 100 * t.accuracy, t.count) }
        var lines = ["pairwise accuracy: \(pct(pairwise))"]
        for (type, tally) in pairwiseByType.sorted(by: { $0.key < $1.key }) { lines.append("  \(type): \(pct(tally))") }
        if bestOfN.count > 0 {
            lines.append("best-of-n accuracy: \(pct(bestOfN))")
            for (type, tally) in bestOfNByType.sorted(by: { $0.key < $1.key }) { lines.append("  \(type): \(pct(tally))") }
        }
        if unsupported > 0 { lines.append("unsupported queries (skipped): \(unsupported)") }
        return lines.joined(separator: "\n")
    }
}

extension Teacher {
    /// 1 when the teacher scores `chosen` above `rejected`, ½ on a tie, 0 otherwise; nil for
    /// an unknown query.
    public func pairwiseCredit(_ pair: PreferencePair) -> Double? {
        guard let chosen = evaluate(query: pair.query, response: pair.chosen),
              let rejected = evaluate(query: pair.query, response: pair.rejected) else { return nil }
        return EvaluationScoring.pairwiseCredit(chosen: chosen.overall, rejected: rejected.overall)
    }

    /// 1/m when the best response is among the m responses with the top score, else 0; nil for
    /// an unknown query.
    public func bestOfNCredit(_ item: BestOfNItem) -> Double? {
        var scores: [Double?] = []
        for response in item.responses {
            guard let evaluation = evaluate(query: item.query, response: response) else { return nil }
            scores.append(evaluation.overall)
        }
        return EvaluationScoring.bestOfNCredit(scores: scores, best: item.best)
    }

    /// Pairwise accuracy on `pairs` and Best-of-N accuracy on `bestOfN`, with per-type splits
    /// (records without a type count under `(none)`).
    public func measure(pairs: [PreferencePair], bestOfN: [BestOfNItem] = []) -> TeacherAccuracyReport {
        var report = TeacherAccuracyReport()
        for pair in pairs {
            guard let credit = pairwiseCredit(pair) else { report.unsupported += 1; continue }
            report.pairwise.add(credit)
            report.pairwiseByType[pair.taskTypeKey, default: AccuracyTally()].add(credit)
        }
        for item in bestOfN {
            guard let credit = bestOfNCredit(item) else { report.unsupported += 1; continue }
            report.bestOfN.add(credit)
            report.bestOfNByType[item.taskType ?? "(none)", default: AccuracyTally()].add(credit)
        }
        return report
    }

    /// One SFT example as a JSON line (docs/DATA.md, "SFT traces"); nil for an unknown query.
    public func sftTraceLine(id: String, query: String, response: String, label: String, taskType: String?, sample: UInt64 = 0) -> String? {
        sftTrace(id: id, query: query, response: response, label: label, taskType: taskType, sample: sample)?.jsonLine
    }
}
