import Datasets
import Engine
import Method
import Shared

/// One criteria turn to produce.
public struct CriteriaJob: Sendable, Equatable {
    public var query: String
    /// The format's criteria prompt for `query`.
    public var prompt: [TokenID]
    public var seed: UInt64
    /// 0 = greedy.
    public var temperature: Float
    /// Criteria sample index (0..<k).
    public var sample: Int
}

/// The evaluation turns of several responses under one criteria set: they share the prefix
/// `criteriaPrompt + criteriaOutput (through ⟨eos⟩)`.
public struct EvaluationJob: Sendable, Equatable {
    public var query: String
    public var criteriaPrompt: [TokenID]
    public var criteriaOutput: [TokenID]
    public var responses: [String]
    /// The full evaluation prompt of each response (the format's `evaluationPrompt`).
    public var prompts: [[TokenID]]
    public var seeds: [UInt64]
    public var temperature: Float
    /// Criteria sample index the evaluations belong to.
    public var sample: Int
}

/// Something that writes criteria and evaluations: a model or the programmatic teacher. Both
/// go through the same parsing and scoring, so their accuracies compare like with like.
public protocol JudgeBackend: AnyObject {
    /// The generated criteria tokens of each job (ending in `⟨eos⟩` unless truncated).
    func criteria(_ jobs: [CriteriaJob]) throws -> [[TokenID]]
    /// The generated evaluation tokens of each job's responses, `[job][response]`.
    func evaluations(_ jobs: [EvaluationJob]) throws -> [[[TokenID]]]
}

/// A transformer judge on the generation engine.
///
/// Criteria prompts of many queries are generated in one batched call; the evaluations under a
/// criteria set share its prefix (prefilled once, `Generator.prefill`), and the evaluations of
/// all criteria sets of a call are decoded together (`Generator.generate(groups:)`).
public final class ModelJudge: JudgeBackend {
    public let generator: Generator
    public var criteriaMaxTokens: Int
    public var evaluationMaxTokens: Int
    public var topP: Float
    /// The model's tokenizer and template: its stop tokens end generation.
    public let chat: any ChatCodec

    public init(weights: ModelWeights, criteriaMaxTokens: Int, evaluationMaxTokens: Int, topP: Float = 1,
                chat: any ChatCodec) throws {
        generator = try Generator(config: weights.config, parameters: weights.values)
        generator.stopTokens = chat.stopTokens
        self.chat = chat
        self.criteriaMaxTokens = criteriaMaxTokens
        self.evaluationMaxTokens = evaluationMaxTokens
        self.topP = topP
    }

    public func criteria(_ jobs: [CriteriaJob]) throws -> [[TokenID]] {
        let limit = generator.config.maxSeqLen
        var outputs = [[TokenID]](repeating: [], count: jobs.count)
        var requests: [GenerationRequest] = []
        var positions: [Int] = []
        // A prompt that leaves no room to generate yields no output: it parses as truncated.
        for (index, job) in jobs.enumerated() where job.prompt.count < limit {
            requests.append(GenerationRequest(prompt: job.prompt, seed: job.seed,
                                              maxNewTokens: min(criteriaMaxTokens, limit - job.prompt.count),
                                              temperature: job.temperature, topP: topP))
            positions.append(index)
        }
        guard !requests.isEmpty else { return outputs }
        for (position, result) in zip(positions, try generator.generate(requests: requests)) {
            outputs[position] = result.tokens
        }
        return outputs
    }

    public func evaluations(_ jobs: [EvaluationJob]) throws -> [[[TokenID]]] {
        let limit = generator.config.maxSeqLen
        var outputs = jobs.map { [[TokenID]](repeating: [], count: $0.prompts.count) }
        var groups: [PrefixedGenerations] = []
        var owners: [(job: Int, positions: [Int])] = []
        for (jobIndex, job) in jobs.enumerated() {
            let prefixTokens = job.criteriaPrompt + chat.completedTurn(job.criteriaOutput)
            var requests: [GenerationRequest] = []
            var positions: [Int] = []
            // A prompt that leaves no room to generate yields no output: it parses as truncated.
            for (index, prompt) in job.prompts.enumerated() where prompt.count < limit && prompt.count > prefixTokens.count {
                guard prompt.starts(with: prefixTokens) else {
                    throw CermError.invalid("evaluation prompt of response \(index) for query \(job.query.debugDescription) does not start with its criteria turn")
                }
                requests.append(GenerationRequest(prompt: Array(prompt[prefixTokens.count...]), seed: job.seeds[index],
                                                  maxNewTokens: min(evaluationMaxTokens, limit - prompt.count),
                                                  temperature: job.temperature, topP: topP))
                positions.append(index)
            }
            guard !requests.isEmpty else { continue }
            // The criteria turn is computed once per criteria set and read by all its responses.
            groups.append(PrefixedGenerations(prefix: try generator.prefill(prefix: prefixTokens), requests: requests))
            owners.append((jobIndex, positions))
        }
        guard !groups.isEmpty else { return outputs }
        // One batch over every criteria set: decode steps run over all responses of the chunk.
        for (results, owner) in zip(try generator.generate(groups: groups), owners) {
            for (position, result) in zip(owner.positions, results) {
                outputs[owner.job][position] = result.tokens
            }
        }
        return outputs
    }
}

/// The programmatic teacher as a judge: its criteria for the query and its evaluation of each
/// response, as the tokens a model would emit (text + `⟨eos⟩`). An unknown query gets no
/// output (parsed as truncated), which is why callers leave such items out first
/// (``supportedItems(_:teacher:)``). The teacher's criteria depend on the query alone, so its
/// evaluations are written against exactly the criteria it output.
public final class TeacherJudge: JudgeBackend {
    public let teacher: Teacher
    public let format: any PromptFormat

    public init(teacher: Teacher, format: any PromptFormat) {
        self.teacher = teacher
        self.format = format
    }

    public func criteria(_ jobs: [CriteriaJob]) throws -> [[TokenID]] {
        jobs.map { job in teacher.criteria(for: job.query).map { format.outputTokens(text: $0.text(in: format)) } ?? [] }
    }

    public func evaluations(_ jobs: [EvaluationJob]) throws -> [[[TokenID]]] {
        jobs.map { job in
            job.responses.map { response in
                teacher.evaluate(query: job.query, response: response, sample: UInt64(job.sample))
                    .map { format.outputTokens(text: $0.text(in: format)) } ?? []
            }
        }
    }
}

extension TeacherJudge {
    /// The items whose query `teacher` knows (the synthetic task's), in order, and the number
    /// of the others. Judged, an unknown query would count as a truncated criteria output and
    /// its responses tie, which says nothing about the teacher; `cerm data teacher` skips
    /// them too (``TeacherAccuracyReport/unsupported``).
    public static func supportedItems(_ items: [EvaluationItem], teacher: Teacher) -> (items: [EvaluationItem], unsupported: Int) {
        let known = items.filter { teacher.criteria(for: $0.query) != nil }
        return (known, items.count - known.count)
    }
}

/// Who judges an evaluation: a model's weights with the conversation its tokenizer and
/// template give (``RunModel/chat``), or the synthetic task's teacher.
public enum JudgeSource: Sendable {
    case model(ModelWeights, chat: any ChatCodec)
    case teacher(Teacher)
}
