import Configuration
@testable import Coordinator
import Datasets
import Engine
import Foundation
import Method
import Shared
import TestSupport
import Testing
import XCTest

private let listQuery = #"List 3 fruits in lowercase, separated by ";"."#

@Suite("cerm judge")
struct JudgeVerdictTests {
    static func verdicts(_ items: [JudgeItem], format: any PromptFormat = CompactFormat()) throws -> [JudgeVerdict] {
        var verdicts: [JudgeVerdict] = []
        try JudgeVerdict.judge(items, format: format, backend: TeacherJudge(teacher: Teacher(errorRate: 0, seed: 1), format: format),
                               temperature: 0, seed: 1, chunkSize: 2) { verdicts.append($0) }
        return verdicts
    }

    @Test("criteria once, a score per response and the preferred one, as the teacher writes them")
    func teacherVerdicts() throws {
        let items = [
            JudgeItem(id: "a", query: listQuery, responses: ["apple;pear;plum", "apple;Pear;plum", "apple;pear,plum"]),
            JudgeItem(id: "b", query: listQuery, responses: ["apple;Pear;plum", "apple;pear,plum"]),
            JudgeItem(id: "c", query: "Tell me a joke.", responses: ["No."]),
        ]
        let verdicts = try Self.verdicts(items)
        #expect(verdicts.map(\.id) == ["a", "b", "c"])
        #expect(verdicts[0].text(showEvaluations: false, header: false) == """
            criteria:
              list task
              [C]
              1. exactly 3 items
              2. all lowercase
              3. separated by ;
              4. only fruits
              [/C]
            response 0: 10/10
            response 1: 3/10
            response 2: 3/10
            preferred: response 0
            """)
        #expect(verdicts[1].preference == .tie([0, 1]))
        #expect(verdicts[1].text(showEvaluations: true, header: true).hasSuffix("""
            response 0: 3/10
              1. need 3, 1 apple 2 Pear^ 3 plum: 5/5
              2. need lowercase, got Pear: 1/5
              3. need ;, got ;: 5/5
              4. need fruits, got all: 5/5
              => 3/10
            response 1: 3/10
              1. need 3, 1 apple 2 pear 3 plum: 5/5
              2. need lowercase, got all: 5/5
              3. need ;, got ,: 1/5
              4. need fruits, got all: 5/5
              => 3/10
            preferred: none (responses 0, 1 tie at 3/10)
            """))
        #expect(verdicts[1].text(showEvaluations: false, header: true).hasPrefix("== b\ncriteria:\n"))
        // The teacher writes nothing for a query it does not know: truncated criteria, no evaluation.
        #expect(verdicts[2].text(showEvaluations: true, header: false) == """
            criteria (invalid: truncated):

            response 0: no valid score: criteria truncated
            preferred: none (no response has a valid score)
            """)
        #expect(verdicts[2].json == #"{"id":"c","query":"Tell me a joke.","criteria":"","criteria_valid":false,"criteria_reason":"truncated","#
                + #""responses":[{"score":null,"valid":false,"reason":"criteria truncated","evaluation":null}],"preferred":null,"tied":[]}"#)
    }

    @Test("--json: one object per item with the criteria, each response's score, validity, reason and evaluation, and the preferred index")
    func jsonShape() throws {
        let format = CermFormat()
        let verdict = try #require(try Self.verdicts([JudgeItem(id: "x", query: "What is 17+25?", responses: ["41", "42"])], format: format).first)
        let object = try JSONParser.parse(Array(verdict.json.utf8))
        guard case let .object(members) = object else { Issue.record("not an object: \(verdict.json)"); return }
        #expect(members.map(\.key) == ["id", "query", "criteria", "criteria_valid", "criteria_reason", "responses", "preferred", "tied"])
        let teacher = Teacher(errorRate: 0, seed: 1)
        #expect(object["criteria"] == .string(try #require(teacher.criteria(for: "What is 17+25?")).text(in: format)))
        #expect(object["criteria_valid"] == .bool(true) && object["criteria_reason"] == .null)
        #expect(object["preferred"] == .number(1, isInteger: true) && object["tied"] == .array([]))
        guard case let .array(responses) = object["responses"] else { Issue.record("no responses array"); return }
        #expect(responses.count == 2)
        for (response, text) in zip(responses, ["41", "42"]) {
            guard case let .object(fields) = response else { Issue.record("response is not an object"); continue }
            #expect(fields.map(\.key) == ["score", "valid", "reason", "evaluation"])
            let evaluation = try #require(teacher.evaluate(query: "What is 17+25?", response: text))
            #expect(response["score"] == .number(evaluation.overall, isInteger: evaluation.overall == evaluation.overall.rounded()))
            #expect(response["valid"] == .bool(true) && response["reason"] == .null)
            #expect(response["evaluation"] == .string(evaluation.text(in: format)))
        }
    }

    /// The command itself on a tiny random cerm model: the output has the documented shape
    /// (nothing a random model writes parses), and a bad input line names the file and line.
    @Test("the command judges with a cerm weights file and names a bad --input line")
    func command() throws {
        let work = try makeTemporaryDirectory("judge-command")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let config = TransformerConfig(family: .qwen3, hiddenSize: 16, layers: 1, heads: 2, kvHeads: 1, headDim: 8, ffnSize: 32,
                                       vocabSize: 264, maxSeqLen: 256, ropeTheta: 10000, rmsNormEps: 1e-6, qkNorm: true, qkvBias: false,
                                       tieEmbeddings: true)
        try ModelWeights(config: config, seed: 3, initStd: 0.02).save(to: work + "/tiny.h5")
        let budget = ["--max-criteria-tokens", "6", "--max-evaluation-tokens", "6"]
        guard let judged = try CommandLineTests.cerm(["judge", "--model", "tiny.h5", "--query", "What is 2+2?", "--response", "4",
                                                      "--response", "5", "--json"] + budget, in: work) else { return }
        #expect(judged.status == 0, "\(judged.stderr)")
        #expect(judged.stderr.contains("compact format, temperature 0.0"))
        let lines = judged.stdout.split(separator: "\n")
        #expect(lines.count == 1)
        let object = try JSONParser.parse(Array(lines[0].utf8))
        #expect(object["id"] == .string("command-line") && object["query"] == .string("What is 2+2?"))
        #expect(object["criteria_valid"] == .bool(false) && object["criteria_reason"] == .string("truncated"))
        #expect(object["preferred"] == .null)
        guard case let .array(responses) = object["responses"] else { Issue.record("no responses: \(judged.stdout)"); return }
        #expect(responses.map { $0["reason"] } == [.string("criteria truncated"), .string("criteria truncated")])

        try Data(#"{"query": "q", "responses": ["a", "b"]}"#.utf8 + [0x0A] + #"{"query": "q", "responses": "a"}"#.utf8 + [0x0A])
            .write(to: URL(fileURLWithPath: work + "/items.jsonl"))
        guard let bad = try CommandLineTests.cerm(["judge", "--model", "tiny.h5", "--input", "items.jsonl"] + budget, in: work) else { return }
        #expect(bad.status == 2)
        #expect(bad.stderr == "error: items.jsonl:2: responses: expected an array of strings, got string\n")
        guard let both = try CommandLineTests.cerm(["judge", "--model", "tiny.h5", "--input", "items.jsonl", "--query", "q"], in: work) else { return }
        #expect(both.status == 64)
        #expect(both.stderr.contains("give either --input FILE or --query with --response, not both"))
    }
}

/// `cerm judge`'s path on SmolLM2-135M-Instruct as fetched (no CE-RM training): the criteria are
/// generated once, each response gets a result, and an invalid one says why.
final class PretrainedJudgeTests: XCTestCase {
    func testSmolLM2JudgesOneQueryAndTwoResponses() throws {
        let path = try SmolLM2Model.requireGGUF()
        let loaded = try WeightsFile.load(path: path)
        let chat = TemplateChat(try XCTUnwrap(loaded.tokenizer).chatEncoder(source: path))
        let format = CermFormat(chat: chat)
        // Small budgets: the debug build decodes a few tokens a second.
        let backend = try ModelJudge(weights: loaded.weights, criteriaMaxTokens: 48, evaluationMaxTokens: 24, chat: chat)
        var verdicts: [JudgeVerdict] = []
        try JudgeVerdict.judge([JudgeItem(id: "capital", query: "What is the capital of France?", responses: ["Paris.", "London."])],
                               format: format, backend: backend, temperature: 0, seed: 1) { verdicts.append($0) }
        XCTAssertEqual(verdicts.count, 1)
        let verdict = try XCTUnwrap(verdicts.first)
        XCTAssertFalse(verdict.criteria.isEmpty, "the model wrote no criteria")
        XCTAssertEqual(verdict.responses.count, 2)
        for response in verdict.responses {
            // A score, or the stage and parse failure that left none.
            XCTAssertEqual(response.score == nil, response.reason != nil)
            if let failure = verdict.criteriaFailure {
                XCTAssertEqual(response.reason, "criteria \(failure.rawValue)")
                XCTAssertNil(response.evaluation)
            } else {
                let evaluation = try XCTUnwrap(response.evaluation)
                if let reason = response.reason {
                    XCTAssertTrue(ParseFailure.allCases.contains { reason == "evaluation \($0.rawValue)" }, reason)
                }
                XCTAssertFalse(evaluation.isEmpty)
            }
        }
        let text = verdict.text(showEvaluations: true, header: false)
        XCTAssertTrue(text.hasPrefix("criteria"))
        XCTAssertTrue(text.contains("\nresponse 0: ") && text.contains("\nresponse 1: ") && text.contains("\npreferred: "))
    }
}
