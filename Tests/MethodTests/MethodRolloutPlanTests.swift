@testable import Configuration
@testable import Method
@testable import Shared
import Testing

@Suite struct RolloutPlanTests {
    let tokenizer = ByteTokenizer()
    let eos = ByteTokenizer.Special.eos.rawValue

    func plan(nc: Int = 4, ne: Int = 2) -> RolloutPlan {
        RolloutPlan(format: CompactFormat(), nc: nc, ne: ne, criteriaMaxTokens: 96, evaluationMaxTokens: 64, runSeed: 1234, step: 7)
    }

    func criteriaOutput(_ items: Int) -> [TokenID] {
        CompactFormat().outputTokens(text: CompactFormat().criteriaText(analysis: "a", items: (1...items).map { "c\($0)" }))
    }

    @Test func splitMixMatchesTheReferenceSequence() {
        // First output of SplitMix64 seeded with 0 (Vigna's reference implementation).
        #expect(SeedMixer.splitMix64(0) == 0xE220_A839_7B1D_CDAF)
    }

    @Test func seedsAreFixedForAFixedID() {
        // Expected values computed independently (Python) from the documented mixing; a change
        // of the derivation must fail here, since it silently changes every run.
        let id = TrajectoryID.evaluation(pair: 42, criteria: 3, response: 1, sample: 0)
        #expect(id.seed(runSeed: 1234, step: 7) == 0xC893_0943_9B08_7273)
        #expect(TrajectoryID(pairID: 0, stage: .criteria).seed(runSeed: 0, step: 0) == 0xFF8F_2D88_76BB_97D9)
    }

    @Test func seedsAreUniqueAcrossIDsStepsAndRuns() {
        var seen = Set<UInt64>()
        var count = 0
        for run: UInt64 in [1, 2] {
            for step: UInt64 in 0..<3 {
                for pair: UInt64 in 0..<5 {
                    for stage in TrajectoryStage.allCases {
                        for c in 0..<4 { for r in 0..<2 { for s in 0..<2 {
                            let id = TrajectoryID(pairID: pair, stage: stage, criteriaIndex: c, responseIndex: r, sampleIndex: s)
                            seen.insert(id.seed(runSeed: run, step: step))
                            count += 1
                        } } }
                    }
                }
            }
        }
        #expect(seen.count == count)
    }

    @Test func canonicalOrderIsPairStageCriteriaResponseSample() {
        let ids = [
            TrajectoryID.evaluation(pair: 1, criteria: 0, response: 0, sample: 0),
            TrajectoryID.criteria(pair: 2, 0),
            TrajectoryID.evaluation(pair: 1, criteria: 0, response: 1, sample: 0),
            TrajectoryID.criteria(pair: 1, 3),
            TrajectoryID.evaluation(pair: 1, criteria: 1, response: 0, sample: 0),
            TrajectoryID.evaluation(pair: 1, criteria: 0, response: 0, sample: 1),
        ]
        #expect(ids.sorted() == [ids[3], ids[0], ids[5], ids[2], ids[4], ids[1]])
    }

