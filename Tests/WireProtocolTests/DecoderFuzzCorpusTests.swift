import DecoderFuzzing
import Foundation
import Testing
@testable import WireProtocol

/// The decoder fuzzer's committed inputs (docs/FUZZING.md) replayed through its property on
/// every `make test`: the seeds, the minimized corpus of the last `make fuzz`, and the inputs
/// that once crashed it (Fuzz/regressions/, each named after what it found).
@Suite struct DecoderFuzzCorpusTests {
    static let fuzzDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz")

    static func files(_ folder: String) throws -> [URL] {
        let directory = fuzzDirectory.appendingPathComponent(folder)
        return try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
            .filter { !$0.lastPathComponent.hasPrefix(".") }.sorted { $0.path < $1.path }
    }

    /// Fuzz/seeds is what `cerm-fuzz-decoder --write-seeds` writes, one valid message of every type.
    @Test func theCommittedSeedsAreTheGeneratedOnesAndCoverEveryMessageType() throws {
        let seeds = try DecoderFuzzing.seeds()
        let committed = try Self.files("seeds")
        #expect(committed.map(\.lastPathComponent).sorted() == seeds.map(\.name).sorted(),
                "Fuzz/seeds is stale: rerun `swift run cerm-fuzz-decoder --write-seeds Fuzz/seeds`")
        for seed in seeds {
            let file = Self.fuzzDirectory.appendingPathComponent("seeds/\(seed.name)")
            #expect(try Array(Data(contentsOf: file)) == seed.bytes, "Fuzz/seeds/\(seed.name)")
        }
        let types = try seeds.compactMap { try DecoderFuzzing.check($0.bytes)?.type }
        #expect(types.count == seeds.count, "every seed decodes")
        #expect(Set(types) == Set(MessageType.allCases))
    }

    /// The minimized corpus (never empty: `make fuzz` writes it), and Fuzz/regressions once a
    /// finding has put an input there.
    @Test func everyCommittedInputPassesTheProperty() throws {
        let corpus = try Self.files("corpus")
        #expect(!corpus.isEmpty, "Fuzz/corpus is empty")
        let regressions = FileManager.default.fileExists(atPath: Self.fuzzDirectory.appendingPathComponent("regressions").path)
            ? try Self.files("regressions") : []
        for file in corpus + regressions {
            #expect(throws: Never.self, "\(file.path)") { try DecoderFuzzing.check(Array(try Data(contentsOf: file))) }
        }
    }

    /// The property catches what it exists for: a decoded message whose bytes are not the
    /// input's (here a HELLO with a byte appended to its body and the length fixed up, which
    /// the decoder rejects, and the same HELLO decoding as itself).
    @Test func thePropertyRejectsTrailingBytesAndAcceptsTheExactEncoding() throws {
        let hello = try #require(try DecoderFuzzing.seeds().first { $0.name.hasPrefix("hello") }).bytes
        #expect(try DecoderFuzzing.check(hello)?.type == .hello)
        var longer = hello + [0]
        longer[8] &+= 1   // body_length, little-endian u32 at byte 8
        #expect(try DecoderFuzzing.check(longer) == nil)
        #expect(try DecoderFuzzing.check(Array(hello.dropLast())) == nil)
    }
}
