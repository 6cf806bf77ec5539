import Datasets
import Method
import Shared

/// What a judge says of one query and its responses (`cerm judge`): its criteria, then each
/// response's evaluation and overall score under them, and the response it prefers.
///
/// Judged through the held-out evaluation's path (``Evaluator/judgments(of:backend:report:)``
/// with unified criteria and k = 1: the criteria written once, before any response is seen, and
/// every response evaluated under them), so the prompts, the parsing and the scores are exactly
/// those `cerm eval` measures.
public struct JudgeVerdict: Sendable, Equatable {
    /// One response's outcome.
    public struct Response: Sendable, Equatable {
        /// The overall 0–10 score; nil when there is no valid one.
        public var score: Double?
        /// Why there is no valid score: `criteria <failure>` when the criteria did not parse (no
        /// evaluation is written under invalid criteria), else `evaluation <failure>`
        /// (``ParseFailure`` raw values, docs/FORMATS.md).
        public var reason: String?
        /// The evaluation as generated (without the stop token); nil when none was written.
        public var evaluation: String?
    }

    /// Which response the judge prefers. A response with a valid score ranks above one
    /// without, as in held-out accuracy (``EvaluationScoring``).
    public enum Preference: Sendable, Equatable {
        /// The one response with the highest score.
        case response(Int)
        /// Several responses share the highest score.
        case tie([Int])
        /// No response has a valid score.
        case noValidScore
    }

    public var id: String
    public var query: String
    /// The criteria as generated (without the stop token).
    public var criteria: String
    /// Why the criteria did not parse; nil when they did.
    public var criteriaFailure: ParseFailure?
    public var responses: [Response]

    public var preference: Preference {
        let scored = responses.indices.compactMap { index in responses[index].score.map { (index, $0) } }
        guard let top = scored.map(\.1).max() else { return .noValidScore }
        let best = scored.filter { $0.1 == top }.map(\.0)
        return best.count == 1 ? .response(best[0]) : .tie(best)
    }

    /// Judges `items` with `backend` in the `format`, `chunkSize` items per batched call, and
    /// hands each verdict to `each` in input order as its chunk finishes (so a long file shows
    /// results as it goes). Criteria and evaluations are decoded at `temperature` (0: greedy);
    /// the seeds derive from `seed` and the item's position, as in `cerm eval`.
    public static func judge(_ items: [JudgeItem], format: any PromptFormat, backend: any JudgeBackend, temperature: Float,
                             seed: UInt64, chunkSize: Int = 8, each: (JudgeVerdict) throws -> Void) throws {
        let evaluator = Evaluator(format: format, options: EvaluationOptions(k: 1, criteriaMode: .unified, temperature: temperature, seed: seed))
        let chunkSize = max(1, chunkSize)
        for chunkStart in stride(from: 0, to: items.count, by: chunkSize) {
            let chunk = items[chunkStart..<min(items.count, chunkStart + chunkSize)]
            let evaluationItems = chunk.enumerated().map { offset, item in
                EvaluationItem(id: item.id, query: item.query, responses: item.responses, kind: .unlabelled, taskType: nil,
                               index: chunkStart + offset)
            }
            var report = EvaluationReport()
            let judged = try evaluator.judgments(of: evaluationItems, backend: backend, report: &report)
            for (item, judgment) in zip(chunk, judged) {
                try each(JudgeVerdict(item: item, judgment: judgment, chat: format.chat))
            }
        }
    }

    /// The verdict of a unified, k = 1 judgment: its one criteria set and the evaluations under it.
    init(item: JudgeItem, judgment: ItemJudgments, chat: any ChatCodec) {
        id = item.id
        query = item.query
        let set = judgment.criteriaSets.first
        criteria = set.map { chat.text(Self.beforeStop($0.output, chat: chat)) } ?? ""
        criteriaFailure = set?.parsed.failure
        responses = item.responses.indices.map { index in
            guard let set else { return Response(score: nil, reason: "criteria not generated", evaluation: nil) }
            if let failure = set.parsed.failure { return Response(score: nil, reason: "criteria \(failure.rawValue)", evaluation: nil) }
            guard let position = set.responses.firstIndex(of: index), position < set.evaluations.count else {
                return Response(score: nil, reason: "evaluation not generated", evaluation: nil)
            }
            let turn = set.evaluations[position]
            return Response(score: turn.parsed.value?.overall, reason: turn.parsed.failure.map { "evaluation \($0.rawValue)" },
                            evaluation: chat.text(Self.beforeStop(turn.output, chat: chat)))
        }
    }

    /// `tokens` up to their first stop token: the reply's text as the model wrote it.
    private static func beforeStop(_ tokens: [TokenID], chat: any ChatCodec) -> [TokenID] {
        Array(tokens.prefix { !chat.stopTokens.contains($0) })
    }

    // MARK: - Output

    /// The verdict for a reader: the criteria, each response's overall score (or why there is
    /// none) and the preferred response; with `showEvaluations` each evaluation under its score;
    /// with `header` a first line `== ID` (several items in one output).
    public func text(showEvaluations: Bool, header: Bool) -> String {
        var lines: [String] = header ? ["== \(id)"] : []
        lines.append(criteriaFailure.map { "criteria (invalid: \($0.rawValue)):" } ?? "criteria:")
        lines += Self.indented(criteria)
        for (index, response) in responses.enumerated() {
            if let score = response.score {
                lines.append("response \(index): \(ScoreFormatting.half(score))/10")
            } else {
                lines.append("response \(index): no valid score: \(response.reason ?? "unknown")")
            }
            if showEvaluations, let evaluation = response.evaluation { lines += Self.indented(evaluation) }
        }
        switch preference {
        case let .response(index):
            lines.append("preferred: response \(index)")
        case let .tie(indices):
            let score = responses[indices[0]].score.map { ScoreFormatting.half($0) } ?? "?"
            lines.append("preferred: none (responses \(indices.map(String.init).joined(separator: ", ")) tie at \(score)/10)")
        case .noValidScore:
            lines.append("preferred: none (no response has a valid score)")
        }
        return lines.joined(separator: "\n")
    }

    /// The verdict as one line of JSON: `id`, `query`, `criteria`, `criteria_valid`,
    /// `criteria_reason`, `responses` (each `score`, `valid`, `reason`, `evaluation`),
    /// `preferred` (an index, or null on a tie or when no score is valid) and `tied` (the
    /// indices sharing the top score on a tie, else empty).
    public var json: String {
        func optional(_ text: String?) -> String { text.map(JSONWriter.quote) ?? "null" }
        let responseObjects = responses.map { response in
            JSONWriter.object([
                ("score", response.score.map { ScoreFormatting.half($0) } ?? "null"), ("valid", String(response.score != nil)),
                ("reason", optional(response.reason)), ("evaluation", optional(response.evaluation)),
            ])
        }
        var preferred = "null", tied: [Int] = []
        switch preference {
        case let .response(index): preferred = String(index)
        case let .tie(indices): tied = indices
        case .noValidScore: break
        }
        return JSONWriter.object([
            ("id", JSONWriter.quote(id)), ("query", JSONWriter.quote(query)), ("criteria", JSONWriter.quote(criteria)),
            ("criteria_valid", String(criteriaFailure == nil)), ("criteria_reason", optional(criteriaFailure?.rawValue)),
            ("responses", "[" + responseObjects.joined(separator: ",") + "]"), ("preferred", preferred),
            ("tied", "[" + tied.map(String.init).joined(separator: ",") + "]"),
        ])
    }

    private static func indented(_ text: String) -> [String] {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.isEmpty ? "" : "  " + $0 }
    }
}
