@testable import Configuration
import Engine
import Foundation
import Logging
@testable import Method
@testable import Shared
import Testing
@testable import WireProtocol
@testable import Worker

/// Tiny models, tasks and re-scoring helpers for the executor tests.
enum ExecutorFixture {
    static let quiet: Logger = {
        var logger = Logger(label: "executor-test")
        logger.logLevel = .warning
        return logger
    }()

    static func model(maxSeqLen: Int = 256) -> TransformerConfig {
        TransformerConfig(family: .qwen3, hiddenSize: 16, layers: 2, heads: 2, kvHeads: 1, headDim: 8, ffnSize: 32,
                          vocabSize: ByteTokenizer.vocabularySize, maxSeqLen: maxSeqLen, ropeTheta: 10_000, rmsNormEps: 1e-6,
                          qkNorm: true, qkvBias: false, tieEmbeddings: true)
    }

    /// Large init so the next-token distributions are far from uniform (some outputs end in ⟨eos⟩).
    static func weights(_ config: TransformerConfig, seed: UInt64) -> ModelWeights {
        ModelWeights(config: config, seed: seed, initStd: 0.6)
    }

    static let parameters = RolloutParameters(nc: 2, ne: 1, criteriaMaxTokens: 12, evaluationMaxTokens: 8, temperature: 0.7, topP: 0.95)

    static let pairs = [
        TaskPair(pairID: 11, query: "Add 2 and 3.", responses: ["5", "6"]),
        TaskPair(pairID: 12, query: "Capital of France?", responses: ["Paris", "Lyon"]),
        TaskPair(pairID: 13, query: "Sort 3 1 2.", responses: ["1 2 3", "3 2 1"]),
    ]

    static func task(_ pairs: [TaskPair] = pairs, parameters: RolloutParameters = parameters) -> TaskMessage {
        TaskMessage(taskID: 5, step: 3, policyVersion: 2, runSeed: 99, parameters: parameters, pairs: pairs)
    }

    static func item(_ pair: TaskPair) -> RolloutItem {
        RolloutItem(pairID: pair.pairID, query: pair.query, responses: pair.responses)
    }

    /// An executor loaded through the wire form, as a worker is.
    static func executor(model config: TransformerConfig = model(), mode: RewardMode = .cerm) throws -> EngineRolloutExecutor {
        let executor = try EngineRolloutExecutor(model: config, format: CompactFormat(), mode: mode, logger: quiet)
        try executor.prepareReference(weights: weights(config, seed: 2).wireBytes)
        try executor.prepare(policyVersion: 2, weights: weights(config, seed: 1).wireBytes)
        return executor
    }

    static func plan(_ task: TaskMessage) -> RolloutPlan {
        let p = task.parameters
        return RolloutPlan(format: CompactFormat(), nc: Int(p.nc), ne: Int(p.ne), criteriaMaxTokens: Int(p.criteriaMaxTokens),
                           evaluationMaxTokens: Int(p.evaluationMaxTokens), runSeed: task.runSeed, step: task.step)
    }

    /// Criteria output a model could have written: two items, then ⟨eos⟩.
    static let validCriteria = CompactFormat().outputTokens(text: CompactFormat().criteriaText(analysis: "a", items: ["right", "short"]))

    /// Teacher-forced log-probs of each trajectory's tokens after its whole prompt (no shared prefix).
    static func rescore(_ trajectories: [Trajectory], prompts: [TrajectoryID: [TokenID]], weights: ModelWeights,
                        temperature: Float) throws -> [[Float]] {
        let generator = try Generator(config: weights.config, parameters: weights.values)
        return try trajectories.map { t in
            try generator.scoreContinuation(prompt: prompts[t.id] ?? [], tokens: t.tokens.map { TokenID($0) }, temperature: temperature)
        }
    }

    static func expectClose(_ a: [[Float]], _ b: [[Float]], tolerance: Float = 1e-5, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(a.count == b.count, sourceLocation: sourceLocation)
        for (x, y) in zip(a, b) {
            #expect(x.count == y.count, sourceLocation: sourceLocation)
            let worst = zip(x, y).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= tolerance, "max |Δ| = \(worst)", sourceLocation: sourceLocation)
        }
    }
}

