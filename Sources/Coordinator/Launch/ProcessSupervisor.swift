import Foundation
import Logging
import Runtime
import Shared

/// Starts and supervises the processes of a local cluster (`cerm launch`): one coordinator
/// (the primary) and N workers. A stop request (SIGINT or SIGTERM) reaches every child as
/// SIGTERM, which cerm processes treat like SIGINT. When the primary exits, the others get a
/// grace period, then SIGTERM, then SIGKILL, so nothing is left running.
///
/// Children are started with `posix_spawn` with an empty signal mask and default signal
/// dispositions: a parent's Dispatch threads block signals, and a blocked or ignored signal
/// would otherwise be inherited and make the child deaf to SIGTERM.
public final class ProcessSupervisor: @unchecked Sendable {
    /// One supervised child.
    public struct Child: Sendable {
        public let name: String
        public let pid: pid_t
    }

    private struct Entry {
        let name: String
        let pid: pid_t
        var exitStatus: Int32?
        /// How it ended, in words (`status 3`, `signal 9 (Killed)`), once it has.
        var ending: String?
        /// Whether its exit while the primary ran has been logged.
        var reported = false
    }

    /// How ``waitUntilReady(_:timeout:stop:isReady:)`` ended.
    public enum Readiness: Equatable, Sendable {
        /// `isReady` held while the child ran.
        case ready
        /// The child exited first, with this status (128 + signal if killed by one).
        case exited(status: Int32)
        /// A stop was requested first (not forwarded: ``waitForPrimary(_:grace:stop:stopWhenOthersFail:stopOthersAtOnce:)`` does).
        case stopped
        /// `timeout` seconds passed.
        case timedOut
    }

    private let lock = NSLock()
    private var entries: [Entry] = []
    private let logger: Logger

    public init(logger: Logger = Logger(label: "launch")) {
        self.logger = logger
    }

