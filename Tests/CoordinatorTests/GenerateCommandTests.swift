import Coordinator
import Engine
import Foundation
import Method
import Shared
import TestSupport
import Testing
import Tokenizers

/// `cerm import`, `cerm tokenize` and `cerm generate` on a tiny Hugging Face model (the llama
/// fixture of ModelFormatsTests with a 32-token byte-level BPE tokenizer and a ChatML template).
@Suite struct GenerateCommandTests {
    static let llamaTiny = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("ModelFormatsTests/Fixtures/llama_tiny").path

    /// Ids: 0–25 `a`–`z`, 26 `Ġ` (space), 27 `ab`, 28 `<|endoftext|>`, 29 `<|im_start|>`, 30 `<|im_end|>`, 31 `Ċ` (newline).
    static let tokenizerJSON: String = {
        let letters = (0..<26).map { "\"\(Character(Unicode.Scalar(UInt8(97 + $0))))\": \($0)" }
        let vocabulary = (letters + [#""Ġ": 26"#, #""ab": 27"#, #""<|endoftext|>": 28"#, #""<|im_start|>": 29"#, #""<|im_end|>": 30"#, #""Ċ": 31"#])
            .joined(separator: ", ")
        let added = [(28, "<|endoftext|>"), (29, "<|im_start|>"), (30, "<|im_end|>")].map {
            #"{"id": \#($0.0), "content": "\#($0.1)", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}"#
        }.joined(separator: ", ")
        return #"{"version": "1.0", "added_tokens": [\#(added)], "normalizer": null, "#
            + #""pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}, "#
            + #""post_processor": null, "decoder": {"type": "ByteLevel"}, "#
            + #""model": {"type": "BPE", "vocab": {\#(vocabulary)}, "merges": [["a", "b"]]}}"#
    }()

    static let tokenizerConfigJSON = #"{"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "chat_template": "{% for message in messages %}"#
        + #"{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"#
        + #"{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"}"#

    /// The llama fixture with the tokenizer files, in a new temporary directory.
    static func tinyModelDirectory() throws -> String {
        let directory = try makeTemporaryDirectory("generate") + "/model"
        try FileManager.default.copyItem(atPath: llamaTiny, toPath: directory)
        try tokenizerJSON.write(toFile: directory + "/tokenizer.json", atomically: true, encoding: .utf8)
        try tokenizerConfigJSON.write(toFile: directory + "/tokenizer_config.json", atomically: true, encoding: .utf8)
        return directory
    }

    @Test func tokenizeAndGenerateTakeTheImportedModelAndItsSource() throws {
        let model = try Self.tinyModelDirectory()
        let work = (model as NSString).deletingLastPathComponent
        defer { try? FileManager.default.removeItem(atPath: work) }
        guard let imported = try CommandLineTests.cerm(["import", model, "--out", "tiny.h5"], in: work) else { return }
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect(imported.stderr.contains("  tokenizer: tokenizer.json ("))
        let weightsPath = work + "/tiny.h5"

        // The stored tokenizer and the directory's own give the same ids.
        for source in ["tiny.h5", model] {
            guard let ids = try CommandLineTests.cerm(["tokenize", "--model", source, "ab c<|im_end|>"], in: work) else { return }
            #expect(ids.stdout == "27 26 2 30\n", "\(source): \(ids.stderr)")
            guard let text = try CommandLineTests.cerm(["tokenize", "--model", source, "--decode", "27 26 2 30"], in: work) else { return }
            #expect(text.stdout == "ab c<|im_end|>\n")
        }

        // What the command prints is the engine's greedy continuation of the ChatML prompt.
        let loaded = try WeightsFile.load(path: weightsPath)
        let stored = try #require(loaded.tokenizer)
        #expect(stored.chatTemplate == "chatml")
        #expect(stored.chatTemplateJinja?.hasPrefix("{% for message in messages %}") == true)
        let chat = TemplateChat(try stored.chatEncoder(source: weightsPath))
        let prompt = chat.firstTurn(user: "ab c")
        #expect(prompt == [29, 20, 18, 4, 17, 31, 27, 26, 2, 30, 31, 29, 0, 18, 18, 8, 18, 19, 0, 13, 19, 31])
        #expect(chat.stopTokens == [30])
        let generator = try Generator(config: loaded.weights.config, parameters: loaded.weights.values)
        generator.stopTokens = chat.stopTokens
        let result = try generator.generate(requests: [GenerationRequest(prompt: prompt, seed: 0, maxNewTokens: 6, temperature: 0)])[0]
        var continuation = result.tokens
        if result.finishReason == .eos { continuation.removeLast() }
        let expected = chat.encoder.tokenizer.decode(continuation) + "\n"
        for source in ["tiny.h5", model] {
            guard let generated = try CommandLineTests.cerm(["generate", "--model", source, "--prompt", "ab c", "--chat", "--max-tokens", "6"],
                                                            in: work) else { return }
            #expect(generated.status == 0, "\(generated.stderr)")
            #expect(generated.stdout == expected, "\(source)")
            #expect(generated.stderr.contains("22 prompt tokens, \(result.tokens.count) generated (\(result.finishReason.rawValue))"))
        }
    }

    @Test func badSourcesAreErrorsNamingThem() throws {
        let work = try makeTemporaryDirectory("generate-errors")
        defer { try? FileManager.default.removeItem(atPath: work) }
        guard let missing = try CommandLineTests.cerm(["generate", "--model", "nope.gguf", "--prompt", "x"], in: work) else { return }
        #expect(missing.status == 2)
        #expect(missing.stderr == "error: nope.gguf: does not exist (expected a GGUF file, a Hugging Face model directory, "
                + "a cerm weights file or checkpoint, or a tokenizer.json)\n")
        guard let zero = try CommandLineTests.cerm(["generate", "--model", "nope.gguf", "--prompt", "x", "--max-tokens", "0"], in: work) else { return }
        #expect(zero.status == 64)
        #expect(zero.stderr.contains("--max-tokens must be positive, not 0"))
    }
}
