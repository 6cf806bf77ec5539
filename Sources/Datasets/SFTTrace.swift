import Foundation
import Method
import Shared

/// One cold-start SFT example: the two model outputs (criteria, evaluation) the teacher wrote
/// for one response (docs/DATA.md, "SFT traces").
public struct SFTTrace: Sendable, Equatable {
    public var id: String
    public var taskType: String?
    public var query: String
    /// The criteria turn's output, without `⟨eos⟩`.
    public var criteria: String
    public var response: String
    /// The evaluation turn's output, without `⟨eos⟩`.
    public var evaluation: String
    /// The overall score the evaluation states.
    public var overall: Double
    /// `chosen`/`rejected` (pairs) or `best`/`other` (Best-of-N).
    public var label: String

    public init(id: String, taskType: String?, query: String, criteria: String, response: String,
                evaluation: String, overall: Double, label: String) {
        self.id = id
        self.taskType = taskType
        self.query = query
        self.criteria = criteria
        self.response = response
        self.evaluation = evaluation
        self.overall = overall
        self.label = label
    }

    /// The trace as one JSON line (no trailing newline).
    public var jsonLine: String {
        var members: [(String, String)] = [("id", JSONWriter.quote(id))]
        if let taskType { members.append(("task_type", JSONWriter.quote(taskType))) }
        members += [
            ("query", JSONWriter.quote(query)), ("criteria", JSONWriter.quote(criteria)),
            ("response", JSONWriter.quote(response)), ("evaluation", JSONWriter.quote(evaluation)),
            ("overall", formatScore(overall)), ("label", JSONWriter.quote(label)),
        ]
        return JSONWriter.object(members)
    }

    /// The values `label` may take: `chosen`/`rejected` for pairs, `best`/`other` for
    /// Best-of-N responses.
    public static let labels = ["chosen", "rejected", "best", "other"]

    /// Streams an SFT trace file, line by line; errors name the file, line and field. Every
    /// field but `task_type` (a string or null) is required; `label` must be one of ``labels``.
    /// With `format`, `criteria` must parse as that format's criteria turn and `evaluation` as
    /// its evaluation turn for that many criteria: training on text the format's parser rejects
    /// would teach the model outputs that score nothing in RL and evaluation.
    public static func stream(path: String, format: (any PromptFormat)? = nil, _ body: (SFTTrace) throws -> Void) throws {
        try streamNumbered(path: path, format: format) { _, trace in try body(trace) }
    }

    /// ``stream(path:format:_:)`` handing `body` each trace's 1-based line number too, so a
    /// caller's own check of a trace can name its line.
    public static func streamNumbered(path: String, format: (any PromptFormat)? = nil, _ body: (_ line: Int, SFTTrace) throws -> Void) throws {
        var reader = try JSONLinesReader(path: path)
        while let (number, bytes) = try reader.next() {
            if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            let object = try PreferenceLoader.parseObject(bytes, file: path, line: number)
            func string(_ key: String) throws(DataError) -> String {
                guard let value = object[key] else { throw DataError(file: path, line: number, field: key, message: "missing") }
                guard case let .string(s) = value else {
                    throw DataError(file: path, line: number, field: key, message: "expected a string, got \(value.typeName)")
                }
                guard !s.isEmpty else { throw DataError(file: path, line: number, field: key, message: "empty") }
                return s
            }
            guard case let .number(overall, _)? = object["overall"] else {
                throw DataError(file: path, line: number, field: "overall",
                                message: object["overall"].map { "expected a number, got \($0.typeName)" } ?? "missing")
            }
            var taskType: String?
            if let value = object["task_type"], value != .null { taskType = try string("task_type") }
            let trace = SFTTrace(id: try string("id"), taskType: taskType, query: try string("query"), criteria: try string("criteria"),
                                 response: try string("response"), evaluation: try string("evaluation"), overall: overall,
                                 label: try string("label"))
            guard labels.contains(trace.label) else {
                throw DataError(file: path, line: number, field: "label",
                                message: "expected " + labels.dropLast().map { JSONWriter.quote($0) }.joined(separator: ", ")
                                    + " or \(JSONWriter.quote(labels.last!)), got \(JSONWriter.quote(trace.label))")
            }
            if let format {
                func invalid(_ field: String, _ failure: ParseFailure) -> DataError {
                    DataError(file: path, line: number, field: field,
                              message: "does not parse as a \(format.name.rawValue)-format \(field) turn (\(failure.rawValue))")
                }
                switch format.parseCriteria(text: trace.criteria) {
                case let .invalid(reason): throw invalid("criteria", reason)
                case let .valid(criteria):
                    if case let .invalid(reason) = format.parseEvaluation(text: trace.evaluation, criteriaCount: criteria.items.count) {
                        throw invalid("evaluation", reason)
                    }
                }
            }
            try body(number, trace)
        }
    }

    /// All traces of a file (``stream(path:format:_:)``).
    public static func load(path: String, format: (any PromptFormat)? = nil) throws -> [SFTTrace] {
        var traces: [SFTTrace] = []
        try stream(path: path, format: format) { traces.append($0) }
        return traces
    }
}

extension Teacher {
    /// The teacher's criteria and evaluation for one response as an SFT example, written in
    /// `format`; nil for an unknown query.
    public func sftTrace(id: String, query: String, response: String, label: String, taskType: String?, sample: UInt64 = 0,
                         format: any PromptFormat = CompactFormat()) -> SFTTrace? {
        guard let criteria = criteria(for: query),
              let evaluation = evaluate(query: query, criteria: criteria, response: response, sample: sample) else { return nil }
        return SFTTrace(id: id, taskType: taskType, query: query, criteria: criteria.text(in: format), response: response,
                        evaluation: evaluation.text(in: format), overall: evaluation.overall, label: label)
    }

    /// SFT examples for every response of `records` (both sides of a pair, every Best-of-N
    /// response), `samples` evaluations each, written in `format`; records with unknown
    /// queries are skipped.
    public func sftTraces(for records: [PreferenceRecord], samples: Int = 1,
                          format: any PromptFormat = CompactFormat()) -> (traces: [SFTTrace], unsupported: Int) {
        var traces: [SFTTrace] = []
        var unsupported = 0
        func add(_ id: String, _ query: String, _ response: String, _ label: String, _ taskType: String?) {
            for sample in 0..<max(1, samples) {
                guard let trace = sftTrace(id: id, query: query, response: response, label: label, taskType: taskType,
                                           sample: UInt64(sample), format: format) else { unsupported += 1; return }
                traces.append(trace)
            }
        }
        for record in records {
            switch record {
            case let .pair(p):
                add(p.id, p.query, p.chosen, "chosen", p.taskType)
                add(p.id, p.query, p.rejected, "rejected", p.taskType)
            case let .bestOfN(b):
                for (k, response) in b.responses.enumerated() {
                    add("\(b.id)/\(k)", b.query, response, k == b.best ? "best" : "other", b.taskType)
                }
            }
        }
        return (traces, unsupported)
    }
}
