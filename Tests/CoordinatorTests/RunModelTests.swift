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

    // MARK: - The description a coordinator sends its workers

    /// cerm's own model: the magic, the architecture's JSON, an empty source and tokenizer.
    func testTheOwnModelsDescriptionIsItsArchitecture() throws {
        var config = try Config.parse("[model]\nlayers = 2\n", file: "run.toml")
        let model = try RunModel.resolve(&config)
        let json = Array(model.architecture.jsonString().utf8)
        func u64(_ value: Int) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: UInt64(value) >> (8 * $0)) } }
        XCTAssertEqual(model.wireDescription, Array("CERMMOD1".utf8) + u64(json.count) + json + u64(0) + u64(0))
        let back = try RunModel(wireDescription: model.wireDescription)
        XCTAssertEqual(back.architecture, model.architecture)
        XCTAssertNil(back.tokenizer)
        XCTAssertNil(back.source)
        XCTAssertTrue(back.chat is ByteChat)
    }

    /// A worker that never opens the source renders exactly the coordinator's prompts: the same
    /// tokenizer, template and stop tokens, hence the same ids.
    func testAPretrainedDescriptionCarriesTheTokenizerAndTemplate() throws {
        let path = try SmolLM2Model.requireGGUF()
        var config = try Config.parse("[model]\nsource = \"\(path)\"\nmax_seq_len = 1024\n", file: "run.toml")
        let model = try RunModel.resolve(&config)
        let description = model.wireDescription
        let worker = try RunModel(wireDescription: description)
        XCTAssertEqual(worker.architecture, model.architecture)
        XCTAssertEqual(worker.tokenizer, model.tokenizer)
        XCTAssertEqual(worker.source, path)
        XCTAssertEqual(worker.fingerprint, model.fingerprint)
        XCTAssertEqual(worker.chat.stopTokens, model.chat.stopTokens)
        let prompt = "Which response is better?\n\n1 + 1 = 2 <|im_end|> 🙂"
        XCTAssertEqual(worker.promptFormat(.cerm).chat.firstTurn(user: prompt), model.promptFormat(.cerm).chat.firstTurn(user: prompt))
        XCTAssertLessThan(description.count, 4 << 20, "chunked like weights, but small")
    }

    func testADamagedDescriptionSaysWhichPart() throws {
        let good = RunModel(architecture: TransformerConfig(ModelSection())).wireDescription
        func error(_ bytes: [UInt8]) -> String {
            do { _ = try RunModel(wireDescription: bytes); return "no error" } catch { return "\(error)" }
        }
        XCTAssertEqual(error(Array("CERMMOD2".utf8) + good.dropFirst(8)), "the coordinator's model description (\(good.count) bytes): does not start with CERMMOD1")
        XCTAssertEqual(error(Array(good.prefix(12))), "the coordinator's model description (12 bytes): architecture: ends at byte 8")
        XCTAssertEqual(error(good + [0]), "the coordinator's model description (\(good.count + 1) bytes): 1 bytes after the tokenizer")
        var huge = good
        huge.replaceSubrange(8..<16, with: [0xFF, 0xFF, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(error(huge), "the coordinator's model description (\(good.count) bytes): architecture: length 65535 runs past the end")
        let zeroHeads = RunModel(architecture: TransformerConfig(family: .llama, hiddenSize: 8, layers: 1, heads: 0, kvHeads: 1, headDim: 8,
                                                                 ffnSize: 8, vocabSize: 264, maxSeqLen: 8, ropeTheta: 1e4, rmsNormEps: 1e-5,
                                                                 qkNorm: false, qkvBias: false, tieEmbeddings: true)).wireDescription
        XCTAssertEqual(error(zeroHeads), "the coordinator's model description (\(zeroHeads.count) bytes): architecture: model config: heads must be at least 1, got 0")
        var badTokenizer = good
        badTokenizer.removeLast(8)
        badTokenizer += [3, 0, 0, 0, 0, 0, 0, 0, 9, 9, 9]
        XCTAssertEqual(error(badTokenizer), "the coordinator's model description (\(badTokenizer.count) bytes): stored tokenizer, field tokenizer_json at byte 0: ends after 3 bytes")
    }

    /// Workers do not read the source, so a pretrained config's hash must not depend on the
    /// architecture the source gives: resolved (coordinator) and as written (worker) agree.
    func testAPretrainedConfigsHashIsTheSameResolvedOrNot() throws {
        let path = try SmolLM2Model.requireGGUF()
        let text = "[model]\nsource = \"\(path)\"\nmax_seq_len = 1024\n"
        var resolved = try Config.parse(text, file: "run.toml")
        _ = try RunModel.resolve(&resolved)
        XCTAssertNotEqual(resolved.model, try Config.parse(text, file: "run.toml").model)
        XCTAssertEqual(resolved.hash, try Config.parse(text, file: "run.toml").hash)
        let otherTemplate = try Config.parse(text + "chat_template = \"none\"\n", file: "run.toml")
        XCTAssertNotEqual(otherTemplate.hash, resolved.hash)
        let otherSource = try Config.parse("[model]\nsource = \"/elsewhere/model.gguf\"\n", file: "run.toml")
        XCTAssertNotEqual(otherSource.hash, resolved.hash)
        // cerm's own model: every architecture key still counts.
        XCTAssertNotEqual(try Config.parse("[model]\nlayers = 2\n", file: "a.toml").hash, try Config.parse("[model]\nlayers = 3\n", file: "a.toml").hash)
    }
}
