@testable import Configuration
@testable import Coordinator
@testable import Datasets
import Method
import Foundation
@testable import Method
@testable import Shared
import TestSupport
import Testing

@Suite struct DatasetPairSourceTests {
    static func pairs(_ count: Int) -> [PreferencePair] {
        (0..<count).map { PreferencePair(id: "p\($0)", query: "q\($0)", chosen: "good \($0)", rejected: "bad \($0)") }
    }

    /// Fisher–Yates written out independently of the source: i from n−1 down to 1, j uniform in 0...i.
    static func expectedPermutation(count: Int, seed: UInt64) -> [Int] {
        var order = Array(0..<count)
        var generator = SplitMix64(seed: seed)
        var i = count - 1
        while i > 0 {
            order.swapAt(i, generator.below(i + 1))
            i -= 1
        }
        return order
    }

    @Test func epochsArePermutationsSeededByRunSeedAndEpoch() throws {
        var source = try DatasetPairSource(pairs: Self.pairs(10), runSeed: 11)
        let seed0 = DatasetPairSource.permutationSeed(runSeed: 11, epoch: 0)
        #expect(source.cursor == DataCursor(epoch: 0, position: 0, permutationSeed: seed0))
        let epoch0 = try source.nextBatch(count: 10)
        #expect(epoch0.map { Int($0.pairID) } == Self.expectedPermutation(count: 10, seed: seed0))
        #expect(Set(epoch0.map(\.pairID)) == Set(0..<10))
        let first = try #require(epoch0.first)
        #expect(first.query == "q\(first.pairID)")
        #expect(first.responses == ["good \(first.pairID)", "bad \(first.pairID)"])

        let epoch1 = try source.nextBatch(count: 10)
        let seed1 = DatasetPairSource.permutationSeed(runSeed: 11, epoch: 1)
        #expect(seed1 != seed0)
        #expect(epoch1.map { Int($0.pairID) } == Self.expectedPermutation(count: 10, seed: seed1))
        #expect(epoch1.map(\.pairID) != epoch0.map(\.pairID))
        #expect(source.cursor == DataCursor(epoch: 1, position: 10, permutationSeed: seed1))

        var again = try DatasetPairSource(pairs: Self.pairs(10), runSeed: 11)
        #expect(try again.nextBatch(count: 10) == epoch0)
        var otherSeed = try DatasetPairSource(pairs: Self.pairs(10), runSeed: 12)
        #expect(try otherSeed.nextBatch(count: 10).map(\.pairID) != epoch0.map(\.pairID))
    }

    @Test func batchesSpanEpochBoundariesWithoutRepeatingAPair() throws {
        let count = 5
        var source = try DatasetPairSource(pairs: Self.pairs(count), runSeed: 3)
        let p0 = Self.expectedPermutation(count: count, seed: DatasetPairSource.permutationSeed(runSeed: 3, epoch: 0))
        let seed1 = DatasetPairSource.permutationSeed(runSeed: 3, epoch: 1)
        let p1 = Self.expectedPermutation(count: count, seed: seed1)
        #expect(try source.nextBatch(count: 4).map { Int($0.pairID) } == Array(p0[0..<4]))
        // The last pair of epoch 0, then epoch 1 from its start, skipping that pair if it comes up.
        var expected = [p0[4]]
        var position = 0
        while expected.count < 4 {
            if !expected.contains(p1[position]) { expected.append(p1[position]) }
            position += 1
        }
        let spanning = try source.nextBatch(count: 4)
        #expect(spanning.map { Int($0.pairID) } == expected)
        #expect(Set(spanning.map(\.pairID)).count == 4)
        #expect(source.cursor == DataCursor(epoch: 1, position: position, permutationSeed: seed1))
    }

    @Test func restoreMidEpochContinuesIdentically() throws {
        var source = try DatasetPairSource(pairs: Self.pairs(7), runSeed: 21)
        _ = try source.nextBatch(count: 3)
        _ = try source.nextBatch(count: 3)
        let saved = source.cursor
        #expect(saved.epoch == 0 && saved.position == 6)
        let continuation = try (0..<4).map { _ in try source.nextBatch(count: 3) }

        var resumed = try DatasetPairSource(pairs: Self.pairs(7), runSeed: 21)
        try resumed.restore(cursor: saved)
        #expect(resumed.cursor == saved)
        #expect(try (0..<4).map { _ in try resumed.nextBatch(count: 3) } == continuation)
        #expect(resumed.cursor == source.cursor)
    }

