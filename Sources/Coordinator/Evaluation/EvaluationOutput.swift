import Datasets
import Foundation
import Shared

extension EvaluationReport {
    /// A plain-text table: accuracy with its standard error overall and per task type, then
    /// output validity.
    public func table(title: String) -> String {
        func pct(_ tally: AccuracyTally) -> String {
            guard tally.count > 0 else { return "—" }
            let error = tally.standardError.map { String(format: " ± %.1f", 100 * $0) } ?? ""
            return String(format: "%5.1f%%", 100 * tally.accuracy) + error + " (n=\(tally.count))"
        }
        let mixed = bestOfNSmallestSize > 0 && bestOfNSmallestSize < bestOfNSize
        let bonLabel = "best-of-" + (bestOfNSize == 0 ? "N" : mixed ? "\(bestOfNSmallestSize)…\(bestOfNSize)" : String(bestOfNSize))
        var lines = [title, "subset".padding(toLength: 12, withPad: " ", startingAt: 0) + " "
                     + "pairwise".padding(toLength: 24, withPad: " ", startingAt: 0) + " " + bonLabel]
        func row(_ name: String, _ pair: AccuracyTally, _ bon: AccuracyTally) {
            lines.append(name.padding(toLength: 12, withPad: " ", startingAt: 0) + " "
                         + pct(pair).padding(toLength: 24, withPad: " ", startingAt: 0) + " " + pct(bon))
        }
        row("overall", pairwise, bestOfN)
        for type in Set(pairwiseByType.keys).union(bestOfNByType.keys).sorted() {
            row("  " + type, pairwiseByType[type] ?? AccuracyTally(), bestOfNByType[type] ?? AccuracyTally())
        }
        lines.append(String(format: "valid format: %.1f%% (criteria %d/%d, evaluations %d/%d); responses without a score: %d/%d",
                            100 * validFormatRate, criteriaValid, criteriaGenerated, evaluationsValid, evaluationsGenerated,
                            responsesWithoutScore, responses))
        if !criteriaFailures.isEmpty {
            lines.append("criteria parse failures: " + criteriaFailures.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        if !evaluationFailures.isEmpty {
            lines.append("evaluation parse failures: " + evaluationFailures.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        if unsupported > 0 { lines.append("unsupported queries (skipped): \(unsupported)") }
        if mixed {
            lines.append("note: the Best-of-N items have \(bestOfNSmallestSize) to \(bestOfNSize) responses, and their chance levels differ "
                         + "(1/N): evaluate each Best-of-N file alone to compare N")
        }
        lines.append(String(format: "time: %.1f s", seconds))
        return lines.joined(separator: "\n")
    }

    /// Every number as JSON members (to embed in a larger object).
    public var jsonMembers: [(String, String)] {
        func number(_ value: Double) -> String { value.isFinite ? String(value) : "null" }
        func tally(_ t: AccuracyTally) -> String {
            JSONWriter.object([("accuracy", t.count == 0 ? "null" : number(t.accuracy)),
                               ("standard_error", t.standardError.map(number) ?? "null"), ("count", String(t.count)),
                               ("credit", number(t.credit))])
        }
        func byType(_ map: [String: AccuracyTally]) -> String {
            JSONWriter.object(map.sorted { $0.key < $1.key }.map { ($0.key, tally($0.value)) })
        }
        func counts(_ map: [String: Int]) -> String {
            JSONWriter.object(map.sorted { $0.key < $1.key }.map { ($0.key, String($0.value)) })
        }
        return [
            ("pairwise", tally(pairwise)), ("pairwise_by_type", byType(pairwiseByType)),
            ("best_of_n", tally(bestOfN)), ("best_of_n_by_type", byType(bestOfNByType)), ("best_of_n_size", String(bestOfNSize)),
            ("best_of_n_smallest_size", String(bestOfNSmallestSize)),
            ("valid_format_rate", number(validFormatRate)),
            ("criteria_generated", String(criteriaGenerated)), ("criteria_valid", String(criteriaValid)),
            ("evaluations_generated", String(evaluationsGenerated)), ("evaluations_valid", String(evaluationsValid)),
            ("criteria_tokens", String(criteriaTokens)), ("evaluation_tokens", String(evaluationTokens)),
            ("mean_output_tokens", number(meanOutputTokens)),
            ("criteria_failures", counts(criteriaFailures)), ("evaluation_failures", counts(evaluationFailures)),
            ("responses", String(responses)), ("responses_without_score", String(responsesWithoutScore)),
            ("unsupported", String(unsupported)),
            ("seconds", number(seconds)),
        ]
    }

    /// `cerm pipeline`'s headline table: held-out pairwise and Best-of-N accuracy of each judge
    /// (overall with its standard error, and per task type), the valid-format rate, the mean
    /// output length in tokens, and the stage times.
    public static func pipelineTable(_ rows: [(String, EvaluationReport)], timings: [(String, Double)], total: Double) -> String {
        let types = Set(rows.flatMap { Array($0.1.pairwiseByType.keys) + Array($0.1.bestOfNByType.keys) }).sorted()
        let bonSize = rows.map(\.1.bestOfNSize).max() ?? 0
        let bon = bonSize == 0 ? "best-of-N" : "best-of-\(bonSize)"
        func pct(_ tally: AccuracyTally?, error: Bool = false) -> String {
            guard let tally, tally.count > 0 else { return "—" }
            let se = error ? tally.standardError.map { String(format: " ± %.1f", 100 * $0) } ?? "" : ""
            return String(format: "%.1f%%", 100 * tally.accuracy) + se
        }
        let header = ["judge", "pairwise"] + types.map { "pairwise \($0)" } + [bon] + types.map { "\(bon) \($0)" }
            + ["valid format", "output tokens"]
        var lines: [[String]] = []
        for (name, report) in rows {
            lines.append([name, pct(report.pairwise, error: true)] + types.map { pct(report.pairwiseByType[$0]) }
                         + [pct(report.bestOfN, error: true)] + types.map { pct(report.bestOfNByType[$0]) }
                         + [String(format: "%.1f%%", 100 * report.validFormatRate), String(format: "%.0f", report.meanOutputTokens)])
        }
        var out = ["| " + header.joined(separator: " | ") + " |", "|" + header.map { _ in "---" }.joined(separator: "|") + "|"]
        out += lines.map { "| " + $0.joined(separator: " | ") + " |" }
        let pairs = rows.first.map { $0.1.pairwise.count } ?? 0
        out.append("")
        out.append("Held-out pairs: \(pairs); ties count ½. Stage times: "
                   + timings.map { String(format: "%@ %.0f s", $0.0, $0.1) }.joined(separator: ", ")
                   + String(format: "; total %.1f min.", total / 60))
        return out.joined(separator: "\n")
    }
}
