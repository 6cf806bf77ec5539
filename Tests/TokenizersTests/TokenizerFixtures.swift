import Foundation
import Shared
import Tokenizers
import XCTest

/// The committed parity fixtures (written by scripts/make_tokenizer_fixtures.py) and the SmolLM2
/// tokenizer cache (scripts/cache_smollm2_tokenizer.py).
enum TokenizerFixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let smolLM2Cache = repositoryRoot.appendingPathComponent(".cache/models/smollm2/tokenizer.json").path

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

    /// The SmolLM2 tokenizer.json, or a skip that says how to make it.
    static func smolLM2Path() throws -> String {
        guard FileManager.default.fileExists(atPath: smolLM2Cache) else {
            throw XCTSkip("\(smolLM2Cache) is absent: run /work/venv-ref/bin/python scripts/cache_smollm2_tokenizer.py (needs the SmolLM2 GGUF)")
        }
        return smolLM2Cache
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
