import Foundation
import Shared
import Tokenizers
import XCTest

/// Ids equal to Hugging Face `tokenizers` / transformers on every corpus line, and lossless decoding.
final class BPEParityTests: XCTestCase {
    func testGPT2ByteLevelMatchesTokenizers() throws {
        let tokenizer = try BPETokenizer(tokenizerJSON: TokenizerFixtures.path("gpt2.tokenizer.json"))
        XCTAssertEqual(tokenizer.preTokenizer, .gpt2)
        TokenizerFixtures.assertParity(tokenizer, try TokenizerFixtures.ids("gpt2.ids"))
        TokenizerFixtures.assertRoundTrip(tokenizer)
    }

    func testLlama3SplitMatchesTokenizers() throws {
        let tokenizer = try BPETokenizer(tokenizerJSON: TokenizerFixtures.path("llama3.tokenizer.json"))
        XCTAssertEqual(tokenizer.preTokenizer, .llama3)
        XCTAssertTrue(tokenizer.ignoreMerges)
        TokenizerFixtures.assertParity(tokenizer, try TokenizerFixtures.ids("llama3.ids"))
        TokenizerFixtures.assertRoundTrip(tokenizer)
    }

    func testQwen2SplitMatchesTokenizers() throws {
        let tokenizer = try BPETokenizer(tokenizerJSON: TokenizerFixtures.path("qwen2.tokenizer.json"))
        XCTAssertEqual(tokenizer.preTokenizer, .qwen2)
        TokenizerFixtures.assertParity(tokenizer, try TokenizerFixtures.ids("qwen2.ids"))
        TokenizerFixtures.assertRoundTrip(tokenizer)
    }

    /// SmolLM2-135M-Instruct's tokenizer as transformers builds it from the GGUF.
    func testSmolLM2MatchesTransformers() throws {
        let tokenizer = try BPETokenizer(tokenizerJSON: try TokenizerFixtures.smolLM2Path())
        XCTAssertEqual(tokenizer.vocabularySize, 49_152)
        XCTAssertEqual(tokenizer.bosID, 1)
        XCTAssertEqual(tokenizer.eosID, 2)
        TokenizerFixtures.assertParity(tokenizer, try TokenizerFixtures.ids("smollm2.ids"))
        TokenizerFixtures.assertRoundTrip(tokenizer)
    }

    /// The same vocabulary given as GGUF metadata with `tokenizer.ggml.pre = "smollm"`: llama.cpp's
    /// digits-apart split, which is the original SmolLM2 tokenizer.json's Digits + ByteLevel.
    func testSmolLM2FromGGUFMetadataMatchesDigitsSplit() throws {
        // Outside XCTUnwrap, which would turn the skip into a failure.
        let path = try TokenizerFixtures.smolLM2Path()
        let root = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        let model = try XCTUnwrap(root["model"] as? [String: Any])
        let vocabulary = try XCTUnwrap(model["vocab"] as? [String: Int])
        var tokens = [String](repeating: "", count: vocabulary.count)
        for (token, id) in vocabulary { tokens[id] = token }
        let merges = try XCTUnwrap(model["merges"] as? [[String]]).map { $0.joined(separator: " ") }
        let control = Set(try XCTUnwrap(root["added_tokens"] as? [[String: Any]]).compactMap { $0["id"] as? Int })
        let types = tokens.indices.map { control.contains($0) ? Int32(3) : Int32(1) }
        let tokenizer = try BPETokenizer(ggufTokens: tokens, merges: merges, tokenTypes: types, pre: "smollm",
                                         bosID: 1, eosID: 2, padID: 2, unkID: 0, source: "SmolLM2.gguf")
        XCTAssertEqual(tokenizer.preTokenizer, .individualDigitsThenGPT2)
        XCTAssertEqual(tokenizer.encode("<|im_start|>user"), [1, 4093])
        TokenizerFixtures.assertParity(tokenizer, try TokenizerFixtures.ids("smollm2-digits.ids"))
        TokenizerFixtures.assertRoundTrip(tokenizer)
    }
}
