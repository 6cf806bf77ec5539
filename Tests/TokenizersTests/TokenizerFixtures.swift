import Foundation
import ModelFormats
import Shared
import TestSupport
import Tokenizers
import XCTest

/// The committed parity fixtures (written by scripts/make_tokenizer_fixtures.py) and SmolLM2's
/// tokenizer read from its GGUF (`make fetch-model`).
enum TokenizerFixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// The corpus, one JSON string per line.
    static let corpus: [String] = (try? TokenizerBenchmark.texts(fromFile: path("corpus.jsonl"))) ?? []

    /// Reference ids, one line of space-separated ids per corpus line.
    static func ids(_ name: String) throws -> [[TokenID]] {
        let text = try String(contentsOfFile: path(name), encoding: .utf8)
        return text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map { line in
            line.split(separator: " ").compactMap { TokenID($0) }
        }
    }

    /// SmolLM2's GGUF tokenizer metadata, or a skip that says how to get the model.
    static func smolLM2Metadata() throws -> (path: String, metadata: GGUFTokenizerMetadata) {
        let path = try SmolLM2Model.requireGGUF()
        guard case let .gguf(metadata) = try ModelImport.tokenizerMaterial(path: path) else {
            throw XCTSkip("\(path) is not read as a GGUF file")
        }
        return (path, metadata)
    }

    /// SmolLM2's tokenizer from its GGUF with `preTokenizer` in place of the one its
    /// `tokenizer.ggml.pre` names (transformers' GGUF loader reads "smollm" as plain GPT-2).
    static func smolLM2(preTokenizer: PreTokenizer) throws -> BPETokenizer {
        let (path, metadata) = try smolLM2Metadata()
        return try TokenizerMaterial.gguf(metadata).tokenizer(source: path, preTokenizer: preTokenizer)
    }

    /// Compares `tokenizer` with the reference on every corpus line; reports the first differences.
    static func assertParity(_ tokenizer: BPETokenizer, _ reference: [[TokenID]], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertGreaterThanOrEqual(corpus.count, 2_000, "corpus.jsonl did not load", file: file, line: line)
        XCTAssertEqual(reference.count, corpus.count, "reference ids and corpus differ in length", file: file, line: line)
        var mismatches = 0
        for (text, expected) in zip(corpus, reference) {
            let ids = tokenizer.encode(text)
            if ids != expected {
                mismatches += 1
                if mismatches <= 5 { XCTFail("\(text.debugDescription): got \(ids), reference \(expected)", file: file, line: line) }
            }
        }
        XCTAssertEqual(mismatches, 0, "\(mismatches) of \(corpus.count) corpus lines differ from the reference", file: file, line: line)
    }

    static func assertRoundTrip(_ tokenizer: BPETokenizer, file: StaticString = #filePath, line: UInt = #line) {
        var failures = 0
        for text in corpus where tokenizer.decode(tokenizer.encode(text)) != text {
            failures += 1
            if failures <= 5 { XCTFail("\(text.debugDescription) decodes to \(tokenizer.decode(tokenizer.encode(text)).debugDescription)", file: file, line: line) }
        }
        XCTAssertEqual(failures, 0, "\(failures) corpus lines do not round-trip", file: file, line: line)
    }
}
