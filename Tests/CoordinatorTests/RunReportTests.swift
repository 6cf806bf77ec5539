import Configuration
import Foundation
import Runtime
import TestSupport
import FoundationXML
import Shared
import Testing
@testable import Coordinator

/// The report's content and structure, read back with a real XML parser (FoundationXML's
/// libxml2-based `XMLDocument`): the report is well-formed XHTML-compatible markup.
@Suite("Run report")
struct RunReportTests {
    static func step(_ step: Int, time: Double, stepSeconds: Double = 10) -> StepMetrics {
        let phase = Double(step) / 50
        return StepMetrics(step: step, policyVersion: UInt64(step - 1), time: time, meanCriteriaReward: 0.3 + 0.1 * sin(phase),
                           meanEvaluationReward: 0.4 + 0.05 * cos(phase), pairwiseAccuracy: 0.6 + 0.002 * Double(step % 100),
                           validFormatRate: 0.95, kl: 1e-3 * Double(step % 7 + 1), loss: -0.01, clipFraction: 0.02, entropy: 1.2,
                           gradNorm: 0.5, fracZeroStd: 0.25, generatedTokens: 4000 + step % 13, tokensPerSecond: 800,
                           trajectories: 40, waitRolloutsSeconds: stepSeconds * 0.6, updateSeconds: stepSeconds * 0.3,
                           weightDistributionSeconds: stepSeconds * 0.05, checkpointSeconds: step % 10 == 0 ? 0.5 : 0,
                           stepSeconds: stepSeconds, workersAlive: 2)
    }

