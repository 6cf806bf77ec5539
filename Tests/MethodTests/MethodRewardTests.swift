import Foundation
@testable import Method
@testable import Shared
import Testing

private func rewards(_ outcomes: [TrajectoryOutcome]) -> [Double] { outcomes.map(\.reward) }

@Suite struct CermRewardTests {
    @Test func winFunction() {
        #expect(CermRewards.win(7, over: 5) == 1)
        #expect(CermRewards.win(5, over: 5) == 0.5)
        #expect(CermRewards.win(4, over: 5) == 0)
        #expect(CermRewards.win(0, over: nil) == 1)
        #expect(CermRewards.win(nil, over: 10) == 0)
        #expect(CermRewards.win(nil, over: nil) == 0)
    }

    @Test func handComputedPairWithTiesInvalidEvaluationAndInvalidCriteria() {
        // C0 valid: chosen scores [7, 5], rejected [5, ⊥]. C1 invalid (no evaluations).
        // E+00 (7): w(7,5)=1, w(7,⊥)=1 → 1.      E+01 (5): w(5,5)=½, w(5,⊥)=1 → 0.75.
        // E-00 (5): chosen 7 above → 1, chosen 5 tie → ½ → 0.75.   E-01 (⊥): 0.
        // C0: (1 + 1 + ½ + 1) / 4 = 0.875.   C1: 0.
        let outcomes = CermRewards.rewards(.init(pairID: 3, criteriaValid: [true, false],
                                                 chosen: [[7, 5], []], rejected: [[5, nil], []]))
        #expect(outcomes.map(\.id) == [
            .criteria(pair: 3, 0), .criteria(pair: 3, 1),
            .evaluation(pair: 3, criteria: 0, response: 0, sample: 0), .evaluation(pair: 3, criteria: 0, response: 0, sample: 1),
            .evaluation(pair: 3, criteria: 0, response: 1, sample: 0), .evaluation(pair: 3, criteria: 0, response: 1, sample: 1),
        ])
        #expect(rewards(outcomes) == [0.875, 0, 1, 0.75, 0.75, 0])
        #expect(outcomes.map(\.formatValid) == [true, false, true, true, true, false])
        #expect(outcomes.map(\.correct) == [true, false, true, true, true, false])
    }

    @Test func oneSidedInvalid() {
        // Chosen ⊥, rejected valid: E+ 0, E- wins against ⊥ (1), criteria 0 (⊥ wins nothing).
        #expect(rewards(CermRewards.rewards(.init(pairID: 0, criteriaValid: [true], chosen: [[nil]], rejected: [[4]]))) == [0, 0, 1])
        // Chosen valid, rejected ⊥: E+ 1, E- 0, criteria 1 (valid beats ⊥).
        #expect(rewards(CermRewards.rewards(.init(pairID: 0, criteriaValid: [true], chosen: [[3]], rejected: [[nil]]))) == [1, 1, 0])
    }

    @Test func allInvalid() {
        let outcomes = CermRewards.rewards(.init(pairID: 0, criteriaValid: [true], chosen: [[nil, nil]], rejected: [[nil, nil]]))
        #expect(rewards(outcomes) == [0, 0, 0, 0, 0])
        #expect(outcomes.map(\.formatValid) == [true, false, false, false, false])
        let noCriteria = CermRewards.rewards(.init(pairID: 0, criteriaValid: [false, false], chosen: [], rejected: []))
        #expect(rewards(noCriteria) == [0, 0])
    }

    @Test func singleCriteriaSingleEvaluation() {
        // nc = ne = 1: chosen scored below rejected → everything 0; a tie → ½ everywhere.
        #expect(rewards(CermRewards.rewards(.init(pairID: 0, criteriaValid: [true], chosen: [[6]], rejected: [[8]]))) == [0, 0, 0])
        #expect(rewards(CermRewards.rewards(.init(pairID: 0, criteriaValid: [true], chosen: [[5]], rejected: [[5]]))) == [0.5, 0.5, 0.5])
        #expect(rewards(CermRewards.rewards(.init(pairID: 0, criteriaValid: [true], chosen: [[9]], rejected: [[2.5]]))) == [1, 1, 1])
    }

    @Test func twoCriteriaThreeEvaluations() {
        // C0: chosen [8, 6, 4], rejected [6, 6, 9].
        //   E+ 8: (1+1+0)/3 = 2/3; E+ 6: (½+½+0)/3 = 1/3; E+ 4: 0.
        //   E- 6 (vs 8, 6, 4): (1+½+0)/3 = ½ (twice); E- 9: 0.
        //   C0: (2 + 1 + 0) / 9 = 1/3.
        // C1: chosen [⊥, 7, 7], rejected [5, 5, ⊥].
        //   E+ ⊥: 0; E+ 7: (1+1+1)/3 = 1 (twice).
        //   E- 5 (vs ⊥, 7, 7): (1+1+1)/3 = 1 (twice); E- ⊥: 0.
        //   C1: (0 + 3 + 3) / 9 = 2/3.
        let outcomes = CermRewards.rewards(.init(pairID: 0, criteriaValid: [true, true],
                                                 chosen: [[8, 6, 4], [nil, 7, 7]], rejected: [[6, 6, 9], [5, 5, nil]]))
        let expected: [Double] = [1.0 / 3, 2.0 / 3, 2.0 / 3, 1.0 / 3, 0, 0.5, 0.5, 0, 0, 1, 1, 1, 1, 0]
        #expect(outcomes.count == expected.count)
        for (outcome, value) in zip(outcomes, expected) { #expect(abs(outcome.reward - value) < 1e-12) }
    }

    @Test func scoresFromParseResults() {
        let criteria: [ParseResult<ParsedCriteria>] = [.valid(ParsedCriteria(analysis: "", items: ["a"])), .invalid(reason: .truncated)]
        let evaluation = ParseResult<ParsedEvaluation>.valid(ParsedEvaluation(items: [ScoredItem(analysis: "", score: 5)], otherPoint: nil, overall: 6))
        let scores = CermRewards.PairScores(pairID: 1, criteria: criteria,
                                            evaluations: [[[evaluation], [.invalid(reason: .noScore)]]])
        #expect(scores == CermRewards.PairScores(pairID: 1, criteriaValid: [true, false], chosen: [[6], []], rejected: [[nil], []]))
    }
}

