@testable import Configuration
import Foundation
@testable import Method
import Testing

private func outcome(_ id: TrajectoryID, _ reward: Double, correct: Bool = false) -> TrajectoryOutcome {
    TrajectoryOutcome(id: id, reward: reward, formatValid: true, correct: correct)
}

@Suite struct AdvantageTests {
    @Test func groupRelativeWithSampleStd() {
        // Rewards [1, 0, ½]: mean ½, sample std sqrt((¼ + ¼ + 0) / 2) = ½.
        let outcomes = [outcome(.criteria(pair: 1, 0), 1), outcome(.criteria(pair: 1, 1), 0), outcome(.criteria(pair: 1, 2), 0.5)]
        let result = Advantages.compute(outcomes, options: AdvantageOptions(epsilon: 1e-6))
        let a = result.trajectories.map(\.advantage)
        #expect(abs(a[0] - 0.5 / (0.5 + 1e-6)) < 1e-12)
        #expect(abs(a[1] + 0.5 / (0.5 + 1e-6)) < 1e-12)
        #expect(a[2] == 0)
        #expect(result.groups == [AdvantageGroup(key: TrajectoryID(pairID: 1, stage: .criteria), size: 3, mean: 0.5, std: 0.5,
                                                 zeroStd: false, skipped: false)])
        let drGRPO = Advantages.compute(outcomes, options: AdvantageOptions(scaleByStd: false))
        #expect(drGRPO.trajectories.map(\.advantage) == [0.5, -0.5, 0])
    }

    @Test func zeroStdGroupsAreReportedAndOptionallyDropped() {
        let outcomes = [
            outcome(.criteria(pair: 1, 0), 0.5), outcome(.criteria(pair: 1, 1), 0.5),
            outcome(.criteria(pair: 2, 0), 1), outcome(.criteria(pair: 2, 1), 0),
            outcome(.evaluation(pair: 2, criteria: 0, response: 0, sample: 0), 1),  // a group of one
        ]
        let kept = Advantages.compute(outcomes, options: AdvantageOptions(epsilon: 0))
        #expect(kept.groups.map(\.zeroStd) == [true, false, true])
        #expect(abs(kept.fracZeroStd - 2.0 / 3) < 1e-12)
        // Pair 2's criteria: mean ½, sample std sqrt(½) → A = ±½ / sqrt(½) = ±sqrt(½).
        #expect(kept.trajectories.map(\.advantage) == [0, 0, 0.5 / 0.5.squareRoot(), -0.5 / 0.5.squareRoot(), 0])
        #expect(kept.trajectories.allSatisfy { $0.inLoss })
        let dropped = Advantages.compute(outcomes, options: AdvantageOptions(dropZeroStdGroups: true))
        #expect(dropped.trajectories.map(\.inLoss) == [false, false, true, true, false])
    }

    @Test func evaluationGroupingChoices() {
        let outcomes = [
            outcome(.evaluation(pair: 1, criteria: 0, response: 0, sample: 0), 1),
            outcome(.evaluation(pair: 1, criteria: 0, response: 0, sample: 1), 1),
            outcome(.evaluation(pair: 1, criteria: 1, response: 0, sample: 0), 0),
            outcome(.evaluation(pair: 1, criteria: 1, response: 0, sample: 1), 0),
            outcome(.evaluation(pair: 1, criteria: 0, response: 1, sample: 0), 0.5),
        ]
        // Canonical order puts the rejected evaluation (c0, r1) third.
        // Per (pair, response): chosen group [1, 1, 0, 0] has mean ½ and sample std sqrt(1/3).
        let pooled = Advantages.compute(outcomes, options: AdvantageOptions(evaluationGrouping: .pairResponse, epsilon: 0))
        #expect(pooled.groups.map(\.size) == [4, 1])
        let expected = 0.5 / (1.0 / 3).squareRoot()
        #expect(pooled.trajectories.map(\.advantage).enumerated().allSatisfy { index, value in
            abs(value - [expected, expected, 0, -expected, -expected][index]) < 1e-12
        })
        // Per (pair, criteria, response): each group of two is uniform → all zero std.
        let split = Advantages.compute(outcomes, options: AdvantageOptions(evaluationGrouping: .pairCriteriaResponse))
        #expect(split.groups.map(\.size) == [2, 1, 2])
        #expect(split.groups.allSatisfy { $0.zeroStd })
        #expect(split.trajectories.allSatisfy { $0.advantage == 0 })
        #expect(Advantages.groupKey(of: .evaluation(pair: 1, criteria: 3, response: 1, sample: 1), grouping: .pairCriteriaResponse)
                == TrajectoryID(pairID: 1, stage: .evaluation, criteriaIndex: 3, responseIndex: 1))
    }

    @Test func uniformOutcomeGroupsAreSkipped() {
        let outcomes = [
            outcome(.criteria(pair: 1, 0), 1, correct: true), outcome(.criteria(pair: 1, 1), 0.75, correct: true),
            outcome(.criteria(pair: 2, 0), 1, correct: true), outcome(.criteria(pair: 2, 1), 0, correct: false),
            outcome(.criteria(pair: 3, 0), 0.25, correct: false), outcome(.criteria(pair: 3, 1), 0, correct: false),
        ]
        let result = Advantages.compute(outcomes, options: AdvantageOptions(skipUniformGroups: true))
        #expect(result.groups.map(\.skipped) == [true, false, true])
        #expect(result.trajectories.map(\.inLoss) == [false, false, true, true, false, false])
        #expect(result.trajectories[0].advantage == 0 && result.trajectories[2].advantage > 0)
        #expect(abs(result.fracSkipped - 2.0 / 3) < 1e-12)
        #expect(Advantages.compute(outcomes, options: AdvantageOptions()).trajectories.allSatisfy { $0.inLoss })
    }
}

