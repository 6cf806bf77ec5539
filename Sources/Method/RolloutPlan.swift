import Configuration
import Shared

// The two-stage rollout as data: which trajectories a pair needs, their ids, seeds and prompts.
// Workers execute the requests; the coordinator uses the same ids to order and reward them.

/// What a trajectory generates.
public enum TrajectoryStage: UInt8, Sendable, Hashable, Comparable, CaseIterable, Codable {
    /// CE-RM stage 1: a criteria set for the query.
    case criteria = 0
    /// CE-RM stage 2: an evaluation of one response under one criteria set.
    case evaluation = 1
    /// `par`: a single-stage pointwise judgment of one response.
    case judgment = 2
    /// `pairwise`: a single-stage comparison of both responses.
    case comparison = 3

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The identity of one trajectory of one step, independent of which worker samples it.
///
/// Index conventions (unused indices are 0):
/// - `.criteria`: `criteriaIndex` i in 0..<nc.
/// - `.evaluation`: `criteriaIndex` i, `responseIndex` r (0 = chosen, 1 = rejected; 0..<N for
///   Best-of-N), `sampleIndex` j in 0..<ne.
/// - `.judgment`: `responseIndex` r, `sampleIndex` j.
/// - `.comparison`: `sampleIndex` j.
///
/// The canonical total order (``Comparable``) is lexicographic on (pairID, stage,
/// criteriaIndex, responseIndex, sampleIndex); the learner processes trajectories in it.
public struct TrajectoryID: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var pairID: UInt64
    public var stage: TrajectoryStage
    public var criteriaIndex: Int
    public var responseIndex: Int
    public var sampleIndex: Int

    public init(pairID: UInt64, stage: TrajectoryStage, criteriaIndex: Int = 0, responseIndex: Int = 0, sampleIndex: Int = 0) {
        self.pairID = pairID
        self.stage = stage
        self.criteriaIndex = criteriaIndex
        self.responseIndex = responseIndex
        self.sampleIndex = sampleIndex
    }

    /// Criteria trajectory i of a pair.
    public static func criteria(pair: UInt64, _ criteriaIndex: Int) -> TrajectoryID {
        TrajectoryID(pairID: pair, stage: .criteria, criteriaIndex: criteriaIndex)
    }

    /// Evaluation j of response r under criteria i of a pair.
    public static func evaluation(pair: UInt64, criteria: Int, response: Int, sample: Int) -> TrajectoryID {
        TrajectoryID(pairID: pair, stage: .evaluation, criteriaIndex: criteria, responseIndex: response, sampleIndex: sample)
    }

    private var sortKey: (UInt64, UInt8, Int, Int, Int) {
        (pairID, stage.rawValue, criteriaIndex, responseIndex, sampleIndex)
    }

    public static func < (lhs: TrajectoryID, rhs: TrajectoryID) -> Bool { lhs.sortKey < rhs.sortKey }

    public var description: String {
        "pair \(pairID) \(stage) c\(criteriaIndex) r\(responseIndex) s\(sampleIndex)"
    }

    /// The sampling seed of this trajectory at `step` of the run with `runSeed`.
    ///
    /// Mixing (a fixed part of the run's reproducibility; changing it changes every run):
    /// `h = splitMix64(runSeed ^ 0x63_65_72_6D_73_65_65_64)` ("cermseed"), then for each field
    /// `v` in (step, pairID, stage, criteriaIndex, responseIndex, sampleIndex), in this order,
    /// `h = splitMix64(h ^ v)` with indices as two's-complement `UInt64`. It depends on nothing
    /// else: never on the worker, thread or arrival order.
    public func seed(runSeed: UInt64, step: UInt64) -> UInt64 {
        var h = SeedMixer.splitMix64(runSeed ^ 0x6365_726D_7365_6564)
        for value in [step, pairID, UInt64(stage.rawValue),
                      UInt64(truncatingIfNeeded: criteriaIndex),
                      UInt64(truncatingIfNeeded: responseIndex),
                      UInt64(truncatingIfNeeded: sampleIndex)] {
            h = SeedMixer.splitMix64(h ^ value)
        }
        return h
    }
}

