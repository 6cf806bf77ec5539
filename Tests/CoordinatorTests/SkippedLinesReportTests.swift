import Method
import Configuration
@testable import Coordinator
import Datasets
import Foundation
import TestSupport
import Testing

/// `cerm sft`, `cerm curate` and `cerm eval` report the lines `data.skip_bad` skipped, with the
/// report of ``LoadReport/skippedLinesReport(rest:limit:)`` the coordinator uses too.
@Suite struct SkippedLinesReportTests {
    /// A directory with `train.jsonl`: three synthetic-task pairs with two bad lines among
    /// them (line 2 lacks `chosen`, line 4 is not JSON), and a clean `bo.jsonl`.
    static func files(_ label: String) throws -> (directory: String, config: Config) {
        let directory = try makeTemporaryDirectory("skipped-\(label)")
        let dataset = SyntheticTask.generate(trainCount: 3, evalCount: 1, seed: 7, bestOfN: 2)
        let good = dataset.train.map(\.jsonLine)
        let train = (directory as NSString).appendingPathComponent("train.jsonl")
        try ([good[0], #"{"id": "x", "query": "q", "rejected": "r"}"#, good[1], "not json", good[2]].joined(separator: "\n") + "\n")
            .write(toFile: train, atomically: true, encoding: .utf8)
        let bon = (directory as NSString).appendingPathComponent("bo.jsonl")
        try (dataset.bestOfN.map(\.jsonLine).joined(separator: "\n") + "\n").write(toFile: bon, atomically: true, encoding: .utf8)
        var config = Config()
        config.data.train = train
        config.data.eval = train
        config.data.bestOfN = bon
        config.data.skipBad = true
        return (directory, config)
    }

    static func badLines(_ path: String) -> [String] {
        ["skipped \(path):2: chosen: missing", "skipped \(path):4: line: malformed JSON at byte 1: unexpected character"]
    }

    @Test func sftReportsTheSkippedLinesOfDataTrain() throws {
        let (directory, config) = try Self.files("sft")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var log: [String] = []
        let (traces, unsupported) = try SFTData.traces(config, format: makePromptFormat(config.rollout.format)) { log.append($0) }
        #expect(!traces.isEmpty && unsupported == 0)
        let train = config.data.train
        #expect(log == ["data.skip_bad: skipped 2 bad lines of \(train); SFT uses the teacher's traces of the other 3 records"]
                + Self.badLines(train))
    }

    @Test func curationReportsTheSkippedLinesOfDataTrain() throws {
        let (directory, config) = try Self.files("curate")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var log: [String] = []
        let pairs = try Curation.trainPairs(config: config) { log.append($0) }
        #expect(pairs.count == 3)
        let train = config.data.train
        #expect(log == ["data.skip_bad: skipped 2 bad lines of \(train); curation screens the other 3 records"] + Self.badLines(train))
    }

    /// One report per file with skipped lines; a clean file adds nothing.
    @Test func evaluationReportsTheSkippedLinesOfEachFile() throws {
        let (directory, config) = try Self.files("eval")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var log: [String] = []
        let items = try EvaluationItem.items(files: [config.data.eval, config.data.bestOfN], data: config.data, limit: nil) { log.append($0) }
        #expect(items.count == 4)
        let eval = config.data.eval
        #expect(log == ["data.skip_bad: skipped 2 bad lines of \(eval); evaluating the other 3 records"] + Self.badLines(eval))
    }

    /// At most `limit` lines, then how many more; nothing when nothing was skipped.
    @Test func theListIsCapped() {
        let errors = (1...3).map { DataError(file: "f.jsonl", line: $0, field: "query", message: "missing") }
        #expect(LoadReport.skippedLinesReport(file: "f.jsonl", skipped: errors, rest: "REST", limit: 2) == [
            "data.skip_bad: skipped 3 bad lines of f.jsonl; REST",
            "skipped f.jsonl:1: query: missing",
            "skipped f.jsonl:2: query: missing",
            "and 1 more skipped lines (`cerm data check --skip-bad f.jsonl` lists them all)",
        ])
        #expect(LoadReport.skippedLinesReport(file: "f.jsonl", skipped: Array(errors.prefix(1)), rest: "REST") == [
            "data.skip_bad: skipped 1 bad line of f.jsonl; REST", "skipped f.jsonl:1: query: missing",
        ])
        #expect(LoadReport.skippedLinesReport(file: "f.jsonl", skipped: [], rest: "REST") == [])
    }
}