@Suite(.serialized) struct EngineRolloutExecutorTests {
    typealias F = ExecutorFixture

    /// The structural contract every trajectory of a result must meet.
    func expectWellFormed(_ trajectories: [Trajectory], prompts: [TrajectoryID: [TokenID]], maxTokens: (TrajectoryID) -> Int,
                          sourceLocation: SourceLocation = #_sourceLocation) {
        let eos = UInt32(ByteTokenizer.Special.eos.rawValue)
        for t in trajectories {
            #expect(Int(t.promptTokenCount) == prompts[t.id]?.count, "\(t.id)", sourceLocation: sourceLocation)
            #expect(t.behaviourLogprobs.count == t.tokens.count && t.referenceLogprobs.count == t.tokens.count, sourceLocation: sourceLocation)
            #expect(t.tokens.allSatisfy { $0 < UInt32(ByteTokenizer.vocabularySize) }, sourceLocation: sourceLocation)
            #expect(t.behaviourLogprobs.allSatisfy { $0 <= 0 && $0.isFinite }, sourceLocation: sourceLocation)
            #expect(t.referenceLogprobs.allSatisfy { $0 <= 0 && $0.isFinite }, sourceLocation: sourceLocation)
            #expect(t.text == ByteTokenizer().decode(t.tokens.map { TokenID($0) }), sourceLocation: sourceLocation)
            // ⟨eos⟩ can only be the last token; it means `eos`, a full budget means `length`.
            #expect(!t.tokens.dropLast().contains(eos), sourceLocation: sourceLocation)
            switch t.finishReason {
            case .eos: #expect(t.tokens.last == eos, "\(t.id)", sourceLocation: sourceLocation)
            case .length: #expect(t.tokens.count == maxTokens(t.id) && t.tokens.last != eos, "\(t.id)", sourceLocation: sourceLocation)
            case .context: #expect(t.tokens.count < maxTokens(t.id) && t.tokens.last != eos, "\(t.id)", sourceLocation: sourceLocation)
            case .stopSequence: Issue.record("\(t.id): rollouts set no stop sequences", sourceLocation: sourceLocation)
            }
        }
    }

    @Test func runReturnsThePlannedTrajectoriesWithPolicyAndReferenceLogprobs() throws {
        let executor = try F.executor()
        let task = F.task()
        let result = try executor.run(task: task)

        // The ids the plan defines: nc criteria per pair, then evaluations of the valid criteria sets.
        let plan = F.plan(task)
        var expected: [RolloutRequest] = []
        for pair in task.pairs {
            let item = F.item(pair)
            expected += plan.criteriaRequests(for: item)
            let outputs = (0..<plan.nc).map { i in
                result.first { $0.id == .criteria(pair: pair.pairID, i) }?.tokens.map { TokenID($0) } ?? []
            }
            expected += plan.evaluationRequests(for: item, criteriaOutputs: outputs).requests
        }
        #expect(result.map(\.id) == expected.map(\.id).sorted())
        #expect(result.filter { $0.id.stage == .criteria }.count == 6)
        let prompts = Dictionary(uniqueKeysWithValues: expected.map { ($0.id, $0.promptTokens) })
        let budgets = Dictionary(uniqueKeysWithValues: expected.map { ($0.id, $0.maxTokens) })
        expectWellFormed(result, prompts: prompts, maxTokens: { budgets[$0] ?? -1 })
        #expect(result.contains { !$0.tokens.isEmpty })

        // Behaviour log-probs are the policy's at the task temperature; reference ones the reference model's.
        let config = F.model()
        F.expectClose(result.map(\.behaviourLogprobs), try F.rescore(result, prompts: prompts, weights: F.weights(config, seed: 1), temperature: 0.7))
        F.expectClose(result.map(\.referenceLogprobs), try F.rescore(result, prompts: prompts, weights: F.weights(config, seed: 2), temperature: 0.7))
        // The two models differ, so the reference column is not a copy of the behaviour column.
        #expect(result.map(\.behaviourLogprobs) != result.map(\.referenceLogprobs))
    }

