@testable import Configuration
@testable import Datasets
import Foundation
import Testing

/// Writes test files into a per-process scratch directory; names are unique per test.
enum Scratch {
    static let directory: String = {
        let dir = (NSTemporaryDirectory() as NSString).appendingPathComponent("cerm-data-tests-\(getpid())")
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }()

    static func file(_ name: String, lines: [String]) throws -> String {
        try file(name, bytes: Array(lines.map { $0 + "\n" }.joined().utf8))
    }

    static func file(_ name: String, bytes: [UInt8]) throws -> String {
        let path = (directory as NSString).appendingPathComponent(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }
}

@Suite struct DataLoaderTests {
    func loadError(_ name: String, _ lines: [String], format: DataFormat = .auto) throws -> String {
        let path = try Scratch.file(name, lines: lines)
        do {
            _ = try PreferenceLoader(format: format).loadPairs(path: path)
        } catch let error as DataError {
            return error.description.replacingOccurrences(of: Scratch.directory + "/", with: "")
        }
        return "no error"
    }

    @Test func loadsCanonicalLines() throws {
        let path = try Scratch.file("canonical.jsonl", lines: [
            #"{"id":"a","query":"What is 1+2?","chosen":"3","rejected":"4","task_type":"math"}"#,
            "",
            #"{"id":"b","query":"Say \"hi\"\n","chosen":"h\u00e9","rejected":"no","task_type":null}"#,
        ])
        let (pairs, report) = try PreferenceLoader().loadPairs(path: path)
        #expect(pairs == [
            PreferencePair(id: "a", query: "What is 1+2?", chosen: "3", rejected: "4", taskType: "math"),
            PreferencePair(id: "b", query: "Say \"hi\"\n", chosen: "hé", rejected: "no", taskType: nil),
        ])
        #expect(report.format == .canonical)
        #expect(report.records == 2 && report.blankLines == 1 && report.skipped.isEmpty)
        #expect(report.countsByTaskType == ["math": 1, "(none)": 1])
    }

    @Test func loadsRewardBenchLinesWithIntegerIdsAndDefaultIds() throws {
        let path = try Scratch.file("rb.jsonl", lines: [
            #"{"prompt":"Q1","chosen":"good","rejected":"bad","id":30,"subset":"alpacaeval-easy"}"#,
            #"{"prompt":"Q2","chosen":"yes","rejected":"no"}"#,
        ])
        let (pairs, report) = try PreferenceLoader().loadPairs(path: path)
        #expect(pairs == [
            PreferencePair(id: "30", query: "Q1", chosen: "good", rejected: "bad", taskType: "alpacaeval-easy"),
            PreferencePair(id: "rb.jsonl:2", query: "Q2", chosen: "yes", rejected: "no", taskType: nil),
        ])
        #expect(report.format == .rewardbench)
    }

    @Test func loadsSkyworkSingleAndMultiTurnConversations() throws {
        let path = try Scratch.file("sky.jsonl", lines: [
            #"{"chosen":[{"role":"user","content":"Hi?"},{"role":"assistant","content":"Hello."}],"rejected":[{"role":"user","content":"Hi?"},{"role":"assistant","content":"Go away."}],"source":"chat"}"#,
            #"{"chosen":[{"role":"system","content":"Be brief."},{"role":"user","content":"2+2?"},{"role":"assistant","content":"4"},{"role":"user","content":"Times 3?"},{"role":"assistant","content":"12"}],"rejected":[{"role":"system","content":"Be brief."},{"role":"user","content":"2+2?"},{"role":"assistant","content":"4"},{"role":"user","content":"Times 3?"},{"role":"assistant","content":"7"}]}"#,
        ])
        let (pairs, report) = try PreferenceLoader().loadPairs(path: path)
        #expect(pairs == [
            PreferencePair(id: "sky.jsonl:1", query: "Hi?", chosen: "Hello.", rejected: "Go away.", taskType: "chat"),
            PreferencePair(id: "sky.jsonl:2", query: "System: Be brief.\nUser: 2+2?\nAssistant: 4\nUser: Times 3?",
                           chosen: "12", rejected: "7", taskType: nil),
        ])
        #expect(report.format == .skywork)
    }

    @Test func loadsBestOfNLinesAsItemsAndAsPairs() throws {
        let path = try Scratch.file("bon.jsonl", lines: [
            #"{"id":"q1","prompt":"What is 2+2?","responses":["5","4","3"],"best":1,"task_type":"math"}"#,
            #"{"query":"Name a fruit.","responses":["pear","rock"],"best":0}"#,
        ])
        let (items, report) = try PreferenceLoader().loadBestOfN(path: path)
        #expect(items == [
            BestOfNItem(id: "q1", query: "What is 2+2?", responses: ["5", "4", "3"], best: 1, taskType: "math"),
            BestOfNItem(id: "bon.jsonl:2", query: "Name a fruit.", responses: ["pear", "rock"], best: 0, taskType: nil),
        ])
        #expect(report.format == .bon)
        let pairs = try PreferenceLoader().loadPairs(path: path).pairs
        #expect(pairs.map(\.id) == ["q1/0", "q1/2", "bon.jsonl:2/1"])
        #expect(pairs[0] == PreferencePair(id: "q1/0", query: "What is 2+2?", chosen: "4", rejected: "5", taskType: "math"))
    }

    @Test func canonicalItemsRoundTripThroughTheirJSONLines() throws {
        let pair = PreferencePair(id: "x\"1", query: "tab\there\nnew", chosen: "ü\u{1}", rejected: "b", taskType: "t")
        let item = BestOfNItem(id: "y", query: "q", responses: ["a", "b\\c"], best: 1, taskType: nil)
        let path = try Scratch.file("roundtrip.jsonl", lines: [pair.jsonLine])
        #expect(try PreferenceLoader().loadPairs(path: path).pairs == [pair])
        let bonPath = try Scratch.file("roundtrip-bon.jsonl", lines: [item.jsonLine])
        #expect(try PreferenceLoader().loadBestOfN(path: bonPath).items == [item])
        #expect(pair.jsonLine == #"{"id":"x\"1","query":"tab\there\nnew","chosen":"ü\u0001","rejected":"b","task_type":"t"}"#)
    }

    @Test func streamsLinesAcrossChunkBoundariesWithCRLF() throws {
        // 3 MiB of records spans several 1 MiB read chunks; CRLF endings and no final newline.
        let filler = String(repeating: "x", count: 1000)
        var text = ""
        for i in 0..<3000 { text += #"{"id":"\#(i)","query":"\#(filler)","chosen":"a","rejected":"b"}"# + (i == 2999 ? "" : "\r\n") }
        let path = try Scratch.file("big.jsonl", bytes: Array(text.utf8))
        var count = 0
        var lastID = ""
        let report = try PreferenceLoader().stream(path: path) { record in
            count += 1
            lastID = record.id
        }
        #expect(count == 3000 && lastID == "2999" && report.records == 3000)
    }

    // MARK: - Errors: exact messages naming file, line and field

    /// A directory given as a data file (preferences or SFT traces) is named as such, not as
    /// Foundation's "NSCocoaErrorDomain error 256".
    @Test func directoryIsNotAFile() {
        let error = DataError(file: Scratch.directory, line: nil, field: "", message: "is a directory, not a file")
        #expect(error.description == "\(Scratch.directory): is a directory, not a file")
        #expect(throws: error) { try PreferenceLoader().stream(path: Scratch.directory) { _ in } }
        #expect(throws: error) { try SFTTrace.load(path: Scratch.directory) }
    }

    @Test func malformedJSONNamesLineAndByte() throws {
        #expect(try loadError("e1.jsonl", [#"{"id":"a","query":"q","chosen":"c","rejected":"r"}"#, #"{"id":"b","query":"q" "chosen":"c"}"#])
            == "e1.jsonl:2: line: malformed JSON at byte 23: expected ',' or '}'")
        #expect(try loadError("e1b.jsonl", [#"{"id":"a","id":"b"}"#])
            == #"e1b.jsonl:1: line: malformed JSON at byte 11: duplicate key "id""#)
        #expect(try loadError("e1c.jsonl", [#"["a"]"#]) == "e1c.jsonl:1: line: expected a JSON object, got array")
    }

    @Test func missingEmptyAndWrongTypedFields() throws {
        #expect(try loadError("e2.jsonl", [#"{"id":"a","query":"q","chosen":"c"}"#], format: .canonical)
            == "e2.jsonl:1: rejected: missing")
        #expect(try loadError("e3.jsonl", [#"{"id":"a","query":"  ","chosen":"c","rejected":"r"}"#])
            == "e3.jsonl:1: query: empty")
        #expect(try loadError("e4.jsonl", [#"{"id":"a","query":"q","chosen":3,"rejected":"r"}"#])
            == "e4.jsonl:1: chosen: expected a string, got number")
        #expect(try loadError("e5.jsonl", [#"{"id":true,"prompt":"q","chosen":"c","rejected":"r"}"#])
            == "e5.jsonl:1: id: expected a string or an integer, got boolean")
        #expect(try loadError("e6.jsonl", [#"{"query":"q","responses":["a","b"],"best":"1"}"#])
            == "e6.jsonl:1: best: expected an integer, got string")
        #expect(try loadError("e7.jsonl", [#"{"query":"q","responses":["a",""],"best":0}"#])
            == "e7.jsonl:1: responses[1]: empty")
    }

    @Test func identicalResponsesAreRejected() throws {
        #expect(try loadError("e8.jsonl", [#"{"id":"a","query":"q","chosen":"same","rejected":"same"}"#])
            == "e8.jsonl:1: rejected: identical to chosen")
        #expect(try loadError("e9.jsonl", [#"{"query":"q","responses":["x","y","x"],"best":0}"#])
            == "e9.jsonl:1: responses[2]: identical to the best response (responses[0])")
    }

    @Test func duplicateIdsNameBothLines() throws {
        #expect(try loadError("e10.jsonl", [
            #"{"id":"a","query":"q","chosen":"c","rejected":"r"}"#,
            #"{"id":"b","query":"q","chosen":"c","rejected":"r"}"#,
            #"{"id":"a","query":"q2","chosen":"c","rejected":"r"}"#,
        ]) == #"e10.jsonl:3: id: duplicate id "a" (first at line 1)"#)
    }

    @Test func invalidUTF8NamesTheByte() throws {
        var bytes = Array(#"{"id":"a","query":"q"#.utf8)
        bytes += [0xC3, 0x28]
        bytes += Array(#"","chosen":"c","rejected":"r"}"#.utf8) + [0x0A]
        let path = try Scratch.file("e11.jsonl", bytes: bytes)
        #expect(throws: DataError(file: path, line: 1, field: "line", message: "invalid UTF-8 at byte 21")) {
            try PreferenceLoader().loadPairs(path: path)
        }
    }

    @Test func bestIndexOutOfRange() throws {
        #expect(try loadError("e12.jsonl", [#"{"query":"q","responses":["a","b","c","d"],"best":4}"#])
            == "e12.jsonl:1: best: index 4 out of range 0..<4")
        #expect(try loadError("e12b.jsonl", [#"{"query":"q","responses":["a"],"best":0}"#])
            == "e12b.jsonl:1: responses: expected at least 2 responses, got 1")
    }

    @Test func skyworkConversationErrors() throws {
        let user = #"{"role":"user","content":"Hi"}"#
        let other = #"{"role":"user","content":"Hey"}"#
        let a1 = #"{"role":"assistant","content":"A"}"#
        let a2 = #"{"role":"assistant","content":"B"}"#
        #expect(try loadError("e13.jsonl", [#"{"chosen":[\#(user),\#(a1)],"rejected":[\#(other),\#(a2)]}"#])
            == "e13.jsonl:1: rejected[0].content: differs from chosen[0].content (the conversation prefixes must match)")
        #expect(try loadError("e14.jsonl", [#"{"chosen":[\#(user),\#(a1)],"rejected":[\#(user),\#(a1),\#(user),\#(a2)]}"#])
            == "e14.jsonl:1: rejected: conversation prefix has 3 messages, chosen's has 1")
        #expect(try loadError("e15.jsonl", [#"{"chosen":[\#(a1),\#(user)],"rejected":[\#(a1),\#(user)]}"#])
            == #"e15.jsonl:1: chosen[1].role: the last message must be "assistant", got "user""#)
        #expect(try loadError("e16.jsonl", [#"{"chosen":[\#(user),\#(a1)],"rejected":[\#(user),\#(a1)]}"#])
            == "e16.jsonl:1: rejected[1].content: identical to chosen[1].content")
        #expect(try loadError("e17.jsonl", [#"{"chosen":[\#(user),{"role":"assistant"}],"rejected":[\#(user),\#(a2)]}"#])
            == "e17.jsonl:1: chosen[1].content: missing")
    }

    @Test func undetectableFormatAndUnreadableFile() throws {
        #expect(try loadError("e18.jsonl", [#"{"text":"hello"}"#]).hasPrefix(
            #"e18.jsonl:1: format: cannot detect the format: expected "responses" (bon)"#))
        #expect(throws: DataError(file: "/nonexistent/x.jsonl", line: nil, field: "", message: "cannot open file for reading")) {
            try PreferenceLoader().loadPairs(path: "/nonexistent/x.jsonl")
        }
    }

    @Test func skipBadCountsAndReportsEveryBadLine() throws {
        let path = try Scratch.file("skip.jsonl", lines: [
            "not json",
            #"{"id":"a","query":"q","chosen":"c","rejected":"r","task_type":"t1"}"#,
            #"{"id":"b","query":"q","chosen":"c"}"#,
            #"{"id":"a","query":"q","chosen":"c","rejected":"r2"}"#,
            #"{"id":"c","query":"q","chosen":"x","rejected":"x"}"#,
            #"{"id":"d","query":"q","chosen":"c","rejected":"r","task_type":"t2"}"#,
        ])
        let (pairs, report) = try PreferenceLoader(skipBad: true).loadPairs(path: path)
        #expect(pairs.map(\.id) == ["a", "d"])
        #expect(report.records == 2 && report.countsByTaskType == ["t1": 1, "t2": 1])
        #expect(report.skipped.map { "\($0.line ?? 0) \($0.field): \($0.message)" } == [
            "1 line: malformed JSON at byte 1: unexpected character",
            "3 rejected: missing",
            #"4 id: duplicate id "a" (first at line 2)"#,
            "5 rejected: identical to chosen",
        ])
        // Without skip-bad the first bad line stops the load.
        #expect(throws: DataError(file: path, line: 1, field: "line", message: "malformed JSON at byte 1: unexpected character")) {
            try PreferenceLoader().loadPairs(path: path)
        }
    }

    @Test func explicitFormatOverridesDetection() throws {
        let path = try Scratch.file("forced.jsonl", lines: [#"{"id":"a","query":"q","chosen":"c","rejected":"r"}"#])
        #expect(throws: DataError(file: path, line: 1, field: "prompt", message: "missing")) {
            try PreferenceLoader(format: .rewardbench).loadPairs(path: path)
        }
    }
}

