import Configuration
import Foundation
import Shared

/// What a load saw: the format, how many records per task type, and every skipped line.
public struct LoadReport: Sendable, Equatable {
    public var file: String
    /// The format used (the detected one under `auto`); nil when the file had no records.
    public var format: DataFormat?
    /// Records delivered (a Best-of-N item counts once).
    public var records = 0
    /// Records per task type; records without one count under `(none)`.
    public var countsByTaskType: [String: Int] = [:]
    /// Lines skipped under `skipBad`, each with its reason, in file order.
    public var skipped: [DataError] = []
    /// Empty or whitespace-only lines (ignored, never errors).
    public var blankLines = 0

    public init(file: String) { self.file = file }

    /// Lines about the lines `data.skip_bad` skipped, so nothing runs on a silently smaller
    /// file: `data.skip_bad: skipped N bad lines of FILE; REST` (`rest` says what the caller
    /// does with the other records), then one `skipped FILE:LINE: FIELD: message` per skipped
    /// line, at most `limit` of them, then how many more. Empty when nothing was skipped.
    public func skippedLinesReport(rest: String, limit: Int = 20) -> [String] {
        Self.skippedLinesReport(file: file, skipped: skipped, rest: rest, limit: limit)
    }

    /// ``skippedLinesReport(rest:limit:)`` for the lines `skipped` of `file`.
    public static func skippedLinesReport(file: String, skipped: [DataError], rest: String, limit: Int = 20) -> [String] {
        guard !skipped.isEmpty else { return [] }
        let lines = skipped.count == 1 ? "1 bad line" : "\(skipped.count) bad lines"
        var report = ["data.skip_bad: skipped \(lines) of \(file); \(rest)"]
        report += skipped.prefix(limit).map { "skipped \($0)" }
        if skipped.count > limit {
            report.append("and \(skipped.count - limit) more skipped lines (`cerm data check --skip-bad \(file)` lists them all)")
        }
        return report
    }
}

/// Streams preference files in the four formats of docs/DATA.md.
///
/// Every bad line is a ``DataError`` naming the file, line and field. With `skipBad`, bad lines
/// are collected in the report instead and loading goes on.
public struct PreferenceLoader: Sendable {
    public var format: DataFormat
    public var skipBad: Bool
    /// An extra check of each parsed record (e.g. that its prompts fit the model): a non-nil
    /// (field, message) makes the line bad like any other ``DataError`` (skipped and reported
    /// under `skipBad`).
    public var recordCheck: (@Sendable (PreferenceRecord) -> (field: String, message: String)?)?

    public init(format: DataFormat = .auto, skipBad: Bool = false,
                recordCheck: (@Sendable (PreferenceRecord) -> (field: String, message: String)?)? = nil) {
        self.format = format
        self.skipBad = skipBad
        self.recordCheck = recordCheck
    }

