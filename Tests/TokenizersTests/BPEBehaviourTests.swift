import Foundation
import Shared
import Tokenizers
import XCTest

/// Special tokens, decoding, tokenizer.json options and errors; expected ids are `tokenizers` 0.23.3's
/// on the committed fixtures (the edited JSON mirrors the edit made in Python).
final class BPEBehaviourTests: XCTestCase {
    private func fixture(_ name: String) throws -> BPETokenizer {
        try BPETokenizer(tokenizerJSON: TokenizerFixtures.path(name))
    }

    /// The fixture's JSON after `edit`, written to a temporary tokenizer.json.
    private func edited(_ name: String, _ edit: (inout [String: Any]) -> Void) throws -> String {
        var root = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: TokenizerFixtures.path(name)))) as? [String: Any])
        edit(&root)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cerm-tokenizer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("tokenizer.json").path
        try JSONSerialization.data(withJSONObject: root).write(to: URL(fileURLWithPath: path))
        return path
    }

    func testSpecialTokensParsedOrLeftAsText() throws {
        let tokenizer = try fixture("qwen2.tokenizer.json")
        let text = "<|im_start|>user\nhi<|im_end|>"
        XCTAssertEqual(tokenizer.encode(text), [1, 87, 85, 269, 201, 434, 2])
        XCTAssertEqual(tokenizer.encode(text, parseSpecial: false), [266, 283, 348, 275, 87, 85, 269, 201, 434, 266, 283, 333, 275])
        XCTAssertEqual(tokenizer.decode([1, 87, 85, 269, 201, 434, 2]), text)
        XCTAssertEqual(tokenizer.decode([1, 87, 85, 269, 201, 434, 2], skipSpecial: true), "user\nhi")
        XCTAssertEqual(tokenizer.id(of: "<|im_end|>"), 2)
        XCTAssertEqual(tokenizer.token(of: 2), "<|im_end|>")
        XCTAssertTrue(tokenizer.isSpecial(2))
        XCTAssertNil(tokenizer.token(of: TokenID(tokenizer.vocabularySize)))
    }

    /// Ids that end inside a UTF-8 sequence decode to U+FFFD, one per maximal invalid subpart.
    func testInvalidUTF8DecodesToReplacementCharacters() throws {
        let tokenizer = try fixture("qwen2.tokenizer.json")
        XCTAssertEqual(tokenizer.decode([163, 119]), "\u{FFFD}")
        XCTAssertEqual(tokenizer.decode([163, 67, 119, 119]), "\u{FFFD}a\u{FFFD}\u{FFFD}")
    }

    func testAddedTokenStripsAndNormalizedPass() throws {
        let path = try edited("qwen2.tokenizer.json") { root in
            var added = root["added_tokens"] as? [[String: Any]] ?? []
            added.append(["id": 1500, "content": "<mask>", "single_word": false, "lstrip": true, "rstrip": true, "normalized": false, "special": false])
            added.append(["id": 1501, "content": "<norm>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": false])
            // Already a vocabulary token (the byte symbol for 0xE9): keeps id 168 whatever the entry says.
            added.append(["id": 1502, "content": "é", "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": false])
            root["added_tokens"] = added
            root["normalizer"] = ["type": "NFC"]
        }
        let tokenizer = try BPETokenizer(tokenizerJSON: path)
        XCTAssertEqual(tokenizer.encode("a <mask>  b"), [67, 1500, 68])
        XCTAssertEqual(tokenizer.encode("x\t<mask>\ny"), [90, 1500, 91])
        XCTAssertEqual(tokenizer.encode("cafe\u{301}<norm>e\u{301}"), [69, 673, 168, 1501, 168])
        XCTAssertEqual(tokenizer.encode("<mask><mask>"), [1500, 1500])
        XCTAssertEqual(tokenizer.encode("<norm<mask>m>"), [30, 80, 279, 79, 1500, 79, 32])
        XCTAssertEqual(tokenizer.id(of: "é"), 168)
        XCTAssertEqual(tokenizer.vocabularySize, 1502)
    }

    func testByteLevelPrefixSpace() throws {
        let path = try edited("gpt2.tokenizer.json") { root in
            var pre = root["pre_tokenizer"] as? [String: Any] ?? [:]
            pre["add_prefix_space"] = true
            root["pre_tokenizer"] = pre
        }
        let tokenizer = try BPETokenizer(tokenizerJSON: path)
        XCTAssertEqual(tokenizer.encode("hello world"), [855, 1263, 81, 697])
        XCTAssertEqual(tokenizer.encode("<|im_start|>hi there<|im_end|>"), [1, 334, 75, 836, 2])
        XCTAssertEqual(tokenizer.encode(" x"), [736])
    }

    /// Digits grouped (`individual_digits: false`), then ByteLevel giving each piece its own prefix space.
    func testDigitRunsThenPrefixSpacedByteLevel() throws {
        let path = try edited("gpt2.tokenizer.json") { root in
            root["pre_tokenizer"] = ["type": "Sequence", "pretokenizers": [
                ["type": "Digits", "individual_digits": false],
                ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            ]]
        }
        let tokenizer = try BPETokenizer(tokenizerJSON: path)
        XCTAssertEqual(tokenizer.preTokenizer, PreTokenizer(splits: [.digits(individual: false)], addPrefixSpace: true, byteLevelRegex: true))
        XCTAssertEqual(tokenizer.encode("abc 12345 x9y"), [380, 68, 69, 223, 330, 1335, 374, 736, 382, 223, 91])
        XCTAssertEqual(tokenizer.encode("<|im_start|>42<|im_end|> 7"), [1, 1433, 2, 223, 528])
    }

    func testUnsupportedTokenizerJSONNamesFileAndKey() throws {
        let cases: [(String, (inout [String: Any]) -> Void, String)] = [
            ("model.type", { $0["model"] = ["type": "WordPiece"] }, "model.type: WordPiece is not supported (only BPE)"),
            ("pre_tokenizer", { $0["pre_tokenizer"] = ["type": "Metaspace"] },
             "pre_tokenizer.type: Metaspace is not supported (ByteLevel, or a Sequence of Split/Digits then ByteLevel)"),
            ("regex", { root in
                var pre = root["pre_tokenizer"] as? [String: Any] ?? [:]
                var steps = pre["pretokenizers"] as? [[String: Any]] ?? []
                steps[0]["pattern"] = ["Regex": "\\w+"]
                pre["pretokenizers"] = steps
                root["pre_tokenizer"] = pre
            }, "pre_tokenizer.pretokenizers[0].pattern.Regex: \\w+ is not one of the implemented regexes (GPT-2, Llama 3, Qwen2)"),
            ("decoder", { $0["decoder"] = NSNull() }, "decoder: only the ByteLevel decoder is supported, not null"),
            ("byte_fallback", { root in
                var model = root["model"] as? [String: Any] ?? [:]
                model["byte_fallback"] = true
                root["model"] = model
            }, "model.byte_fallback: byte fallback is not supported (byte-level BPE needs none)"),
        ]
        for (label, edit, reason) in cases {
            let path = try edited("llama3.tokenizer.json", edit)
            XCTAssertThrowsError(try BPETokenizer(tokenizerJSON: path), label) { error in
                XCTAssertEqual(error as? CermError, .io(path: path, reason: reason), label)
            }
        }
        XCTAssertThrowsError(try BPETokenizer(tokenizerJSON: "/nonexistent/tokenizer.json")) { error in
            guard case let .io(path, _) = error as? CermError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, "/nonexistent/tokenizer.json")
        }
    }

    func testGGUFMetadataErrors() {
        let tokens = ["a", "b", "ab"]
        XCTAssertThrowsError(try BPETokenizer(ggufTokens: tokens, merges: ["a b"], tokenTypes: [1, 1, 1], pre: "tekken",
                                              bosID: nil, eosID: nil, padID: nil, unkID: nil, source: "m.gguf")) { error in
            XCTAssertEqual(error as? CermError, .io(path: "m.gguf", reason: "tokenizer.ggml.pre: \"tekken\" is not a supported pre-tokenizer (llama-bpe, qwen2, gpt2, smollm, …)"))
        }
        XCTAssertThrowsError(try BPETokenizer(ggufTokens: tokens, merges: ["a c"], tokenTypes: [1, 1, 1], pre: "gpt2",
                                              bosID: nil, eosID: nil, padID: nil, unkID: nil, source: "m.gguf")) { error in
            XCTAssertEqual(error as? CermError, .io(path: "m.gguf", reason: "merge 0 \"a c\" uses a token that is not in the vocabulary"))
        }
        XCTAssertThrowsError(try BPETokenizer(ggufTokens: tokens, merges: ["a b"], tokenTypes: [1, 1, 1], pre: "gpt2",
                                              bosID: 7, eosID: nil, padID: nil, unkID: nil, source: "m.gguf")) { error in
            XCTAssertEqual(error as? CermError, .io(path: "m.gguf", reason: "bos id 7 is outside the vocabulary of 3"))
        }
    }

    /// Llama 3 keeps a word that is itself a token whole even where the merges would not build it.
    func testIgnoreMergesKeepsVocabularyWords() throws {
        let tokens = ["a", "b", "c", "ab", "abc"]
        let merges = ["a b"]
        let merging = try BPETokenizer(ggufTokens: tokens, merges: merges, tokenTypes: [], pre: "qwen2",
                                       bosID: nil, eosID: nil, padID: nil, unkID: nil, source: "m.gguf")
        let ignoring = try BPETokenizer(ggufTokens: tokens, merges: merges, tokenTypes: [], pre: "llama-bpe",
                                        bosID: nil, eosID: nil, padID: nil, unkID: nil, source: "m.gguf")
        XCTAssertEqual(merging.encode("abc"), [3, 2])
        XCTAssertEqual(ignoring.encode("abc"), [4])
    }

    /// A pair listed twice counts at its later rank, as in `tokenizers` (`[a b, b c, a b]`: "abc" → a, bc).
    func testRepeatedMergeTakesItsLaterRank() throws {
        let vocabulary: [String: TokenID] = ["a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4]
        let once = try BPETokenizer(vocabulary: vocabulary, merges: [("a", "b"), ("b", "c")], addedTokens: [],
                                    preTokenizer: .gpt2, source: "test")
        let twice = try BPETokenizer(vocabulary: vocabulary, merges: [("a", "b"), ("b", "c"), ("a", "b")], addedTokens: [],
                                     preTokenizer: .gpt2, source: "test")
        XCTAssertEqual(once.encode("abc"), [3, 2])
        XCTAssertEqual(twice.encode("abc"), [0, 4])
    }
}

