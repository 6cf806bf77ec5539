import Configuration
import Engine
import EngineConfiguration
import Method
import Shared
import TestSupport
import XCTest

/// `[model]` resolved into the run's model: cerm's own, or a pretrained `model.source` whose own
/// config gives the architecture and whose tokenizer and template render every prompt.
final class RunModelTests: XCTestCase {
    func testCermsOwnModelIsTheModelSectionWithTheByteConversation() throws {
        var config = try Config.parse("[model]\nlayers = 2\n", file: "run.toml")
        let before = config
        let model = try RunModel.resolve(&config)
        XCTAssertEqual(config, before)
        XCTAssertNil(model.source)
        XCTAssertNil(model.tokenizer)
        XCTAssertTrue(model.chat is ByteChat)
        XCTAssertEqual(model.architecture, TransformerConfig(config.model))
        XCTAssertEqual(model.fingerprint, Checksum.fnv1a64(Array(model.architecture.jsonString().utf8)))
    }

    func testAnUnreadableSourceIsAnErrorAtItsKey() throws {
        var config = try Config.parse("[model]\nsource = \"/nonexistent/model.gguf\"\n", file: "run.toml")
        XCTAssertThrowsError(try RunModel.resolve(&config)) { error in
            XCTAssertEqual("\(error)", "run.toml:2: model.source: /nonexistent/model.gguf: does not exist (expected a GGUF file or a Hugging Face model directory)")
        }
    }

    /// SmolLM2's GGUF gives the architecture; the file's max_seq_len is the run's context.
    func testAPretrainedSourceGivesTheArchitectureTokenizerAndTemplate() throws {
        let path = try SmolLM2Model.requireGGUF()
        var config = try Config.parse("[model]\nsource = \"\(path)\"\nmax_seq_len = 1024\n", file: "run.toml")
        let model = try RunModel.resolve(&config)
        let expected = TransformerConfig(family: .llama, hiddenSize: 576, layers: 30, heads: 9, kvHeads: 3, headDim: 64, ffnSize: 1536,
                                         vocabSize: 49152, maxSeqLen: 1024, ropeTheta: 100_000, rmsNormEps: model.architecture.rmsNormEps,
                                         qkNorm: false, qkvBias: false, tieEmbeddings: true)
        XCTAssertEqual(model.architecture, expected)
        XCTAssertEqual(TransformerConfig(config.model), expected)
        XCTAssertEqual(model.source, path)
        XCTAssertEqual(model.tokenizer?.chatTemplate, "chatml")
        // <|im_end|> ends a reply: the first stop token, and a special token, never text.
        XCTAssertEqual(model.chat.text([model.chat.stopTokens[0]], showSpecials: true), "<|im_end|>")
        XCTAssertEqual(model.description, "\(path) (llama, chatml template, vocabulary 49152)")

        // The same source and template: the same fingerprint; another template: another one.
        var again = try Config.parse("[model]\nsource = \"\(path)\"\nmax_seq_len = 1024\n", file: "other.toml")
        XCTAssertEqual(try RunModel.resolve(&again).fingerprint, model.fingerprint)
        var plain = try Config.parse("[model]\nsource = \"\(path)\"\nmax_seq_len = 1024\nchat_template = \"none\"\n", file: "run.toml")
        XCTAssertNotEqual(try RunModel.resolve(&plain).fingerprint, model.fingerprint)
    }

    func testAnArchitectureKeyThatDisagreesWithTheModelIsRefusedNamingBothValues() throws {
        let path = try SmolLM2Model.requireGGUF()
        var config = try Config.parse("[model]\nsource = \"\(path)\"\n\nhidden_size = 128\n", file: "run.toml")
        XCTAssertThrowsError(try RunModel.resolve(&config)) { error in
            XCTAssertEqual("\(error)", "run.toml:4: model.hidden_size: 128 (config) ≠ 576 (\(path)); the model's own config gives [model]: "
                           + "remove the key or make it agree")
        }
        // A key that agrees is fine.
        var agreeing = try Config.parse("[model]\nsource = \"\(path)\"\nhidden_size = 576\nlayers = 30\n", file: "run.toml")
        XCTAssertEqual(try RunModel.resolve(&agreeing).architecture.maxSeqLen, 8192)
        var tooLong = try Config.parse("[model]\nsource = \"\(path)\"\nmax_seq_len = 9000\n", file: "run.toml")
        XCTAssertThrowsError(try RunModel.resolve(&tooLong)) { error in
            XCTAssertEqual("\(error)", "run.toml:3: model.max_seq_len: 9000 exceeds the context of \(path) (8192 positions)")
        }
    }
}