    /// Reads `path` line by line and hands each record to `body`, in file order.
    @discardableResult
    public func stream(path: String, _ body: (PreferenceRecord) throws -> Void) throws -> LoadReport {
        var reader = try JSONLinesReader(path: path)
        var report = LoadReport(file: path)
        var fileFormat: DataFormat? = format == .auto ? nil : format
        var firstLineOfID: [String: Int] = [:]
        let defaultIDPrefix = (path as NSString).lastPathComponent
        while let (number, bytes) = try reader.next() {
            if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) {
                report.blankLines += 1
                continue
            }
            let record: PreferenceRecord
            do throws(DataError) {
                let object = try Self.parseObject(bytes, file: path, line: number)
                let lineFormat: DataFormat
                if let fileFormat { lineFormat = fileFormat } else { lineFormat = try Self.detect(object, file: path, line: number) }
                record = try Self.record(from: object, format: lineFormat, file: path, line: number,
                                         defaultID: "\(defaultIDPrefix):\(number)")
                if let first = firstLineOfID[record.id] {
                    throw DataError(file: path, line: number, field: "id", message: "duplicate id \"\(record.id)\" (first at line \(first))")
                }
                if let recordCheck, let problem = recordCheck(record) {
                    throw DataError(file: path, line: number, field: problem.field, message: problem.message)
                }
                fileFormat = lineFormat
            } catch {
                guard skipBad else { throw error }
                report.skipped.append(error)
                continue
            }
            firstLineOfID[record.id] = number
            report.format = fileFormat
            report.records += 1
            report.countsByTaskType[record.taskType ?? "(none)", default: 0] += 1
            try body(record)
        }
        return report
    }

    /// All pairs of `path`; a Best-of-N file yields its N−1 "best beats k" pairs per item.
    public func loadPairs(path: String) throws -> (pairs: [PreferencePair], report: LoadReport) {
        var pairs: [PreferencePair] = []
        let report = try stream(path: path) { record in
            switch record {
            case let .pair(p): pairs.append(p)
            case let .bestOfN(item): pairs.append(contentsOf: item.pairs)
            }
        }
        return (pairs, report)
    }

    /// All Best-of-N items of `path`; a pair file yields Best-of-2 items (`best` = 0, the chosen).
    public func loadBestOfN(path: String) throws -> (items: [BestOfNItem], report: LoadReport) {
        var items: [BestOfNItem] = []
        let report = try stream(path: path) { record in
            switch record {
            case let .pair(p):
                items.append(BestOfNItem(id: p.id, query: p.query, responses: [p.chosen, p.rejected], best: 0, taskType: p.taskType))
            case let .bestOfN(item): items.append(item)
            }
        }
        return (items, report)
    }

    // MARK: - Line parsing

    /// Validates UTF-8 and JSON and requires an object.
    static func parseObject(_ bytes: [UInt8], file: String, line: Int) throws(DataError) -> JSONValue {
        if let offset = firstInvalidUTF8Offset(bytes) {
            throw DataError(file: file, line: line, field: "line", message: "invalid UTF-8 at byte \(offset)")
        }
        let value: JSONValue
        do {
            value = try JSONParser.parse(bytes)
        } catch {
            throw DataError(file: file, line: line, field: "line", message: "malformed JSON at byte \(error.offset): \(error.message)")
        }
        guard case .object = value else {
            throw DataError(file: file, line: line, field: "line", message: "expected a JSON object, got \(value.typeName)")
        }
        return value
    }

    /// The format a record's keys identify (docs/DATA.md, "Format detection").
    static func detect(_ object: JSONValue, file: String, line: Int) throws(DataError) -> DataFormat {
        if object["responses"] != nil { return .bon }
        if case .array = object["chosen"] { return .skywork }
        if object["chosen"] != nil, object["query"] != nil { return .canonical }
        if object["chosen"] != nil, object["prompt"] != nil { return .rewardbench }
        throw DataError(file: file, line: line, field: "format",
                        message: "cannot detect the format: expected \"responses\" (bon), \"chosen\" as a message list (skywork), \"query\"+\"chosen\" (canonical) or \"prompt\"+\"chosen\" (rewardbench)")
    }

    /// A pair of the formats whose query, chosen, rejected and task type are plain string
    /// fields (canonical and RewardBench), under these keys.
    private static func pair(_ fields: FieldReader, id: String, queryKey: String, taskTypeKey: String) throws(DataError) -> PreferenceRecord {
        let query = try fields.requiredString(queryKey)
        let chosen = try fields.requiredString("chosen")
        let rejected = try fields.requiredString("rejected")
        let taskType = try fields.optionalString(taskTypeKey)
        try fields.requireDifferent(chosen, rejected)
        return .pair(PreferencePair(id: id, query: query, chosen: chosen, rejected: rejected, taskType: taskType))
    }

    /// One record of a known format.
    static func record(from object: JSONValue, format: DataFormat, file: String, line: Int, defaultID: String) throws(DataError) -> PreferenceRecord {
        let fields = FieldReader(object: object, file: file, line: line)
        switch format {
        case .auto:
            return try record(from: object, format: detect(object, file: file, line: line), file: file, line: line, defaultID: defaultID)
        case .canonical:
            return try pair(fields, id: fields.requiredString("id"), queryKey: "query", taskTypeKey: "task_type")
        case .rewardbench:
            return try pair(fields, id: fields.optionalID("id") ?? defaultID, queryKey: "prompt", taskTypeKey: "subset")
        case .skywork:
            let id = try fields.optionalID("id") ?? defaultID
            let chosen = try fields.conversation("chosen")
            let rejected = try fields.conversation("rejected")
            let taskType = try fields.optionalString("source")
            let prefix = Array(chosen.dropLast())
            guard rejected.count - 1 == prefix.count else {
                throw fields.error("rejected", "conversation prefix has \(rejected.count - 1) messages, chosen's has \(prefix.count)")
            }
            for (k, (a, b)) in zip(prefix, rejected.dropLast()).enumerated() where a != b {
                let part = a.role != b.role ? "role" : "content"
                throw fields.error("rejected[\(k)].\(part)", "differs from chosen[\(k)].\(part) (the conversation prefixes must match)")
            }
            let last = chosen.count - 1
            if chosen[last].content == rejected[last].content {
                throw fields.error("rejected[\(last)].content", "identical to chosen[\(last)].content")
            }
            return .pair(PreferencePair(id: id, query: ChatMessage.renderPrefix(prefix), chosen: chosen[last].content,
                                        rejected: rejected[last].content, taskType: taskType))
        case .bon:
            let id = try fields.optionalID("id") ?? defaultID
            let query: String
            if object["query"] != nil {
                if object["prompt"] != nil { throw fields.error("prompt", "both \"query\" and \"prompt\" given; use one") }
                query = try fields.requiredString("query")
            } else {
                query = try fields.requiredString("prompt")
            }
            let responses = try fields.stringArray("responses", minimumCount: 2)
            let best = try fields.requiredInt("best")
            guard responses.indices.contains(best) else {
                throw fields.error("best", "index \(best) out of range 0..<\(responses.count)")
            }
            for k in responses.indices where k != best && responses[k] == responses[best] {
                throw fields.error("responses[\(k)]", "identical to the best response (responses[\(best)])")
            }
            let taskType = try fields.optionalString("task_type")
            return .bestOfN(BestOfNItem(id: id, query: query, responses: responses, best: best, taskType: taskType))
        }
    }
}

