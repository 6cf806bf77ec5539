import Foundation
import Logging
import Runtime

/// What reading a checkpoint in another process showed, before this process reads it.
public enum CheckpointProbeResult: Sendable, Equatable {
    /// The file read and verified (the probe exited with status 0).
    case loads
    /// The probe exited normally with this non-zero status: the file does not parse. `report`
    /// is the child's error, which the caller raises without parsing the file itself (a file
    /// libhdf5 rejects can still have corrupted its state on the way: seen in fuzzing, a crash
    /// after the error); nil when the child wrote none, and the caller reads the file itself.
    case fails(status: Int32, report: ProbeReport?)
    /// The probe crashed while reading the file: it died by this signal, one of
    /// ``ChildProcessCheckpointProbe/crashSignals``.
    case crashed(signal: Int32)
    /// The probe was still reading after this many seconds and was killed: libhdf5 loops on
    /// some corrupt files instead of crashing.
    case timedOut(seconds: Double)
    /// The probe told nothing (the reason): it could not start, or it was killed from outside.
    /// The caller reads the file in-process as if unprobed.
    case unavailable(String)
    /// The caller's ``StopSignal`` was raised (Ctrl-C, SIGTERM) while the probe read: the child
    /// was killed, and the caller stops instead of reading the file, which might be one libhdf5
    /// loops on.
    case interrupted(signal: Int32)
}

/// A stop request (``StopSignal``) arrived while a child process read `path` first: nothing of
/// the file was read in this process. Not a verdict on the file, so resuming from a run
/// directory ends here instead of trying older checkpoints.
public struct CheckpointReadInterrupted: Error, Equatable, CustomStringConvertible {
    public let path: String
    public let signal: Int32

    public init(path: String, signal: Int32) {
        self.path = path
        self.signal = signal
    }

    public var description: String {
        "stopped by \(ChildProcessCheckpointProbe.signalName(signal)) while a child process read \(path) first; the file was not loaded"
    }
}

/// Why the child could not parse a file, as it wrote it on its standard output: one line,
/// `checkpoint<TAB>REASON<TAB>DESCRIPTION` for a ``CheckpointError`` (its reason and its whole
/// message) or `error<TAB><TAB>DESCRIPTION` for any other error.
public struct ProbeReport: Sendable, Equatable {
    /// The ``CheckpointError/Reason`` text, for a checkpoint error; nil for another error.
    public let checkpointReason: String?
    /// The error's whole message, as the caller's own read would have given it.
    public let description: String

    public init(checkpointReason: String?, description: String) {
        self.checkpointReason = checkpointReason
        self.description = description
    }

    /// The line the child writes for `error`; tabs and newlines in the texts become spaces.
    public static func line(for error: Error) -> String {
        func clean(_ text: String) -> String {
            String(text.map { $0 == "\t" || $0 == "\n" || $0 == "\r" ? " " : $0 })
        }
        if let error = error as? CheckpointError {
            return "checkpoint\t\(clean(error.reason.description))\t\(clean(error.description))\n"
        }
        return "error\t\t\(clean("\(error)"))\n"
    }

