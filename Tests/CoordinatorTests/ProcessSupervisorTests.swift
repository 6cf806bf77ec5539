@testable import Coordinator
import Foundation
import Logging
@testable import Runtime
@testable import Shared
import Testing

/// A `[launch]` logger writing into a temporary file, as `cerm launch` writes its log.
private struct LaunchLog {
    let path = NSTemporaryDirectory() + "cerm-supervisor-\(UUID().uuidString).log"
    let sink = LogSink()
    var logger: Logger { Logger(label: "launch") { [sink] in CermLogHandler(label: $0, sink: sink) } }

    init() throws { try sink.attachFile(path) }

    /// The lines written so far, without their timestamps.
    func lines() throws -> [String] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { String($0.split(separator: " ", maxSplits: 1)[1]) }
    }

    func close() {
        sink.detachFile()
        try? FileManager.default.removeItem(atPath: path)
    }
}

@Suite struct ProcessSupervisorTests {
    @Test func primaryExitStopsTheOthersAndReportsItsStatus() throws {
        let supervisor = ProcessSupervisor()
        try supervisor.spawn(name: "coordinator", executable: "/bin/sh", arguments: ["-c", "exit 3"])
        let worker = try supervisor.spawn(name: "worker-1", executable: "/bin/sleep", arguments: ["30"])
        let status = supervisor.waitForPrimary("coordinator", grace: 0.2)
        #expect(status == 3)
        #expect(supervisor.running.isEmpty)
        #expect(kill(worker.pid, 0) != 0, "the worker must not outlive the launch")
    }

    @Test func stopRequestIsForwardedToEveryChild() throws {
        let supervisor = ProcessSupervisor()
        try supervisor.spawn(name: "coordinator", executable: "/bin/sleep", arguments: ["30"])
        try supervisor.spawn(name: "worker-1", executable: "/bin/sleep", arguments: ["30"])
        let stop = StopSignal()
        stop.request(SIGINT)
        let status = supervisor.waitForPrimary("coordinator", grace: 0.2, stop: stop)
        #expect(status == 128 + SIGTERM)
        #expect(supervisor.running.isEmpty)
    }

    @Test func childIgnoringSIGTERMIsKilled() throws {
        let supervisor = ProcessSupervisor()
        try supervisor.spawn(name: "coordinator", executable: "/bin/sh", arguments: ["-c", "exit 0"])
        try supervisor.spawn(name: "stubborn", executable: "/bin/sh", arguments: ["-c", "trap '' TERM; exec sleep 30"])
        _ = supervisor.waitForPrimary("coordinator", grace: 0.2)
        #expect(supervisor.running.isEmpty)
    }

    @Test func failedWorkersStopThePrimaryWhenAsked() throws {
        let supervisor = ProcessSupervisor()
        try supervisor.spawn(name: "coordinator", executable: "/bin/sleep", arguments: ["30"])
        try supervisor.spawn(name: "worker-0", executable: "/bin/sh", arguments: ["-c", "exit 2"])
        try supervisor.spawn(name: "worker-1", executable: "/bin/sh", arguments: ["-c", "sleep 0.3; exit 3"])
        let status = supervisor.waitForPrimary("coordinator", grace: 0.2, stopWhenOthersFail: true)
        #expect(status == 2)
        #expect(supervisor.running.isEmpty)
    }

