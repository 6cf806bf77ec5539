import Configuration
import Foundation
import Method
import Shared

/// How responses are judged at evaluation.
public struct EvaluationOptions: Sendable, Equatable {
    /// Criteria samples per query (test-time scaling); scores are averaged over them.
    public var k: Int
    public var criteriaMode: CriteriaMode
    /// Temperature of greedy-by-default decoding (0 = greedy). With `k > 1` the criteria are
    /// sampled at `sampledCriteriaTemperature` instead, so that the k sets differ.
    public var temperature: Float
    /// Temperature of the criteria samples when `k > 1` (1: the model's own distribution).
    public var sampledCriteriaTemperature: Float
    public var seed: UInt64
    /// Items whose criteria are generated in one batched call.
    public var chunkSize: Int

    public init(k: Int = 1, criteriaMode: CriteriaMode = .unified, temperature: Float = 0, seed: UInt64, chunkSize: Int = 32,
                sampledCriteriaTemperature: Float = 1) {
        self.k = k
        self.sampledCriteriaTemperature = sampledCriteriaTemperature
        self.criteriaMode = criteriaMode
        self.temperature = temperature
        self.seed = seed
        self.chunkSize = chunkSize
    }

    /// The options of a run's `[eval]` section.
    public init(eval: EvalConfig, seed: UInt64) {
        self.init(k: eval.k, criteriaMode: eval.criteria, temperature: Float(eval.temperature), seed: seed)
    }

    /// Temperature of the criteria samples.
    public var criteriaTemperature: Float { k > 1 ? sampledCriteriaTemperature : temperature }

    /// The seed of criteria sample `sample` of `item` (for response `response` in the
    /// per-response modes, −1 otherwise) and, with `evaluationOf`, of that response's evaluation under it.
    public func seed(item: EvaluationItem, sample: Int, response: Int, evaluationOf: Int? = nil) -> UInt64 {
        var rng = SplitMix64(seed: seed, streams: item.isBestOfN ? 1 : 0, UInt64(item.index), UInt64(sample),
                             UInt64(bitPattern: Int64(response)), UInt64(bitPattern: Int64(evaluationOf ?? -1)))
        return rng.next()
    }
}

/// Pointwise held-out evaluation of a judge with CE-RM's two-stage format: criteria per query
/// (or per response, the ablations of `eval.criteria`), then one evaluation per response under each criteria set;
/// a response's score is the mean of its valid overall scores over the k criteria sets.
public struct Evaluator: Sendable {
    public var format: any PromptFormat
    public var options: EvaluationOptions
    /// Receives every generated output as text (for inspection, e.g. `cerm eval --show`):
    /// the item, the criteria sample, the response index (nil for the criteria turn) and the
    /// output as text (special tokens by name, `<|eos|>`).
    public var transcript: (@Sendable (EvaluationItem, Int, Int?, String) -> Void)?

    public init(format: any PromptFormat, options: EvaluationOptions) {
        self.format = format
        self.options = options
    }

    /// The per-response, per-sample overall scores of `items` (`[item][response][sample]`,
    /// nil = no valid score), counting parse outcomes into `report`.
    public func scores(of items: [EvaluationItem], backend: any JudgeBackend,
                       report: inout EvaluationReport) throws -> [[[Double?]]] {
        try judgments(of: items, backend: backend, report: &report).map(\.scores)
    }

