@testable import Configuration
@testable import Coordinator
@testable import Datasets
import Method
import Foundation
@testable import Method
@testable import Shared
import Testing

@Suite("Curation (CE-RM's uncertainty filter before RL)")
struct CurationTests {
    /// Pairs whose responses the scripted judge scores, per criteria sample (k = 4):
    /// sampled accuracies 1, ½, 0.625, 0, 0.75 and 0.25.
    static let scores: [String: [Double?]] = [
        "a+": [8, 8, 8, 8], "a-": [2, 2, 2, 2],          // 1
        "b+": [8, 2, 8, 2], "b-": [5, 5, 5, 5],          // ½
        "c+": [5, 5, nil, 1], "c-": [5, 3, 3, nil],      // ½ + 1 + 0 + 1 = 0.625
        "d+": [1, 1, 1, 1], "d-": [9, 9, 9, 9],          // 0
        "e+": [6, 6, 6, 4], "e-": [5, 5, 5, 5],          // 0.75
        "f+": [6, 4, 4, 4], "f-": [5, 5, 5, 5],          // 0.25
    ]
    static let pairs = [
        PreferencePair(id: "a", query: "qa", chosen: "a+", rejected: "a-", taskType: "x"),
        PreferencePair(id: "b", query: "qb", chosen: "b+", rejected: "b-", taskType: "x"),
        PreferencePair(id: "c", query: "qc", chosen: "c+", rejected: "c-", taskType: "y"),
        PreferencePair(id: "d", query: "qd", chosen: "d+", rejected: "d-", taskType: "y"),
        PreferencePair(id: "e", query: "qe", chosen: "e+", rejected: "e-", taskType: "x"),
        PreferencePair(id: "f", query: "qf", chosen: "f+", rejected: "f-", taskType: "x"),
    ]

    func curate(_ options: CurationOptions, threads: Int = 1) throws -> CurationResult {
        var result = try Curation.run(pairs: Self.pairs, options: options, format: CompactFormat(), threads: threads,
                                      makeBackend: { ScriptedJudge(scores: Self.scores) })
        result.seconds = 0
        return result
    }

    @Test("a pair's accuracy is its mean pairwise credit over the samples: hand-computed values")
    func accuracy() {
        #expect(Curation.credits(chosen: [5, 5, nil, 1], rejected: [5, 3, 3, nil]) == [0.5, 1, 0, 1])
        let pair = Self.pairs[0]
        #expect(ScreenedPair(index: 0, pair: pair, credits: [0.5, 1, 0, 1]).accuracy == 0.625)
        #expect(ScreenedPair(index: 0, pair: pair, credits: [0.5, 0]).accuracy == 0.25)
        #expect(ScreenedPair(index: 0, pair: pair, credits: []).accuracy == 0)
        #expect(ScreenedPair(index: 0, pair: pair, credits: [0.5, 1]).judgmentsDisagree)
        #expect(!ScreenedPair(index: 0, pair: pair, credits: [0.5, 0.5, 0.5]).judgmentsDisagree)
    }

