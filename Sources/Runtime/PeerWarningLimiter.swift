import Logging
import Synchronization

/// Bounds the log lines a peer can cause at will (garbage frames, refused HELLOs, messages only
/// the coordinator may send), so a flood neither grows `train.log` without bound nor buries the
/// lines a user watches with `tail -f`, while a single bad message is still reported at once and
/// in full.
///
/// Warnings are grouped by *source* (who caused it, in words: `peer 006b8b4567`) and *kind*
/// (the fixed start of the line, e.g. `dropped malformed message`). Of each group, the first
/// ``burst`` in a window of ``window`` seconds (opened by the group's first warning) are
/// admitted; later ones are only counted. Once the window has ended, the next warning of the
/// group or ``flush()``, whichever comes first, writes one summary line at the warnings' level:
/// `suppressed 49995 more "dropped malformed message" warnings from peer 006b8b4567 in the last 10 s`.
/// A flood thus costs `burst` + 1 lines per group and window.
///
/// At most ``capacity`` groups are tracked: a new group beyond it evicts the one whose window
/// opened first, reporting its suppressed count early, so a flood from many routing ids costs
/// bounded memory and loses no count. And a peer that reconnects gets a new routing id, hence a
/// new group: so each kind also has a budget of ``kindBudget`` lines per window across all
/// sources, after which warnings from sources without a group of their own are only counted,
/// and summed up in one line when the kind's window ends:
/// `suppressed 4980 more "dropped malformed message" warnings from other peers in the last 10 s`.
/// Safe to use from any thread (the ZAP handler logs from its own).
public final class PeerWarningLimiter: Sendable {
    /// Warnings of one group admitted per window.
    public let burst: Int
    /// Seconds from a group's first warning to the end of its window.
    public let window: Double
    /// Groups tracked at most.
    public let capacity: Int
    /// Lines of one kind admitted per window, over all sources, before a source without a
    /// group of its own no longer gets one.
    public let kindBudget: Int
    private let clock: any Clock
    private let logger: Logger
    private let state = Mutex(State())

    private struct Group: Hashable {
        var kind: String
        var source: String
    }

    private struct Window {
        var opened: Double
        var seen: Int
        var level: Logger.Level
    }

    /// One kind's window over all sources: lines admitted, and warnings of sources refused a
    /// group (the kinds are the callers' fixed texts, so this table stays small).
    private struct KindWindow {
        var opened: Double
        var admitted: Int
        var overflow: Int
        var level: Logger.Level
    }

    private struct State {
        var windows: [Group: Window] = [:]
        var kinds: [String: KindWindow] = [:]
        /// No window opened before this; lets ``flush()`` skip its scan until one can have ended.
        var earliestOpened = Double.infinity
    }

    /// - Parameters:
    ///   - clock: the service's clock, so tests move windows without sleeping.
    ///   - logger: where summary lines go (the callers log admitted warnings themselves).
    public init(clock: any Clock, logger: Logger, burst: Int = 5, window: Double = 10, capacity: Int = 1024,
                kindBudget: Int = 20) {
        self.clock = clock
        self.logger = logger
        self.burst = max(1, burst)
        self.window = window
        self.capacity = max(1, capacity)
        self.kindBudget = max(1, kindBudget)
    }

    /// Groups tracked now (for tests of the cap).
    var groupCount: Int { state.withLock { $0.windows.count } }

