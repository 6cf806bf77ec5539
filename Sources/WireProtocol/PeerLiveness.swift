import Foundation

/// One side's view of a peer's liveness (zguide's Paranoid Pirate): when we last heard from it,
/// when we last sent it a heartbeat. Used by the coordinator per worker and by a worker for the
/// coordinator.
public struct PeerLiveness: Sendable, Equatable {
    /// Seconds between heartbeats we send.
    public var interval: Double
    /// Silence after which the peer is dead.
    public var timeout: Double
    public private(set) var lastHeard: Double
    public private(set) var lastSent: Double

    /// A peer first heard (and greeted) at `now`.
    public init(interval: Double, timeout: Double, now: Double) {
        self.interval = interval
        self.timeout = timeout
        lastHeard = now
        lastSent = now
    }

    /// Any message from the peer proves it alive.
    public mutating func heard(at now: Double) { lastHeard = max(lastHeard, now) }
    /// Any message to the peer counts as a heartbeat.
    public mutating func sent(at now: Double) { lastSent = max(lastSent, now) }

    /// Whether the peer has been silent for longer than the timeout.
    public func isExpired(at now: Double) -> Bool { now - lastHeard > timeout }
    /// Whether we owe the peer a heartbeat.
    public func isHeartbeatDue(at now: Double) -> Bool { now - lastSent >= interval }
}

/// Exponential reconnect delays: `initial`, doubling up to `maximum`; reset after a successful
/// handshake. No jitter from time or randomness: a per-worker `spread` in [0, 1) (derive it from
/// the worker's name) staggers workers deterministically.
public struct ReconnectBackoff: Sendable, Equatable {
    public let initial: Double
    public let maximum: Double
    public let spread: Double
    public private(set) var attempts = 0

    public init(initial: Double, maximum: Double, spread: Double = 0) {
        self.initial = max(initial, 0)
        self.maximum = max(maximum, self.initial)
        self.spread = min(max(spread, 0), 0.999)
    }

    /// The delay before the next attempt; each call doubles the following one.
    public mutating func nextDelay() -> Double {
        let exponent = min(attempts, 62)
        attempts += 1
        let base = min(initial * pow(2, Double(exponent)), maximum)
        return base * (1 + 0.25 * spread)
    }

    /// After a successful handshake the next failure starts from `initial` again.
    public mutating func reset() { attempts = 0 }
}