    @Test("keeps accuracy ≤ max_accuracy (inclusive, CE-RM's 0.6) and ≥ min_accuracy")
    func threshold() throws {
        let result = try curate(CurationOptions(candidates: 100, samples: 4, seed: 3))
        #expect(Dictionary(uniqueKeysWithValues: result.screened.map { ($0.pair.id, $0.accuracy) })
                == ["a": 1, "b": 0.5, "c": 0.625, "d": 0, "e": 0.75, "f": 0.25])
        #expect(Set(result.kept.map(\.pair.id)) == ["b", "d", "f"])
        let atBoundary = try curate(CurationOptions(candidates: 100, samples: 4, maxAccuracy: 0.625, seed: 3))
        #expect(Set(atBoundary.kept.map(\.pair.id)) == ["b", "c", "d", "f"])
        let withFloor = try curate(CurationOptions(candidates: 100, samples: 4, minAccuracy: 0.25, seed: 3))
        #expect(Set(withFloor.kept.map(\.pair.id)) == ["b", "f"])
        // d is judged wrong by every sample: no disagreement, nothing for GRPO to contrast.
        let disagreeing = try curate(CurationOptions(candidates: 100, samples: 4, maxAccuracy: 1, requireDisagreement: true, seed: 3))
        #expect(Set(disagreeing.kept.map(\.pair.id)) == ["b", "c", "e", "f"])
        // Indices point into the training pairs.
        #expect(result.kept.allSatisfy { Self.pairs[$0.index] == $0.pair })
    }

    @Test("kept pairs interleave the task types; the result does not depend on the thread count")
    func interleavedAndThreadIndependent() throws {
        let options = CurationOptions(candidates: 100, samples: 4, seed: 3)
        let one = try curate(options, threads: 1)
        let two = try curate(options, threads: 2)
        #expect(one == two)
        // Kept: b, f (type x) and d (type y): the first two kept pairs are of different types.
        #expect(Set(one.kept.prefix(2).map(\.pair.taskType)) == ["x", "y"])
        #expect(one.byTaskType.map(\.type) == Curation.taskTypes(one.screened.map(\.pair)))
        let x = try #require(one.byTaskType.first { $0.type == "x" })
        #expect(x.screened == 4 && x.kept == 2 && x.meanAccuracy == (1 + 0.5 + 0.75 + 0.25) / 4)
    }

    @Test("candidates are balanced across task types, seeded, and all pairs when there are fewer")
    func candidates() {
        let pairs = (0..<10).map { PreferencePair(id: "a\($0)", query: "q", chosen: "c", rejected: "r", taskType: "a") }
            + (0..<2).map { PreferencePair(id: "b\($0)", query: "q", chosen: "c", rejected: "r", taskType: "b") }
        let six = Curation.candidates(pairs, count: 6, seed: 1)
        #expect(six.count == 6 && Set(six).count == 6)
        #expect(six.filter { pairs[$0].taskType == "b" }.count == 2, "the short type is used up before the other fills in")
        #expect(Curation.candidates(pairs, count: 6, seed: 1) == six)
        #expect(Curation.candidates(pairs, count: 6, seed: 2) != six)
        #expect(Set(Curation.candidates(pairs, count: 100, seed: 1)) == Set(pairs.indices))
    }

    @Test("the curated file is canonical pairs the loader reads back, with their accuracy")
    func fileRoundTrip() throws {
        let result = try curate(CurationOptions(candidates: 100, samples: 4, seed: 3))
        let path = NSTemporaryDirectory() + "cerm-curated-\(UUID().uuidString).jsonl"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try result.jsonLines.write(toFile: path, atomically: true, encoding: .utf8)
        let loaded = try PreferenceLoader().loadPairs(path: path)
        #expect(loaded.report.format == .canonical)
        #expect(loaded.pairs == result.kept.map(\.pair))
        #expect(result.jsonLines.split(separator: "\n").map { $0.hasSuffix(",\"curation_accuracy\":\(result.kept[0].accuracy)}") }.first == true)
    }

    @Test("with curation enabled the coordinator's pairs come from curation.output; a missing file says what to run")
    func pairSource() throws {
        var config = Config()
        #expect(!config.curation.enabled && config.rlTrainPath == config.data.train)
        config.curation.enabled = true
        config.curation.output = NSTemporaryDirectory() + "cerm-missing-\(UUID().uuidString).jsonl"
        #expect(config.rlTrainPath == config.curation.output)
        do {
            _ = try DatasetPairSource(config: config, chat: ByteChat())
            Issue.record("expected a missing-file error")
        } catch let error as CermError {
            #expect("\(error)".contains("\(config.curation.output)"))
            #expect("\(error)".contains("run `cerm curate`"))
        }
    }
}