    @Test func runIsStageOneThenStageTwoOfEachPair() throws {
        let executor = try F.executor()
        let task = F.task()
        let plan = F.plan(task)
        let sampling = RolloutSampling(parameters: task.parameters)
        let items = task.pairs.map(F.item)
        let criteria = try executor.criteriaStage(items: items, plan: plan, sampling: sampling)
        var composed = criteria
        for item in items {
            let outputs = (0..<plan.nc).map { i in
                criteria.first { $0.id == .criteria(pair: item.pairID, i) }?.tokens.map { TokenID($0) } ?? []
            }
            composed += try executor.evaluationStage(item: item, criteriaOutputs: outputs, plan: plan, sampling: sampling)
        }
        #expect(try executor.run(task: task) == composed.sorted { $0.id < $1.id })
    }

    @Test func sameTaskGivesBitwiseIdenticalTrajectories() throws {
        let task = F.task()
        let first = try F.executor().run(task: task)
        let executor = try F.executor()
        let second = try executor.run(task: task)
        let third = try executor.run(task: task)
        #expect(first == second)
        #expect(second == third)
        // Equatable on Float treats -0 == 0; compare the bits too.
        #expect(first.map { $0.behaviourLogprobs.map(\.bitPattern) } == third.map { $0.behaviourLogprobs.map(\.bitPattern) })
        #expect(first.map { $0.referenceLogprobs.map(\.bitPattern) } == third.map { $0.referenceLogprobs.map(\.bitPattern) })
    }

    @Test func aPairSamplesTheSameAloneAsAmongOtherPairs() throws {
        let executor = try F.executor()
        let together = try executor.run(task: F.task())
        for pair in F.pairs {
            let alone = try executor.run(task: F.task([pair]))
            #expect(alone == together.filter { $0.id.pairID == pair.pairID })
        }
        // A different order of pairs in the task changes nothing either.
        #expect(try executor.run(task: F.task(F.pairs.reversed())) == together)
    }

    @Test func threadCountDoesNotChangeTrajectories() throws {
        let saved = InvariantMatmul.threadOverride
        defer { InvariantMatmul.threadOverride = saved }
        // Wide enough that the prefill products (about 150 rows · 128 · 64) are split across threads.
        var wide = F.model()
        wide.hiddenSize = 64
        wide.ffnSize = 128
        wide.heads = 4
        wide.kvHeads = 2
        wide.headDim = 16
        let executor = try F.executor(model: wide)
        InvariantMatmul.threadOverride = 1
        let single = try executor.run(task: F.task())
        InvariantMatmul.threadOverride = 3
        let multi = try executor.run(task: F.task())
        #expect(single == multi)
    }