@Suite struct GRPOLossTests {
    let noKL = GRPOLossOptions(clipLow: 0.2, clipHigh: 0.2, klCoef: 0, klEstimator: .k3, aggregation: .tokenMean)

    @Test func clippedAndUnclippedTokensByHand() throws {
        // A = 1, ratios 1.1 (inside) and 1.5 (clipped to 1.2): loss −(1.1 + 1.2)/2 = −1.15;
        // weights −1.1/2 for the first token, 0 for the clipped one.
        let lp = [log(1.1), log(1.5)]
        let result = try GRPOLoss.compute([LossTrajectory(advantage: 1, logProbs: lp, oldLogProbs: [0, 0], refLogProbs: lp)], options: noKL)
        #expect(abs(result.loss + 1.15) < 1e-12)
        #expect(abs(result.tokenWeights[0][0] + 0.55) < 1e-12)
        #expect(result.tokenWeights[0][1] == 0)
        #expect(result.metrics.clipFraction == 0.5)
        #expect(abs(result.metrics.ratioMax - 1.5) < 1e-12 && abs(result.metrics.ratioMin - 1.1) < 1e-12)
        // A = −1: ratio 0.5 is clipped at 0.8 (min(−0.5, −0.8) = −0.8, no gradient); ratio 1.5
        // is not (min(−1.5, −1.2) = −1.5, gradient ρA = −1.5 → weight +1.5/2).
        let negative = try GRPOLoss.compute([LossTrajectory(advantage: -1, logProbs: [log(0.5), log(1.5)], oldLogProbs: [0, 0],
                                                            refLogProbs: [0, 0])], options: noKL)
        #expect(abs(negative.loss - (0.8 + 1.5) / 2) < 1e-12)
        #expect(negative.tokenWeights[0][0] == 0)
        #expect(abs(negative.tokenWeights[0][1] - 0.75) < 1e-12)
    }

    @Test func klEstimatorsByHand() throws {
        // A = 0 isolates the KL: d = logπθ − ref = 0.5, β = 0.1.
        let cases: [(KLEstimator, Double, Double)] = [
            (.k1, 0.5, 1), (.k2, 0.125, 0.5), (.k3, exp(-0.5) + 0.5 - 1, 1 - exp(-0.5)),
        ]
        for (estimator, value, derivative) in cases {
            let options = GRPOLossOptions(klCoef: 0.1, klEstimator: estimator)
            let result = try GRPOLoss.compute([LossTrajectory(advantage: 0, logProbs: [-1], oldLogProbs: [-1], refLogProbs: [-1.5])],
                                              options: options)
            #expect(abs(result.loss - 0.1 * value) < 1e-12)
            #expect(abs(result.tokenWeights[0][0] - 0.1 * derivative) < 1e-12)
            #expect(abs(result.metrics.klMean - value) < 1e-12)
        }
        #expect(abs(GRPOLoss.kl(logProb: -1, refLogProb: -1.5, estimator: .k3).value - 0.10653065971263342) < 1e-15)
    }

