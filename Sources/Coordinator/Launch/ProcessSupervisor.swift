import Foundation
import Logging
import Shared

/// Starts and supervises the processes of a local cluster (`cerm launch`): one coordinator
/// (the primary) and N workers. Signals are forwarded to every child; when the primary exits,
/// the others get a grace period, then SIGTERM, then SIGKILL, so nothing is left running.
public final class ProcessSupervisor: @unchecked Sendable {
    /// One supervised child.
    public struct Child: Sendable {
        public let name: String
        public let pid: pid_t
    }

    private let lock = NSLock()
    private var processes: [(name: String, process: Process)] = []
    private let logger: Logger

    public init(logger: Logger = Logger(label: "launch")) {
        self.logger = logger
    }

    /// Starts `executable arguments…` as child `name`, inheriting stdout and stderr.
    @discardableResult
    public func spawn(name: String, executable: String, arguments: [String]) throws -> Child {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        do {
            try process.run()
        } catch {
            throw CermError.io(path: executable, reason: "cannot start \(name): \(error.localizedDescription)")
        }
        lock.lock(); processes.append((name, process)); lock.unlock()
        logger.info("started \(name) pid \(process.processIdentifier)")
        return Child(name: name, pid: process.processIdentifier)
    }

    /// The children still running.
    public var running: [Child] {
        lock.lock(); defer { lock.unlock() }
        return processes.filter { $0.process.isRunning }.map { Child(name: $0.name, pid: $0.process.processIdentifier) }
    }

    /// Sends `signal` to every running child.
    public func forward(signal: Int32) {
        for child in running { kill(child.pid, signal) }
    }

    /// Waits for child `primary` to exit, then stops the others: `grace` seconds to exit on
    /// their own (workers leave on the coordinator's goodbye), SIGTERM, `grace` more, SIGKILL.
    /// Returns the primary's exit status (128 + signal if it was killed).
    public func waitForPrimary(_ primary: String, grace: Double = 5, stop: StopSignal? = nil) -> Int32 {
        lock.lock()
        let main = processes.first { $0.name == primary }?.process
        lock.unlock()
        guard let main else { return 1 }
        var forwarded = false
        while main.isRunning {
            if let stop, stop.isRequested, !forwarded, let sig = stop.signal {
                forwarded = true
                logger.info("forwarding signal \(sig) to \(running.count) processes")
                forward(signal: sig)
            }
            usleep(50_000)
        }
        let status = main.terminationReason == .uncaughtSignal ? 128 + main.terminationStatus : main.terminationStatus
        stopAll(grace: grace)
        return status
    }

    /// Stops every child: waits `grace` seconds, SIGTERM, waits `grace`, SIGKILL, reaps.
    public func stopAll(grace: Double) {
        func waitUntilNoneRunning(_ seconds: Double) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if running.isEmpty { return true }
                usleep(20_000)
            }
            return running.isEmpty
        }
        if waitUntilNoneRunning(grace) { return }
        for child in running { logger.warning("\(child.name) still running; sending SIGTERM"); kill(child.pid, SIGTERM) }
        if waitUntilNoneRunning(grace) { return }
        for child in running { logger.error("\(child.name) ignored SIGTERM; sending SIGKILL"); kill(child.pid, SIGKILL) }
        _ = waitUntilNoneRunning(grace)
    }
}
