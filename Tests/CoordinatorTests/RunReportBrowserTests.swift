import Foundation
import Runtime
import TestSupport
import Testing
@testable import Coordinator

/// The report as a person sees it: a small real run (`cerm launch`, 3 steps, 2 workers), its
/// `cerm report`, loaded in headless Chromium. Chromium is not installed by `make test`: without
/// it this test reports itself skipped; `make test-report` installs it and runs this suite.
@Suite("Run report in Chromium", .serialized)
struct RunReportBrowserTests {
    /// Loads `page` in headless Chromium; the DOM after its scripts ran, and the console
    /// messages Chromium logged (`--enable-logging=stderr` prints each as `…:CONSOLE:…] "text"`).
    static func load(_ chromium: String, page: String, scratch: String) throws -> (dom: String, console: [String]) {
        var arguments = ["--headless", "--disable-gpu", "--no-first-run", "--user-data-dir=\(scratch)/profile",
                         "--enable-logging=stderr", "--v=0", "--dump-dom", URL(fileURLWithPath: page).absoluteString]
        // Chromium refuses to run as root with its sandbox on (containers, CI).
        if getuid() == 0 { arguments.insert("--no-sandbox", at: 0) }
        let output = try ExternalTools.run(chromium, arguments, timeout: 180)
        #expect(output.status == 0, "chromium exited with \(output.status): \(output.stderr.suffix(2000))")
        let console = output.stderr.split(separator: "\n").filter { $0.contains(":CONSOLE") }.map(String.init)
        return (output.stdout, console)
    }

    /// Python's `html.parser` reads the DOM Chromium dumped: per `<svg class="chart">` its id,
    /// `data-points` and the `d` of each `path.series`; and the body's `data-ready`.
    static let domSummaryScript = """
        import json, sys
        from html.parser import HTMLParser
        class Summary(HTMLParser):
            def __init__(self):
                super().__init__()
                self.charts, self.figures, self.ready, self.current = [], 0, None, None
            def handle_starttag(self, tag, attrs):
                a = dict(attrs)
                classes = (a.get("class") or "").split()
                if tag == "body":
                    self.ready = a.get("data-ready")
                elif tag == "figure" and "plot" in classes:
                    self.figures += 1
                elif tag == "svg" and "chart" in classes:
                    self.current = {"id": a.get("id"), "points": int(a.get("data-points", "0")), "series": []}
                    self.charts.append(self.current)
                elif tag == "path" and "series" in classes and self.current is not None:
                    self.current["series"].append(a.get("d") or "")
            def handle_endtag(self, tag):
                if tag == "svg":
                    self.current = None
        parser = Summary()
        parser.feed(open(sys.argv[1], encoding="utf-8").read())
        print(json.dumps({"charts": parser.charts, "figures": parser.figures, "ready": parser.ready}))
        """

    struct DOMSummary: Decodable {
        struct Chart: Decodable {
            var id: String
            var points: Int
            var series: [String]
        }
        var charts: [Chart]
        var figures: Int
        var ready: String?
    }

    @Test func aRealRunsReportLoadsWithoutConsoleErrorsAndEveryPlotHasData() throws {
        guard let chromium = ExternalTools.chromium() else {
            try ExternalTools.skip("headless Chromium not found (`make test-report` installs Debian's chromium; or set CERM_CHROMIUM)")
        }
        guard let python = ExternalTools.python(importing: "html.parser") else {
            try ExternalTools.skip("no python3 to parse the dumped DOM with html.parser")
        }
        guard let binary = TestCluster.cermBinary else {
            Issue.record("no cerm binary under .build/{debug,release}: run `swift build --build-tests` first")
            return
        }
        let directory = try makeTemporaryDirectory("report-browser")
        defer { if ProcessInfo.processInfo.environment["CERM_KEEP_REPORT"] == nil { try? FileManager.default.removeItem(atPath: directory) } }

        // The detection itself: a page that logs an error and throws is caught.
        let broken = directory + "/broken.html"
        try #"<!DOCTYPE html><html><body><script>console.error("logged"); throw new Error("thrown");</script></body></html>"#
            .write(toFile: broken, atomically: true, encoding: .utf8)
        let brokenConsole = try Self.load(chromium, page: broken, scratch: directory).console
        #expect(brokenConsole.contains { $0.contains("\"logged\"") } && brokenConsole.contains { $0.contains("Uncaught Error: thrown") },
                "console capture missed the broken page's errors: \(brokenConsole)")

        // A small real run: coordinator and two workers over ZeroMQ, 3 steps.
        let config = try TestCluster.writeRun(directory: directory, port: try TestCluster.freePort(), steps: 3)
        let launch = try TestCluster.launch(binary, config: config, log: directory + "/launch.log")
        let finished = TestCluster.waitUntil(timeout: 300) { !launch.isRunning }
        if !finished { launch.terminate(); launch.waitUntilExit() }
        try #require(finished && launch.terminationStatus == 0,
                     "cerm launch failed: \((try? String(contentsOfFile: directory + "/launch.log", encoding: .utf8))?.suffix(3000) ?? "")")
        let run = directory + "/Checkpoints/chaos"
        let report = directory + "/report.html"
        let result = try #require(try CommandLineTests.cerm(["report", run, "--out", report], in: directory))
        try #require(result.status == 0, "cerm report failed: \(result.stderr)")
        #expect(result.stdout == "wrote \(report) (chaos step 3)\n")

        let loaded = try Self.load(chromium, page: report, scratch: directory)
        #expect(loaded.console.isEmpty, "console messages: \(loaded.console)")
        let dom = directory + "/report.dom.html"
        try loaded.dom.write(toFile: dom, atomically: true, encoding: .utf8)
        let parsed = try ExternalTools.run(python, ["-c", Self.domSummaryScript, dom])
        try #require(parsed.status == 0, "html.parser: \(parsed.stderr)")
        let summary = try JSONDecoder().decode(DOMSummary.self, from: Data(parsed.stdout.utf8))
        // Per-step plots, and the run has no SFT curve (it starts from random weights).
        #expect(summary.charts.count == RunReport.quantities.count)
        #expect(summary.figures == summary.charts.count)
        // The inline script ran to its end: it counts the charts it attached to.
        #expect(summary.ready == String(summary.charts.count))
        for chart in summary.charts {
            #expect(chart.points == 3, "\(chart.id): \(chart.points) points")
            #expect(chart.series.count == 1 && chart.series.allSatisfy { $0.hasPrefix("M") && $0.contains("L") }, "\(chart.id): \(chart.series)")
        }
    }
}
