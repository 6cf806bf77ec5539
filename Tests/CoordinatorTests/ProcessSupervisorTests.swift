import Foundation
import Testing
@testable import Coordinator
@testable import Shared

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
        try supervisor.spawn(name: "worker-1", executable: "/bin/sh", arguments: ["-c", "exit 0"])
        let status = supervisor.waitForPrimary("coordinator", grace: 0.2, stopWhenOthersFail: true)
        #expect(status == 2)
        #expect(supervisor.running.isEmpty)
    }

    @Test func missingExecutableIsNamed() {
        let supervisor = ProcessSupervisor()
        #expect(throws: CermError.self) { try supervisor.spawn(name: "x", executable: "/nonexistent/cerm", arguments: []) }
    }
}