    /// Starts `executable arguments…` as child `name`, inheriting stdout, stderr and the environment.
    @discardableResult
    public func spawn(name: String, executable: String, arguments: [String]) throws -> Child {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw CermError.io(path: executable, reason: "cannot start \(name): not an executable file")
        }
        let pid: pid_t
        switch spawnChild(executable: executable, arguments: arguments, environment: ProcessInfo.processInfo.environment) {
        case let .success(started): pid = started
        case let .failure(error): throw CermError.io(path: executable, reason: "cannot start \(name): \(error)")
        }
        lock.lock(); entries.append(Entry(name: name, pid: pid)); lock.unlock()
        logger.info("started \(name) pid \(pid)")
        return Child(name: name, pid: pid)
    }

    /// Reaps exited children without blocking and records their status.
    private func reap() {
        lock.lock(); defer { lock.unlock() }
        for i in entries.indices where entries[i].exitStatus == nil {
            var status: Int32 = 0
            if waitpid(entries[i].pid, &status, WNOHANG) == entries[i].pid {
                let signal = status & 0x7f
                entries[i].exitStatus = signal == 0 ? (status >> 8) & 0xff : 128 + signal
                entries[i].ending = signal == 0 ? "status \((status >> 8) & 0xff)" : "signal \(signal) (\(String(cString: strsignal(signal))))"
            }
        }
    }

    /// The children still running.
    public var running: [Child] {
        reap()
        lock.lock(); defer { lock.unlock() }
        return entries.filter { $0.exitStatus == nil }.map { Child(name: $0.name, pid: $0.pid) }
    }

    /// Sends `signal` to every running child.
    public func forward(signal: Int32) {
        for child in running { kill(child.pid, signal) }
    }

    /// Waits until `isReady()` holds while child `name` runs (polled every 20 ms), so that
    /// what depends on it starts only once it is ready: `cerm launch` starts its workers only
    /// once its coordinator has bound the endpoint, instead of letting them join whatever else
    /// listens there. Ends early when the child exits, a stop is requested on `stop`, or
    /// `timeout` seconds pass.
    public func waitUntilReady(_ name: String, timeout: Double, stop: StopSignal? = nil, isReady: () -> Bool) -> Readiness {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            // Readiness first: a child that got ready and exited at once (nothing to do) was ready.
            if isReady() { return .ready }
            reap()
            lock.lock()
            let status = entries.first { $0.name == name }.map { $0.exitStatus ?? -1 } ?? 1
            lock.unlock()
            if status >= 0 { return isReady() ? .ready : .exited(status: status) }
            if let stop, stop.isRequested { return .stopped }
            if Date() >= deadline { return .timedOut }
            usleep(20_000)
        }
    }

    /// Logs each child other than `primary` that exited since the last call, once: a warning
    /// when it failed or was killed (a `kill -9`ed worker would otherwise vanish without a
    /// word), info for a clean exit (a worker leaving on the coordinator's goodbye). Exited
    /// children are not restarted.
    private func reportExits(besides primary: String) {
        lock.lock()
        var exited: [Entry] = []
        for i in entries.indices where entries[i].name != primary && entries[i].exitStatus != nil && !entries[i].reported {
            entries[i].reported = true
            exited.append(entries[i])
        }
        lock.unlock()
        for child in exited {
            let ending = child.ending ?? "status \(child.exitStatus ?? 0)"
            // A clean exit is a worker leaving on the coordinator's goodbye at the end of a run.
            if child.exitStatus == 0 {
                logger.info("\(child.name) (pid \(child.pid)) exited with \(ending)")
            } else {
                logger.warning("\(child.name) (pid \(child.pid)) exited with \(ending) while \(primary) runs; it is not restarted")
            }
        }
    }

    /// Waits for child `primary` to exit, then stops the others: `grace` seconds to exit on
    /// their own (workers leave on the coordinator's goodbye), SIGTERM, `grace` more, SIGKILL.
    /// When `stopOthersAtOnce` returns true for the primary's exit status, the others get
    /// SIGTERM at once instead (no goodbye is coming: the primary failed, or had nothing to do).
    /// A stop request on `stop` is forwarded as SIGTERM. With `stopWhenOthersFail`, once every
    /// other child has exited and each failed (refused or crashed workers), the primary is
    /// stopped too instead of waiting forever for workers that will not come back. A child that
    /// exited 0 left on the primary's goodbye, so the primary is ending by itself: then, and
    /// after a stop request, earlier failures neither stop it nor replace its status.
    /// Returns the primary's exit status (128 + signal if it was killed by one), the first
    /// failed child's status when the others' failure ended the run, or 1 if there is no such child.
    public func waitForPrimary(_ primary: String, grace: Double = 5, stop: StopSignal? = nil,
                               stopWhenOthersFail: Bool = false,
                               stopOthersAtOnce: (_ primaryStatus: Int32) -> Bool = { _ in false }) -> Int32 {
        var forwarded = false
        var othersFailed: Int32?
        while true {
            reap()
            lock.lock()
            let entry = entries.first { $0.name == primary }
            let others = entries.filter { $0.name != primary }
            lock.unlock()
            guard let entry else { return 1 }
            if entry.exitStatus == nil { reportExits(besides: primary) }
            if let status = entry.exitStatus {
                if stopOthersAtOnce(status) { terminateAll(grace: grace) } else { stopAll(grace: grace) }
                return othersFailed ?? status
            }
            if stopWhenOthersFail, othersFailed == nil, !forwarded, !others.isEmpty,
               others.allSatisfy({ $0.exitStatus != nil && $0.exitStatus != 0 }),
               let failure = others.first, let failed = failure.exitStatus {
                othersFailed = failed
                logger.error("every worker has exited (\(failure.name) with status \(failed)); stopping \(primary)")
                kill(entry.pid, SIGTERM)
            }
            if let stop, stop.isRequested, !forwarded {
                forwarded = true
                logger.info("stop requested; sending SIGTERM to \(running.count) processes")
                forward(signal: SIGTERM)
            }
            usleep(20_000)
        }
    }

    /// Stops every child: waits `grace` seconds, SIGTERM, waits `grace`, SIGKILL, reaps.
    public func stopAll(grace: Double) {
        if waitUntilNoneRunning(grace) { return }
        for child in running { logger.warning("\(child.name) still running; sending SIGTERM"); kill(child.pid, SIGTERM) }
        killAfter(grace: grace)
    }

    /// Stops every child without a grace period: SIGTERM now (expected, so not a warning),
    /// waits `grace`, SIGKILL, reaps.
    public func terminateAll(grace: Double) {
        for child in running { kill(child.pid, SIGTERM) }
        killAfter(grace: grace)
    }

    /// After SIGTERM: waits `grace`, then SIGKILL for the children still running.
    private func killAfter(grace: Double) {
        if waitUntilNoneRunning(grace) { return }
        for child in running { logger.error("\(child.name) ignored SIGTERM; sending SIGKILL"); kill(child.pid, SIGKILL) }
        // SIGKILL cannot be ignored; wait for the reaping to be observed.
        _ = waitUntilNoneRunning(max(grace, 5))
    }

    private func waitUntilNoneRunning(_ seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        repeat {
            if running.isEmpty { return true }
            usleep(10_000)
        } while Date() < deadline
        return running.isEmpty
    }
}