    /// The report in the child's output, or nil when it holds none.
    public static func parse(_ output: String) -> ProbeReport? {
        guard let line = output.split(separator: "\n").first else { return nil }
        let fields = line.split(separator: "\t", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
        guard fields.count == 3, !fields[2].isEmpty else { return nil }
        switch fields[0] {
        case "checkpoint": return ProbeReport(checkpointReason: fields[1], description: fields[2])
        case "error": return ProbeReport(checkpointReason: nil, description: fields[2])
        default: return nil
        }
    }
}

/// An error the probe's child reported for a file that is not a checkpoint error (an SFT
/// weights file's, say); its text is the child's.
public struct ProbeReportedError: Error, Equatable, CustomStringConvertible {
    public let description: String
}

/// Reads a checkpoint somewhere a crash cannot take the caller down. libhdf5 1.10 crashes
/// (SIGSEGV, SIGABRT) on some corrupt files instead of returning an error
/// (docs/CHECKPOINT.md, "Known limitations"); a probe lets the reader tell such a file apart
/// and skip it. A protocol so that tests can fake a crash without a crashing file.
public protocol CheckpointProbe: Sendable {
    /// Reads and verifies `path` out of process and says how that ended. Never throws: a probe
    /// that cannot run says so with ``CheckpointProbeResult/unavailable(_:)``.
    func probe(path: String) -> CheckpointProbeResult
}

/// The probe `cerm` uses: runs `executable arguments… PATH` (by default this very binary with
/// its hidden `checkpoint-probe` subcommand) as a child and waits for it. The child's standard
/// output holds its ``ProbeReport`` when the file does not parse; its standard error is discarded.
/// The child runs in its own process group, so Ctrl-C at the terminal reaches only the caller;
/// with a ``stop`` signal the probe then kills the child and says
/// ``CheckpointProbeResult/interrupted(signal:)``.
public struct ChildProcessCheckpointProbe: CheckpointProbe {
    /// The hidden `cerm` subcommand that reads and verifies one checkpoint.
    public static let subcommand = "checkpoint-probe"

    /// The program run as the child.
    public let executable: String
    /// The child's arguments before the checkpoint path, which comes last.
    public let arguments: [String]
    /// Seconds the child may read a file of this many bytes before it is killed and the file
    /// counted as corrupt.
    public let timeLimit: @Sendable (_ bytes: Int) -> Double
    /// The caller's stop flag, polled while the child reads; nil for a caller that Ctrl-C ends
    /// outright (the child, in its own process group, then dies with it by PR_SET_PDEATHSIG).
    public let stop: StopSignal?
    private let logger: Logger

    /// The default ``timeLimit``: a minute, plus a second per 10 MB. Far above any honest read
    /// (the default run's 13 MB checkpoints read in 0.05 s; a 48 GB one at 100 MB/s takes 8
    /// minutes of its 81), yet a file on which libhdf5 loops ends in a message, not a hang.
    public static func defaultTimeLimit(bytes: Int) -> Double { 60 + Double(bytes) / 10e6 }

    /// `/proc/self/exe` names the binary this process runs even when the file was replaced
    /// since, so the child reads with the same code; elsewhere, the bundle's executable.
    /// The child's default arguments: the subcommand, and this process's pid, so that the child
    /// dies with it instead of reading on, orphaned, a file libhdf5 loops on.
    public static var defaultArguments: [String] { [subcommand, "--parent-pid", "\(getpid())"] }

    public init(executable: String? = nil, arguments: [String] = ChildProcessCheckpointProbe.defaultArguments,
                timeLimit: @escaping @Sendable (_ bytes: Int) -> Double = ChildProcessCheckpointProbe.defaultTimeLimit(bytes:),
                stop: StopSignal? = nil, logger: Logger = Logger(label: "checkpoint")) {
        self.executable = executable
            ?? (FileManager.default.fileExists(atPath: "/proc/self/exe") ? "/proc/self/exe" : Bundle.main.executablePath ?? "cerm")
        self.arguments = arguments
        self.timeLimit = timeLimit
        self.stop = stop
        self.logger = logger
    }

    public func probe(path: String) -> CheckpointProbeResult {
        let result = run(path: path)
        if case let .unavailable(reason) = result {
            // Logged here, not by the reader: callers silence the reader's logger (the
            // coordinator reports skipped files as events), and this warning must still show.
            logger.warning("could not read \(path) in a child process first (\(reason)); reading it in this process, where a corrupt file can crash libhdf5")
        }
        return result
    }

