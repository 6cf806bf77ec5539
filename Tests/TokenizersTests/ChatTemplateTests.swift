import Foundation
import ModelFormats
import Shared
import Tokenizers
import XCTest

/// Rendering equal to transformers' apply_chat_template (SmolLM2) and to jinja2 on Meta's Llama 3 template.
final class ChatTemplateTests: XCTestCase {
    private struct Conversation: Decodable {
        let messages: [ChatTemplate.Message]
        let smollm2_ids: [TokenID]
        let llama3_text: String
    }

    private func conversations() throws -> [Conversation] {
        let text = try String(contentsOfFile: TokenizerFixtures.path("chat.jsonl"), encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode(Conversation.self, from: Data($0.utf8)) }
    }

    static let smolLM2Template = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"

    func testSmolLM2TemplateMatchesTransformers() throws {
        let (path, metadata) = try TokenizerFixtures.smolLM2Metadata()
        XCTAssertEqual(metadata.chatTemplate, Self.smolLM2Template)
        // transformers' reading of the GGUF's pre-tokenizer, whose ids the fixture holds.
        let tokenizer = try TokenizerFixtures.smolLM2(preTokenizer: .gpt2)
        let template = try ModelImport.tokenizerMaterial(path: path).chatTemplate(setting: "auto", source: path)
        XCTAssertEqual(template, .chatml(defaultSystemPrompt: "You are a helpful AI assistant named SmolLM, trained by Hugging Face"))
        let all = try conversations()
        XCTAssertEqual(all.count, 50)
        XCTAssertEqual(all.filter { $0.messages.first?.role != "system" }.count, 25)
        for conversation in all {
            let ids = tokenizer.encode(template.render(messages: conversation.messages, addGenerationPrompt: true))
            XCTAssertEqual(ids, conversation.smollm2_ids, "\(conversation.messages)")
        }
        XCTAssertEqual(template.stopTokenIDs(for: tokenizer), [2])
    }

    func testLlama3MatchesJinja() throws {
        let official = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
        let template = try ChatTemplate.detect(fromTemplate: official)
        XCTAssertEqual(template, .llama3)
        for conversation in try conversations() {
            XCTAssertEqual(template.render(messages: conversation.messages, addGenerationPrompt: true), conversation.llama3_text)
        }
    }

    func testDetectionAndOverrides() throws {
        let qwen3 = "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endfor %}"
        XCTAssertEqual(try ChatTemplate.detect(fromTemplate: qwen3), .chatml(defaultSystemPrompt: nil))
        let qwen25 = "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}{%- endif %}{{- '<|im_start|>' + message.role }}"
        XCTAssertEqual(try ChatTemplate.detect(fromTemplate: qwen25),
                       .chatml(defaultSystemPrompt: "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."))
        XCTAssertThrowsError(try ChatTemplate.detect(fromTemplate: "{{ bos_token }}{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}")) { error in
            XCTAssertEqual("\(error)", #"the model's chat template is not one cerm renders (ChatML or Llama 3): "{{ bos_token }}{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}"; set model.chat_template = "chatml" | "llama3" | "none""#)
        }
        XCTAssertEqual(try ChatTemplate.named("none"), ChatTemplate.none)
        XCTAssertEqual(try ChatTemplate.named("llama3"), .llama3)
        XCTAssertNil(try ChatTemplate.named("auto"))
        XCTAssertThrowsError(try ChatTemplate.named("mistral")) { error in
            XCTAssertEqual(error as? CermError, .invalid(#"model.chat_template: "mistral" is not one of "auto", "chatml", "llama3", "none""#))
        }
        let messages = [ChatTemplate.Message(role: "user", content: "a"), ChatTemplate.Message(role: "assistant", content: "b")]
        XCTAssertEqual(ChatTemplate.none.render(messages: messages, addGenerationPrompt: true), "a\nb")
        XCTAssertEqual(ChatTemplate.chatml(defaultSystemPrompt: nil).render(messages: messages, addGenerationPrompt: false),
                       "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n")
    }
}
