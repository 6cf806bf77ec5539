import Coordinator
import Datasets
import Testing

/// `cerm pipeline`'s results table (results.md), with hand-computed figures.
@Suite struct PipelineTableTests {
    @Test func theTableShowsAccuracyWithItsStandardErrorTheValidFormatRateAndTheOutputLength() {
        var report = EvaluationReport()
        // Pairwise credits 1, 0, 1, 1: 75%; sample variance (3 − 3²/4)/3 = 0.25, se √(0.25/4) = 25%.
        for credit in [1.0, 0, 1, 1] {
            report.pairwise.add(credit)
            report.pairwiseByType["math", default: AccuracyTally()].add(credit)
        }
        // Best-of-4 credits 1, 0: 50%; variance (1 − 1/2)/1 = 0.5, se √(0.5/2) = 50%.
        for credit in [1.0, 0] {
            report.bestOfN.add(credit)
            report.bestOfNByType["math", default: AccuracyTally()].add(credit)
        }
        report.bestOfNSize = 4
        // 3 of 4 criteria and 6 of 8 evaluations valid: 75%; (400 + 1600) tokens / 12 outputs ≈ 167.
        for index in 0..<4 { report.recordCriteria(index == 0 ? .truncated : nil, tokens: 100) }
        for index in 0..<8 { report.recordEvaluation(index < 2 ? .truncated : nil, tokens: 200) }
        let table = EvaluationReport.pipelineTable([("after SFT", report)], timings: [("sft", 61)], total: 120)
        #expect(table == """
            | judge | pairwise | pairwise math | best-of-4 | best-of-4 math | valid format | output tokens |
            |---|---|---|---|---|---|---|
            | after SFT | 75.0% ± 25.0 | 75.0% | 50.0% ± 50.0 | 50.0% | 75.0% | 167 |

            Held-out pairs: 4; ties count ½. Stage times: sft 61 s; total 2.0 min.
            """)
    }
}