    /// What the judge wrote for each item of `items`, in order: every criteria set with the
    /// evaluations under it, parsed, and the per-response, per-sample overall scores; parse
    /// outcomes are counted into `report`. The one path from prompts to scores: `cerm eval`,
    /// curation and `cerm judge` all go through it.
    public func judgments(of items: [EvaluationItem], backend: any JudgeBackend,
                          report: inout EvaluationReport) throws -> [ItemJudgments] {
        let k = max(1, options.k)
        // Criteria sets: one per (item, sample) in unified mode, per (item, response, sample) in
        // the per-response modes. `owner` maps each set to the responses it judges.
        var jobs: [CriteriaJob] = []
        var owners: [(item: Int, responses: [Int], sample: Int)] = []
        for (itemIndex, item) in items.enumerated() {
            let prompt = format.criteriaPrompt(query: item.query)
            for sample in 0..<k {
                switch options.criteriaMode {
                case .unified:
                    jobs.append(CriteriaJob(query: item.query, prompt: prompt, seed: options.seed(item: item, sample: sample, response: -1),
                                            temperature: options.criteriaTemperature, sample: sample))
                    owners.append((itemIndex, Array(item.responses.indices), sample))
                case .perResponse, .responseConditioned:
                    for (response, text) in item.responses.enumerated() {
                        // Per response: the query-only prompt again, or the prompt with this response in view.
                        let responsePrompt = options.criteriaMode == .perResponse ? prompt : format.criteriaPrompt(query: item.query, response: text)
                        jobs.append(CriteriaJob(query: item.query, prompt: responsePrompt,
                                                seed: options.seed(item: item, sample: sample, response: response),
                                                temperature: options.criteriaTemperature, sample: sample))
                        owners.append((itemIndex, [response], sample))
                    }
                }
            }
        }
        let criteriaOutputs = try backend.criteria(jobs)
        guard criteriaOutputs.count == jobs.count else {
            throw CermError.invalid("judge returned \(criteriaOutputs.count) criteria outputs for \(jobs.count) prompts")
        }
        var judged = items.map { ItemJudgments(scores: [[Double?]](repeating: [Double?](repeating: nil, count: k), count: $0.responses.count)) }
        var evaluationJobs: [EvaluationJob] = []
        // Each evaluation job's criteria set, as (item, position in the item's criteriaSets).
        var evaluationOwners: [(item: Int, set: Int)] = []
        for (job, (output, owner)) in zip(jobs, zip(criteriaOutputs, owners)) {
            let parsed = format.parseCriteria(tokens: output)
            report.recordCriteria(parsed.failure, tokens: output.count)
            let item = items[owner.item]
            transcript?(item, owner.sample, options.criteriaMode == .unified ? nil : owner.responses.first,
                        "criteria: " + format.chat.text(output, showSpecials: true))
            judged[owner.item].criteriaSets.append(CriteriaJudgment(sample: owner.sample, responses: owner.responses, prompt: job.prompt,
                                                                    output: output, parsed: parsed))
            // Invalid criteria: no evaluation is generated under them; their responses keep no score for this sample.
            guard parsed.isValid else { continue }
            let responses = owner.responses.map { item.responses[$0] }
            evaluationJobs.append(EvaluationJob(
                query: item.query, criteriaPrompt: job.prompt, criteriaOutput: output, responses: responses,
                prompts: responses.map { format.evaluationPrompt(criteriaPrompt: job.prompt, criteriaOutput: output, response: $0) },
                seeds: owner.responses.map { options.seed(item: item, sample: owner.sample, response: -1, evaluationOf: $0) },
                temperature: options.temperature, sample: owner.sample))
            evaluationOwners.append((owner.item, judged[owner.item].criteriaSets.count - 1))
        }
        let evaluationOutputs = try backend.evaluations(evaluationJobs)
        guard evaluationOutputs.count == evaluationJobs.count else {
            throw CermError.invalid("judge returned \(evaluationOutputs.count) evaluation groups for \(evaluationJobs.count)")
        }
        for (outputs, owner) in zip(evaluationOutputs, evaluationOwners) {
            let set = judged[owner.item].criteriaSets[owner.set]
            let criteriaCount = set.parsed.value?.items.count ?? 0
            for (position, response) in set.responses.enumerated() {
                let tokens = position < outputs.count ? outputs[position] : []
                let parsed = format.parseEvaluation(tokens: tokens, criteriaCount: criteriaCount)
                report.recordEvaluation(parsed.failure, tokens: tokens.count)
                transcript?(items[owner.item], set.sample, response, format.chat.text(tokens, showSpecials: true))
                judged[owner.item].criteriaSets[owner.set].evaluations.append(EvaluationTurn(output: tokens, parsed: parsed))
                judged[owner.item].scores[response][set.sample] = parsed.value?.overall
            }
        }
        return judged
    }

    /// Judges every item, `options.chunkSize` items per batched backend call, and tallies the
    /// accuracies. `progress` receives the number of items done after each chunk.
    public func evaluate(_ items: [EvaluationItem], backend: any JudgeBackend,
                         progress: (Int) -> Void = { _ in }) throws -> EvaluationReport {
        let start = Date()
        var report = EvaluationReport()
        var done = 0
        for chunkStart in stride(from: 0, to: items.count, by: max(1, options.chunkSize)) {
            let chunk = Array(items[chunkStart..<min(items.count, chunkStart + max(1, options.chunkSize))])
            let perSample = try scores(of: chunk, backend: backend, report: &report)
            for (item, itemScores) in zip(chunk, perSample) {
                report.record(item, scores: ResponseScoring.meanScores(itemScores))
            }
            done += chunk.count
            progress(done)
        }
        report.seconds = Date().timeIntervalSince(start)
        return report
    }

    /// Judges `items` on `threads` threads, each with its own backend from `makeBackend`, and
    /// tallies the accuracies (see ``scores(of:threads:makeBackend:progress:)``).
    public func evaluate(_ items: [EvaluationItem], threads: Int,
                         makeBackend: @Sendable () throws -> any JudgeBackend,
                         progress: @escaping @Sendable (Int) -> Void = { _ in }) throws -> EvaluationReport {
        let start = Date()
        let (perSample, parseOutcomes) = try scores(of: items, threads: threads, makeBackend: makeBackend, progress: progress)
        var report = parseOutcomes
        for (item, itemScores) in zip(items, perSample) {
            report.record(item, scores: ResponseScoring.meanScores(itemScores))
        }
        report.seconds = Date().timeIntervalSince(start)
        return report
    }