    /// A run directory with `steps` steps 10 s apart from `start` in metrics.jsonl.
    static func writeRun(_ directory: String, steps: Int, start: Double = 1_700_000_000, extraLines: String = "") throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let lines = try (1...steps).map { try step($0, time: start + 10 * Double($0)).jsonLine() }
        try (lines.joined(separator: "\n") + "\n" + extraLines)
            .write(toFile: directory + "/metrics.jsonl", atomically: true, encoding: .utf8)
    }

    /// A `train.log` event line at Unix time `time`, as ``MetricsLogger`` writes it.
    static func eventLine(_ event: ClusterEvent, time: Double) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return "\(formatter.string(from: Date(timeIntervalSince1970: time))) INFO  [train] \(event.line)"
    }

    static func document(_ html: String) throws -> XMLDocument {
        try XMLDocument(data: Data(html.utf8), options: [])
    }

    /// Elements named `name` (any namespace), optionally with `class` containing `className`.
    static func elements(_ node: XMLNode, _ name: String, class className: String? = nil) throws -> [XMLElement] {
        let classTest = className.map { "[contains(concat(' ', @class, ' '), ' \($0) ')]" } ?? ""
        // FoundationXML evaluates `.//` from a document to nothing: from the document, `//`.
        let axis = node is XMLDocument ? "//" : ".//"
        return try node.nodes(forXPath: "\(axis)*[local-name()='\(name)']\(classTest)").compactMap { $0 as? XMLElement }
    }

    /// An attribute's value (FoundationXML's `attribute(forName:)` finds nothing on elements
    /// in a namespace, so the list is searched).
    static func attribute(_ element: XMLElement, _ name: String) -> String? {
        element.attributes?.first { $0.name == name }?.stringValue
    }

    /// Every plot: an `<svg class="chart">` with axis labels, at least one drawn point, and each
    /// series path non-empty.
    static func checkEveryPlotHasData(_ document: XMLDocument, series: Int) throws -> [XMLElement] {
        let charts = try elements(document, "svg", class: "chart")
        for chart in charts {
            let id = attribute(chart, "id") ?? "?"
            #expect(Int(attribute(chart, "data-points") ?? "") ?? 0 > 0, "\(id) has no data")
            let labels = try elements(chart, "text", class: "axis-label").map { $0.stringValue ?? "" }
            #expect(labels.count == 2 && labels.allSatisfy { !$0.isEmpty }, "\(id) axis labels \(labels)")
            let paths = try elements(chart, "path", class: "series")
            #expect(paths.count == series, "\(id) has \(paths.count) series")
            #expect(paths.allSatisfy { (attribute($0, "d") ?? "").hasPrefix("M") }, "\(id) has an empty series")
        }
        return charts
    }

    @Test func aOneStepRunIsADotOnEveryPlot() throws {
        let directory = try makeTemporaryDirectory("report-one") + "/one"
        try Self.writeRun(directory, steps: 1)
        let html = RunReport.html(runs: [try RunRecord.load(directory: directory)])
        let document = try Self.document(html)
        let charts = try Self.checkEveryPlotHasData(document, series: 1)
        #expect(charts.count == RunReport.quantities.count)
        for chart in charts { #expect(try Self.elements(chart, "circle", class: "dot").count == 1) }
        // Self-contained: nothing is loaded from anywhere.
        let fetching = try document.nodes(forXPath: "//*[@src or @href]")
        #expect(fetching.isEmpty)
        #expect(try Self.elements(document, "title").first?.stringValue == "cerm report: one")
        #expect(html.contains("No SFT curve found") && html.contains("No results.md in the run directory"))
        #expect(html.contains("config unknown: no checkpoint in \(directory) yet"))
    }

    @Test func tenThousandStepsAreDownsampledWithMinMaxBands() throws {
        let directory = try makeTemporaryDirectory("report-long") + "/long"
        try Self.writeRun(directory, steps: 10_000)
        let html = RunReport.html(runs: [try RunRecord.load(directory: directory)])
        #expect(html.utf8.count < 3_000_000, "\(html.utf8.count) bytes")
        let document = try Self.document(html)
        for chart in try Self.checkEveryPlotHasData(document, series: 1) {
            let path = try #require(try Self.elements(chart, "path", class: "series").first)
            let vertices = (Self.attribute(path, "d") ?? "").split(separator: " ").filter { $0.hasPrefix("M") || $0.hasPrefix("L") }
            #expect(vertices.count <= SVGChart.maxPlottedPoints && vertices.count > SVGChart.maxPlottedPoints / 2)
            #expect(try Self.elements(chart, "circle").isEmpty)
            // The x axis reaches the last step.
            #expect(Double(Self.attribute(chart, "data-x1") ?? "") == 10_000)
        }
        // A quantity that varies within buckets shows its range.
        let kl = try #require(try Self.elements(document, "svg", class: "chart").first { Self.attribute($0, "id") == "plot-kl" })
        #expect(try !Self.elements(kl, "polygon", class: "band").isEmpty)
    }

    @Test func downsamplingKeepsEveryExtremeAndGaps() {
        var points: [(x: Double, y: Double)] = (0..<1000).map { index -> (x: Double, y: Double) in (Double(index), Double(index % 3)) }
        points[500].y = 99
        points[700].y = .nan
        let buckets: [SVGChart.Bucket] = SVGChart.downsample(points, limit: 100)
        #expect(buckets.count == 100)
        #expect(buckets.map { $0.high }.max() == 99)
        #expect(buckets.map { $0.low }.min() == 0)
        // One NaN in a bucket of ten finite values does not make a gap; a bucket of NaNs does.
        #expect(buckets.allSatisfy { $0.y.isFinite })
        #expect(SVGChart.downsample([(0, 1), (1, .nan), (2, 3)]).map(\.y.isNaN) == [false, true, false])
        #expect(SVGChart.unbrokenRuns(SVGChart.downsample([(0, 1), (1, .nan), (2, 3), (3, 4)])).map(\.count) == [1, 2])
    }

    @Test func runsAreOverlaidWithTheirConfigDifferences() throws {
        let parent = try makeTemporaryDirectory("report-compare")
        let config = Config()
        var changed = config
        changed.grpo.learningRate = 1e-4
        changed.run.steps = 80
        for (name, text) in [("base", config.renderTOML()), ("faster", changed.renderTOML())] {
            let directory = parent + "/" + name
            try Self.writeRun(directory, steps: 30)
            var state = sampleState(step: 30)
            state.configText = text
            _ = try CheckpointWriter(directory: directory, keepLast: 2).write(state)
        }
        try Self.writeRun(parent + "/noconfig", steps: 5)
        let runs = try ["base", "faster", "noconfig"].map { try RunRecord.load(directory: parent + "/" + $0) }
        #expect(runs[0].configSource == "step_30.h5 (/meta/config_toml)")
        let document = try Self.document(RunReport.html(runs: runs))
        let charts = try Self.checkEveryPlotHasData(document, series: 3)
        let strokes = Set(try Self.elements(charts[0], "path", class: "series").compactMap { Self.attribute($0, "stroke") })
        #expect(strokes.count == 3)
        let legend = try #require(try document.nodes(forXPath: "//*[@id='legend']").first)
        #expect(["base", "faster", "noconfig"].allSatisfy { (legend.stringValue ?? "").contains($0) })
        let diff = try #require(try document.nodes(forXPath: "//*[@id='config-diff']").first as? XMLElement)
        let rows = try Self.elements(diff, "tr").map { try Self.elements($0, "td").map { $0.stringValue ?? "" } }.filter { !$0.isEmpty }
        #expect(rows.contains(["grpo.learning_rate", "5e-05", "0.0001"]))
        #expect(rows.contains(["run.steps", "40", "80"]))
        #expect(rows.count == 2)
        #expect(try Self.elements(diff, "th").map { $0.stringValue ?? "" } == ["key", "base", "faster"])
        let page = try #require(document.rootElement()?.stringValue)
        #expect(page.contains("noconfig: config unknown: no checkpoint in \(parent)/noconfig yet"))
    }

    @Test func eventsSFTCurveAndResultsAppear() throws {
        let parent = try makeTemporaryDirectory("report-events")
        let directory = parent + "/run"
        let start = 1_700_000_000.0
        try Self.writeRun(directory, steps: 6, start: start)
        // Step 3 runs from start+20 to start+30: a death at start+25 is half-way through it.
        let log = [
            Self.eventLine(.workerJoined(worker: "old", alive: 1), time: start - 500),
            Self.eventLine(.runSuperseded(files: ["step_4.h5", "metrics.jsonl"], destination: "superseded-x"), time: start - 10),
            Self.eventLine(.workerJoined(worker: "w1", alive: 1), time: start + 5),
            Self.eventLine(.workerDied(worker: "w1", silentSeconds: 10, requeuedTasks: 2, alive: 0), time: start + 25),
            Self.eventLine(.tasksRequeued(count: 2, from: "w1"), time: start + 25),
            "2023-11-14T22:13:45.000Z INFO  [coordinator] not an event line",
            Self.eventLine(.runFinished(steps: 6), time: start + 61),
        ]
        try (log.joined(separator: "\n") + "\n").write(toFile: directory + "/train.log", atomically: true, encoding: .utf8)
        let curve = parent + "/model.metrics.jsonl"
        try (#"{"elapsed_s":1,"epoch":1,"epochs":1,"learning_rate":0.002,"loss":5.5,"loss_ema":5.5,"step":1,"tokens_per_second":10,"total_steps":2}"#
             + "\n" + #"{"elapsed_s":2,"epoch":1,"epochs":1,"learning_rate":0.002,"loss":"nan","loss_ema":5.25,"step":2,"tokens_per_second":10,"total_steps":2}"#
             + "\n").write(toFile: curve, atomically: true, encoding: .utf8)
        try """
            | judge | pairwise | best-of-4 | valid format |
            |---|---|---|---|
            | random init | 50.0% | 25.0% | 0.0% |
            | after SFT | 61.5% | 30.0% | 99.0% |
            | after RL (step 6) | 64.0% | 35.0% | 100.0% |

            Held-out pairs: 200; ties count ½.
            """.write(toFile: directory + "/results.md", atomically: true, encoding: .utf8)

        let run = try RunRecord.load(directory: directory, sftCurve: curve)
        #expect(run.events.map(\.name) == ["run_superseded", "worker_joined", "worker_died", "tasks_requeued", "run_finished"])
        #expect(run.ending == .finished(steps: 6))
        #expect(abs(run.stepPosition(ofTime: start + 25) - 2.5) < 1e-9)
        #expect(run.stepPosition(ofTime: start - 100) == 0)
        #expect(run.sftCurve.count == 2 && run.sftCurve[1].loss.isNaN)
        let document = try Self.document(RunReport.html(runs: [run]))
        // Every per-step plot carries the three events (the superseded run's join is left out).
        let marks = try Self.elements(document, "svg", class: "chart").filter { Self.attribute($0, "id") != "plot-sft-loss" }
            .map { try Self.elements($0, "line", class: "mark") }
        #expect(marks.count == RunReport.quantities.count)
        #expect(marks.allSatisfy { $0.count == 3 })
        let titles = try #require(marks.first).compactMap { $0.stringValue }
        #expect(titles.contains { $0.contains("worker_died worker=w1 silent=10.0s requeued=2 alive=0") })
        let sft = try #require(try Self.elements(document, "svg", class: "chart").first { Self.attribute($0, "id") == "plot-sft-loss" })
        #expect(try Self.elements(sft, "path", class: "series").count == 2)
        let accuracy = try #require(try Self.elements(document, "svg", class: "chart").first { Self.attribute($0, "id") == "plot-pairwise-accuracy" })
        #expect(try Self.elements(accuracy, "path", class: "point").compactMap(\.stringValue).sorted()
                == ["run: held-out pairwise accuracy after RL (step 6): 0.640", "run: held-out pairwise accuracy after SFT: 0.615"])
        let results = try #require(try document.nodes(forXPath: "//*[@class='results']").first as? XMLElement)
        #expect(try Self.elements(results, "tr").count == 4)
        #expect((results.stringValue ?? "").contains("after RL (step 6)"))
        let summary = try #require(try document.nodes(forXPath: "//*[@id='runs']").first?.stringValue)
        #expect(summary.contains("finished after 6 steps") && summary.contains("1 / 1 / 2"))
    }

    @Test func badInputNamesTheFileAndLine() throws {
        let parent = try makeTemporaryDirectory("report-bad")
        #expect(throws: CermError.io(path: parent + "/absent", reason: "not a run directory (does not exist or is not a directory)")) {
            _ = try RunRecord.load(directory: parent + "/absent")
        }
        let empty = parent + "/empty"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        #expect(throws: CermError.self) { _ = try RunRecord.load(directory: empty) }
        let directory = parent + "/run"
        // A line still being written (no newline) is not an error; a complete bad one is.
        try Self.writeRun(directory, steps: 3, extraLines: #"{"step": 4, "ti"#)
        #expect(try RunRecord.load(directory: directory).steps.map(\.step) == [1, 2, 3])
        try Self.writeRun(directory, steps: 3, extraLines: "{\"step\": 4}\n")
        #expect(throws: CermError.invalid("\(directory)/metrics.jsonl:4: not a metrics line (missing key \"policy_version\")")) {
            _ = try RunRecord.load(directory: directory)
        }
        try Self.writeRun(directory, steps: 2, extraLines: "not json\n")
        #expect(throws: CermError.invalid("\(directory)/metrics.jsonl:3: not a metrics line (not a JSON object)")) {
            _ = try RunRecord.load(directory: directory)
        }
        // A resumed run logs steps again: the last line of a step counts.
        try Self.writeRun(directory, steps: 3, extraLines: try Self.step(2, time: 5).jsonLine() + "\n")
        #expect(try RunRecord.load(directory: directory).steps.map(\.time) == [1_700_000_010, 5, 1_700_000_030])
    }

    /// `cerm report --watch` stops by itself once the run has ended, and notes where it wrote.
    @Test func watchingAnEndedRunWritesOnceAndStops() throws {
        let parent = try makeTemporaryDirectory("report-watch")
        let directory = parent + "/run"
        try Self.writeRun(directory, steps: 2)
        try (Self.eventLine(.runStopped(completedSteps: 2), time: 1_700_000_021) + "\n")
            .write(toFile: directory + "/train.log", atomically: true, encoding: .utf8)
        let result = try #require(try CommandLineTests.cerm(["report", "run", "--watch", "0.2"], in: parent))
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == "wrote run/report.html (run step 2); every run has ended, stopped watching\n")
        #expect(RunReport.notedLocation(in: directory) == (parent as NSString).standardizingPath + "/run/report.html")
        let bad = try #require(try CommandLineTests.cerm(["report", "absent"], in: parent))
        #expect(bad.status == 2 && bad.stderr == "error: absent: not a run directory (does not exist or is not a directory)\n")
    }

    @Test func statusPrintsTheLastReport() throws {
        let parent = try makeTemporaryDirectory("report-status")
        let directory = parent + "/run"
        try Self.writeRun(directory, steps: 2)
        #expect(try RunStatus.collect(runDirectory: directory).lastReport == nil)
        let report = parent + "/out/report.html"
        try RunReport.write(RunReport.html(runs: [try RunRecord.load(directory: directory)]), to: report)
        try RunReport.noteLocation(of: report, in: directory)
        let status = try RunStatus.collect(runDirectory: directory)
        #expect(status.lastReport == report)
        let rendered = status.render(now: Date(), trainLogGrowth: nil, watchedSeconds: 0)
        #expect(rendered.hasSuffix("\nreport      \(report) (written 0s ago)"))
        try FileManager.default.removeItem(atPath: report)
        #expect(try RunStatus.collect(runDirectory: directory).render(now: Date(), trainLogGrowth: nil, watchedSeconds: 0)
            .hasSuffix("\nreport      \(report) (missing)"))
    }
}
