import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A monotonic clock in seconds since an arbitrary origin. Liveness and scheduling logic take
/// the time as a parameter or from an injected clock, so tests drive it with ``ManualClock``
/// and never sleep.
public protocol Clock: Sendable {
    /// Seconds since this clock's origin; never decreases.
    func now() -> Double
}

/// The process's monotonic clock (`CLOCK_MONOTONIC`): unaffected by wall-clock changes.
public struct SystemClock: Clock {
    public init() {}
    public func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}

/// A clock that moves only when told; for tests.
public final class ManualClock: Clock, @unchecked Sendable {
    private let lock = NSLock()
    private var current: Double

    public init(start: Double = 0) { current = start }

    public func now() -> Double {
        lock.lock(); defer { lock.unlock() }
        return current
    }

    /// Moves the clock forward by `seconds` (negative values are ignored: the clock is monotonic).
    public func advance(by seconds: Double) {
        lock.lock(); defer { lock.unlock() }
        if seconds > 0 { current += seconds }
    }
}