/// SplitMix64, the seed-derivation primitive.
public enum SeedMixer {
    /// One SplitMix64 step (Steele, Lea & Flood 2014): add the golden gamma, then the
    /// variant-13 finaliser. A bijection on UInt64 with good avalanche.
    public static func splitMix64(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// One generation a worker must run.
public struct RolloutRequest: Sendable, Equatable {
    public var id: TrajectoryID
    /// The sampler's seed (``TrajectoryID/seed(runSeed:step:)``).
    public var seed: UInt64
    /// The full prompt; the model generates after its last token.
    public var promptTokens: [TokenID]
    /// Generation budget; an output without `⟨eos⟩` within it is `truncated`.
    public var maxTokens: Int

    public init(id: TrajectoryID, seed: UInt64, promptTokens: [TokenID], maxTokens: Int) {
        self.id = id
        self.seed = seed
        self.promptTokens = promptTokens
        self.maxTokens = maxTokens
    }
}

/// A query with its responses: a preference pair (`responses[0]` chosen, `responses[1]`
/// rejected) or a Best-of-N set (N responses, no label).
public struct RolloutItem: Sendable, Equatable {
    public var pairID: UInt64
    public var query: String
    public var responses: [String]

    public init(pairID: UInt64, query: String, responses: [String]) {
        self.pairID = pairID
        self.query = query
        self.responses = responses
    }

    /// A preference pair.
    public init(pairID: UInt64, query: String, chosen: String, rejected: String) {
        self.init(pairID: pairID, query: query, responses: [chosen, rejected])
    }
}

/// The stage-2 plan of one item: the parsed criteria and the evaluation requests they allow.
public struct EvaluationStagePlan: Sendable, Equatable {
    /// The parse result of each criteria trajectory, indexed by criteriaIndex.
    public var criteria: [ParseResult<ParsedCriteria>]
    /// Requests for every valid criteria set × response × sample, in canonical order.
    public var requests: [RolloutRequest]
}

/// Builds the requests of CE-RM's two-stage rollout (and of the single-stage `par` and
/// `pairwise` modes) for one step.
///
/// Invalid criteria: an evaluation prompt must contain the criteria, and an evaluation of an
/// unparseable criteria set cannot be scored against its items, so under an invalid criteria
/// set no evaluation is sampled. Those evaluations do not exist as trajectories; the invalid
/// criteria trajectory gets reward 0 (``CermRewards``). Hence a pair yields between nc and
/// nc + N·nc·ne trajectories (N = 2 for a pair).
public struct RolloutPlan: Sendable {
    public var format: any PromptFormat
    public var nc: Int
    public var ne: Int
    public var criteriaMaxTokens: Int
    public var evaluationMaxTokens: Int
    public var runSeed: UInt64
    public var step: UInt64

    public init(format: any PromptFormat, nc: Int, ne: Int, criteriaMaxTokens: Int, evaluationMaxTokens: Int,
                runSeed: UInt64, step: UInt64) {
        self.format = format
        self.nc = nc
        self.ne = ne
        self.criteriaMaxTokens = criteriaMaxTokens
        self.evaluationMaxTokens = evaluationMaxTokens
        self.runSeed = runSeed
        self.step = step
    }

    /// The plan of `config` (format, nc, ne, token budgets) at `step` of the run with `runSeed`,
    /// its prompts rendered through the run model's `chat`.
    public init(config: RolloutConfig, chat: any ChatCodec, runSeed: UInt64, step: UInt64) {
        self.init(format: makePromptFormat(config.format, chat: chat), nc: config.nc, ne: config.ne,
                  criteriaMaxTokens: config.criteriaMaxTokens, evaluationMaxTokens: config.evaluationMaxTokens,
                  runSeed: runSeed, step: step)
    }

    private func request(_ id: TrajectoryID, _ prompt: [TokenID], _ maxTokens: Int) -> RolloutRequest {
        RolloutRequest(id: id, seed: id.seed(runSeed: runSeed, step: step), promptTokens: prompt, maxTokens: maxTokens)
    }

    /// Stage 1: nc criteria requests for the item's query (they share one prompt).
    public func criteriaRequests(for item: RolloutItem) -> [RolloutRequest] {
        let prompt = format.criteriaPrompt(query: item.query)
        return (0..<max(nc, 0)).map { request(.criteria(pair: item.pairID, $0), prompt, criteriaMaxTokens) }
    }

    /// Stage 2: given the generated tokens of criteria trajectory i at `criteriaOutputs[i]`
    /// (nc entries; missing entries count as truncated), the evaluation requests: for each
    /// valid criteria set, each response, `ne` samples. Requests under one criteria set share
    /// the prefix (criteria prompt + criteria output), which the engine may cache.
    public func evaluationRequests(for item: RolloutItem, criteriaOutputs: [[TokenID]]) -> EvaluationStagePlan {
        let criteriaPrompt = format.criteriaPrompt(query: item.query)
        var parsed: [ParseResult<ParsedCriteria>] = []
        var requests: [RolloutRequest] = []
        for criteriaIndex in 0..<max(nc, 0) {
            let output = criteriaIndex < criteriaOutputs.count ? criteriaOutputs[criteriaIndex] : []
            let result = format.parseCriteria(tokens: output)
            parsed.append(result)
            guard result.isValid else { continue }
            for (responseIndex, response) in item.responses.enumerated() {
                let prompt = format.evaluationPrompt(criteriaPrompt: criteriaPrompt, criteriaOutput: output, response: response)
                for sample in 0..<max(ne, 0) {
                    let id = TrajectoryID.evaluation(pair: item.pairID, criteria: criteriaIndex, response: responseIndex, sample: sample)
                    requests.append(request(id, prompt, evaluationMaxTokens))
                }
            }
        }
        return EvaluationStagePlan(criteria: parsed, requests: requests)
    }

    /// Number of judgments per response in `par` mode and comparisons per pair in `pairwise`
    /// mode: nc·ne, so a single-stage mode samples as many evaluations per response as CE-RM.
    public var singleStageSamples: Int { max(nc, 0) * max(ne, 0) }

    /// `par` mode: ``singleStageSamples`` judgments of each response.
    public func judgmentRequests(for item: RolloutItem, format: ParFormat = ParFormat()) -> [RolloutRequest] {
        var requests: [RolloutRequest] = []
        for (responseIndex, response) in item.responses.enumerated() {
            let prompt = format.prompt(query: item.query, response: response)
            for sample in 0..<singleStageSamples {
                let id = TrajectoryID(pairID: item.pairID, stage: .judgment, responseIndex: responseIndex, sampleIndex: sample)
                requests.append(request(id, prompt, evaluationMaxTokens))
            }
        }
        return requests
    }

    /// `pairwise` mode: ``singleStageSamples`` comparisons of the pair, the chosen response in
    /// position A or B by ``PairwiseFormat/chosenIsA(seed:)`` of each request's seed. Needs
    /// exactly two responses (chosen, rejected); otherwise no requests.
    public func comparisonRequests(for item: RolloutItem, format: PairwiseFormat = PairwiseFormat()) -> [RolloutRequest] {
        guard item.responses.count == 2 else { return [] }
        return (0..<singleStageSamples).map { sample in
            let id = TrajectoryID(pairID: item.pairID, stage: .comparison, sampleIndex: sample)
            let seed = id.seed(runSeed: runSeed, step: step)
            let prompt = format.prompt(query: item.query, chosen: item.responses[0], rejected: item.responses[1],
                                       chosenIsA: PairwiseFormat.chosenIsA(seed: seed))
            return RolloutRequest(id: id, seed: seed, promptTokens: prompt, maxTokens: evaluationMaxTokens)
        }
    }
}

/// A prompt of an item that cannot fit the model's context even before generating.
public struct OversizedPrompt: Sendable, Equatable {
    /// The stage whose prompt is too long.
    public var stage: TrajectoryStage
    /// The response the prompt judges (nil for the criteria prompt and for comparisons).
    public var responseIndex: Int?
    /// Prompt tokens needed.
    public var tokens: Int
}

extension RolloutPlan {
    /// The first prompt of `item` under reward `mode` that is longer than `maxSeqLen` tokens,
    /// or nil when all fit. Such a prompt can never be sampled: the worker returns an empty
    /// trajectory with finish `context`. In `cerm` mode the criteria prompt of the query is
    /// checked, then each response's evaluation prompt after an *empty* criteria output (the
    /// shortest that prompt can be; real criteria only add to it).
    public func oversizedPrompt(for item: RolloutItem, mode: RewardMode, maxSeqLen: Int) -> OversizedPrompt? {
        switch mode {
        case .cerm:
            let criteria = format.criteriaPrompt(query: item.query)
            if criteria.count > maxSeqLen { return OversizedPrompt(stage: .criteria, responseIndex: nil, tokens: criteria.count) }
            for (index, response) in item.responses.enumerated() {
                let count = format.evaluationPrompt(criteriaPrompt: criteria, criteriaOutput: [], response: response).count
                if count > maxSeqLen { return OversizedPrompt(stage: .evaluation, responseIndex: index, tokens: count) }
            }
        case .par:
            for (index, response) in item.responses.enumerated() {
                let count = ParFormat().prompt(query: item.query, response: response).count
                if count > maxSeqLen { return OversizedPrompt(stage: .judgment, responseIndex: index, tokens: count) }
            }
        case .pairwise:
            guard item.responses.count == 2 else { return nil }
            let count = [true, false].map {
                PairwiseFormat().prompt(query: item.query, chosen: item.responses[0], rejected: item.responses[1], chosenIsA: $0).count
            }.max() ?? 0
            if count > maxSeqLen { return OversizedPrompt(stage: .comparison, responseIndex: nil, tokens: count) }
        }
        return nil
    }
}
