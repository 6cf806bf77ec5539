import Configuration
@testable import Coordinator
import Datasets
import Method
import Shared
import Testing

/// The teacher as a judge that also keeps every job it was given.
private final class RecordingJudge: JudgeBackend {
    let inner: TeacherJudge
    var criteriaJobs: [CriteriaJob] = []
    var evaluationJobs: [EvaluationJob] = []

    init(format: any PromptFormat) { inner = TeacherJudge(teacher: Teacher(errorRate: 0, seed: 1), format: format) }

    func criteria(_ jobs: [CriteriaJob]) throws -> [[TokenID]] {
        criteriaJobs += jobs
        return try inner.criteria(jobs)
    }

    func evaluations(_ jobs: [EvaluationJob]) throws -> [[[TokenID]]] {
        evaluationJobs += jobs
        return try inner.evaluations(jobs)
    }
}

private let listQuery = #"List 3 fruits in lowercase, separated by ";"."#

@Suite("Criteria modes")
struct CriteriaModeTests {
    let items = [
        EvaluationItem(id: "p", query: listQuery, responses: ["apple;pear;plum", "apple;Pear;plum"], kind: .pair, taskType: "list", index: 0),
        EvaluationItem(id: "b", query: "What is 17+25?", responses: ["42", "41", "44"], kind: .bestOfN(best: 0), taskType: "math", index: 0),
    ]

    @Test("response-conditioned: one criteria job per response with that response in the prompt, evaluated under its own criteria")
    func responseConditionedJobs() throws {
        for format in [CompactFormat(), CermFormat()] as [any PromptFormat] {
            let judge = RecordingJudge(format: format)
            let evaluator = Evaluator(format: format, options: EvaluationOptions(criteriaMode: .responseConditioned, seed: 1))
            var report = EvaluationReport()
            let judged = try evaluator.judgments(of: items, backend: judge, report: &report)
            let responses = items.flatMap { item in item.responses.map { (item.query, $0) } }
            #expect(judge.criteriaJobs.count == 5, "\(format.name)")
            for (job, (query, response)) in zip(judge.criteriaJobs, responses) {
                #expect(job.prompt == format.criteriaPrompt(query: query, response: response))
                #expect(format.chat.text(job.prompt).contains(response))
            }
            // Each response is evaluated alone, continuing the conversation its criteria were written in.
            #expect(judge.evaluationJobs.count == 5)
            for (job, (criteriaJob, (_, response))) in zip(judge.evaluationJobs, zip(judge.criteriaJobs, responses)) {
                #expect(job.responses == [response] && job.criteriaPrompt == criteriaJob.prompt)
                #expect(job.prompts == [format.evaluationPrompt(criteriaPrompt: criteriaJob.prompt, criteriaOutput: job.criteriaOutput, response: response)])
            }
            #expect(judged.map { $0.criteriaSets.map(\.responses) } == [[[0], [1]], [[0], [1], [2]]])
            // The teacher's criteria do not look at the response, so the scores are the unified ones.
            var unifiedReport = EvaluationReport()
            let unified = try Evaluator(format: format, options: EvaluationOptions(seed: 1))
                .judgments(of: items, backend: RecordingJudge(format: format), report: &unifiedReport)
            #expect(judged.map(\.scores) == unified.map(\.scores))
            #expect(judged.map(\.scores) == [[[10], [3]], [[10], [2.5], [2]]])
        }
    }

    @Test("unified, per-response and response-conditioned criteria prompts")
    func criteriaPromptsPerMode() throws {
        let format = CermFormat()
        func prompts(_ mode: CriteriaMode) throws -> [[TokenID]] {
            let judge = RecordingJudge(format: format)
            var report = EvaluationReport()
            _ = try Evaluator(format: format, options: EvaluationOptions(criteriaMode: mode, seed: 1))
                .judgments(of: [items[0]], backend: judge, report: &report)
            return judge.criteriaJobs.map(\.prompt)
        }
        let query = format.criteriaPrompt(query: listQuery)
        #expect(try prompts(.unified) == [query])
        #expect(try prompts(.perResponse) == [query, query])
        let conditioned = try prompts(.responseConditioned)
        #expect(conditioned == items[0].responses.map { format.criteriaPrompt(query: listQuery, response: $0) })
        #expect(!conditioned.contains(query) && conditioned[0] != conditioned[1])
    }
}
