@testable import Coordinator
import Foundation
import Logging
import Runtime
import TestSupport
import Testing

/// A probe that answers from a table instead of running anything: a crash without a file
/// that crashes libhdf5.
struct FakeCheckpointProbe: CheckpointProbe {
    /// Paths not listed load.
    var results: [String: CheckpointProbeResult]

    func probe(path: String) -> CheckpointProbeResult { results[path] ?? .loads }
}

/// Makes the checkpoint at `path` one that crashes libhdf5 1.10.8 (SIGSEGV in `H5Aread`), as
/// fuzzed files did: in the global heap collection ("GCOL") holding the variable-length
/// `format` string, the object's 8-byte size field (just before the string "cerm-checkpoint")
/// gets 0xd5 in its fourth byte, so `H5HG_read` copies ~3.5 GB out of a 4 KB collection.
/// Other bytes and values make other files: 0xff in the first byte makes libhdf5 loop.
func corruptFormatHeapObject(in path: String, byte: Int = 3, value: UInt8 = 0xd5) throws {
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    func find(_ needle: [UInt8], from start: Int) -> Int? {
        guard bytes.count >= needle.count else { return nil }
        return (start...(bytes.count - needle.count)).first { bytes[$0..<($0 + needle.count)].elementsEqual(needle) }
    }
    let collection = try #require(find(Array("GCOL".utf8), from: 0), "no global heap in \(path)")
    let string = try #require(find(Array(CheckpointFormat.name.utf8), from: collection), "no format string in \(path)")
    // Object header: index (2), reference count (2), reserved (4), size (8), then the data.
    let size = string - 8
    let stored = bytes[size..<string].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    try #require(stored == UInt64(CheckpointFormat.name.utf8.count), "unexpected heap object layout in \(path)")
    bytes[size + byte] = value
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

@Suite("Checkpoint probe")
struct CheckpointProbeTests {
    static let crashMessage = "reading it crashed libhdf5 (SIGSEGV in a child process that read it first); the file is corrupt"

    /// A run directory holding valid checkpoints of steps 1 and 2, and their paths.
    static func run(_ label: String) throws -> (dir: String, step1: String, step2: String) {
        let dir = try makeTemporaryDirectory(label)
        let writer = CheckpointWriter(directory: dir, keepLast: 10)
        for step in [1, 2] { try writer.write(sampleState(step: step)) }
        return (dir, (dir as NSString).appendingPathComponent("step_1.h5"), (dir as NSString).appendingPathComponent("step_2.h5"))
    }

    /// The newest file reported crashed is skipped with a message naming it and the signal; the
    /// older one is loaded. The file itself is valid: only the probe's word made it skipped.
    @Test func resumeSkipsAFileWhoseProbeCrashed() throws {
        let (dir, step1, step2) = try Self.run("probe-skip")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let probe = FakeCheckpointProbe(results: [step2: .crashed(signal: SIGSEGV)])
        var skipped: [CheckpointError] = []
        // A child that could not parse the file says why: that is the skip reason, and this
        // process does not parse the file (valid here, so only the report can have skipped it).
        let reported = FakeCheckpointProbe(results: [step2: .fails(status: 1, report: ProbeReport(
            checkpointReason: "unreadable: x", description: "checkpoint \(step2): unreadable: x"))])
        var skippedReported: [CheckpointError] = []
        #expect(try CheckpointReader.resume(from: dir, probe: reported) { skippedReported.append($0) }.path == step1)
        #expect(skippedReported.map(\.description) == ["checkpoint \(step2): unreadable: x"])
        #expect(skippedReported.map { "\($0.reason)" } == ["unreadable: x"])
        // A probe that timed out skips the file the same way, with its own message.
        let hung = FakeCheckpointProbe(results: [step2: .timedOut(seconds: 61.3)])
        var skippedHung: [CheckpointError] = []
        #expect(try CheckpointReader.resume(from: dir, probe: hung) { skippedHung.append($0) }.path == step1)
        #expect(skippedHung.map(\.description) == ["\(step2): a child process reading it first had not finished after 61 s "
                                                   + "(libhdf5 loops on some corrupt files); the file is treated as corrupt"])
        let loaded = try CheckpointReader.resume(from: dir, probe: probe) { skipped.append($0) }
        #expect(loaded.path == step1)
        #expect(loaded.state.isBitIdentical(to: sampleState(step: 1)))
        #expect(skipped == [CheckpointError(path: step2, reason: .crashesReader(signal: SIGSEGV))])
        #expect(skipped.map(\.description) == ["\(step2): \(Self.crashMessage)"])
        #expect(try CheckpointReader.findResumeCheckpoint(runDir: dir, probe: probe)?.path == step1)

        // Named alone (no fallback): an error naming the file, not a crash.
        #expect(throws: CheckpointError(path: step2, reason: .crashesReader(signal: SIGSEGV))) {
            try CheckpointReader.resume(from: step2, probe: probe)
        }
        // A stop request during the probe is no verdict on the file: resuming ends there,
        // without a skip and without trying the older file.
        let stopped = FakeCheckpointProbe(results: [step2: .interrupted(signal: SIGINT)])
        var skippedStopped: [CheckpointError] = []
        #expect(throws: CheckpointReadInterrupted(path: step2, signal: SIGINT)) {
            try CheckpointReader.resume(from: dir, probe: stopped) { skippedStopped.append($0) }
        }
        #expect(skippedStopped.isEmpty)
        #expect("\(CheckpointReadInterrupted(path: step2, signal: SIGINT))"
                == "stopped by SIGINT while a child process read \(step2) first; the file was not loaded")
        // Every file crashed: the "none loads" error lists them with the signal.
        let all = FakeCheckpointProbe(results: [step2: .crashed(signal: SIGSEGV), step1: .crashed(signal: SIGABRT)])
        do {
            _ = try CheckpointReader.resume(from: dir, probe: all)
            Issue.record("resumed although every file crashed its probe")
        } catch {
            #expect("\(error)" == "no checkpoint to resume: every step_<N>.h5 file of \(dir) failed to load: step_2.h5: \(Self.crashMessage); "
                    + "step_1.h5: reading it crashed libhdf5 (SIGABRT in a child process that read it first); the file is corrupt")
        }
    }

    /// An ordinary failure of the probe, or no probe at all, leaves the judgement to the
    /// in-process read: its error, once, and a good file loads.
    @Test func aProbeThatFailsOrCannotRunDefersToTheInProcessRead() throws {
        let (dir, step1, step2) = try Self.run("probe-defer")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: step2))
        let probe = FakeCheckpointProbe(results: [step2: .fails(status: 1, report: nil), step1: .unavailable("test")])
        var skipped: [CheckpointError] = []
        #expect(try CheckpointReader.resume(from: dir, probe: probe) { skipped.append($0) }.path == step1)
        #expect(skipped == [CheckpointError(path: step2, reason: .notHDF5("no HDF5 signature"))])
    }

    /// The real probe's reading of a child's end, with `sh` as the child: exit status, crash
    /// signal, a kill from outside (not the file's fault), and a binary that cannot start.
    @Test func childProcessProbeTellsHowTheChildEnded() throws {
        func probe(_ script: String) -> CheckpointProbeResult {
            ChildProcessCheckpointProbe(executable: "/bin/sh", arguments: ["-c", script]).probe(path: "step_1.h5")
        }
        #expect(probe("exit 0") == .loads)
        #expect(probe("exit 3") == .fails(status: 3, report: nil))
        // A report on stdout is passed on, and raised without an in-process read.
        #expect(probe(#"printf 'checkpoint\tno such file\tcheckpoint x.h5: no such file\n'; exit 1"#)
                == .fails(status: 1, report: ProbeReport(checkpointReason: "no such file", description: "checkpoint x.h5: no such file")))
        #expect(probe(#"printf 'error\t\tw.h5: weights checksum mismatch\n'; exit 1"#)
                == .fails(status: 1, report: ProbeReport(checkpointReason: nil, description: "w.h5: weights checksum mismatch")))
        // The path is the script's $0: it is passed last.
        #expect(probe(#"test "$0" = step_1.h5"#) == .loads)
        #expect(probe("kill -SEGV $$") == .crashed(signal: SIGSEGV))
        #expect(probe("kill -ABRT $$") == .crashed(signal: SIGABRT))
        #expect(probe("kill -KILL $$") == .unavailable("the child was killed by SIGKILL, which says nothing about the file"))
        // A child still reading at the time limit is killed, and the file counted as corrupt.
        let slow = ChildProcessCheckpointProbe(executable: "/bin/sh", arguments: ["-c", "sleep 30"], timeLimit: { _ in 0.3 })
        let started = Date()
        #expect(slow.probe(path: "step_1.h5") == .timedOut(seconds: 0.3))
        #expect(Date().timeIntervalSince(started) < 10)
        #expect(ChildProcessCheckpointProbe.defaultTimeLimit(bytes: 13_247_154) == 60 + 1.3247154)
        // The caller's stop request ends the wait: the child is killed, whatever its time limit.
        let stop = StopSignal()
        let stoppable = ChildProcessCheckpointProbe(executable: "/bin/sh", arguments: ["-c", "sleep 30"], stop: stop)
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.3) { stop.request(SIGINT) }
        let stopStarted = Date()
        #expect(stoppable.probe(path: "step_1.h5") == .interrupted(signal: SIGINT))
        #expect(Date().timeIntervalSince(stopStarted) < 10)
        // The child leads a process group of its own (field 5 of /proc/PID/stat is the group),
        // so Ctrl-C at a terminal reaches only the caller, which decides what it means.
        #expect(probe(#"read -r line < /proc/$$/stat; set -- $line; test "$5" = "$$""#) == .loads)
        let missing = ChildProcessCheckpointProbe(executable: "/nonexistent/cerm")
        #expect(missing.probe(path: "step_1.h5") == .unavailable("cannot start /nonexistent/cerm: No such file or directory"))

        // A probe that cannot start never makes resume impossible: the file is read in-process.
        let (dir, _, step2) = try Self.run("probe-missing")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try CheckpointReader.resume(from: dir, probe: missing).path == step2)
    }
}
