import Foundation
import Testing
@testable import Engine
import Shared

/// `ParityFixture` and `ParityComparison` on small fixtures written here in the layout of
/// `scripts/reference_smollm2.py` (the real check runs in `make test-pretrained`).
@Suite struct ParityFixtureTests {
    static let vocab = 40
    static let topK = 4
    static let sample = [1, 7, 19, 33]

    /// Deterministic logits `[positions · vocab]` with one clear maximum per position.
    static func logits(positions: Int, seed: Int) -> [Float] {
        (0..<(positions * vocab)).map { index in
            let position = index / vocab, id = index % vocab
            let wave = Float(sin(Double(index * 7 + seed * 13)) * 3)
            return id == (position * 5 + seed) % vocab ? 12 + Float(position) : wave
        }
    }

    /// Writes a fixture whose reference is `prompts` (tokens, their logits, greedy tokens) into a
    /// fresh directory and returns its path.
    static func writeFixture(_ prompts: [(tokens: [TokenID], logits: [Float], greedy: [TokenID])], greedyCount: Int,
                             name: String = #function) throws -> String {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("cerm-parity-\(name.filter(\.isLetter))-\(getpid())").path
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var floats: [Float] = [], ids: [Int32] = [], index: [[String: Any]] = [], offset = 0
        for prompt in prompts {
            for position in 0..<prompt.tokens.count {
                let row = Array(prompt.logits[(position * vocab)..<((position + 1) * vocab)])
                let top = row.indices.sorted { row[$0] > row[$1] }.prefix(topK)
                floats.append(row.map { abs($0) }.max()!)
                floats += top.map { row[$0] }
                floats += sample.map { row[$0] }
                ids += top.map { Int32($0) }
            }
            index.append(["tokens": prompt.tokens, "row_offset": offset, "greedy_tokens": prompt.greedy,
                          "greedy_first_end_of_turn": NSNull(),
                          "greedy_margins": prompt.greedy.indices.map { 0.25 + Double($0) }])
            offset += prompt.tokens.count
        }
        let json: [String: Any] = [
            "generator": "ParityFixtureTests", "top_k": topK, "vocab_sample": sample, "greedy_tokens": greedyCount,
            "rows": offset, "prompts": index,
            "model": ["file": "tiny.gguf", "sha256": "00", "vocab_size": vocab, "end_of_turn": 3],
        ]
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: directory + "/reference.json"))
        try floats.withUnsafeBytes { Data($0) }.write(to: URL(fileURLWithPath: directory + "/logits.f32"))
        try ids.withUnsafeBytes { Data($0) }.write(to: URL(fileURLWithPath: directory + "/top_ids.i32"))
        return directory
    }

    static func twoPromptFixture(name: String = #function) throws -> (String, [[Float]]) {
        let logits = [logits(positions: 3, seed: 1), logits(positions: 5, seed: 2)]
        let directory = try writeFixture([([5, 6, 7], logits[0], [9, 8]), ([1, 2, 3, 4, 5], logits[1], [3, 3])],
                                         greedyCount: 2, name: name)
        return (directory, logits)
    }

    @Test func identicalLogitsAgreeExactly() throws {
        let (directory, logits) = try Self.twoPromptFixture()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let fixture = try ParityFixture(directory: directory)
        #expect(fixture.prompts.map(\.tokens.count) == [3, 5])
        #expect(fixture.row(prompt: 1, position: 0).topIDs.first == 2)
        for prompt in 0..<2 {
            let agreement = try ParityComparison.logits(logits[prompt], prompt: prompt, fixture: fixture)
            #expect(agreement.maxRelativeDifference == 0)
            #expect(agreement.argmaxDisagreements == 0)
            #expect(agreement.isWithin(ParityComparison.relativeTolerance))
        }
    }

    @Test func aDifferenceAtAStoredEntryBeyondToleranceIsFoundWithItsPositionAndId() throws {
        let (directory, logits) = try Self.twoPromptFixture()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let fixture = try ParityFixture(directory: directory)
        var changed = logits[1]
        let maxAbs = fixture.row(prompt: 1, position: 3).maxAbsoluteLogit
        changed[3 * Self.vocab + 19] += 2e-3 * maxAbs  // a sampled id at position 3
        let agreement = try ParityComparison.logits(changed, prompt: 1, fixture: fixture)
        #expect(!agreement.isWithin(ParityComparison.relativeTolerance))
        #expect(agreement.worstPosition == 3)
        #expect(agreement.worstEntry == "id 19")
        #expect(abs(agreement.maxRelativeDifference - 2e-3) < 1e-5)

        // Within tolerance, it passes (the bound is relative to max|logit|).
        changed[3 * Self.vocab + 19] = logits[1][3 * Self.vocab + 19] + 5e-4 * maxAbs
        #expect(try ParityComparison.logits(changed, prompt: 1, fixture: fixture).isWithin(ParityComparison.relativeTolerance))
    }

    @Test func aLargerMaximumAnywhereInTheVocabularyIsCaughtByMaxAbsoluteLogit() throws {
        let (directory, logits) = try Self.twoPromptFixture()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let fixture = try ParityFixture(directory: directory)
        var changed = logits[0]
        let unstored = (0..<Self.vocab).first { id in
            !Self.sample.contains(id) && !fixture.row(prompt: 0, position: 1).topIDs.contains(Int32(id))
        }!
        changed[1 * Self.vocab + unstored] = 100  // a new maximum at an id the fixture does not store
        let agreement = try ParityComparison.logits(changed, prompt: 0, fixture: fixture)
        #expect(agreement.worstPosition == 1)
        #expect(agreement.worstEntry == "max|logit|")
        #expect(agreement.argmaxDisagreements == 1)
        #expect(!agreement.isWithin(ParityComparison.relativeTolerance))
    }

    @Test func aNonFiniteLogitFails() throws {
        let (directory, logits) = try Self.twoPromptFixture()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let fixture = try ParityFixture(directory: directory)
        var changed = logits[0]
        changed[2 * Self.vocab + 11] = .nan
        let agreement = try ParityComparison.logits(changed, prompt: 0, fixture: fixture)
        #expect(agreement.maxRelativeDifference == .infinity)
        #expect(agreement.worstPosition == 2)
        #expect(agreement.worstEntry == "id 11 is nan")
        #expect(throws: CermError.self) { try ParityComparison.logits(Array(changed.dropLast()), prompt: 0, fixture: fixture) }
    }

    @Test func greedyDivergenceNamesTheStepAndTheReferenceMargin() throws {
        let (directory, _) = try Self.twoPromptFixture()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let fixture = try ParityFixture(directory: directory)
        #expect(ParityComparison.greedy([9, 8], prompt: 0, fixture: fixture).isIdentical)
        let differs = ParityComparison.greedy([9, 7], prompt: 0, fixture: fixture)
        #expect(differs.firstDivergence == 1)
        #expect(differs.referenceMarginAtDivergence == 1.25)
        #expect(ParityComparison.greedy([9], prompt: 0, fixture: fixture).firstDivergence == 1)
        #expect(ParityComparison.greedy([9, 8, 1], prompt: 0, fixture: fixture).firstDivergence == 2)
    }

    @Test func damagedFixturesAreRefusedNamingTheFile() throws {
        let (directory, _) = try Self.twoPromptFixture()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let logitsPath = directory + "/logits.f32"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: logitsPath))
        try bytes.dropLast(4).write(to: URL(fileURLWithPath: logitsPath))
        let truncated = #expect(throws: CermError.self) { try ParityFixture(directory: directory) }
        #expect(String(describing: truncated).contains("logits.f32: 284 bytes"))
        try bytes.write(to: URL(fileURLWithPath: logitsPath))
        _ = try ParityFixture(directory: directory)

        let indexPath = directory + "/reference.json"
        let index = try String(contentsOfFile: indexPath, encoding: .utf8)
        try index.replacingOccurrences(of: "\"rows\":8", with: "\"rows\":9").write(toFile: indexPath, atomically: true, encoding: .utf8)
        let rows = #expect(throws: CermError.self) { try ParityFixture(directory: directory) }
        #expect(String(describing: rows).contains("reference.json: the prompts have 8 positions, rows says 9"))
        try "{".write(toFile: indexPath, atomically: true, encoding: .utf8)
        let json = #expect(throws: CermError.self) { try ParityFixture(directory: directory) }
        #expect(String(describing: json).contains("reference.json: not a parity fixture index"))
        let missing = #expect(throws: CermError.self) { try ParityFixture(directory: directory + "/missing") }
        #expect(String(describing: missing).contains("missing/reference.json: cannot read"))
    }
}
