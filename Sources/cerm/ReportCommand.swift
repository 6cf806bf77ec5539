import ArgumentParser
import Coordinator
import Foundation
import Runtime
import Shared

/// `cerm report RUN_DIR [RUN_DIR…]`: the training report, one self-contained HTML file.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write an HTML report of one or more runs: per-step curves (overlaid), events, SFT curve, results and config differences.",
        discussion: """
            The file is self-contained (inline SVG, no network). Its path is noted in each run \
            directory's report.path, which `cerm status` prints. With --watch N it is rewritten \
            every N seconds until every run's train.log ends with run_finished or run_stopped, \
            or until Ctrl-C.
            """)

    @Argument(help: "Run directories (Checkpoints/<run>); several are overlaid, one colour each.")
    var runDirs: [String]

    @Option(help: "The HTML file to write (default: report.html in the first run directory).")
    var out: String?

    @Option(help: "Rewrite the report every N seconds while a run goes on.")
    var watch: Double?

    @Option(help: "The SFT curve (*.metrics.jsonl) to show, instead of the one next to the config's sft.output.")
    var sftCurve: String?

    func validate() throws {
        if runDirs.isEmpty { throw ValidationError("give at least one run directory") }
        if let watch, !(watch > 0) { throw ValidationError("--watch must be a positive number of seconds, got \(watch)") }
    }

    func run() throws {
        let stop = StopSignal.install()
        let path = out ?? (runDirs[0] as NSString).appendingPathComponent("report.html")
        do {
            while true {
                let runs = try runDirs.map { try RunRecord.load(directory: $0, sftCurve: sftCurve) }
                try RunReport.write(RunReport.html(runs: runs), to: path)
                for run in runs {
                    // The report is written; a read-only run directory only loses the note.
                    do { try RunReport.noteLocation(of: path, in: run.directory) } catch {
                        FileHandle.standardError.write(Data("warning: \(error)\n".utf8))
                    }
                }
                let steps = runs.map { "\($0.name) step \($0.steps.last?.step ?? 0)" }.joined(separator: ", ")
                guard let watch else { say("wrote \(path) (\(steps))"); return }
                if runs.allSatisfy({ $0.ending != nil }) {
                    say("wrote \(path) (\(steps)); every run has ended, stopped watching")
                    return
                }
                say("wrote \(path) (\(steps)); next in \(watch) s (Ctrl-C stops)")
                let deadline = Date().addingTimeInterval(watch)
                while Date() < deadline {
                    if stop.isRequested { return }
                    Thread.sleep(forTimeInterval: min(0.2, max(0, deadline.timeIntervalSinceNow)))
                }
                if stop.isRequested { return }
            }
        } catch {
            throw exitWithError(error)
        }
    }

    /// A line on stdout at once (print buffers when stdout is a file or pipe; `--watch` output
    /// would then only appear at the end).
    private func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}