/// `cerm judge --input`: one query and its responses a line; a bad line names the file, the
/// line and the key, as preference files do.
@Suite struct JudgeItemTests {
    func loadError(_ name: String, _ lines: [String]) throws -> String {
        let path = try Scratch.file(name, lines: lines)
        do {
            _ = try JudgeItem.load(path: path)
        } catch {
            return error.description.replacingOccurrences(of: Scratch.directory + "/", with: "")
        }
        return "no error"
    }

    @Test func loadsItemsSkippingBlankLinesAndOtherKeys() throws {
        let path = try Scratch.file("judge-items.jsonl", lines: [
            #"{"query": "What is 1+2?", "responses": ["3", "4"]}"#,
            "  ",
            #"{"id": 7, "query": "Say hi.", "responses": ["hi"], "best": 0, "task_type": "chat"}"#,
        ])
        #expect(try JudgeItem.load(path: path) == [
            JudgeItem(id: "judge-items.jsonl:1", query: "What is 1+2?", responses: ["3", "4"]),
            JudgeItem(id: "7", query: "Say hi.", responses: ["hi"]),
        ])
    }

    @Test func badLinesNameTheFileLineAndKey() throws {
        let good = #"{"query": "q", "responses": ["a"]}"#
        #expect(try loadError("judge-json.jsonl", [good, #"{"query": "q", "responses": ["a"]"#])
                == "judge-json.jsonl:2: line: malformed JSON at byte 34: unexpected end of line (expected ',' or '}')")
        #expect(try loadError("judge-array.jsonl", ["[1]"]) == "judge-array.jsonl:1: line: expected a JSON object, got array")
        #expect(try loadError("judge-query.jsonl", [good, good, #"{"prompt": "q", "responses": ["a"]}"#])
                == "judge-query.jsonl:3: query: missing")
        #expect(try loadError("judge-responses.jsonl", [#"{"query": "q"}"#]) == "judge-responses.jsonl:1: responses: missing")
        #expect(try loadError("judge-none.jsonl", [#"{"query": "q", "responses": []}"#])
                == "judge-none.jsonl:1: responses: expected at least 1 response, got 0")
        #expect(try loadError("judge-number.jsonl", [#"{"query": "q", "responses": ["a", 2]}"#])
                == "judge-number.jsonl:1: responses[1]: expected a string, got number")
        #expect(try loadError("judge-empty.jsonl", ["", " "])
                == #"judge-empty.jsonl: no items (expected one {"query": …, "responses": […]} per line)"#)
    }
}
