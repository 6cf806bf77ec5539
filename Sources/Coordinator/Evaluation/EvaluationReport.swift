import Configuration
import Datasets
import Method

/// A pair or Best-of-N item to judge.
public struct EvaluationItem: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// Responses are `[chosen, rejected]`.
        case pair
        /// `best` indexes the best of the responses.
        case bestOfN(best: Int)
        /// Responses with no known best (`cerm judge`): judged, never counted in an accuracy.
        case unlabelled
    }

    public var id: String
    public var query: String
    public var responses: [String]
    public var kind: Kind
    /// The task type or subset the accuracy is split by (`(none)` when absent).
    public var taskType: String
    /// Position of the item in its file: with ``isBestOfN`` it keys the item's sampling seeds.
    public var index: Int

    public init(id: String, query: String, responses: [String], kind: Kind, taskType: String?, index: Int) {
        self.id = id
        self.query = query
        self.responses = responses
        self.kind = kind
        self.taskType = taskType ?? "(none)"
        self.index = index
    }

    public init(pair: PreferencePair, index: Int) {
        self.init(id: pair.id, query: pair.query, responses: [pair.chosen, pair.rejected], kind: .pair,
                  taskType: pair.taskType, index: index)
    }

    public init(bestOfN item: BestOfNItem, index: Int) {
        self.init(id: item.id, query: item.query, responses: item.responses, kind: .bestOfN(best: item.best),
                  taskType: item.taskType, index: index)
    }

    public var isBestOfN: Bool { if case .bestOfN = kind { return true } else { return false } }

    /// The items of `files` under `data.format` and `data.skip_bad`, in order, at most `limit`
    /// per file; `log` gets the lines `data.skip_bad` skipped in each file
    /// (``LoadReport/skippedLinesReport(rest:limit:)``).
    public static func items(files: [String], data: DataConfig, limit: Int?, log: (String) -> Void) throws -> [EvaluationItem] {
        var items: [EvaluationItem] = []
        for file in files {
            var records: [PreferenceRecord] = []
            let report = try PreferenceLoader(format: data.format, skipBad: data.skipBad).stream(path: file) { records.append($0) }
            report.skippedLinesReport(rest: "evaluating the other \(report.records) records").forEach(log)
            var fileItems = Self.items(records)
            if let limit { fileItems = Array(fileItems.prefix(limit)) }
            items += fileItems
        }
        return items
    }

    /// Items of a record list, pairs and Best-of-N items numbered separately.
    public static func items(_ records: [PreferenceRecord]) -> [EvaluationItem] {
        var pairIndex = 0, bonIndex = 0
        return records.map { record in
            switch record {
            case let .pair(p):
                defer { pairIndex += 1 }
                return EvaluationItem(pair: p, index: pairIndex)
            case let .bestOfN(b):
                defer { bonIndex += 1 }
                return EvaluationItem(bestOfN: b, index: bonIndex)
            }
        }
    }
}

/// Held-out accuracy and output validity of one evaluation.
public struct EvaluationReport: Sendable, Equatable {
    public var pairwise = AccuracyTally()
    public var pairwiseByType: [String: AccuracyTally] = [:]
    public var bestOfN = AccuracyTally()
    public var bestOfNByType: [String: AccuracyTally] = [:]
    /// Largest N among the Best-of-N items.
    public var bestOfNSize = 0
    /// Smallest N among the Best-of-N items (0 without any): below ``bestOfNSize`` the
    /// Best-of-N figure mixes items of different N, whose chance levels differ.
    public var bestOfNSmallestSize = 0
    public var criteriaGenerated = 0
    public var criteriaValid = 0
    public var evaluationsGenerated = 0
    public var evaluationsValid = 0
    /// Tokens generated at each stage (the judge's output length; the teacher's outputs count too).
    public var criteriaTokens = 0
    public var evaluationTokens = 0
    /// Parse failures by reason (`ParseFailure.rawValue`) per stage.
    public var criteriaFailures: [String: Int] = [:]
    public var evaluationFailures: [String: Int] = [:]
    /// Responses judged and those left without any valid score.
    public var responses = 0
    public var responsesWithoutScore = 0
    /// Items left out because the judge cannot judge their query (the teacher knows only the
    /// synthetic task's queries, ``TeacherJudge/supportedItems(_:teacher:)``); in no figure above.
    public var unsupported = 0
    public var seconds = 0.0