/// One chat message of a Skywork-style conversation.
public struct ChatMessage: Sendable, Equatable {
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }

    /// The roles a conversation may use.
    public static let roles = ["system", "user", "assistant"]

    /// The query text of a conversation prefix: a lone user message is its content; anything
    /// longer is one `Role: content` block per message (`System`, `User`, `Assistant`), joined
    /// by newlines, so earlier turns stay visible to the reward model.
    public static func renderPrefix(_ prefix: [ChatMessage]) -> String {
        if prefix.count == 1, prefix[0].role == "user" { return prefix[0].content }
        return prefix.map { "\($0.role.prefix(1).uppercased())\($0.role.dropFirst()): \($0.content)" }.joined(separator: "\n")
    }
}

/// Typed access to an object's fields with errors that name the field (preference records, judge items).
struct FieldReader {
    let object: JSONValue
    let file: String
    let line: Int

    init(object: JSONValue, file: String, line: Int) {
        self.object = object
        self.file = file
        self.line = line
    }

    func error(_ field: String, _ message: String) -> DataError {
        DataError(file: file, line: line, field: field, message: message)
    }

    func string(_ value: JSONValue?, _ field: String) throws(DataError) -> String {
        guard let value else { throw error(field, "missing") }
        guard case let .string(s) = value else { throw error(field, "expected a string, got \(value.typeName)") }
        guard s.contains(where: { !$0.isWhitespace }) else { throw error(field, "empty") }
        return s
    }

    func requiredString(_ field: String) throws(DataError) -> String { try string(object[field], field) }

    /// nil when absent or null; otherwise a non-empty string.
    func optionalString(_ field: String) throws(DataError) -> String? {
        guard let value = object[field], value != .null else { return nil }
        return try string(value, field)
    }

    /// An id: a non-empty string or an integer (RewardBench numbers its rows); nil when absent.
    func optionalID(_ field: String) throws(DataError) -> String? {
        guard let value = object[field], value != .null else { return nil }
        if case let .number(n, isInteger) = value {
            guard isInteger, abs(n) < 9.0e15 else { throw error(field, "expected a string or an integer, got \(n)") }
            return String(Int64(n))
        }
        guard case .string = value else { throw error(field, "expected a string or an integer, got \(value.typeName)") }
        return try string(value, field)
    }

    func requiredInt(_ field: String) throws(DataError) -> Int {
        guard let value = object[field] else { throw error(field, "missing") }
        guard case let .number(n, isInteger) = value else { throw error(field, "expected an integer, got \(value.typeName)") }
        guard isInteger, abs(n) < 9.0e15 else { throw error(field, "expected an integer, got \(n)") }
        return Int(n)
    }

    func stringArray(_ field: String, minimumCount: Int) throws(DataError) -> [String] {
        guard let value = object[field] else { throw error(field, "missing") }
        guard case let .array(items) = value else { throw error(field, "expected an array of strings, got \(value.typeName)") }
        guard items.count >= minimumCount else { throw error(field, "expected at least \(minimumCount) response\(minimumCount == 1 ? "" : "s"), got \(items.count)") }
        var out: [String] = []
        for (k, item) in items.enumerated() { out.append(try string(item, "\(field)[\(k)]")) }
        return out
    }

    /// A non-empty message list ending with an assistant message.
    func conversation(_ field: String) throws(DataError) -> [ChatMessage] {
        guard let value = object[field] else { throw error(field, "missing") }
        guard case let .array(items) = value else { throw error(field, "expected a list of messages, got \(value.typeName)") }
        guard items.count >= 2 else {
            throw error(field, "expected at least 2 messages (a prompt and the response), got \(items.count)")
        }
        var messages: [ChatMessage] = []
        for (k, item) in items.enumerated() {
            guard case .object = item else { throw error("\(field)[\(k)]", "expected a message object, got \(item.typeName)") }
            let role = try string(item["role"], "\(field)[\(k)].role")
            guard ChatMessage.roles.contains(role) else {
                throw error("\(field)[\(k)].role", "unknown role \"\(role)\" (expected system, user or assistant)")
            }
            let content = try string(item["content"], "\(field)[\(k)].content")
            messages.append(ChatMessage(role: role, content: content))
        }
        let last = messages.count - 1
        guard messages[last].role == "assistant" else {
            throw error("\(field)[\(last)].role", "the last message must be \"assistant\", got \"\(messages[last].role)\"")
        }
        guard messages.dropLast().contains(where: { $0.role == "user" }) else {
            throw error(field, "no user message before the response")
        }
        return messages
    }

    func requireDifferent(_ chosen: String, _ rejected: String) throws(DataError) {
        if chosen == rejected { throw error("rejected", "identical to chosen") }
    }
}
