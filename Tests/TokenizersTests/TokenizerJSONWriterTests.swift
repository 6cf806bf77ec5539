import Foundation
import Shared
import Tokenizers
import XCTest

/// `BPETokenizer.tokenizerJSON()`: read back (by cerm's reader) to the same ids as the tokenizer
/// it was written from, and shaped as Hugging Face `tokenizers` expects.
final class TokenizerJSONWriterTests: XCTestCase {
    private func rewritten(_ tokenizer: BPETokenizer, names: [String: String] = [:]) throws -> BPETokenizer {
        try BPETokenizer(tokenizerJSONBytes: Array(tokenizer.tokenizerJSON().utf8), specialTokenNames: names, source: "written")
    }

    func testWrittenFixturesReadBackToTheReferenceIDs() throws {
        for (name, expected) in [("gpt2", PreTokenizer.gpt2), ("llama3", .llama3), ("qwen2", .qwen2)] {
            let original = try BPETokenizer(tokenizerJSON: TokenizerFixtures.path("\(name).tokenizer.json"))
            let written = try rewritten(original)
            XCTAssertEqual(written.preTokenizer, expected, name)
            XCTAssertEqual(written.ignoreMerges, original.ignoreMerges, name)
            XCTAssertEqual(written.normalizesNFC, original.normalizesNFC, name)
            XCTAssertEqual(written.addedTokens, original.addedTokens, name)
            XCTAssertEqual(written.vocabularySize, original.vocabularySize, name)
            TokenizerFixtures.assertParity(written, try TokenizerFixtures.ids("\(name).ids"))
            // Writing what was read back gives the same bytes: nothing is lost or reordered.
            XCTAssertEqual(written.tokenizerJSON(), original.tokenizerJSON(), name)
        }
    }

    /// Digits + ByteLevel (SmolLM2's pre-tokenizer from GGUF metadata) with special tokens and an
    /// unknown token: each part lands in the JSON under the key `tokenizers` reads.
    func testWrittenJSONHasTheKeysTokenizersExpects() throws {
        let vocabulary: [String: TokenID] = ["<unk>": 0, "a": 1, "b": 2, "ab": 3, "Ġ": 4, "1": 5, "<|im_end|>": 6]
        let tokenizer = try BPETokenizer(
            vocabulary: vocabulary, merges: [("a", "b")],
            addedTokens: [AddedToken(id: 6, content: "<|im_end|>", special: true, rstrip: true)],
            preTokenizer: .individualDigitsThenGPT2, eosID: 6, unkID: 0, modelUnknownID: 0, source: "test")
        let root = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(tokenizer.tokenizerJSON().utf8)) as? [String: Any])
        XCTAssertEqual(Set(root.keys), ["version", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer",
                                        "post_processor", "decoder", "model"])
        XCTAssertEqual(root["version"] as? String, "1.0")
        for key in ["truncation", "padding", "normalizer", "post_processor"] { XCTAssertTrue(root[key] is NSNull, key) }
        let added = try XCTUnwrap(root["added_tokens"] as? [[String: Any]])
        XCTAssertEqual(added.count, 1)
        XCTAssertEqual(added[0]["id"] as? Int, 6)
        XCTAssertEqual(added[0]["content"] as? String, "<|im_end|>")
        for (key, value) in [("single_word", false), ("lstrip", false), ("rstrip", true), ("normalized", false), ("special", true)] {
            XCTAssertEqual(added[0][key] as? Bool, value, key)
        }
        let pre = try XCTUnwrap(root["pre_tokenizer"] as? [String: Any])
        XCTAssertEqual(pre["type"] as? String, "Sequence")
        let steps = try XCTUnwrap(pre["pretokenizers"] as? [[String: Any]])
        XCTAssertEqual(steps.map { $0["type"] as? String }, ["Digits", "ByteLevel"])
        XCTAssertEqual(steps[0]["individual_digits"] as? Bool, true)
        XCTAssertEqual(steps[1]["add_prefix_space"] as? Bool, false)
        XCTAssertEqual(steps[1]["trim_offsets"] as? Bool, true)
        XCTAssertEqual(steps[1]["use_regex"] as? Bool, true)
        let decoder = try XCTUnwrap(root["decoder"] as? [String: Any])
        XCTAssertEqual(decoder["type"] as? String, "ByteLevel")
        let model = try XCTUnwrap(root["model"] as? [String: Any])
        XCTAssertEqual(Set(model.keys), ["type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
                                         "fuse_unk", "byte_fallback", "ignore_merges", "vocab", "merges"])
        XCTAssertEqual(model["type"] as? String, "BPE")
        XCTAssertEqual(model["unk_token"] as? String, "<unk>")
        XCTAssertEqual(model["ignore_merges"] as? Bool, false)
        XCTAssertEqual(model["vocab"] as? [String: Int], vocabulary.mapValues(Int.init))
        XCTAssertEqual(model["merges"] as? [[String]], [["a", "b"]])

        let written = try rewritten(tokenizer, names: ["eos_token": "<|im_end|>", "unk_token": "<unk>"])
        XCTAssertEqual(written.encode("ab1 a<|im_end|>  b"), tokenizer.encode("ab1 a<|im_end|>  b"))
        XCTAssertEqual(written.eosID, 6)
        XCTAssertEqual(written.unkID, 0)
    }

    func testSplitRegexIsWrittenAsTokenizersSpellsIt() throws {
        let original = try BPETokenizer(tokenizerJSON: TokenizerFixtures.path("qwen2.tokenizer.json"))
        let root = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(original.tokenizerJSON().utf8)) as? [String: Any])
        let steps = try XCTUnwrap((root["pre_tokenizer"] as? [String: Any])?["pretokenizers"] as? [[String: Any]])
        XCTAssertEqual(steps.map { $0["type"] as? String }, ["Split", "ByteLevel"])
        XCTAssertEqual((steps[0]["pattern"] as? [String: Any])?["Regex"] as? String,
                       #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#)
        XCTAssertEqual(steps[0]["behavior"] as? String, "Isolated")
        XCTAssertEqual(steps[0]["invert"] as? Bool, false)
        XCTAssertEqual(steps[1]["use_regex"] as? Bool, false)
        XCTAssertTrue(root["normalizer"] is NSNull)
    }

    func testAnUnknownSpecialTokenNameIsAnErrorNamingIt() throws {
        let original = try BPETokenizer(tokenizerJSON: TokenizerFixtures.path("gpt2.tokenizer.json"))
        XCTAssertThrowsError(try rewritten(original, names: ["eos_token": "<|nope|>"])) { error in
            XCTAssertEqual(error as? CermError, .io(path: "written", reason: "eos_token: \"<|nope|>\" is not a token of written"))
        }
    }
}
