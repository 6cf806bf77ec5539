import Foundation

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

    /// Streams an SFT trace file, line by line; errors name the file, line and field.
    public static func stream(path: String, _ body: (SFTTrace) throws -> Void) throws {
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
            try body(SFTTrace(id: try string("id"), taskType: taskType, query: try string("query"), criteria: try string("criteria"),
                              response: try string("response"), evaluation: try string("evaluation"), overall: overall,
                              label: try string("label")))
        }
    }

    /// All traces of a file.
    public static func load(path: String) throws -> [SFTTrace] {
        var traces: [SFTTrace] = []
        try stream(path: path) { traces.append($0) }
        return traces
    }
}

extension Teacher {
    /// The teacher's criteria and evaluation for one response as an SFT example; nil for an
    /// unknown query.
    public func sftTrace(id: String, query: String, response: String, label: String, taskType: String?, sample: UInt64 = 0) -> SFTTrace? {
        guard let criteria = criteria(for: query),
              let evaluation = evaluate(query: query, criteria: criteria, response: response, sample: sample) else { return nil }
        return SFTTrace(id: id, taskType: taskType, query: query, criteria: criteria.text, response: response,
                        evaluation: evaluation.text, overall: evaluation.overall, label: label)
    }

    /// SFT examples for every response of `records` (both sides of a pair, every Best-of-N
    /// response), `samples` evaluations each; records with unknown queries are skipped.
    public func sftTraces(for records: [PreferenceRecord], samples: Int = 1) -> (traces: [SFTTrace], unsupported: Int) {
        var traces: [SFTTrace] = []
        var unsupported = 0
        func add(_ id: String, _ query: String, _ response: String, _ label: String, _ taskType: String?) {
            for sample in 0..<max(1, samples) {
                guard let trace = sftTrace(id: id, query: query, response: response, label: label, taskType: taskType,
                                           sample: UInt64(sample)) else { unsupported += 1; return }
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
