import Configuration
import Datasets
import Foundation
import Method
import Shared

/// A judge's held-out evaluation as `cerm eval`, `cerm sft` and `cerm pipeline` run it: the
/// items of the files (for the teacher, those whose query it knows; the rest counted as
/// unsupported), judged in the run's prompt format through the judge's conversation, one judge
/// backend per thread.
public struct HeldOutEvaluation {
    public let judge: JudgeSource
    /// The items to judge, in file order.
    public let items: [EvaluationItem]
    /// Items the teacher does not know (reported, in no figure).
    public let unsupported: Int
    private let format: any PromptFormat
    private let rollout: RolloutConfig

    /// The items of `files` (the first `limit` of each) for `judge`; `skipped` gets the lines
    /// `data.skip_bad` skipped (``EvaluationItem/items(files:data:limit:log:)``).
    public init(judge: JudgeSource, files: [String], config: Config, limit: Int? = nil, skipped: (String) -> Void) throws {
        var items = try EvaluationItem.items(files: files, data: config.data, limit: limit, log: skipped)
        var unsupported = 0
        switch judge {
        case let .model(_, chat):
            format = makePromptFormat(config.rollout.format, chat: chat)
        case let .teacher(teacher):
            (items, unsupported) = TeacherJudge.supportedItems(items, teacher: teacher)
            format = makePromptFormat(config.rollout.format)
        }
        self.judge = judge
        self.items = items
        self.unsupported = unsupported
        self.rollout = config.rollout
    }

    /// Judges ``items`` under `eval` (seeded by `seed`, the run seed) on `threads` threads, each
    /// with its own generator (a model judge sets BLAS to one thread so they do not
    /// oversubscribe the cores). `transcript` gets the generated criteria and evaluations of
    /// the first `show` items; `progress` the items done.
    public func run(eval: EvalConfig, seed: UInt64, threads: Int, show: Int = 0,
                    transcript: @escaping @Sendable (String) -> Void = { _ in },
                    progress: @escaping @Sendable (Int) -> Void = { _ in }) throws -> EvaluationReport {
        var evaluator = Evaluator(format: format, options: EvaluationOptions(eval: eval, seed: seed))
        if show > 0 {
            let shown = Set(items.prefix(show).map(\.id))
            evaluator.transcript = { item, sample, response, text in
                guard shown.contains(item.id) else { return }
                let label = response.map { "response \($0)\(item.kind == .pair ? ($0 == 0 ? " (chosen)" : " (rejected)") : "")" } ?? "criteria"
                let responseText = response.map { ": " + item.responses[$0].debugDescription } ?? ": " + item.query.debugDescription
                transcript("[\(item.id) k\(sample)] \(label)\(responseText)\n\(text)\n")
            }
        }
        let rollout = rollout
        let makeBackend: @Sendable () throws -> any JudgeBackend
        switch judge {
        case let .model(weights, chat):
            makeBackend = {
                try ModelJudge(weights: weights, criteriaMaxTokens: rollout.criteriaMaxTokens,
                               evaluationMaxTokens: rollout.evaluationMaxTokens, topP: 1, chat: chat)
            }
            BLAS.setThreads(1)
        case let .teacher(teacher):
            let format = format
            makeBackend = { TeacherJudge(teacher: teacher, format: format) }
        }
        var report = try evaluator.evaluate(items, threads: threads, makeBackend: makeBackend, progress: progress)
        report.unsupported = unsupported
        return report
    }
}
