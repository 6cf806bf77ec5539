import Configuration
@testable import Coordinator
import Runtime
import Shared
import Testing
import WireProtocol

/// Fixed-lag mode: which version each step samples with, and the scheduler sending every task
/// of a step with exactly that version, whatever the version of the moment.
@Suite struct FixedLagTests {
    static func settings(lag: UInt64) -> SchedulerSettings { TaskSchedulerTests.settings(mode: .fixedLag, pairsPerTask: 1, staleness: lag) }

    @Test func stepKSamplesWithTheVersionAfterStepKMinusOneMinusLag() throws {
        #expect(FixedLag(settings: TaskSchedulerTests.settings(mode: .async), completedSteps: 0, policyVersion: 0) == nil)
        for (lag, expected) in [(UInt64(1), [UInt64](arrayLiteral: 0, 0, 1, 2, 3)), (2, [0, 0, 0, 1, 2])] {
            var fresh = try #require(FixedLag(settings: Self.settings(lag: lag), completedSteps: 0, policyVersion: 0))
            var versions: [UInt64] = []
            // As the step driver does: open up to `lag` steps ahead, publish after each update.
            for step in 1...5 {
                versions.append(try fresh.version(forStep: step))
                fresh.published(UInt64(step), afterStep: step)
            }
            #expect(versions == expected, "lag \(lag)")
        }
        // Resumed at step 3 (version 3) from a checkpoint that kept version 2.
        var resumed = try #require(FixedLag(settings: Self.settings(lag: 1), completedSteps: 3, policyVersion: 3))
        resumed.kept.insert(2)
        #expect(try resumed.version(forStep: 4) == 2)
        #expect(try resumed.version(forStep: 5) == 3)
        #expect(throws: CermError.invalid("fixed-lag: step 6 samples with the version after step 4, which is not published yet")) {
            try resumed.version(forStep: 6)
        }
        // A checkpoint of a sync run (or a smaller lag) does not hold the version needed.
        let fromSync = try #require(FixedLag(settings: Self.settings(lag: 2), completedSteps: 3, policyVersion: 3, checkpoint: "run/step_3.h5"))
        #expect(throws: CermError.invalid("fixed-lag (max_staleness = 2): step 4 samples with the policy after step 1, which the "
                                          + "checkpoint of step 3 (run/step_3.h5) does not hold (it holds v3); resume from a checkpoint of a fixed-lag "
                                          + "run with max_staleness ≥ 2, or continue it in sync mode")) { try fromSync.version(forStep: 4) }
    }

    @Test func everyTaskOfAStepGoesOutWithItsVersionOnceItIsPublished() throws {
        let clock = ManualClock()
        var s = TaskSchedulerTests.scheduler(Self.settings(lag: 1), workers: [TaskSchedulerTests.alice], credit: 8, clock: clock)
        #expect(throws: SchedulerError.stepVersion(step: 1, mode: .fixedLag)) { try s.openStep(1, pairIDs: [1]) }
        try s.openStep(1, pairIDs: [1], version: 0)
        try s.openStep(2, pairIDs: [2], version: 1)
        // Version 1 is not published: step 2 waits, step 1 goes out.
        #expect(s.dispatch(now: clock.now()).map { [$0.task.step, $0.task.policyVersion] } == [[1, 0]])
        try s.advancePolicy(to: 1)
        try s.advancePolicy(to: 2)
        // Published (and passed): step 2 goes out with version 1, not the newest.
        let second = s.dispatch(now: clock.now())
        #expect(second.map { [$0.task.step, $0.task.policyVersion] } == [[2, 1]])
        // Its result, sampled with version 1, is accepted although version 2 is current.
        let task = try #require(second.first?.task)
        guard case .accepted(_, 2, true) = s.handle(result: TaskSchedulerTests.result(for: task), from: TaskSchedulerTests.alice, now: clock.now())
        else { Issue.record("a fixed-lag result of its step's version was not accepted"); return }
        var sync = TaskScheduler(settings: TaskSchedulerTests.settings())
        #expect(throws: SchedulerError.stepVersion(step: 1, mode: .sync)) { try sync.openStep(1, pairIDs: [1], version: 0) }
    }
}