/// Arbitrary text and damaged files: never a crash, text always round-trips, damage is an error naming the file.
final class BPERobustnessTests: XCTestCase {

    func testRandomScalarsRoundTrip() throws {
        var generator = SplitMix64(seed: 23)
        let tokenizers = try ["gpt2", "llama3", "qwen2"].map { try BPETokenizer(tokenizerJSON: TokenizerFixtures.path("\($0).tokenizer.json")) }
        for _ in 0..<300 {
            var text = String.UnicodeScalarView()
            for _ in 0..<Int.random(in: 0..<40, using: &generator) {
                // Mostly ASCII and common planes, sometimes anywhere in Unicode (surrogates excluded).
                let bound: UInt32 = Bool.random(using: &generator) ? 0x80 : (Bool.random(using: &generator) ? 0x3000 : 0x11_0000)
                if let scalar = Unicode.Scalar(UInt32.random(in: 0..<bound, using: &generator)) { text.append(scalar) }
            }
            let string = String(text)
            for tokenizer in tokenizers {
                XCTAssertEqual(tokenizer.decode(tokenizer.encode(string)), string, string.debugDescription)
            }
        }
    }

    func testDamagedTokenizerJSONIsAnErrorNamingTheFile() throws {
        let original = try Data(contentsOf: URL(fileURLWithPath: TokenizerFixtures.path("llama3.tokenizer.json")))
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cerm-tokenizer-fuzz-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("tokenizer.json").path
        var generator = SplitMix64(seed: 7)
        var errors = 0
        for _ in 0..<60 {
            var damaged = original
            if Bool.random(using: &generator) {
                damaged = damaged.prefix(Int.random(in: 0..<original.count, using: &generator))
            } else {
                for _ in 0..<4 { damaged[Int.random(in: 0..<damaged.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator) }
            }
            try damaged.write(to: URL(fileURLWithPath: path))
            do {
                _ = try BPETokenizer(tokenizerJSON: path)
            } catch let error as CermError {
                guard case let .io(errorPath, _) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(errorPath, path)
                errors += 1
            }
        }
        XCTAssertGreaterThan(errors, 30)
    }
}

/// Shared's SplitMix64 as the standard library's generator protocol, so a failure reproduces.
extension SplitMix64: RandomNumberGenerator {}