    @Test func twoStageCountsPromptsAndSeeds() {
        let plan = plan()
        let item = RolloutItem(pairID: 42, query: "Add 2 and 3.", chosen: "5", rejected: "6")
        let stage1 = plan.criteriaRequests(for: item)
        #expect(stage1.map(\.id) == (0..<4).map { TrajectoryID.criteria(pair: 42, $0) })
        #expect(stage1.allSatisfy { $0.promptTokens == CompactFormat().criteriaPrompt(query: "Add 2 and 3.") && $0.maxTokens == 96 })
        let outputs = (0..<4).map { criteriaOutput($0 + 1) }
        let stage2 = plan.evaluationRequests(for: item, criteriaOutputs: outputs)
        #expect(stage2.criteria.map { $0.value?.items.count } == [1, 2, 3, 4])
        #expect(stage2.requests.count == 2 * 4 * 2)
        #expect(stage1.count + stage2.requests.count == 4 + 2 * 4 * 2)
        #expect(stage2.requests.map(\.id) == stage2.requests.map(\.id).sorted())
        let first = stage2.requests[0]
        #expect(first.id == .evaluation(pair: 42, criteria: 0, response: 0, sample: 0))
        #expect(first.maxTokens == 64)
        #expect(first.promptTokens == CompactFormat().evaluationPrompt(
            criteriaPrompt: stage1[0].promptTokens, criteriaOutput: outputs[0], response: "5"))
        let rejected = stage2.requests.first { $0.id == .evaluation(pair: 42, criteria: 3, response: 1, sample: 0) }
        #expect(rejected?.seed == 0xC893_0943_9B08_7273)
        let all = stage1 + stage2.requests
        #expect(Set(all.map(\.seed)).count == all.count)
    }

    @Test func invalidCriteriaAreNotEvaluated() {
        let plan = plan(nc: 3, ne: 2)
        let item = RolloutItem(pairID: 1, query: "q", chosen: "a", rejected: "b")
        let truncated = Array(criteriaOutput(2).dropLast())
        let stage2 = plan.evaluationRequests(for: item, criteriaOutputs: [criteriaOutput(2), truncated])
        #expect(stage2.criteria.map(\.failure) == [nil, .truncated, .truncated])
        #expect(stage2.requests.count == 1 * 2 * 2)
        #expect(stage2.requests.allSatisfy { $0.id.criteriaIndex == 0 })
    }

    @Test func bestOfNGeneralises() {
        let plan = plan(nc: 2, ne: 3)
        let item = RolloutItem(pairID: 9, query: "q", responses: ["r0", "r1", "r2", "r3"])
        let stage2 = plan.evaluationRequests(for: item, criteriaOutputs: [criteriaOutput(1), criteriaOutput(1)])
        #expect(stage2.requests.count == 2 * 4 * 3)
        #expect(Set(stage2.requests.map(\.id.responseIndex)) == [0, 1, 2, 3])
    }

    @Test func singleStageModes() {
        let plan = plan(nc: 2, ne: 2)
        let item = RolloutItem(pairID: 42, query: "q", chosen: "GOOD", rejected: "BAD")
        let judgments = plan.judgmentRequests(for: item)
        #expect(judgments.count == 2 * 4)
        #expect(judgments[4].id == TrajectoryID(pairID: 42, stage: .judgment, responseIndex: 1, sampleIndex: 0))
        #expect(judgments[4].promptTokens == ParFormat().prompt(query: "q", response: "BAD"))
        let comparisons = RolloutPlan(format: CompactFormat(), nc: 4, ne: 2, criteriaMaxTokens: 8, evaluationMaxTokens: 8,
                                      runSeed: 1234, step: 7).comparisonRequests(for: item)
        #expect(comparisons.count == 8)
        // Positions computed independently (Python) from the documented seed derivation.
        let expectedChosenIsA = [true, false, false, true, true, true, false, true]
        #expect(comparisons.map { PairwiseFormat.chosenIsA(seed: $0.seed) } == expectedChosenIsA)
        for (request, chosenIsA) in zip(comparisons, expectedChosenIsA) {
            #expect(request.promptTokens == PairwiseFormat().prompt(query: "q", chosen: "GOOD", rejected: "BAD", chosenIsA: chosenIsA))
        }
    }

    @Test func configDrivesThePlan() {
        var config = RolloutConfig()
        config.format = .cerm
        config.nc = 3
        config.ne = 1
        let plan = RolloutPlan(config: config, chat: ByteChat(), runSeed: 5, step: 1)
        #expect(plan.format.name == .cerm)
        #expect(plan.criteriaRequests(for: RolloutItem(pairID: 0, query: "q", chosen: "a", rejected: "b")).count == 3)
    }
}