    public init() {}

    /// Valid outputs over generated outputs, both stages together (0 when nothing was generated).
    public var validFormatRate: Double {
        let total = criteriaGenerated + evaluationsGenerated
        return total == 0 ? 0 : Double(criteriaValid + evaluationsValid) / Double(total)
    }

    /// Adds the credit of one judged item from its responses' final scores.
    public mutating func record(_ item: EvaluationItem, scores: [Double?]) {
        responses += scores.count
        responsesWithoutScore += scores.filter { $0 == nil }.count
        switch item.kind {
        case .pair:
            let credit = EvaluationScoring.pairwiseCredit(chosen: scores.first ?? nil, rejected: scores.count > 1 ? scores[1] : nil)
            pairwise.add(credit)
            pairwiseByType[item.taskType, default: AccuracyTally()].add(credit)
        case let .bestOfN(best):
            let credit = EvaluationScoring.bestOfNCredit(scores: scores, best: best)
            bestOfN.add(credit)
            bestOfNByType[item.taskType, default: AccuracyTally()].add(credit)
            noteBestOfNSize(item.responses.count)
        case .unlabelled:
            break
        }
    }

    /// Widens ``bestOfNSmallestSize``…``bestOfNSize`` to include `size`.
    private mutating func noteBestOfNSize(_ size: Int) {
        bestOfNSize = max(bestOfNSize, size)
        bestOfNSmallestSize = bestOfNSmallestSize == 0 ? size : min(bestOfNSmallestSize, size)
    }

    /// Mean tokens of a generated output, both stages together (0 when nothing was generated).
    public var meanOutputTokens: Double {
        let total = criteriaGenerated + evaluationsGenerated
        return total == 0 ? 0 : Double(criteriaTokens + evaluationTokens) / Double(total)
    }

    /// Counts one parsed criteria output of `tokens` tokens.
    public mutating func recordCriteria(_ failure: ParseFailure?, tokens: Int) {
        criteriaGenerated += 1
        criteriaTokens += tokens
        if let failure { criteriaFailures[failure.rawValue, default: 0] += 1 } else { criteriaValid += 1 }
    }

    /// Counts one parsed evaluation output of `tokens` tokens.
    public mutating func recordEvaluation(_ failure: ParseFailure?, tokens: Int) {
        evaluationsGenerated += 1
        evaluationTokens += tokens
        if let failure { evaluationFailures[failure.rawValue, default: 0] += 1 } else { evaluationsValid += 1 }
    }

    /// Sums two reports of disjoint items (seconds: the longer one, as they ran side by side).
    public mutating func merge(_ other: EvaluationReport) {
        pairwise.add(other.pairwise)
        pairwiseByType.merge(other.pairwiseByType) { a, b in var sum = a; sum.add(b); return sum }
        bestOfN.add(other.bestOfN)
        bestOfNByType.merge(other.bestOfNByType) { a, b in var sum = a; sum.add(b); return sum }
        if other.bestOfNSize > 0 {
            noteBestOfNSize(other.bestOfNSmallestSize)
            noteBestOfNSize(other.bestOfNSize)
        }
        criteriaGenerated += other.criteriaGenerated
        criteriaValid += other.criteriaValid
        evaluationsGenerated += other.evaluationsGenerated
        evaluationsValid += other.evaluationsValid
        criteriaTokens += other.criteriaTokens
        evaluationTokens += other.evaluationTokens
        criteriaFailures.merge(other.criteriaFailures, uniquingKeysWith: +)
        evaluationFailures.merge(other.evaluationFailures, uniquingKeysWith: +)
        responses += other.responses
        responsesWithoutScore += other.responsesWithoutScore
        unsupported += other.unsupported
        seconds = max(seconds, other.seconds)
    }
}