    /// The per-response, per-sample overall scores of `items` (`[item][response][sample]`, in
    /// the order of `items`) and the parse outcomes, judged `options.chunkSize` items per
    /// batched call on `threads` threads, each with its own backend from `makeBackend`. Thread
    /// t takes items t, t + threads, …, so pairs and the costlier Best-of-N items are spread
    /// evenly; the scores do not depend on the split, since every seed derives from the item.
    /// `progress` is called with the total items done.
    public func scores(of items: [EvaluationItem], threads: Int,
                       makeBackend: @Sendable () throws -> any JudgeBackend,
                       progress: @escaping @Sendable (Int) -> Void = { _ in }) throws -> (scores: [[[Double?]]], report: EvaluationReport) {
        let shares = max(1, min(threads, items.count))
        let state = EvaluationShareState(count: shares)
        let evaluator = self
        let chunkSize = max(1, options.chunkSize)
        DispatchQueue.concurrentPerform(iterations: shares) { share in
            let positions = Array(stride(from: share, to: items.count, by: shares))
            do {
                let backend = try makeBackend()
                var report = EvaluationReport()
                var scores: [[[Double?]]] = []
                for chunkStart in stride(from: 0, to: positions.count, by: chunkSize) {
                    let chunk = positions[chunkStart..<min(positions.count, chunkStart + chunkSize)].map { items[$0] }
                    scores += try evaluator.scores(of: chunk, backend: backend, report: &report)
                    progress(state.update(share: share, done: scores.count))
                }
                state.finish(share: share, .success(ShareScores(positions: positions, scores: scores, report: report)))
            } catch {
                state.finish(share: share, .failure(error))
            }
        }
        var scores = [[[Double?]]](repeating: [], count: items.count)
        var total = EvaluationReport()
        for result in state.results() {
            switch result {
            case let .success(share):
                for (position, itemScores) in zip(share.positions, share.scores) { scores[position] = itemScores }
                total.merge(share.report)
            case let .failure(error): throw error
            case nil: throw CermError.invalid("evaluation share did not finish")
            }
        }
        return (scores, total)
    }
}

/// What the judge wrote for one item (``Evaluator/judgments(of:backend:report:)``).
public struct ItemJudgments: Sendable, Equatable {
    /// The criteria sets in the order they were generated: by sample, and within a sample by
    /// response in the per-response modes.
    public var criteriaSets: [CriteriaJudgment] = []
    /// Overall score per response and criteria sample (`[response][sample]`; nil: no valid score).
    public var scores: [[Double?]]
}

/// One criteria turn and the evaluation turns written under it.
public struct CriteriaJudgment: Sendable, Equatable {
    /// Criteria sample index (0..<k).
    public var sample: Int
    /// The responses judged under this set: all of the item's in unified mode, one otherwise.
    public var responses: [Int]
    /// The criteria prompt it was generated from.
    public var prompt: [TokenID]
    /// The generated tokens, through the stop token unless truncated.
    public var output: [TokenID]
    public var parsed: ParseResult<ParsedCriteria>
    /// One per entry of ``responses`` when the criteria parsed; none when they did not (no
    /// evaluation is generated under invalid criteria).
    public var evaluations: [EvaluationTurn] = []
}

/// One generated evaluation and its parse.
public struct EvaluationTurn: Sendable, Equatable {
    public var output: [TokenID]
    public var parsed: ParseResult<ParsedEvaluation>
}

/// What one evaluation thread judged: the positions of its items and their scores.
private struct ShareScores: Sendable {
    var positions: [Int]
    var scores: [[[Double?]]]
    var report: EvaluationReport
}

/// Results and progress of the evaluation threads, behind a lock.
private final class EvaluationShareState: @unchecked Sendable {
    private let lock = NSLock()
    private var done: [Int]
    private var outcomes: [Result<ShareScores, any Error>?]

    init(count: Int) {
        done = Array(repeating: 0, count: count)
        outcomes = Array(repeating: nil, count: count)
    }

    func update(share: Int, done count: Int) -> Int {
        lock.lock()
        defer { lock.unlock() }
        done[share] = count
        return done.reduce(0, +)
    }

    func finish(share: Int, _ outcome: Result<ShareScores, any Error>) {
        lock.lock()
        outcomes[share] = outcome
        lock.unlock()
    }

    func results() -> [Result<ShareScores, any Error>?] {
        lock.lock()
        defer { lock.unlock() }
        return outcomes
    }
}