@Suite struct ParRewardTests {
    func judgment(_ score: Double) -> ParseResult<ParsedJudgment> { .valid(ParsedJudgment(rubric: "", score: score)) }

    @Test func gradedAndConstantMargins() {
        // Chosen [8, 6, tags missing], rejected [5, 7, malformed]: m+ = 7, m- = 6.
        // y+ 8 > 6, δ = 2 → graded 1.2 (δ ≤ 2), constant 1.3.  y+ 6 > 6 is false → 0.
        // y- 5 < 7, δ = 2 → 1.2 / 1.3.  y- 7 < 7 is false → 0.  Format terms −1.5, −1.0.
        let chosen = [judgment(8), judgment(6), .invalid(reason: .missingTags)]
        let rejected = [judgment(5), judgment(7), .invalid(reason: .malformedScore)]
        let graded = ParRewards.rewards(pairID: 2, chosen: chosen, rejected: rejected, function: .graded)
        #expect(rewards(graded) == [1.2, 0, -1.5, 1.2, 0, -1.0])
        #expect(graded.map(\.correct) == [true, false, false, true, false, false])
        #expect(graded[3].id == TrajectoryID(pairID: 2, stage: .judgment, responseIndex: 1, sampleIndex: 0))
        let constant = ParRewards.rewards(pairID: 2, chosen: chosen, rejected: rejected, function: .constant)
        #expect(rewards(constant) == [1.3, 0, -1.5, 1.3, 0, -1.0])
    }