    @Test func stageTwoSharesThePrefixAndSkipsInvalidCriteria() throws {
        let executor = try F.executor()
        let task = F.task()
        let plan = F.plan(task)
        let item = F.item(F.pairs[1])
        let sampling = RolloutSampling(parameters: task.parameters)
        // Criteria 0 is valid, criteria 1 has no ⟨eos⟩ (truncated): only criteria 0 is evaluated.
        let outputs = [F.validCriteria, Array(F.validCriteria.dropLast())]
        let evaluations = try executor.evaluationStage(item: item, criteriaOutputs: outputs, plan: plan, sampling: sampling)
        #expect(evaluations.map(\.id) == [
            .evaluation(pair: 12, criteria: 0, response: 0, sample: 0),
            .evaluation(pair: 12, criteria: 0, response: 1, sample: 0),
        ])

        let requests = plan.evaluationRequests(for: item, criteriaOutputs: outputs).requests
        let prompts = Dictionary(uniqueKeysWithValues: requests.map { ($0.id, $0.promptTokens) })
        // Hand-built: criteria prompt, the criteria output with its ⟨eos⟩, the evaluation request.
        let criteriaPrompt = CompactFormat().criteriaPrompt(query: "Capital of France?")
        let chosenPrompt = criteriaPrompt + F.validCriteria + [ByteTokenizer.Special.user.rawValue]
            + ByteTokenizer().encode("R: Paris\nEvaluate.") + [ByteTokenizer.Special.assistant.rawValue]
        #expect(prompts[.evaluation(pair: 12, criteria: 0, response: 0, sample: 0)] == chosenPrompt)
        expectWellFormed(evaluations, prompts: prompts, maxTokens: { _ in 8 })
        #expect(evaluations.allSatisfy { !$0.tokens.isEmpty })

        let config = F.model()
        F.expectClose(evaluations.map(\.behaviourLogprobs),
                      try F.rescore(evaluations, prompts: prompts, weights: F.weights(config, seed: 1), temperature: 0.7))
        F.expectClose(evaluations.map(\.referenceLogprobs),
                      try F.rescore(evaluations, prompts: prompts, weights: F.weights(config, seed: 2), temperature: 0.7))

        // Continuing the prefilled prefix samples the same tokens as generating from whole prompts.
        let generator = try Generator(config: config, parameters: F.weights(config, seed: 1).values)
        let direct = try generator.generate(requests: requests.map {
            GenerationRequest(prompt: $0.promptTokens, seed: $0.seed, maxNewTokens: $0.maxTokens, temperature: 0.7, topP: 0.95)
        })
        #expect(direct.map { $0.tokens.map { UInt32($0) } } == evaluations.map(\.tokens))
    }

    /// Stage 2 decodes the evaluations of every criteria set of every pair in one batch, each
    /// group continuing its own prefix: every trajectory must be bitwise what its request gives
    /// alone, from its whole prompt, on a fresh generator (batch invariance), whatever the other
    /// prompts' lengths and wherever the other rows stop.
    @Test func batchedStageTwoMatchesEachRequestAlone() throws {
        let parameters = RolloutParameters(nc: 2, ne: 2, criteriaMaxTokens: 12, evaluationMaxTokens: 40, temperature: 0.7, topP: 0.95)
        let task = F.task(F.pairs, parameters: parameters)
        let plan = F.plan(task)
        let sampling = RolloutSampling(parameters: parameters)
        // Two different criteria sets, so groups have prefixes of different lengths.
        let other = CompactFormat().outputTokens(text: CompactFormat().criteriaText(analysis: "longer analysis", items: ["correct", "complete", "brief"]))
        let work = task.pairs.map { (item: F.item($0), criteriaOutputs: [F.validCriteria, other]) }
        let requests = work.flatMap { plan.evaluationRequests(for: $0.item, criteriaOutputs: $0.criteriaOutputs).requests }
        // A context that lets the shortest prompts spend their budget and cuts the longer ones
        // earlier, each at its own step: rows leave the batch at different steps.
        let config = F.model(maxSeqLen: (requests.map(\.promptTokens.count).min() ?? 0) + 40)
        let executor = try F.executor(model: config)
        let batched = try executor.evaluationStage(work, plan: plan, sampling: sampling)
        #expect(batched.map(\.id) == requests.map(\.id).sorted())
        #expect(batched.count == 3 * 2 * 2 * 2)

        let policy = try Generator(config: config, parameters: F.weights(config, seed: 1).values)
        let reference = try Generator(config: config, parameters: F.weights(config, seed: 2).values)
        let byID = Dictionary(uniqueKeysWithValues: requests.map { ($0.id, $0) })
        for t in batched {
            let request = try #require(byID[t.id])
            let alone = try policy.generate(requests: [GenerationRequest(prompt: request.promptTokens, seed: request.seed, maxNewTokens: request.maxTokens,
                                                                         temperature: 0.7, topP: 0.95)])[0]
            #expect(t.tokens == alone.tokens.map { UInt32($0) }, "\(t.id)")
            #expect(t.behaviourLogprobs.map(\.bitPattern) == alone.logProbs.map(\.bitPattern), "\(t.id)")
            #expect(t.finishReason == alone.finishReason, "\(t.id)")
            let scored = try reference.scoreContinuation(prompt: request.promptTokens, tokens: alone.tokens, temperature: 0.7)
            #expect(t.referenceLogprobs.map(\.bitPattern) == scored.map(\.bitPattern), "\(t.id)")
        }
        // The batch mixed prompt lengths, rows cut short at several lengths and rows that ran to the budget.
        #expect(Set(requests.map(\.promptTokens.count)).count > 2)
        #expect(Set(batched.filter { $0.finishReason != .length }.map(\.tokens.count)).count > 1)
        #expect(batched.contains { $0.finishReason == .length && $0.tokens.count == 40 })
        // One pair at a time gives the same trajectories.
        let oneAtATime = try work.flatMap { try executor.evaluationStage(item: $0.item, criteriaOutputs: $0.criteriaOutputs, plan: plan, sampling: sampling) }
        #expect(oneAtATime.sorted { $0.id < $1.id } == batched)
    }

    @Test func noValidCriteriaMeansNoEvaluations() throws {
        let executor = try F.executor()
        let task = F.task()
        let garbage = ByteTokenizer().encode("no markers here") + [ByteTokenizer.Special.eos.rawValue]
        let evaluations = try executor.evaluationStage(item: F.item(F.pairs[0]), criteriaOutputs: [garbage, []], plan: F.plan(task),
                                                       sampling: RolloutSampling(parameters: task.parameters))
        #expect(evaluations.isEmpty)
    }

    @Test func contextLimitEndsGenerationWithFinishReasonContext() throws {
        let criteriaPrompt = CompactFormat().criteriaPrompt(query: "Add 2 and 3.")
        // Room for the prompt and 4 generated tokens (the last one never needs a position).
        let config = F.model(maxSeqLen: criteriaPrompt.count + 3)
        let executor = try F.executor(model: config)
        let longQuery = TaskPair(pairID: 20, query: String(repeating: "x", count: 40), responses: ["a", "b"])
        let parameters = RolloutParameters(nc: 2, ne: 1, criteriaMaxTokens: 12, evaluationMaxTokens: 8, temperature: 1, topP: 1)
        let result = try executor.run(task: F.task([F.pairs[0], longQuery], parameters: parameters))
        let fitting = result.filter { $0.id.pairID == 11 }
        #expect(fitting.map(\.id) == [.criteria(pair: 11, 0), .criteria(pair: 11, 1)])
        for t in fitting {
            let endedByEos = t.tokens.last == UInt32(ByteTokenizer.Special.eos.rawValue)
            #expect(endedByEos ? t.finishReason == .eos : (t.finishReason == .context && t.tokens.count == 4))
            #expect(t.tokens.count <= 4)
        }
        // A prompt longer than the context gives an empty trajectory (it parses as truncated).
        let overflowing = result.filter { $0.id.pairID == 20 }
        let longPrompt = CompactFormat().criteriaPrompt(query: longQuery.query)
        #expect(overflowing == (0..<2).map {
            Trajectory(id: .criteria(pair: 20, $0), promptTokenCount: UInt32(longPrompt.count), tokens: [], behaviourLogprobs: [],
                       referenceLogprobs: [], finishReason: .context, text: "")
        })
    }

    @Test func evaluationPromptsBeyondTheContextGiveEmptyTrajectories() throws {
        let item = F.item(TaskPair(pairID: 30, query: "q", responses: ["short", String(repeating: "long ", count: 20)]))
        let criteriaPrompt = CompactFormat().criteriaPrompt(query: "q")
        let shortPrompt = criteriaPrompt + F.validCriteria + [ByteTokenizer.Special.user.rawValue]
            + ByteTokenizer().encode("R: short\nEvaluate.") + [ByteTokenizer.Special.assistant.rawValue]
        let config = F.model(maxSeqLen: shortPrompt.count + 10)
        let executor = try F.executor(model: config)
        let task = F.task()
        let evaluations = try executor.evaluationStage(item: item, criteriaOutputs: [F.validCriteria, F.validCriteria], plan: F.plan(task),
                                                       sampling: RolloutSampling(parameters: task.parameters))
        #expect(evaluations.map(\.id) == [
            .evaluation(pair: 30, criteria: 0, response: 0, sample: 0), .evaluation(pair: 30, criteria: 0, response: 1, sample: 0),
            .evaluation(pair: 30, criteria: 1, response: 0, sample: 0), .evaluation(pair: 30, criteria: 1, response: 1, sample: 0),
        ])
        for t in evaluations where t.id.responseIndex == 0 {
            #expect(!t.tokens.isEmpty && Int(t.promptTokenCount) == shortPrompt.count)
        }
        for t in evaluations where t.id.responseIndex == 1 {
            #expect(t.tokens.isEmpty && t.finishReason == .context && t.promptTokenCount > UInt32(config.maxSeqLen))
        }
    }

    @Test func singleStageModesSampleThePlannedRequests() throws {
        let task = F.task(Array(F.pairs.prefix(2)))
        let plan = F.plan(task)
        let items = task.pairs.map(F.item)
        let par = try F.executor(mode: .par).run(task: task)
        #expect(par.map(\.id) == items.flatMap { plan.judgmentRequests(for: $0) }.map(\.id).sorted())
        #expect(par.count == 2 * 2 * 2)
        let pairwise = try F.executor(mode: .pairwise).run(task: task)
        let comparisons = items.flatMap { plan.comparisonRequests(for: $0) }
        #expect(pairwise.map(\.id) == comparisons.map(\.id).sorted())
        #expect(pairwise.count == 2 * 2)
        let prompts = Dictionary(uniqueKeysWithValues: comparisons.map { ($0.id, $0.promptTokens) })
        expectWellFormed(pairwise, prompts: prompts, maxTokens: { _ in 8 })
    }

    @Test func weightsAndOrderErrorsNameTheProblem() throws {
        let config = F.model()
        let executor = try EngineRolloutExecutor(model: config, format: CompactFormat(), logger: F.quiet)
        #expect(throws: CermError.invalid("executor: no policy weights loaded (prepare was not called)")) {
            try executor.run(task: F.task())
        }
        try executor.prepare(policyVersion: 4, weights: F.weights(config, seed: 1).wireBytes)
        #expect(executor.policyVersion == 4)
        #expect(throws: CermError.invalid("executor: no reference weights loaded (prepareReference was not called)")) {
            try executor.run(task: F.task())
        }
        let count = ParameterLayout(config).totalCount
        #expect(throws: CermError.invalid("reference weights: weights: 12 bytes received, the model config needs \(count * 4) (\(count) float32 values)")) {
            try executor.prepareReference(weights: [UInt8](repeating: 0, count: 12))
        }
        var small = config
        small.vocabSize = 200
        #expect(throws: CermError.invalid("model.vocab_size 200 is smaller than the byte tokenizer's 264 tokens")) {
            try EngineRolloutExecutor(model: small, format: CompactFormat())
        }
        #expect(throws: CermError.invalid("task 5: pair 11 appears twice")) {
            try F.executor().run(task: F.task([F.pairs[0], F.pairs[0]]))
        }
    }

    @Test func reloadingWeightsChangesSamplesAndRestoresThem() throws {
        let config = F.model()
        let executor = try F.executor()
        let task = F.task([F.pairs[0]])
        let before = try executor.run(task: task)
        try executor.prepare(policyVersion: 3, weights: F.weights(config, seed: 7).wireBytes)
        let other = try executor.run(task: task)
        #expect(other != before)
        try executor.prepare(policyVersion: 4, weights: F.weights(config, seed: 1).wireBytes)
        #expect(try executor.run(task: task) == before)
    }

    @Test func referenceEqualToPolicyGivesEqualLogprobsInBothStages() throws {
        let config = F.model()
        let executor = try EngineRolloutExecutor(model: config, format: CompactFormat(), logger: F.quiet)
        try executor.load(policy: F.weights(config, seed: 1))
        try executor.load(reference: F.weights(config, seed: 1))
        let task = F.task()
        let criteria = try executor.run(task: task)
        let evaluations = try executor.evaluationStage(item: F.item(F.pairs[0]), criteriaOutputs: [F.validCriteria, F.validCriteria],
                                                       plan: F.plan(task), sampling: RolloutSampling(parameters: task.parameters))
        #expect(evaluations.count == 4)
        for t in criteria + evaluations {
            #expect(t.referenceLogprobs.map(\.bitPattern) == t.behaviourLogprobs.map(\.bitPattern), "\(t.id)")
        }
    }

    @Test func commonPrefixLength() {
        #expect(EngineRolloutExecutor.commonPrefixLength([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2)
        #expect(EngineRolloutExecutor.commonPrefixLength([[5], [6]]) == 0)
        #expect(EngineRolloutExecutor.commonPrefixLength([[1, 2, 3]]) == 3)
        #expect(EngineRolloutExecutor.commonPrefixLength([]) == 0)
    }
}
