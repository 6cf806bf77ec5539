import Foundation
import Method
import ModelFormats
import Shared
import TestSupport
import Tokenizers
import XCTest

/// CE-RM's `cerm` prompts rendered through a pretrained model's chat template give exactly the
/// token ids of transformers' `apply_chat_template(..., add_generation_prompt=True)`
/// (SmolLM2-135M-Instruct, 50 pairs × 2 responses; scripts/make_chat_prompt_fixtures.py).
final class ChatPromptParityTests: XCTestCase {
    struct Record: Decodable {
        var query: String
        var criteria: String
        var response: String
        var criteria_prompt: [TokenID]
        var evaluation_prompt: [TokenID]
    }

    func testCermPromptsMatchTransformersChatTemplate() throws {
        let chat = try SmolLM2.chat()
        let format = CermFormat(chat: chat)
        let fixture = SmolLM2Model.repositoryRoot + "/Tests/MethodTests/Fixtures/smollm2_cerm_prompts.jsonl"
        let records = try String(contentsOfFile: fixture, encoding: .utf8).split(separator: "\n").map {
            try JSONDecoder().decode(Record.self, from: Data($0.utf8))
        }
        XCTAssertEqual(records.count, 100)
        for (index, record) in records.enumerated() {
            let criteriaPrompt = format.criteriaPrompt(query: record.query)
            XCTAssertEqual(criteriaPrompt, record.criteria_prompt,
                           "record \(index): criteria prompt differs from transformers' (re-run scripts/make_chat_prompt_fixtures.py after changing CermFormat's text)")
            let evaluationPrompt = format.evaluationPrompt(criteriaPrompt: criteriaPrompt,
                                                           criteriaOutput: format.outputTokens(text: record.criteria),
                                                           response: record.response)
            XCTAssertEqual(evaluationPrompt, record.evaluation_prompt, "record \(index): evaluation prompt differs from transformers'")
        }
    }

    /// A reply is read up to the template's end-of-turn token; text that spells a marker stays
    /// text and cannot end a turn.
    func testRepliesEndAtTheTemplatesEndOfTurn() throws {
        let chat = try SmolLM2.chat()
        let imEnd = try XCTUnwrap(chat.encoder.tokenizer.id(of: "<|im_end|>"))
        let eos = try XCTUnwrap(chat.encoder.tokenizer.eosID)
        XCTAssertEqual(chat.stopTokens, [imEnd] + (eos == imEnd ? [] : [eos]))
        let reply = chat.replyTokens(text: "Overall: \\boxed{7}")
        XCTAssertEqual(reply.last, imEnd)
        XCTAssertEqual(chat.replyBytes(reply + [42, 43]), .valid(Array("Overall: \\boxed{7}".utf8)))
        XCTAssertEqual(chat.replyBytes(Array(reply.dropLast())), .invalid(reason: .truncated))
        XCTAssertEqual(chat.replyBytes([imEnd - 1] + reply), .invalid(reason: .unexpectedSpecialToken))
        let injected = chat.encode("<|im_end|>")
        XCTAssertFalse(injected.contains(imEnd))
        XCTAssertEqual(chat.text(injected), "<|im_end|>")
    }
}

/// SmolLM2-135M-Instruct's tokenizer and template, read from its GGUF.
enum SmolLM2 {
    static func chat() throws -> TemplateChat {
        let path = try SmolLM2Model.requireGGUF()
        let material = try ModelImport.tokenizerMaterial(path: path)
        let template = try material.chatTemplate(setting: "auto", source: path)
        XCTAssertEqual(template, .chatml(defaultSystemPrompt: SmolLM2Model.defaultSystemPrompt))
        return TemplateChat(try ChatEncoder(tokenizer: try material.tokenizer(source: path), template: template))
    }
}
