import Logging
@testable import Runtime
import Synchronization
import Testing

/// The lines a logger wrote, as `LEVEL message`.
private final class CapturedLines: Sendable {
    let lines = Mutex<[String]>([])

    var logger: Logger { Logger(label: "limiter-test") { _ in CapturingHandler(captured: self) } }

    /// The lines since the last call.
    func take() -> [String] { lines.withLock { lines in defer { lines = [] }; return lines } }
}

private struct CapturingHandler: LogHandler {
    let captured: CapturedLines
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        captured.lines.withLock { $0.append("\(event.level) \(event.message)") }
    }
}

@Suite struct PeerWarningLimiterTests {
    /// Logs what a caller logs when `limiter` admits it.
    private func warn(_ limiter: PeerWarningLimiter, _ logger: Logger, peer: String, _ n: Int,
                      kind: String = "dropped malformed message", level: Logger.Level = .warning) {
        if limiter.admit(kind, from: "peer \(peer)", level: level) { logger.log(level: level, "\(kind) from peer \(peer): #\(n)") }
    }

    @Test func theFirstFiveOfAWindowAreLoggedAndTheRestSummedUpWhenItEnds() {
        let captured = CapturedLines()
        let logger = captured.logger
        let clock = ManualClock(start: 100)
        let limiter = PeerWarningLimiter(clock: clock, logger: logger)
        for n in 1...12 { warn(limiter, logger, peer: "0a", n) }
        warn(limiter, logger, peer: "0b", 1)
        #expect(captured.take() == (1...5).map { "warning dropped malformed message from peer 0a: #\($0)" }
            + ["warning dropped malformed message from peer 0b: #1"])

        // Just inside the window: still counted only, and nothing to sum up yet.
        clock.advance(by: 9.5)
        warn(limiter, logger, peer: "0a", 13)
        limiter.flush()
        #expect(captured.take() == [])

        // The window ends: housekeeping's flush sums up peer 0a (0b had nothing suppressed).
        clock.advance(by: 0.5)
        limiter.flush()
        #expect(captured.take() == [#"warning suppressed 8 more "dropped malformed message" warnings from peer 0a in the last 10 s"#])
        limiter.flush()
        #expect(captured.take() == [])
        #expect(limiter.groupCount == 0)

        // A new window logs again at once and in full.
        for n in 14...20 { warn(limiter, logger, peer: "0a", n) }
        #expect(captured.take() == (14...18).map { "warning dropped malformed message from peer 0a: #\($0)" })

        // Without a flush, the next warning after the window sums it up before its own line.
        clock.advance(by: 30)
        warn(limiter, logger, peer: "0a", 21)
        #expect(captured.take() == [
            #"warning suppressed 2 more "dropped malformed message" warnings from peer 0a in the last 10 s"#,
            "warning dropped malformed message from peer 0a: #21",
        ])
    }

    @Test func kindsAndPeersAreLimitedApartAndSummariesKeepTheirLevel() {
        let captured = CapturedLines()
        let logger = captured.logger
        let clock = ManualClock()
        let limiter = PeerWarningLimiter(clock: clock, logger: logger, burst: 1, window: 4)
        for n in 1...3 {
            warn(limiter, logger, peer: "0a", n, kind: "dropped RESULT", level: .notice)
            warn(limiter, logger, peer: "0a", n, kind: "rejected RESULT")
            warn(limiter, logger, peer: "0b", n, kind: "rejected RESULT")
        }
        #expect(captured.take() == [
            "notice dropped RESULT from peer 0a: #1",
            "warning rejected RESULT from peer 0a: #1",
            "warning rejected RESULT from peer 0b: #1",
        ])
        clock.advance(by: 4)
        limiter.flush()
        #expect(captured.take() == [
            #"notice suppressed 2 more "dropped RESULT" warnings from peer 0a in the last 4 s"#,
            #"warning suppressed 2 more "rejected RESULT" warnings from peer 0a in the last 4 s"#,
            #"warning suppressed 2 more "rejected RESULT" warnings from peer 0b in the last 4 s"#,
        ])
    }

    @Test func theTableIsCappedByEvictingTheOldestWindowWithItsCount() {
        let captured = CapturedLines()
        let logger = captured.logger
        let clock = ManualClock()
        let limiter = PeerWarningLimiter(clock: clock, logger: logger, burst: 1, window: 10, capacity: 2)
        for n in 1...3 { warn(limiter, logger, peer: "0a", n) }
        clock.advance(by: 1)
        warn(limiter, logger, peer: "0b", 1)
        clock.advance(by: 1.5)
        warn(limiter, logger, peer: "0c", 1)
        #expect(captured.take() == [
            "warning dropped malformed message from peer 0a: #1",
            "warning dropped malformed message from peer 0b: #1",
            #"warning suppressed 2 more "dropped malformed message" warnings from peer 0a in the last 2.5 s"#,
            "warning dropped malformed message from peer 0c: #1",
        ])
        #expect(limiter.groupCount == 2)
        // Many more peers than the cap: the table stays at the cap.
        for peer in 0..<1000 { warn(limiter, logger, peer: "p\(peer)", 1) }
        #expect(limiter.groupCount == 2)
    }

    /// A peer that reconnects gets a new routing id, so a new group, every time: the kind's
    /// budget over all sources bounds what such a flood logs, and its count is summed up once.
    @Test func aKindHasABudgetOverAllSourcesSoNewRoutingIDsDoNotEvadeTheLimit() {
        let captured = CapturedLines()
        let logger = captured.logger
        let clock = ManualClock()
        let limiter = PeerWarningLimiter(clock: clock, logger: logger, burst: 2, window: 10, kindBudget: 4)
        for peer in 0..<100 {
            for n in 1...3 { warn(limiter, logger, peer: "p\(peer)", n) }
        }
        // Another kind has its own budget.
        warn(limiter, logger, peer: "p99", 1, kind: "refused worker")
        #expect(captured.take() == [
            "warning dropped malformed message from peer p0: #1", "warning dropped malformed message from peer p0: #2",
            "warning dropped malformed message from peer p1: #1", "warning dropped malformed message from peer p1: #2",
            "warning refused worker from peer p99: #1",
        ])
        #expect(limiter.groupCount == 3)
        clock.advance(by: 10)
        limiter.flush()
        #expect(captured.take() == [
            #"warning suppressed 1 more "dropped malformed message" warnings from peer p0 in the last 10 s"#,
            #"warning suppressed 1 more "dropped malformed message" warnings from peer p1 in the last 10 s"#,
            #"warning suppressed 294 more "dropped malformed message" warnings from other peers in the last 10 s"#,
        ])
        // The next window has the whole budget again.
        warn(limiter, logger, peer: "p100", 1)
        #expect(captured.take() == ["warning dropped malformed message from peer p100: #1"])
        limiter.flush(all: true)
        #expect(captured.take() == [])
    }

    @Test func aFinalFlushReportsWindowsStillOpen() {
        let captured = CapturedLines()
        let logger = captured.logger
        let clock = ManualClock()
        let limiter = PeerWarningLimiter(clock: clock, logger: logger)
        for n in 1...9 { warn(limiter, logger, peer: "0a", n, kind: "refused worker") }
        _ = captured.take()
        clock.advance(by: 3)
        limiter.flush()
        #expect(captured.take() == [])
        limiter.flush(all: true)
        #expect(captured.take() == [#"warning suppressed 4 more "refused worker" warnings from peer 0a in the last 3 s"#])
        #expect(limiter.groupCount == 0)
    }
}