    @Test func refusesImpossibleRequestsAndCursors() throws {
        var source = try DatasetPairSource(pairs: Self.pairs(3), runSeed: 1, source: "train.jsonl")
        #expect(throws: CermError.io(path: "train.jsonl", reason: "grpo.pairs_per_batch = 4 exceeds the 3 pairs of the file; a batch cannot hold a pair twice")) {
            _ = try source.nextBatch(count: 4)
        }
        #expect(throws: CermError.io(path: "train.jsonl", reason: "data cursor epoch 0 position 4 does not fit the 3 pairs of the file (was the data changed?)")) {
            try source.restore(cursor: DataCursor(epoch: 0, position: 4, permutationSeed: 9))
        }
        #expect(throws: CermError.io(path: "empty.jsonl", reason: "data.train holds no preference pairs")) {
            _ = try DatasetPairSource(pairs: [], runSeed: 1, source: "empty.jsonl")
        }
    }

    @Test func linesSkippedBySkipBadAreReportedAndTheListIsCapped() throws {
        let directory = try makeTemporaryDirectory("pairs-bad")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = (directory as NSString).appendingPathComponent("train.jsonl")
        let good = Self.pairs(4).map(\.jsonLine)
        try ([good[0], good[1], #"{"id": "x", "query": "q"}"#, good[2], "not json", good[3]].joined(separator: "\n") + "\n")
            .write(toFile: path, atomically: true, encoding: .utf8)
        var config = Config()
        config.data.train = path
        config.data.skipBad = true
        let source = try DatasetPairSource(config: config, chat: ByteChat())
        #expect(source.pairs == Self.pairs(4))
        #expect(source.skippedLinesReport() == [
            "data.skip_bad: skipped 2 bad lines of \(path); training on the other 4 pairs",
            "skipped \(path):3: chosen: missing",
            "skipped \(path):5: line: malformed JSON at byte 1: unexpected character",
        ])
        #expect(source.skippedLinesReport(limit: 1) == [
            "data.skip_bad: skipped 2 bad lines of \(path); training on the other 4 pairs",
            "skipped \(path):3: chosen: missing",
            "and 1 more skipped lines (`cerm data check --skip-bad \(path)` lists them all)",
        ])
    }

    @Test func loadsTheConfiguredFile() throws {
        let directory = try makeTemporaryDirectory("pairs")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = (directory as NSString).appendingPathComponent("train.jsonl")
        let pairs = Self.pairs(4)
        try (pairs.map(\.jsonLine).joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        var config = Config()
        config.data.train = path
        config.run.seed = 5
        config.curation.enabled = false
        let source = try DatasetPairSource(config: config, chat: ByteChat())
        #expect(source.pairs == pairs)
        #expect(source.runSeed == 5)
        #expect(source.skipped == [] && source.skippedLinesReport() == [])
        // With curation the same pairs come from curation.output instead.
        config.curation.enabled = true
        config.curation.output = path
        config.data.train = "/nonexistent/train.jsonl"
        #expect(try DatasetPairSource(config: config, chat: ByteChat()).pairs == pairs)
    }

    /// A pair whose prompts cannot fit `model.max_seq_len` before generating is a data error
    /// naming file, line and field; under `data.skip_bad` it is skipped and reported like any
    /// bad line, and the other pairs load.
    @Test func pairsWhosePromptsCannotFitAreDataErrors() throws {
        let directory = try makeTemporaryDirectory("pairs-fit")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = (directory as NSString).appendingPathComponent("train.jsonl")
        var config = Config()
        config.data.train = path
        config.curation.enabled = false
        config.model.maxSeqLen = 128
        let long = String(repeating: "x", count: 200)
        let pairs = [
            PreferencePair(id: "a", query: "fine", chosen: "good", rejected: "bad"),
            PreferencePair(id: "b", query: long, chosen: "good", rejected: "bad"),
            PreferencePair(id: "c", query: "fine", chosen: "good", rejected: long),
            PreferencePair(id: "d", query: "also fine", chosen: "good", rejected: "bad"),
        ]
        try (pairs.map(\.jsonLine).joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        let format = makePromptFormat(config.rollout.format)
        let criteria = format.criteriaPrompt(query: long).count
        let evaluation = format.evaluationPrompt(criteriaPrompt: format.criteriaPrompt(query: "fine"), criteriaOutput: [], response: long).count
        #expect(criteria > 128 && evaluation > 128)
        let lineTwo = DataError(file: path, line: 2, field: "query", message: "the criteria prompt needs \(criteria) tokens, model.max_seq_len is 128")
        let lineThree = DataError(file: path, line: 3, field: "rejected", message: "the evaluation prompt needs \(evaluation) tokens, model.max_seq_len is 128")
        #expect(lineTwo.description == "\(path):2: query: the criteria prompt needs \(criteria) tokens, model.max_seq_len is 128")
        #expect(throws: lineTwo) { _ = try DatasetPairSource(config: config, chat: ByteChat()) }

        config.data.skipBad = true
        let skipping = try DatasetPairSource(config: config, chat: ByteChat())
        #expect(skipping.pairs == [pairs[0], pairs[3]])
        #expect(skipping.skipped == [lineTwo, lineThree])
        #expect(skipping.skippedLinesReport().last == "skipped \(lineThree)")
        let loaded = try PreferenceLoader(skipBad: true, recordCheck: DatasetPairSource.promptFitCheck(config: config, chat: ByteChat())).loadPairs(path: path)
        #expect(loaded.report.skipped == [lineTwo, lineThree])

        // par mode checks the judgment prompts instead.
        config.reward.mode = .par
        config.model.maxSeqLen = 400
        let judgment = ParFormat().prompt(query: "fine", response: long).count
        let check = DatasetPairSource.promptFitCheck(config: config, chat: ByteChat())
        #expect(check(.pair(pairs[2]))?.field == "rejected")
        #expect(check(.pair(pairs[2]))?.message == "the judgment prompt needs \(judgment) tokens, model.max_seq_len is 400")
        #expect(check(.pair(pairs[0])) == nil)
    }
}
