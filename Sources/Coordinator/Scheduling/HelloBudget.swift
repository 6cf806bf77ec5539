/// How many HELLOs the coordinator answers: a token bucket holding at most ``burst`` HELLOs,
/// refilled at ``perSecond`` (docs/PROTOCOL.md, "Handshake"). A HELLO past the budget is
/// left unanswered and held nowhere; its worker hears nothing and reconnects after its
/// `heartbeat_timeout`, as after any silence. Why: answering costs the coordinator's socket
/// thread a registration or a REFUSE, a send and, for a WELCOME, a joining record, and a peer on
/// an insecure endpoint can open connections as fast as it is answered. With the budget a
/// flood costs at most ``perSecond`` answers a second, and a flooder that waits for its answers
/// (as a worker does) is slowed to that rate. Pure: time comes in as a parameter.
public struct HelloBudget: Equatable, Sendable {
    /// Far above any cluster's joins (a restart of 64 workers at once is 64 HELLOs), far below
    /// what a flood sends (thousands a second on loopback).
    public static let defaultPerSecond = 128.0
    /// As many as ``WorkerRegistry/defaultMaxJoining``: a whole cluster joining at once.
    public static let defaultBurst = WorkerRegistry.defaultMaxJoining
    /// Every HELLO answered (tests that flood on purpose).
    public static let unlimited = HelloBudget(perSecond: .infinity, burst: .max)

    public let perSecond: Double
    public let burst: Int
    private var tokens: Double
    private var refilledAt: Double?

    public init(perSecond: Double = HelloBudget.defaultPerSecond, burst: Int = HelloBudget.defaultBurst) {
        self.perSecond = max(0, perSecond)
        self.burst = max(1, burst)
        tokens = Double(self.burst)
    }

    /// Whether a HELLO arriving at `now` is answered (it spends one HELLO of the budget).
    public mutating func admit(now: Double) -> Bool {
        guard perSecond.isFinite else { return true }
        if let refilledAt, now > refilledAt {
            tokens = min(Double(burst), tokens + (now - refilledAt) * perSecond)
        }
        refilledAt = max(now, refilledAt ?? now)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