    @Test func aggregationsByHand() throws {
        // Trajectory 1: A = 2, one token; trajectory 2: A = 1, three tokens; ratio 1, no KL.
        let batch = [
            LossTrajectory(advantage: 2, logProbs: [-1], oldLogProbs: [-1], refLogProbs: [-1]),
            LossTrajectory(advantage: 1, logProbs: [-1, -2, -3], oldLogProbs: [-1, -2, -3], refLogProbs: [-1, -2, -3]),
            LossTrajectory(advantage: 5, logProbs: [-1, -1], oldLogProbs: [-1, -1], refLogProbs: [-1, -1], included: false),
        ]
        var options = noKL
        let tokenMean = try GRPOLoss.compute(batch, options: options)
        #expect(abs(tokenMean.loss + 5.0 / 4) < 1e-12)
        #expect(tokenMean.tokenWeights == [[-0.5], [-0.25, -0.25, -0.25], [0, 0]])
        #expect(tokenMean.metrics.tokens == 4)
        options.aggregation = .seqMeanTokenMean
        let seqMean = try GRPOLoss.compute(batch, options: options)
        #expect(abs(seqMean.loss + 1.5) < 1e-12)
        #expect(seqMean.tokenWeights[0] == [-1])
        #expect(seqMean.tokenWeights[1].allSatisfy { abs($0 + 1.0 / 6) < 1e-15 })
    }

    @Test func refusesMalformedInputs() {
        #expect(throws: GRPOLossError.lengthMismatch(trajectory: 1, logProbs: 2, oldLogProbs: 1, refLogProbs: 2)) {
            try GRPOLoss.compute([
                LossTrajectory(advantage: 0, logProbs: [], oldLogProbs: [], refLogProbs: []),
                LossTrajectory(advantage: 0, logProbs: [0, 0], oldLogProbs: [0], refLogProbs: [0, 0]),
            ], options: noKL)
        }
        #expect(throws: GRPOLossError.nonFinite(trajectory: 0, token: 1)) {
            try GRPOLoss.compute([LossTrajectory(advantage: 1, logProbs: [0, .nan], oldLogProbs: [0, 0], refLogProbs: [0, 0])], options: noKL)
        }
        #expect(throws: GRPOLossError.nonFinite(trajectory: 0, token: nil)) {
            try GRPOLoss.compute([LossTrajectory(advantage: .infinity, logProbs: [0], oldLogProbs: [0], refLogProbs: [0])], options: noKL)
        }
    }

    @Test func emptyBatchIsZero() throws {
        let result = try GRPOLoss.compute([], options: noKL)
        #expect(result.loss == 0 && result.tokenWeights.isEmpty && result.metrics.tokens == 0)
    }

    /// Log-ratios chosen at least 0.05 away from the clip boundaries ln(0.8), ln(1.2), so the
    /// finite differences never straddle a kink.
    static let logRatios = [-0.5, -0.1, 0.05, 0.1, 0.4, -0.35]

    static func finiteDifferenceBatch() -> [LossTrajectory] {
        var batch: [LossTrajectory] = []
        let advantages = [1.3, -0.7, 0.4]
        let lengths = [3, 5, 2]
        var k = 0
        for (index, advantage) in advantages.enumerated() {
            var lp: [Double] = [], old: [Double] = [], ref: [Double] = []
            for _ in 0..<lengths[index] {
                let current = -0.3 - 0.37 * Double(k % 5)
                lp.append(current)
                old.append(current - logRatios[k % logRatios.count])
                ref.append(current + 0.6 * sin(Double(k) + 1))
                k += 1
            }
            batch.append(LossTrajectory(advantage: advantage, logProbs: lp, oldLogProbs: old, refLogProbs: ref))
        }
        return batch
    }

    @Test(arguments: KLEstimator.allCases, LossAggregation.allCases)
    func weightsMatchFiniteDifferences(estimator: KLEstimator, aggregation: LossAggregation) throws {
        let options = GRPOLossOptions(clipLow: 0.2, clipHigh: 0.2, klCoef: 0.3, klEstimator: estimator, aggregation: aggregation)
        let batch = Self.finiteDifferenceBatch()
        let result = try GRPOLoss.compute(batch, options: options)
        #expect(result.metrics.clipFraction > 0 && result.metrics.clipFraction < 1)
        let h = 1e-6
        for i in batch.indices {
            for t in batch[i].logProbs.indices {
                var plus = batch, minus = batch
                plus[i].logProbs[t] += h
                minus[i].logProbs[t] -= h
                let numeric = (try GRPOLoss.compute(plus, options: options).loss - GRPOLoss.compute(minus, options: options).loss) / (2 * h)
                #expect(abs(numeric - result.tokenWeights[i][t]) < 1e-7, "trajectory \(i) token \(t)")
            }
        }
    }
}