    /// A worker killed earlier does not turn the end of the run into a failure: the last worker
    /// leaving cleanly (on the coordinator's goodbye, or on a stop request) means the
    /// coordinator is ending by itself, and its status is the launcher's. Seen: Ctrl-C after a
    /// `kill -9` of one worker made `cerm launch` stop the coordinator and exit 137.
    @Test func aCleanLastWorkerLeavesThePrimaryItsOwnStatus() throws {
        let supervisor = ProcessSupervisor()
        try supervisor.spawn(name: "coordinator", executable: "/bin/sh", arguments: ["-c", "sleep 1; exit 0"])
        try supervisor.spawn(name: "worker-0", executable: "/bin/sh", arguments: ["-c", "kill -9 $$"])
        try supervisor.spawn(name: "worker-1", executable: "/bin/sh", arguments: ["-c", "sleep 0.3; exit 0"])
        #expect(supervisor.waitForPrimary("coordinator", grace: 0.2, stopWhenOthersFail: true) == 0)

        // A stop request: forwarded, and the coordinator's own status (0 after a clean stop) is returned.
        let stopped = ProcessSupervisor()
        try stopped.spawn(name: "coordinator", executable: "/bin/sh", arguments: ["-c", "trap 'exit 0' TERM; sleep 30 & wait"])
        try stopped.spawn(name: "worker-0", executable: "/bin/sh", arguments: ["-c", "kill -9 $$"])
        try stopped.spawn(name: "worker-1", executable: "/bin/sh", arguments: ["-c", "trap 'exit 0' TERM; sleep 30 & wait"])
        let stop = StopSignal()
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.5) { stop.request(SIGINT) }
        #expect(stopped.waitForPrimary("coordinator", grace: 2, stop: stop, stopWhenOthersFail: true) == 0)
        #expect(stopped.running.isEmpty)
    }

    @Test func othersAreStoppedAtOnceWhenAskedForThePrimarysStatus() throws {
        let log = try LaunchLog()
        defer { log.close() }
        let supervisor = ProcessSupervisor(logger: log.logger)
        let coordinator = try supervisor.spawn(name: "coordinator", executable: "/bin/sh", arguments: ["-c", "exit 0"])
        let worker = try supervisor.spawn(name: "worker-0", executable: "/bin/sleep", arguments: ["30"])
        var asked: [Int32] = []
        let started = Date()
        let status = supervisor.waitForPrimary("coordinator", grace: 20) { asked.append($0); return true }
        #expect(status == 0)
        #expect(asked == [0])
        // No 20 s grace period, no warning: the worker got SIGTERM as soon as the primary exited.
        #expect(Date().timeIntervalSince(started) < 10)
        #expect(kill(worker.pid, 0) != 0)
        #expect(try log.lines() == ["INFO  [launch] started coordinator pid \(coordinator.pid)", "INFO  [launch] started worker-0 pid \(worker.pid)"])
    }

    /// A worker killed with `kill -9` while the coordinator runs is named in the log with its
    /// signal, at warning level; one that exits cleanly only at info level.
    @Test func workerExitsWhileThePrimaryRunsAreLogged() throws {
        let log = try LaunchLog()
        defer { log.close() }
        let supervisor = ProcessSupervisor(logger: log.logger)
        try supervisor.spawn(name: "coordinator", executable: "/bin/sleep", arguments: ["1"])
        let killed = try supervisor.spawn(name: "worker-0", executable: "/bin/sh", arguments: ["-c", "kill -9 $$"])
        let clean = try supervisor.spawn(name: "worker-1", executable: "/bin/sh", arguments: ["-c", "exit 0"])
        _ = supervisor.waitForPrimary("coordinator", grace: 0.2, stopWhenOthersFail: true)
        let lines = try log.lines()
        #expect(lines.contains("WARN  [launch] worker-0 (pid \(killed.pid)) exited with signal 9 (Killed) while coordinator runs; it is not restarted"),
                "\(lines)")
        #expect(lines.contains("INFO  [launch] worker-1 (pid \(clean.pid)) exited with status 0"),
                "\(lines)")
    }

    /// The launcher's wait for its coordinator to bind: ready when the condition holds, the
    /// child's status when it exits first.
    @Test func waitUntilReadyEndsWithTheConditionOrTheChildsExit() throws {
        let supervisor = ProcessSupervisor()
        try supervisor.spawn(name: "coordinator", executable: "/bin/sh", arguments: ["-c", "exit 4"])
        #expect(supervisor.waitUntilReady("coordinator", timeout: 30) { false } == .exited(status: 4))
        try supervisor.spawn(name: "other", executable: "/bin/sleep", arguments: ["30"])
        #expect(supervisor.waitUntilReady("other", timeout: 30) { true } == .ready)
        #expect(supervisor.waitUntilReady("other", timeout: 0.05) { false } == .timedOut)
        supervisor.terminateAll(grace: 0.2)
    }

    @Test func missingExecutableIsNamed() {
        let supervisor = ProcessSupervisor()
        #expect(throws: CermError.self) { try supervisor.spawn(name: "x", executable: "/nonexistent/cerm", arguments: []) }
    }
}
