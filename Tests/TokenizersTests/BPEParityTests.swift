import Foundation
import ModelFormats
import Shared
import Tokenizers
import XCTest

/// Ids equal to Hugging Face `tokenizers` / transformers on every corpus line, and lossless decoding.
final class BPEParityTests: XCTestCase {
    /// A trained fixture tokenizer: its pre-tokenizer read right, its ids, its round trip.
    private func assertTrainedFixture(_ name: String, _ preTokenizer: PreTokenizer, ignoreMerges: Bool = false) throws {
        let tokenizer = try BPETokenizer(tokenizerJSON: TokenizerFixtures.path("\(name).tokenizer.json"))
        XCTAssertEqual(tokenizer.preTokenizer, preTokenizer)
        XCTAssertEqual(tokenizer.ignoreMerges, ignoreMerges)
        TokenizerFixtures.assertParity(tokenizer, try TokenizerFixtures.ids("\(name).ids"))
        TokenizerFixtures.assertRoundTrip(tokenizer)
    }

    func testGPT2ByteLevelMatchesTokenizers() throws { try assertTrainedFixture("gpt2", .gpt2) }

    func testLlama3SplitMatchesTokenizers() throws { try assertTrainedFixture("llama3", .llama3, ignoreMerges: true) }

    func testQwen2SplitMatchesTokenizers() throws { try assertTrainedFixture("qwen2", .qwen2) }

    /// SmolLM2-135M-Instruct's tokenizer as cerm reads it from the GGUF: `tokenizer.ggml.pre =
    /// "smollm"` is llama.cpp's digits-apart split, the original SmolLM2 tokenizer.json's Digits +
    /// ByteLevel (reference ids from `tokenizers` with that pre-tokenizer).
    func testSmolLM2FromGGUFMatchesItsOriginalPreTokenizer() throws {
        let (path, _) = try TokenizerFixtures.smolLM2Metadata()
        let tokenizer = try ModelImport.tokenizerMaterial(path: path).tokenizer(source: path)
        XCTAssertEqual(tokenizer.vocabularySize, 49_152)
        XCTAssertEqual(tokenizer.bosID, 1)
        XCTAssertEqual(tokenizer.eosID, 2)
        XCTAssertEqual(tokenizer.preTokenizer, .individualDigitsThenGPT2)
        XCTAssertEqual(tokenizer.encode("<|im_start|>user"), [1, 4093])
        TokenizerFixtures.assertParity(tokenizer, try TokenizerFixtures.ids("smollm2-digits.ids"))
        TokenizerFixtures.assertRoundTrip(tokenizer)
    }

    /// With transformers' reading of "smollm" (its GGUF loader drops the digits split: plain
    /// GPT-2), the same vocabulary gives transformers' ids.
    func testSmolLM2AsTransformersReadsTheGGUF() throws {
        let tokenizer = try TokenizerFixtures.smolLM2(preTokenizer: .gpt2)
        TokenizerFixtures.assertParity(tokenizer, try TokenizerFixtures.ids("smollm2.ids"))
        TokenizerFixtures.assertRoundTrip(tokenizer)
    }

    /// llama.cpp's "llama-bpe" (Llama 3, ignore_merges) and "qwen2" on the trained vocabularies.
    func testLlama3AndQwen2FromGGUFMetadata() throws {
        let llama3 = try ggufTokenizer(from: TokenizerFixtures.path("llama3.tokenizer.json"), pre: "llama-bpe")
        XCTAssertEqual(llama3.preTokenizer, .llama3)
        XCTAssertTrue(llama3.ignoreMerges)
        TokenizerFixtures.assertParity(llama3, try TokenizerFixtures.ids("llama3.ids"))
        let qwen2 = try ggufTokenizer(from: TokenizerFixtures.path("qwen2.tokenizer.json"), pre: "qwen2")
        XCTAssertEqual(qwen2.preTokenizer, .qwen2)
        TokenizerFixtures.assertParity(qwen2, try TokenizerFixtures.ids("qwen2.ids"))
    }

    /// A tokenizer.json's vocabulary as GGUF stores it: tokens by id, merges as "a b", added tokens as control.
    private func ggufTokenizer(from path: String, pre: String, preTokenizer: PreTokenizer? = nil,
                               bosID: TokenID? = nil, eosID: TokenID? = nil) throws -> BPETokenizer {
        let root = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        let model = try XCTUnwrap(root["model"] as? [String: Any])
        let vocabulary = try XCTUnwrap(model["vocab"] as? [String: Int])
        var tokens = [String](repeating: "", count: vocabulary.count)
        for (token, id) in vocabulary { tokens[id] = token }
        let merges = try XCTUnwrap(model["merges"] as? [[String]]).map { $0.joined(separator: " ") }
        let control = Set(try XCTUnwrap(root["added_tokens"] as? [[String: Any]]).compactMap { $0["id"] as? Int })
        let types = tokens.indices.map { control.contains($0) ? BPETokenizer.GGUFTokenType.control.rawValue : BPETokenizer.GGUFTokenType.normal.rawValue }
        return try BPETokenizer(ggufTokens: tokens, merges: merges, tokenTypes: types, pre: pre,
                                bosID: bosID, eosID: eosID, padID: eosID, unkID: 0, preTokenizer: preTokenizer, source: path)
    }
}
