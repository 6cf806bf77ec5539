import CSystemShims
#if canImport(Glibc)
import Glibc
#endif

/// A descriptor that another thread makes readable to wake a thread blocked in `zmq_poll` on its
/// socket (an eventfd): the coordinator's learner thread wakes the socket thread when it posts
/// work, a worker's compute thread wakes its socket thread when a task is done. Without it a
/// socket thread notices such work only when its poll times out (up to `pollMilliseconds`, at
/// each of them), which the distributed update pays several times a mini-batch. Where there is no
/// eventfd, ``descriptor`` is −1 and the poll times out as before.
public final class Wakeup: @unchecked Sendable {
    public let descriptor: Int32

    public init() { descriptor = cerm_eventfd_create() }

    deinit { if descriptor >= 0 { close(descriptor) } }

    /// Makes the descriptor readable until ``drain()`` (any thread, any number of times).
    public func signal() {
        guard descriptor >= 0 else { return }
        var one: UInt64 = 1
        _ = write(descriptor, &one, MemoryLayout<UInt64>.size)
    }

    /// Makes it unreadable again (the woken thread, before it looks for work).
    public func drain() {
        guard descriptor >= 0 else { return }
        var count: UInt64 = 0
        _ = read(descriptor, &count, MemoryLayout<UInt64>.size)
    }
}
