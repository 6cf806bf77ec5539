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
        // Exported as GGUF and read back, the model generates the same.
        guard let exported = try CommandLineTests.cerm(["export", "tiny.h5", "--gguf", "tiny.gguf"], in: work) else { return }
        #expect(exported.status == 0, "\(exported.stderr)")
        #expect(exported.stdout == "exported SFT weights (\(loaded.weights.layout.specs.count) tensors) from tiny.h5\n  tiny.gguf\n")
        for source in ["tiny.h5", model, "tiny.gguf"] {
            guard let generated = try CommandLineTests.cerm(["generate", "--model", source, "--prompt", "ab c", "--chat", "--max-tokens", "6"],
                                                            in: work) else { return }
            #expect(generated.status == 0, "\(generated.stderr)")
            #expect(generated.stdout == expected, "\(source)")
            #expect(generated.stderr.contains("22 prompt tokens, \(result.tokens.count) generated (\(result.finishReason))"))
        }
    }

    /// Where weights are accepted (`--init`, `cerm eval --checkpoint`, `cerm curate --weights`),
    /// a GGUF file or Hugging Face directory is taken as `cerm import` takes it: the same weights,
    /// with the model's tokenizer and template.
    @Test func weightsFileLoadTakesAPretrainedModelAsImportDoes() throws {
        let model = try Self.tinyModelDirectory()
        let work = (model as NSString).deletingLastPathComponent
        defer { try? FileManager.default.removeItem(atPath: work) }
        guard let imported = try CommandLineTests.cerm(["import", model, "--out", "tiny.h5"], in: work) else { return }
        #expect(imported.status == 0, "\(imported.stderr)")
        let viaImport = try WeightsFile.load(path: work + "/tiny.h5")
        let direct = try WeightsFile.load(path: model)
        #expect(direct.kind == .pretrained)
        #expect(direct.weights.config == viaImport.weights.config)
        #expect(direct.weights.checksum == viaImport.weights.checksum)
        #expect(direct.tokenizer != nil)
        #expect(direct.tokenizer == viaImport.tokenizer)
        #expect(throws: CermError.io(path: work, reason: "is a directory without config.json (expected a Hugging Face model directory or a GGUF file)")) {
            try WeightsFile.load(path: work)
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
        guard let both = try CommandLineTests.cerm(["export", "m.h5", "--out", "d", "--gguf", "m.gguf"], in: work) else { return }
        #expect(both.status == 64)
        #expect(both.stderr.contains("give exactly one of --out DIR and --gguf FILE"))

        // A byte-tokenizer model has no vocabulary GGUF can hold.
        let bytes = (work as NSString).appendingPathComponent("bytes.h5")
        try WeightsFile.saveAtomically(ModelWeights(config: TransformerConfig(family: .llama, hiddenSize: 8, layers: 1, heads: 2, kvHeads: 1,
                                                                               headDim: 4, ffnSize: 16, vocabSize: 264, maxSeqLen: 16, ropeTheta: 10_000,
                                                                               rmsNormEps: 1e-5, qkNorm: false, qkvBias: false, tieEmbeddings: true),
                                                    seed: 1, initStd: 0.1), to: bytes)
        guard let byteExport = try CommandLineTests.cerm(["export", "bytes.h5", "--gguf", "b.gguf"], in: work) else { return }
        #expect(byteExport.status == 2)
        #expect(byteExport.stderr == "error: bytes.h5: has cerm's byte tokenizer, which GGUF cannot express; "
                + "--gguf exports models imported with their tokenizer\n")
    }
}