    /// Counts a warning of `kind` caused by `source` and says whether to log it now. When the
    /// group's previous window has ended with warnings suppressed, their summary is logged
    /// first, so it precedes the admitted line. Key `source` by what the sender cannot vary per
    /// message (its routing id or address, not a name it sends), or a flood evades the limit.
    public func admit(_ kind: String, from source: String, level: Logger.Level = .warning) -> Bool {
        let now = clock.now()
        var summaries: [(Logger.Level, String)] = []
        let admitted = state.withLock { state -> Bool in
            var kindWindow = state.kinds[kind] ?? KindWindow(opened: now, admitted: 0, overflow: 0, level: level)
            if now - kindWindow.opened >= window {
                if let line = overflowSummary(kind, kindWindow, now: now) { summaries.append((kindWindow.level, line)) }
                kindWindow = KindWindow(opened: now, admitted: 0, overflow: 0, level: level)
            }
            kindWindow.level = level
            defer {
                state.kinds[kind] = kindWindow
                state.earliestOpened = min(state.earliestOpened, kindWindow.opened)
            }
            let group = Group(kind: kind, source: source)
            if var current = state.windows[group] {
                if now - current.opened >= window {
                    if let line = summary(group, current, now: now) { summaries.append((current.level, line)) }
                    current = Window(opened: now, seen: 0, level: level)
                }
                current.seen += 1
                current.level = level
                state.windows[group] = current
                if current.seen <= burst { kindWindow.admitted += 1 }
                return current.seen <= burst
            }
            guard kindWindow.admitted < kindBudget else {
                kindWindow.overflow += 1
                return false
            }
            kindWindow.admitted += 1
            if state.windows.count >= capacity, let oldest = state.windows.min(by: { $0.value.opened < $1.value.opened }) {
                state.windows[oldest.key] = nil
                if let line = summary(oldest.key, oldest.value, now: now) { summaries.append((oldest.value.level, line)) }
            }
            state.windows[group] = Window(opened: now, seen: 1, level: level)
            state.earliestOpened = min(state.earliestOpened, now)
            return true
        }
        // Outside the lock: a log handler may take its own locks or be slow.
        for (level, line) in summaries { logger.log(level: level, "\(line)") }
        return admitted
    }

    /// Logs the summaries of windows that have ended and forgets their groups. Call it
    /// periodically (the coordinator does on every housekeeping pass), so a flood that stops
    /// is still summed up; cheap while no window can have ended. `all` ends every window now,
    /// for a service that stops: no suppressed count goes unreported.
    public func flush(all: Bool = false) {
        let now = clock.now()
        var summaries: [(opened: Double, level: Logger.Level, line: String)] = []
        state.withLock { state in
            guard all || now - state.earliestOpened >= window else { return }
            var earliest = Double.infinity
            for (group, current) in state.windows {
                if all || now - current.opened >= window {
                    state.windows[group] = nil
                    if let line = summary(group, current, now: now) { summaries.append((current.opened, current.level, line)) }
                } else {
                    earliest = min(earliest, current.opened)
                }
            }
            for (kind, current) in state.kinds {
                if all || now - current.opened >= window {
                    state.kinds[kind] = nil
                    if let line = overflowSummary(kind, current, now: now) { summaries.append((current.opened, current.level, line)) }
                } else {
                    earliest = min(earliest, current.opened)
                }
            }
            state.earliestOpened = earliest
        }
        // In the order the windows opened (then by text), not the dictionary's.
        summaries.sort { ($0.opened, $0.line) < ($1.opened, $1.line) }
        for summary in summaries { logger.log(level: summary.level, "\(summary.line)") }
    }

    /// The summary of a window, or nil when nothing in it was suppressed. A window cut short (by
    /// eviction or `flush(all:)`) names the seconds it actually covered.
    private func summary(_ group: Group, _ ended: Window, now: Double) -> String? {
        let suppressed = ended.seen - burst
        guard suppressed > 0 else { return nil }
        let seconds = min(now - ended.opened, window)
        return "suppressed \(suppressed) more \"\(group.kind)\" warnings from \(group.source) in the last \(Self.format(seconds)) s"
    }

    /// The summary of a kind's warnings from sources refused a group, or nil when there were none.
    private func overflowSummary(_ kind: String, _ ended: KindWindow, now: Double) -> String? {
        guard ended.overflow > 0 else { return nil }
        let seconds = min(now - ended.opened, window)
        return "suppressed \(ended.overflow) more \"\(kind)\" warnings from other peers in the last \(Self.format(seconds)) s"
    }

    /// Whole seconds without a fraction, others with one decimal.
    private static func format(_ seconds: Double) -> String {
        let tenths = (seconds * 10).rounded()
        return tenths.truncatingRemainder(dividingBy: 10) == 0 ? String(Int(tenths / 10)) : String(tenths / 10)
    }
}
