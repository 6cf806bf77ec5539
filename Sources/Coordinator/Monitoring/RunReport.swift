import Configuration
import Foundation
import Shared

/// The training report `cerm report` writes: one self-contained HTML file (inline CSS and SVG,
/// a small inline script for hover read-outs only; nothing fetched) with the curves of one or
/// more runs overlaid, one colour per run. Layout and sources: docs/MONITORING.md ("cerm report").
/// The markup is well-formed XML (XHTML-compatible), so it can be checked with an XML parser.
public enum RunReport {
    /// Run colours (Okabe–Ito, distinguishable with colour-blindness), reused after 7 runs.
    static let runColors = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]

    /// The cluster events drawn as vertical marks, with their colours and legend text; later
    /// ones are drawn over earlier ones (a death over the re-queue it causes).
    static let markedEvents: [(name: String, color: String, legend: String)] = [
        ("worker_joined", "#2ca02c", "worker joined"),
        ("tasks_requeued", "#ff7f0e", "tasks re-queued"),
        ("worker_died", "#d62728", "worker died"),
    ]

    /// One per-step plot: title, y-axis label with its unit, and the value of a step.
    struct Quantity: Sendable {
        var id: String
        var title: String
        var yLabel: String
        var value: @Sendable (StepMetrics) -> Double
    }

    static let quantities: [Quantity] = [
        Quantity(id: "reward-criteria", title: "Criteria reward", yLabel: "mean reward") { $0.meanCriteriaReward },
        Quantity(id: "reward-evaluation", title: "Evaluation reward", yLabel: "mean reward") { $0.meanEvaluationReward },
        Quantity(id: "pairwise-accuracy", title: "Pairwise accuracy (line: implied by the rollouts; ◆: held-out, results.md)",
                 yLabel: "fraction of pairs") { $0.pairwiseAccuracy },
        Quantity(id: "kl", title: "KL to the reference", yLabel: "KL (nats per token)") { $0.kl },
        Quantity(id: "entropy", title: "Policy entropy", yLabel: "entropy (nats per token)") { $0.entropy },
        Quantity(id: "clip-fraction", title: "Clip fraction", yLabel: "fraction of tokens") { $0.clipFraction },
        Quantity(id: "zero-std", title: "Zero-std groups (no learning signal)", yLabel: "fraction of groups") { $0.fracZeroStd },
        Quantity(id: "valid-format", title: "Valid-format rate", yLabel: "fraction of trajectories") { $0.validFormatRate },
        Quantity(id: "output-length", title: "Mean output length", yLabel: "tokens per trajectory") { RunRecord.meanOutputLength($0) },
        Quantity(id: "loss", title: "GRPO loss", yLabel: "loss") { $0.loss },
        Quantity(id: "grad-norm", title: "Gradient norm (before clipping)", yLabel: "L2 norm") { $0.gradNorm },
        Quantity(id: "throughput", title: "Generation throughput", yLabel: "generated tokens/s") { $0.tokensPerSecond },
        Quantity(id: "time-wait", title: "Step time: waiting for rollouts", yLabel: "seconds") { $0.waitRolloutsSeconds },
        Quantity(id: "time-update", title: "Step time: update", yLabel: "seconds") { $0.updateSeconds },
        Quantity(id: "time-weights", title: "Step time: weight distribution", yLabel: "seconds") { $0.weightDistributionSeconds },
        Quantity(id: "time-checkpoint", title: "Step time: checkpoint", yLabel: "seconds") { $0.checkpointSeconds },
        Quantity(id: "time-step", title: "Step time: total", yLabel: "seconds") { $0.stepSeconds },
        Quantity(id: "workers", title: "Workers alive", yLabel: "workers") { Double($0.workersAlive) },
    ]

    /// A run's label in legends: its directory name, with the position when names repeat.
    static func labels(_ runs: [RunRecord]) -> [String] {
        runs.enumerated().map { index, run in
            runs.filter { $0.name == run.name }.count > 1 ? "\(run.name) (#\(index + 1))" : run.name
        }
    }

    static func color(_ index: Int) -> String { runColors[index % runColors.count] }

    /// The held-out accuracies of `results.md` placed on the step axis: the SFT row at step 0,
    /// `after RL (step N)` at N. Values are the `pairwise` column.
    static func heldOutPoints(_ results: String) -> [(step: Double, accuracy: Double, row: String)] {
        let rows = markdownTable(results)
        guard let header = rows.first, let column = header.firstIndex(of: "pairwise") else { return [] }
        return rows.dropFirst().compactMap { row in
            guard row.count > column, let percent = Double(row[column].replacingOccurrences(of: "%", with: "")) else { return nil }
            let judge = row[0]
            if judge == "after SFT" { return (0, percent / 100, judge) }
            if judge.hasPrefix("after RL (step "), let step = Double(judge.dropFirst("after RL (step ".count).prefix { $0.isNumber }) {
                return (step, percent / 100, judge)
            }
            return nil
        }
    }

    /// The cells of the first Markdown table in `text` (the `|---|` line left out).
    static func markdownTable(_ text: String) -> [[String]] {
        let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        guard let start = lines.firstIndex(where: { $0.hasPrefix("|") }) else { return [] }
        return lines[start...].prefix { $0.hasPrefix("|") }.compactMap { line in
            let cells = line.dropFirst().split(separator: "|", omittingEmptySubsequences: false).dropLast()
                .map { $0.trimmingCharacters(in: .whitespaces) }
            return cells.allSatisfy({ $0.allSatisfy { "-:".contains($0) } }) ? nil : cells
        }
    }

    /// The report for `runs` (at least one), generated at `now`.
    public static func html(runs: [RunRecord], now: Date = Date()) -> String {
        let labels = labels(runs)
        var body = ""
        body += "<h1>cerm training report</h1>"
        let formatter = ISO8601DateFormatter()
        body += "<p class=\"meta\">Generated \(escapeXML(formatter.string(from: now))) from \(runs.count == 1 ? "one run" : "\(runs.count) runs"). "
            + "Hover a plot for its values; the x axis is the optimizer step, event marks sit where the event happened in time.</p>"
        body += runTable(runs, labels: labels)
        body += legend(runs, labels: labels)

        body += "<section id=\"grpo\"><h2>GRPO, per step</h2>"
        if runs.allSatisfy({ $0.steps.isEmpty }) {
            body += "<p class=\"note\">No step logged yet (metrics.jsonl is empty or missing).</p>"
        } else {
            body += "<div class=\"grid\">"
            for quantity in quantities {
                var chart = SVGChart(id: "plot-\(quantity.id)", title: quantity.title, xLabel: "optimizer step", yLabel: quantity.yLabel,
                                     series: runs.enumerated().map { index, run in
                                         SVGChart.Series(label: labels[index], color: color(index),
                                                         points: run.steps.map { (Double($0.step), quantity.value($0)) })
                                     })
                chart.marks = eventMarks(runs, labels: labels)
                if quantity.id == "pairwise-accuracy" {
                    for (index, run) in runs.enumerated() {
                        for point in run.results.map(heldOutPoints) ?? [] {
                            chart.points.append(SVGChart.Point(x: point.step, y: point.accuracy, color: color(index),
                                                               title: "\(labels[index]): held-out pairwise accuracy \(point.row): \(String(format: "%.3f", point.accuracy))"))
                        }
                    }
                }
                body += figure(chart)
            }
            body += "</div>"
        }
        body += "</section>"

        body += "<section id=\"sft\"><h2>Cold-start SFT</h2>"
        if runs.allSatisfy({ $0.sftCurve.isEmpty }) {
            body += "<p class=\"note\">No SFT curve found (looked for the config's sft.output with .metrics.jsonl, and *.metrics.jsonl in the run directory).</p>"
        } else {
            var series: [SVGChart.Series] = []
            for (index, run) in runs.enumerated() where !run.sftCurve.isEmpty {
                series.append(SVGChart.Series(label: "\(labels[index]) loss (EMA)", color: color(index),
                                              points: run.sftCurve.map { (Double($0.step), $0.lossEMA) }))
                series.append(SVGChart.Series(label: "\(labels[index]) loss (batch)", color: color(index), dashed: true,
                                              points: run.sftCurve.map { (Double($0.step), $0.loss) }))
            }
            body += "<div class=\"grid\">" + figure(SVGChart(id: "plot-sft-loss", title: "SFT loss (solid: EMA α = 0.05; dashed: batch)",
                                                             xLabel: "SFT optimizer step", yLabel: "target-token NLL (nats)", series: series)) + "</div>"
            for (index, run) in runs.enumerated() where run.sftCurvePath != nil {
                body += "<p class=\"note\">\(escapeXML(labels[index])): \(escapeXML(run.sftCurvePath ?? "")) (\(run.sftCurve.count) steps)</p>"
            }
        }
        body += "</section>"

        body += "<section id=\"results\"><h2>Evaluation (results.md)</h2>"
        if runs.allSatisfy({ $0.results == nil }) {
            body += "<p class=\"note\">No results.md in the run director\(runs.count == 1 ? "y" : "ies") (cerm pipeline writes it after the final evaluation).</p>"
        }
        for (index, run) in runs.enumerated() {
            guard let results = run.results else { continue }
            body += "<h3>\(escapeXML(labels[index]))</h3>" + resultsHTML(results)
        }
        body += "</section>"

        body += configSection(runs, labels: labels)
        return page(title: "cerm report: " + labels.joined(separator: ", "), body: body)
    }

    static func figure(_ chart: SVGChart) -> String {
        "<figure class=\"plot\"><figcaption>\(escapeXML(chart.title))</figcaption>\(chart.render())"
            + (chart.hasData ? "" : "<p class=\"note\">no finite values</p>") + "</figure>"
    }

    static func eventMarks(_ runs: [RunRecord], labels: [String]) -> [SVGChart.Mark] {
        let formatter = ISO8601DateFormatter()
        var marks: [SVGChart.Mark] = []
        for (index, run) in runs.enumerated() {
            for event in run.events {
                guard let kind = markedEvents.first(where: { $0.name == event.name }) else { continue }
                let when = formatter.string(from: Date(timeIntervalSince1970: event.time))
                marks.append(SVGChart.Mark(x: run.stepPosition(ofTime: event.time), color: kind.color,
                                           title: "\(labels[index]): \(event.name) \(event.fields) at \(when)"))
            }
        }
        let order = markedEvents.map(\.color)
        return marks.enumerated().sorted { a, b in
            let (ka, kb) = (order.firstIndex(of: a.element.color) ?? 0, order.firstIndex(of: b.element.color) ?? 0)
            return ka != kb ? ka < kb : a.offset < b.offset
        }.map(\.element)
    }

    static func runTable(_ runs: [RunRecord], labels: [String]) -> String {
        let formatter = ISO8601DateFormatter()
        var html = "<section id=\"runs\"><h2>Runs</h2><table><thead><tr><th>run</th><th>directory</th><th>steps logged</th>"
            + "<th>first step started</th><th>last step logged</th><th>state</th><th>worker joins / deaths / tasks re-queued</th></tr></thead><tbody>"
        for (index, run) in runs.enumerated() {
            let count = { (name: String) in run.events.filter { $0.name == name }.count }
            let requeued = run.events.filter { $0.name == "tasks_requeued" }.reduce(0) { total, event in
                total + (Int(event.fields.split(separator: " ").first { $0.hasPrefix("count=") }?.dropFirst("count=".count) ?? "") ?? 0)
            }
            let first = run.steps.first.map { formatter.string(from: Date(timeIntervalSince1970: $0.time - $0.stepSeconds)) } ?? "—"
            let last = run.steps.last.map { formatter.string(from: Date(timeIntervalSince1970: $0.time)) } ?? "—"
            let state: String
            switch run.ending {
            case let .finished(steps)?: state = "finished after \(steps) steps"
            case let .stopped(steps)?: state = "stopped after \(steps) steps"
            case nil: state = run.steps.isEmpty ? "no step yet" : "running, or ended without a word (see cerm status)"
            }
            let stepRange = run.steps.isEmpty ? "0" : "\(run.steps.count) (\(run.steps.first!.step)–\(run.steps.last!.step))"
            html += "<tr><td><span class=\"swatch\" style=\"background:\(color(index))\"></span>\(escapeXML(labels[index]))</td>"
                + "<td>\(escapeXML(run.directory))</td><td>\(stepRange)</td><td>\(escapeXML(first))</td><td>\(escapeXML(last))</td>"
                + "<td>\(escapeXML(state))</td><td>\(count("worker_joined")) / \(count("worker_died")) / \(requeued)</td></tr>"
        }
        return html + "</tbody></table></section>"
    }

    static func legend(_ runs: [RunRecord], labels: [String]) -> String {
        var html = "<p class=\"legend\" id=\"legend\">"
        for index in runs.indices {
            html += "<span class=\"entry\"><span class=\"swatch\" style=\"background:\(color(index))\"></span>\(escapeXML(labels[index]))</span>"
        }
        for kind in markedEvents {
            html += "<span class=\"entry\"><span class=\"tick-swatch\" style=\"border-color:\(kind.color)\"></span>\(kind.legend)</span>"
        }
        return html + "</p>"
    }

    /// `results.md`: its table as an HTML table, other lines as paragraphs.
    static func resultsHTML(_ results: String) -> String {
        let rows = markdownTable(results)
        var html = ""
        if let header = rows.first {
            html += "<table class=\"results\"><thead><tr>" + header.map { "<th>\(escapeXML($0))</th>" }.joined() + "</tr></thead><tbody>"
            for row in rows.dropFirst() { html += "<tr>" + row.map { "<td>\(escapeXML($0))</td>" }.joined() + "</tr>" }
            html += "</tbody></table>"
        }
        for line in results.split(separator: "\n") where !line.trimmingCharacters(in: .whitespaces).hasPrefix("|") {
            html += "<p>\(escapeXML(String(line)))</p>"
        }
        return html
    }

    static func configSection(_ runs: [RunRecord], labels: [String]) -> String {
        var html = "<section id=\"config\"><h2>Config</h2>"
        let parsed = runs.map { run in run.configText.flatMap { try? Config.parse($0) } }
        if runs.count > 1 {
            let known = runs.indices.filter { parsed[$0] != nil }
            if known.count < 2 {
                html += "<p class=\"note\">No differences shown: fewer than two of the runs have a readable config.</p>"
            } else if let base = parsed[known[0]] {
                // Every key that differs from the first run with a config, by run.
                let changes = known.dropFirst().map { (index: $0, changes: base.changes(to: parsed[$0]!)) }
                var keys: [String] = []
                var baseValues: [String: String] = [:]
                for change in changes.flatMap(\.changes) where baseValues[change.key] == nil {
                    keys.append(change.key)
                    baseValues[change.key] = change.old
                }
                if keys.isEmpty {
                    html += "<p class=\"note\">The runs' configs are identical.</p>"
                } else {
                    html += "<table id=\"config-diff\"><thead><tr><th>key</th>" + known.map { "<th>\(escapeXML(labels[$0]))</th>" }.joined() + "</tr></thead><tbody>"
                    for key in keys {
                        html += "<tr><td>\(escapeXML(key))</td><td>\(escapeXML(baseValues[key] ?? ""))</td>"
                        for entry in changes {
                            let value = entry.changes.first { $0.key == key }?.new ?? baseValues[key] ?? ""
                            html += "<td>\(escapeXML(value))</td>"
                        }
                        html += "</tr>"
                    }
                    html += "</tbody></table>"
                }
            }
        }
        for (index, run) in runs.enumerated() {
            if let text = run.configText {
                html += "<details><summary>\(escapeXML(labels[index])): config from \(escapeXML(run.configSource))</summary><pre>\(escapeXML(text))</pre></details>"
            } else {
                html += "<p class=\"note\">\(escapeXML(labels[index])): config \(escapeXML(run.configSource))</p>"
            }
        }
        return html + "</section>"
    }

    static let style = """
        body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px;color:#222;background:#fff}
        h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
        .meta,.note{color:#555}table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
        .grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:12px}
        figure.plot{margin:0;border:1px solid #e3e3e3;padding:6px}figcaption{font-weight:600;margin-bottom:2px}
        svg.chart{width:100%;height:auto;display:block}.frame{fill:none;stroke:#999}line.grid{stroke:#eee}
        .tick{font-size:11px;fill:#444}.axis-label{font-size:12px;fill:#222}path.series{stroke-width:1.6}
        .band{opacity:.18;stroke:none}line.mark{stroke-width:1.5;stroke-dasharray:4 3;opacity:.9}line.cursor{stroke:#888}
        .legend .entry{margin-right:16px;white-space:nowrap}.swatch{display:inline-block;width:14px;height:10px;margin-right:5px}
        .tick-swatch{display:inline-block;width:0;height:12px;border-left:2px dashed;margin:0 6px -2px 4px}
        pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px}
        #tooltip{position:absolute;display:none;background:#fff;border:1px solid #999;padding:4px 6px;font-size:12px;white-space:pre;pointer-events:none}
        """

    /// Hover read-out: the nearest step's value of every series under the pointer. Written
    /// without `<` and `&` so the page stays well-formed XML.
    static let script = """
        (function () {
          var tip = document.getElementById("tooltip");
          var charts = document.querySelectorAll("svg.chart");
          charts.forEach(function (svg) {
            var cursor = svg.querySelector("line.cursor");
            var x0 = parseFloat(svg.getAttribute("data-x0")), x1 = parseFloat(svg.getAttribute("data-x1"));
            var left = parseFloat(svg.getAttribute("data-left")), width = parseFloat(svg.getAttribute("data-plot-width"));
            var series = Array.prototype.map.call(svg.querySelectorAll("path.series"), function (path) {
              var values = path.getAttribute("data-values").split(";").filter(Boolean).map(function (pair) {
                var xy = pair.split(":"); return [parseFloat(xy[0]), xy[1]];
              });
              return { label: path.getAttribute("data-label"), values: values };
            });
            svg.addEventListener("mousemove", function (event) {
              var box = svg.getBoundingClientRect();
              var x = (event.clientX - box.left) * svg.viewBox.baseVal.width / box.width;
              var step = x0 + (x - left) / width * (x1 - x0);
              if (step > x1 || x0 > step) { tip.style.display = "none"; cursor.setAttribute("visibility", "hidden"); return; }
              cursor.setAttribute("x1", x); cursor.setAttribute("x2", x); cursor.setAttribute("visibility", "visible");
              var lines = [];
              series.forEach(function (s) {
                var best = null;
                s.values.forEach(function (v) { if (best === null || Math.abs(best[0] - step) > Math.abs(v[0] - step)) { best = v; } });
                if (best !== null) { lines.push(s.label + ": " + best[1] + " (step " + best[0] + ")"); }
              });
              tip.textContent = lines.length ? lines.join("\\n") : "no data";
              tip.style.left = (event.pageX + 14) + "px"; tip.style.top = (event.pageY + 14) + "px"; tip.style.display = "block";
            });
            svg.addEventListener("mouseleave", function () { tip.style.display = "none"; cursor.setAttribute("visibility", "hidden"); });
          });
          document.body.setAttribute("data-ready", String(charts.length));
        })();
        """

    static func page(title: String, body: String) -> String {
        "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\"><head><meta charset=\"utf-8\"/>"
            + "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/><title>\(escapeXML(title))</title>"
            + "<style>\(style)</style></head><body>\(body)<div id=\"tooltip\"></div><script>\(script)</script></body></html>\n"
    }

    /// The note in a run directory naming its last report (`cerm status` prints it).
    public static let noteFileName = "report.path"

    /// Records in `runDirectory` the absolute path of the report just written about it.
    public static func noteLocation(of reportPath: String, in runDirectory: String) throws {
        let absolute = reportPath.hasPrefix("/") ? reportPath : FileManager.default.currentDirectoryPath + "/" + reportPath
        let note = (runDirectory as NSString).appendingPathComponent(noteFileName)
        do { try ((absolute as NSString).standardizingPath + "\n").write(toFile: note, atomically: true, encoding: .utf8) } catch {
            throw CermError.io(path: note, reason: "cannot note where the report went: \(error.localizedDescription)")
        }
    }

    /// The report path noted in `runDirectory`, nil without a note.
    public static func notedLocation(in runDirectory: String) -> String? {
        let note = (runDirectory as NSString).appendingPathComponent(noteFileName)
        guard let text = try? String(contentsOfFile: note, encoding: .utf8) else { return nil }
        let path = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return path.isEmpty ? nil : path
    }

    /// Writes `html` to `path` atomically (a reader, or a browser reloading during `--watch`,
    /// sees the old or the new report, never half of one), creating the directory when missing.
    public static func write(_ html: String, to path: String) throws {
        try createParentDirectory(of: path)
        try AtomicFile.write(path) { try $0.write(contentsOf: Data(html.utf8)) }
    }
}
