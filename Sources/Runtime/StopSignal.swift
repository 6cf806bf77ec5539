import Dispatch
import Foundation
import Synchronization
import CSystemShims

/// Turns SIGINT and SIGTERM into a flag that long-running loops poll, so the coordinator,
/// workers and the launcher stop at a clean point (finish or abandon the step, save, say
/// goodbye) instead of dying mid-write.
public final class StopSignal: @unchecked Sendable {
    private let requested = Atomic<Int32>(0)
    /// Written once in `install` before the instance is shared; kept only to keep the sources alive.
    private var sources: [DispatchSourceSignal] = []

    /// A flag with no signal handlers attached (tests set it with ``request(_:)``).
    public init() {}

    /// Installs handlers for `signals` that set the flag and call `onSignal` (on a private queue).
    public static func install(signals: [Int32] = [SIGINT, SIGTERM], onSignal: (@Sendable (Int32) -> Void)? = nil) -> StopSignal {
        let stop = StopSignal()
        let queue = DispatchQueue(label: "cerm.signals")
        var made: [DispatchSourceSignal] = []
        for sig in signals {
            Foundation.signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
            source.setEventHandler {
                stop.request(sig)
                onSignal?(sig)
            }
            source.resume()
            made.append(source)
        }
        stop.sources = made
        return stop
    }

    /// Sets the flag as if `signal` had arrived.
    public func request(_ signal: Int32 = SIGTERM) {
        _ = requested.compareExchange(expected: 0, desired: signal, ordering: .sequentiallyConsistent)
    }

    /// Whether a stop was requested.
    public var isRequested: Bool { requested.load(ordering: .sequentiallyConsistent) != 0 }

    /// The first signal received, if any.
    public var signal: Int32? {
        let s = requested.load(ordering: .sequentiallyConsistent)
        return s == 0 ? nil : s
    }
}

/// Ties a child process's life to its parent's: when the parent dies (even by `kill -9`) the
/// kernel sends this process SIGTERM, so `cerm launch` never leaves orphans behind.
public enum ParentDeathSignal {
    /// Arms PR_SET_PDEATHSIG with `signal` (SIGTERM: a graceful stop). If the parent
    /// `expectedParent` already died before this call (we were re-parented), exits at once.
    public static func arm(expectedParent: pid_t, signal: Int32 = SIGTERM) {
        _ = cerm_set_parent_death_signal(signal)
        if getppid() != expectedParent { exit(0) }
    }
}
