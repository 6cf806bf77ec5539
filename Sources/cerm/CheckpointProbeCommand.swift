import ArgumentParser
import Coordinator
import Foundation
import Runtime

/// `cerm checkpoint-probe FILE` (hidden): reads and verifies one checkpoint (or SFT weights
/// file) and exits 0 when it loads, 1 with the reader's error otherwise. Other commands run it
/// as a child (``ChildProcessCheckpointProbe``) before reading a file themselves, because
/// libhdf5 crashes on some corrupt files; a crash then kills only this process.
struct CheckpointProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: ChildProcessCheckpointProbe.subcommand,
        abstract: "Read and verify one checkpoint; exit 0 when it loads (used by other commands).",
        shouldDisplay: false)

    @Argument(help: "The checkpoint file.")
    var file: String

    /// The process waiting for this one: when it dies (killed while this one hangs on a file
    /// libhdf5 loops on), nobody enforces the time limit, so this one must die with it.
    @Option(help: .hidden)
    var parentPid: Int32?

    func run() throws {
        // SIGKILL: there is nothing to save, and it cannot be blocked (a mask inherited from a
        // spawner's thread can hold SIGTERM back while libhdf5 loops).
        if let parentPid { ParentDeathSignal.arm(expectedParent: parentPid, signal: SIGKILL) }
        // A crash is the outcome this process exists to absorb: no core file for it.
        var noCore = rlimit(rlim_cur: 0, rlim_max: 0)
        #if os(Linux)
        _ = setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &noCore)
        #else
        _ = setrlimit(RLIMIT_CORE, &noCore)
        #endif
        do {
            // Either kind cerm writes (callers probe SFT weights too), read whole as the
            // callers read it. The checksum is the caller's to check: a file that parses is
            // safe to read again, and `cerm inspect` shows one whose checksum does not match.
            switch try CermFileKind.detect(path: file) {
            case .sftWeights: _ = try LoadedSFTWeights.read(path: file)
            case .checkpoint: _ = try CheckpointReader.read(path: file)
            }
        } catch {
            FileHandle.standardOutput.write(Data(ProbeReport.line(for: error).utf8))
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
