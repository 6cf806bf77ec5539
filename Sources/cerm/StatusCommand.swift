import ArgumentParser
import Coordinator
import Foundation

/// `cerm status RUN_DIR`: latest checkpoint, last metrics, and whether the run is alive.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Summarise a run directory: latest checkpoint, last step's metrics, log activity.")

    @Argument(help: "The run directory (Checkpoints/<run>).")
    var runDir: String

    @Option(help: "Seconds to watch train.log for growth (0 to skip).")
    var watch: Double = 2

    @Flag(help: "Load checkpoints newest first and report which one a resume would use.")
    var verify = false

    func run() throws {
        do {
            let first = try RunStatus.collect(runDirectory: runDir)
            var growth: Int?
            if watch > 0, let before = first.trainLogBytes {
                Thread.sleep(forTimeInterval: watch)
                growth = (try RunStatus.collect(runDirectory: runDir).trainLogBytes ?? before) - before
            }
            print(first.render(now: Date(), trainLogGrowth: growth, watchedSeconds: watch))
            if verify {
                // Probed in a child first, as `--resume` does: a file that crashes libhdf5 is
                // listed as skipped instead of killing this command.
                let found = try CheckpointReader.findResumeCheckpoint(runDir: runDir, probe: ChildProcessCheckpointProbe()) { skipped in
                    print("skipped     \((skipped.path as NSString).lastPathComponent): \(skipped.reason)")
                }
                if let found {
                    print("resume from \(found.path) (step \(found.state.step), checksum OK)")
                } else {
                    print("resume from nothing: no valid checkpoint")
                }
            }
        } catch {
            throw exitWithError(error)
        }
    }
}