    private func run(path: String) -> CheckpointProbeResult {
        // The Swift runtime's crash backtracer would only delay the expected death (and could
        // wait for a user at a terminal); its report goes nowhere anyway.
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFT_BACKTRACE"] = "enable=no"
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { return .unavailable("cannot make a pipe: \(String(cString: strerror(errno)))") }
        // Close-on-exec, so that no other child spawned meanwhile keeps the write end open
        // (the child's own standard output is a dup2 of it, which exec keeps).
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        let pid: pid_t
        let spawned = spawnChild(executable: executable, arguments: arguments + [path], environment: environment,
                                 silenced: true, stdout: ends[1], ownProcessGroup: true)
        close(ends[1])
        defer { close(ends[0]) }
        switch spawned {
        case let .success(started): pid = started
        case let .failure(error): return .unavailable("cannot start \(executable): \(error)")
        }
        let bytes = ((try? FileManager.default.attributesOfItem(atPath: path)[.size]) as? Int) ?? 0
        let limit = timeLimit(bytes)
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(max(0, limit) * 1e9)
        var status: Int32 = 0
        var pause: UInt32 = 1_000
        while true {
            let waited = waitpid(pid, &status, WNOHANG)
            if waited == pid { break }
            if waited == -1 {
                // A signal handler (StopSignal) interrupts the wait: wait again.
                guard errno == EINTR else { return .unavailable("waiting for \(executable): \(String(cString: strerror(errno)))") }
                continue
            }
            if let signal = stop?.signal {
                kill(pid, SIGKILL)
                while waitpid(pid, &status, 0) == -1, errno == EINTR {}
                return .interrupted(signal: signal)
            }
            if DispatchTime.now().uptimeNanoseconds >= deadline {
                kill(pid, SIGKILL)
                while waitpid(pid, &status, 0) == -1, errno == EINTR {}
                return .timedOut(seconds: limit)
            }
            // Polled, from 1 ms up to 50 ms: a good file's probe ends in milliseconds.
            usleep(pause)
            pause = min(pause * 2, 50_000)
        }
        // The wait status layout (WIFSIGNALED / WTERMSIG / WEXITSTATUS are macros Swift lacks).
        let signal = status & 0x7f
        if signal == 0 {
            let exitStatus = (status >> 8) & 0xff
            return exitStatus == 0 ? .loads : .fails(status: exitStatus, report: ProbeReport.parse(Self.readAll(ends[0])))
        }
        guard Self.crashSignals.contains(signal) else {
            return .unavailable("the child was killed by \(Self.signalName(signal)), which says nothing about the file")
        }
        return .crashed(signal: signal)
    }

    /// What the exited child wrote, up to 64 KB (a report is one line).
    private static func readAll(_ descriptor: Int32) -> String {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 65_536 {
            let count = read(descriptor, &buffer, buffer.count)
            if count > 0 { bytes += buffer[0..<count]; continue }
            if count < 0, errno == EINTR { continue }
            break
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Signals by which a reading process dies of its own fault, as opposed to being killed
    /// from outside (SIGKILL by the OOM killer, SIGINT from the terminal ...), which says
    /// nothing about the file.
    public static let crashSignals: Set<Int32> = [SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE, SIGTRAP, SIGSYS]

    /// `SIGSEGV` for 11; `signal N` for signals without a name here.
    public static func signalName(_ signal: Int32) -> String {
        let names: [Int32: String] = [
            SIGSEGV: "SIGSEGV", SIGBUS: "SIGBUS", SIGABRT: "SIGABRT", SIGILL: "SIGILL", SIGFPE: "SIGFPE",
            SIGTRAP: "SIGTRAP", SIGSYS: "SIGSYS", SIGKILL: "SIGKILL", SIGTERM: "SIGTERM", SIGINT: "SIGINT",
            SIGHUP: "SIGHUP", SIGQUIT: "SIGQUIT", SIGPIPE: "SIGPIPE",
        ]
        return names[signal] ?? "signal \(signal)"
    }
}