    @Test func largeMarginAndMissingSide() {
        // m- = 4, δ = 5 > 2 → 1.4 both ways.
        #expect(rewards(ParRewards.rewards(pairID: 0, chosen: [judgment(9)], rejected: [judgment(4)], function: .graded)) == [1.4, 1.4])
        // Just above the boundary: δ = 2.5 → 1.4; tiny positive margin → 1.2.
        #expect(ParRewards.margin(2.5, .graded) == 1.4)
        #expect(ParRewards.margin(0.001, .graded) == 1.2)
        #expect(ParRewards.margin(0, .graded) == 0)
        #expect(ParRewards.margin(0.001, .constant) == 1.3)
        // No valid rejected judgment: the chosen one has no mean to beat → 0; the rejected gets its format term.
        #expect(rewards(ParRewards.rewards(pairID: 0, chosen: [judgment(8)], rejected: [.invalid(reason: .noScore)], function: .graded)) == [0, -1.0])
        #expect(ParRewards.formatReward(.truncated) == -1.5)
        #expect(ParRewards.formatReward(.misorderedTags) == -1.5)
        #expect(ParRewards.formatReward(.scoreOutOfRange) == -1.0)
        #expect(ParRewards.formatReward(nil) == 0)
    }
}

@Suite struct PairwiseRewardTests {
    @Test func verdictAgainstPosition() {
        let samples: [PairwiseRewards.Sample] = [
            .init(verdict: .valid(.a), chosenIsA: true),
            .init(verdict: .valid(.a), chosenIsA: false),
            .init(verdict: .valid(.b), chosenIsA: false),
            .init(verdict: .valid(.b), chosenIsA: true),
            .init(verdict: .invalid(reason: .bothVerdicts), chosenIsA: true),
            .init(verdict: .invalid(reason: .noVerdict), chosenIsA: false),
            .init(verdict: .invalid(reason: .truncated), chosenIsA: true),
        ]
        let outcomes = PairwiseRewards.rewards(pairID: 5, samples: samples)
        #expect(rewards(outcomes) == [1, -1, 1, -1, -1, -1, -1])
        #expect(outcomes.map(\.formatValid) == [true, true, true, true, false, false, false])
        #expect(outcomes[6].id == TrajectoryID(pairID: 5, stage: .comparison, sampleIndex: 6))
    }
}

@Suite struct ResponseScoringTests {
    @Test func meanOfValidScoresAndBest() {
        let scores: [[Double?]] = [[6, 8], [nil, 9], [nil, nil], [7, 9]]
        #expect(ResponseScoring.meanScores(scores) == [7, 9, nil, 8])
        #expect(ResponseScoring.best(scores) == 1)
        #expect(ResponseScoring.best([[5], [5]]) == 0)
        #expect(ResponseScoring.best([[nil], []]) == nil)
    }

    @Test func pairAccuracyPoolsValidCriteria() {
        // Valid C0: chosen [7, 5] vs rejected [5, ⊥] → means 6 vs 5 → 1. C1 invalid is ignored.
        let pair = CermRewards.PairScores(pairID: 0, criteriaValid: [true, false], chosen: [[7, 5], [0]], rejected: [[5, nil], [9]])
        #expect(CermRewards.impliedAccuracy(pair) == 1)
        let tie = CermRewards.PairScores(pairID: 0, criteriaValid: [true, true], chosen: [[4], [6]], rejected: [[5], [5]])
        #expect(CermRewards.impliedAccuracy(tie) == 0.5)
    }
}

@Suite struct PairRewarderTests {
    let tokenizer = ByteTokenizer()
    func out(_ text: String) -> [TokenID] { tokenizer.encode(text) + [ByteTokenizer.Special.eos.rawValue] }

