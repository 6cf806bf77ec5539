import Foundation
import Shared

/// One preference pair: for `query`, `chosen` is better than `rejected`. The only label RL
/// trains on is this order (docs/DESIGN.md §1).
public struct PreferencePair: Sendable, Equatable, Hashable {
    /// Unique within its file.
    public var id: String
    public var query: String
    public var chosen: String
    public var rejected: String
    /// Task type (`task_type`, RewardBench's `subset`, Skywork's `source`); balances curation
    /// and splits accuracy reports.
    public var taskType: String?

    /// The task type reports and curation group by: `task_type`, or `(none)` when absent.
    public var taskTypeKey: String { taskType ?? "(none)" }

    public init(id: String, query: String, chosen: String, rejected: String, taskType: String? = nil) {
        self.id = id
        self.query = query
        self.chosen = chosen
        self.rejected = rejected
        self.taskType = taskType
    }

    /// The pair as one canonical JSON line (no trailing newline): `id, query, chosen, rejected, task_type`.
    public var jsonLine: String {
        var members: [(String, String)] = [
            ("id", JSONWriter.quote(id)), ("query", JSONWriter.quote(query)),
            ("chosen", JSONWriter.quote(chosen)), ("rejected", JSONWriter.quote(rejected)),
        ]
        if let taskType { members.append(("task_type", JSONWriter.quote(taskType))) }
        return JSONWriter.object(members)
    }
}

/// One Best-of-N item: `responses[best]` is the best response to `query`.
public struct BestOfNItem: Sendable, Equatable, Hashable {
    public var id: String
    public var query: String
    public var responses: [String]
    /// Index into `responses`.
    public var best: Int
    public var taskType: String?

    public init(id: String, query: String, responses: [String], best: Int, taskType: String? = nil) {
        self.id = id
        self.query = query
        self.responses = responses
        self.best = best
        self.taskType = taskType
    }

    /// The item as one JSON line in cerm's Best-of-N form: `id, query, responses, best, task_type`.
    public var jsonLine: String {
        var members: [(String, String)] = [
            ("id", JSONWriter.quote(id)), ("query", JSONWriter.quote(query)),
            ("responses", JSONWriter.stringArray(responses)), ("best", String(best)),
        ]
        if let taskType { members.append(("task_type", JSONWriter.quote(taskType))) }
        return JSONWriter.object(members)
    }

    /// The N−1 pairs "best beats response k", ids `{id}/{k}`.
    public var pairs: [PreferencePair] {
        responses.indices.filter { $0 != best }.map {
            PreferencePair(id: "\(id)/\($0)", query: query, chosen: responses[best], rejected: responses[$0], taskType: taskType)
        }
    }
}

/// One record of a preference file.
public enum PreferenceRecord: Sendable, Equatable {
    case pair(PreferencePair)
    case bestOfN(BestOfNItem)

    public var id: String {
        switch self {
        case let .pair(p): p.id
        case let .bestOfN(b): b.id
        }
    }

    public var taskType: String? {
        switch self {
        case let .pair(p): p.taskType
        case let .bestOfN(b): b.taskType
        }
    }
}

/// A bad data file or line. Its description is `FILE:LINE: FIELD: message`, or `FILE: message`
/// for errors about the whole file (it cannot be opened, it has no records).
public struct DataError: Error, Equatable, Sendable, CustomStringConvertible {
    public let file: String
    /// 1-based line number, nil for whole-file errors.
    public let line: Int?
    /// The JSON field at fault, as a path (`chosen`, `chosen[2].content`, `responses[1]`), or
    /// `line` when the line as a whole is bad (invalid UTF-8, malformed JSON).
    public let field: String
    public let message: String

    public init(file: String, line: Int?, field: String, message: String) {
        self.file = file
        self.line = line
        self.field = field
        self.message = message
    }

    public var description: String {
        guard let line else { return field.isEmpty ? "\(file): \(message)" : "\(file): \(field): \(message)" }
        return "\(file):\(line): \(field): \(message)"
    }
}