@Suite struct MiniBatchAndMetricsTests {
    @Test func splitsWholePairsContiguously() {
        let pairs: [UInt64] = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
        #expect(MiniBatches.split(pairIDs: pairs, count: 4) == [[10, 11, 12], [13, 14, 15], [16, 17], [18, 19]])
        #expect(MiniBatches.split(pairIDs: [1, 2], count: 5) == [[1], [2]])
        #expect(MiniBatches.split(pairIDs: [1, 2], count: 0) == [[1, 2]])
        #expect(MiniBatches.split(pairIDs: [], count: 3).isEmpty)
        let ids = [
            TrajectoryID.evaluation(pair: 2, criteria: 0, response: 1, sample: 0), .criteria(pair: 1, 0),
            .criteria(pair: 2, 0), .criteria(pair: 9, 0), .criteria(pair: 3, 1), .criteria(pair: 3, 0),
        ]
        #expect(MiniBatches.partition(ids, pairIDs: [1, 2, 3], count: 2, id: { $0 }) == [
            [.criteria(pair: 1, 0), .criteria(pair: 2, 0), .evaluation(pair: 2, criteria: 0, response: 1, sample: 0)],
            [.criteria(pair: 3, 0), .criteria(pair: 3, 1)],
        ])
    }

    @Test func impliedAccuracy() {
        #expect(MethodMetrics.impliedAccuracy(chosen: [7, nil, 5], rejected: [6, 6]) == 0.5)
        #expect(MethodMetrics.impliedAccuracy(chosen: [7, 8], rejected: [6, nil]) == 1)
        #expect(MethodMetrics.impliedAccuracy(chosen: [2], rejected: [6]) == 0)
        #expect(MethodMetrics.impliedAccuracy(chosen: [nil], rejected: [6]) == 0)
        #expect(MethodMetrics.impliedAccuracy(chosen: [3], rejected: [nil]) == 1)
        #expect(MethodMetrics.impliedAccuracy(chosen: [nil], rejected: []) == 0)
    }

    @Test func accumulatesAStep() {
        var metrics = MethodMetrics()
        metrics.add(outcomes: CermRewards.rewards(.init(pairID: 3, criteriaValid: [true, false], chosen: [[7, 5], []], rejected: [[5, nil], []])))
        metrics.add(parse: ParseResult<ParsedCriteria>.invalid(reason: .truncated))
        metrics.add(parse: ParseResult<ParsedEvaluation>.invalid(reason: .noScore))
        metrics.add(parse: ParseResult<ParsedEvaluation>.valid(ParsedEvaluation(items: [], otherPoint: nil, overall: 1)))
        metrics.add(pairAccuracy: 1)
        metrics.add(pairAccuracy: 0.5)
        metrics.add(loss: LossMetrics(tokens: 10, policyLoss: 0, klLoss: 0, klMean: 0.2, clipFraction: 0.1, ratioMean: 1, ratioMin: 1, ratioMax: 1), value: 1)
        metrics.add(loss: LossMetrics(tokens: 30, policyLoss: 0, klLoss: 0, klMean: 0.6, clipFraction: 0.5, ratioMean: 1, ratioMin: 1, ratioMax: 1), value: 3)
        metrics.entropy = 1.25
        let summary = metrics.summary
        #expect(summary.rewardMean[.criteria] == 0.875 / 2)
        #expect(summary.rewardMean[.evaluation] == (1 + 0.75 + 0.75 + 0) / 4)
        #expect(summary.validFormatRate == 4.0 / 6)
        #expect(summary.pairwiseAccuracy == 0.75)
        #expect(summary.parseFailures == [.truncated: 1, .noScore: 1])
        #expect(abs((summary.kl ?? 0) - 0.5) < 1e-12)
        #expect(abs((summary.clipFraction ?? 0) - 0.4) < 1e-12)
        #expect(summary.loss == 2)
        #expect(summary.fracZeroStd == nil)
        let flat = Dictionary(uniqueKeysWithValues: summary.flattened.map { ($0.key, $0.value) })
        #expect(flat["parse_failures.truncated"] == 1)
        #expect(flat["parse_failures.both_verdicts"] == 0)
        #expect(flat["reward_criteria"] == 0.4375)
        #expect(flat["entropy"] == 1.25)
        #expect(flat["grad_norm"] == nil)
    }
}