    @Test func cermFromRawOutputs() {
        let rewarder = PairRewarder(mode: .cerm, parFunction: .graded, format: CompactFormat(), nc: 2, ne: 1, runSeed: 1, step: 0)
        var outputs: [TrajectoryID: [TokenID]] = [
            .criteria(pair: 8, 0): out("t\n[C]\n1. a\n2. b\n[/C]"),
            .evaluation(pair: 8, criteria: 0, response: 0, sample: 0): out("1. a: 5/5\n2. b: 4/5\n=> 8/10"),
            .evaluation(pair: 8, criteria: 0, response: 1, sample: 0): out("1. a: 2/5\n2. b: 1/5\n=> 3/10"),
            .evaluation(pair: 8, criteria: 1, response: 0, sample: 0): out("ignored: criteria 1 is missing"),
        ]
        // C0 ranks 8 over 3 → 1 everywhere under it; C1 is missing → truncated, reward 0.
        let scoring = rewarder.score(pairID: 8, outputs: outputs)
        #expect(scoring.outcomes.map(\.id) == [
            .criteria(pair: 8, 0), .criteria(pair: 8, 1),
            .evaluation(pair: 8, criteria: 0, response: 0, sample: 0), .evaluation(pair: 8, criteria: 0, response: 1, sample: 0),
        ])
        #expect(scoring.outcomes.map(\.reward) == [1, 0, 1, 1])
        #expect(scoring.failures == [.criteria(pair: 8, 1): .truncated])
        #expect(scoring.impliedAccuracy == 1)
        // The rejected evaluation scores one item only: ⊥. E+ beats ⊥ (1), E- gets 0, C0 gets 1.
        outputs[.evaluation(pair: 8, criteria: 0, response: 1, sample: 0)] = out("1. a: 2/5\n=> 3/10")
        let broken = rewarder.score(pairID: 8, outputs: outputs)
        #expect(broken.outcomes.map(\.reward) == [1, 0, 1, 0])
        #expect(broken.failures[.evaluation(pair: 8, criteria: 0, response: 1, sample: 0)] == .itemCountMismatch)
        var metrics = MethodMetrics()
        metrics.add(scoring: broken)
        #expect(metrics.summary.parseFailures == [.truncated: 1, .itemCountMismatch: 1])
        #expect(metrics.summary.pairwiseAccuracy == 1)
    }

    @Test func parFromRawOutputs() {
        let rewarder = PairRewarder(mode: .par, parFunction: .graded, format: CompactFormat(), nc: 1, ne: 2, runSeed: 1, step: 0)
        let par = ParFormat()
        func judged(_ score: Double) -> [TokenID] { out(par.outputText(thought: "", rubric: "", evaluation: "", score: score)) }
        let outputs: [TrajectoryID: [TokenID]] = [
            TrajectoryID(pairID: 1, stage: .judgment, responseIndex: 0, sampleIndex: 0): judged(8),
            TrajectoryID(pairID: 1, stage: .judgment, responseIndex: 0, sampleIndex: 1): judged(6),
            TrajectoryID(pairID: 1, stage: .judgment, responseIndex: 1, sampleIndex: 0): judged(5),
            TrajectoryID(pairID: 1, stage: .judgment, responseIndex: 1, sampleIndex: 1): out("<think></think><rubric></rubric><eval></eval><answer>x</answer>"),
        ]
        // m+ = 7, m- = 5: 8 → δ 3 → 1.4; 6 → δ 1 → 1.2; 5 < 7 → δ 2 → 1.2; malformed → −1.0.
        let scoring = rewarder.score(pairID: 1, outputs: outputs)
        #expect(scoring.outcomes.map(\.reward) == [1.4, 1.2, 1.2, -1.0])
        #expect(scoring.impliedAccuracy == 1)
    }

    @Test func pairwiseFromRawOutputs() {
        // Run 1234, step 7, pair 42: sample 0 has the chosen response at A, sample 1 at B.
        let rewarder = PairRewarder(mode: .pairwise, parFunction: .graded, format: CompactFormat(), nc: 1, ne: 2, runSeed: 1234, step: 7)
        let outputs: [TrajectoryID: [TokenID]] = [
            TrajectoryID(pairID: 42, stage: .comparison, sampleIndex: 0): out("<answer>[[A]]</answer>"),
            TrajectoryID(pairID: 42, stage: .comparison, sampleIndex: 1): out("<answer>[[A]]</answer>"),
        ]
        let scoring = rewarder.score(pairID: 42, outputs: outputs)
        #expect(scoring.outcomes.map(\.reward) == [1, -1])
        #expect(scoring.impliedAccuracy == 0.5)
        #expect(scoring.failures.isEmpty)
    }
}
