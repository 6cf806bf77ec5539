import ArgumentParser
import Coordinator
import Foundation
import Logging
import Runtime
import Shared

/// `cerm launch`: a local cluster, one coordinator and N workers, as supervised child processes.
struct LaunchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "launch",
        abstract: "Start a coordinator and N workers on this machine and supervise them.",
        discussion: """
            SIGINT/SIGTERM reach every child as SIGTERM (the coordinator stops gracefully and saves). \
            When the coordinator exits the workers get a grace period, then SIGTERM, then SIGKILL; \
            they get SIGTERM at once when it failed or the resumed run was already at its last step. \
            Workers start once the coordinator has bound the endpoint (none when it fails to); \
            a worker that exits while the coordinator runs is logged, not restarted. \
            Children also die with the launcher. Exits with the coordinator's status.
            """)

    @Option(help: "The run's config file.")
    var config: String = "cluster.toml"

    @Option(help: "Number of workers (default: cluster.workers).")
    var workers: Int?

    @Option(help: "Override run.steps (total optimizer steps, counting restored ones; passed to the coordinator).")
    var steps: Int?

    @Option(name: .customLong("init"), help: "Initial weights for the policy (passed to the coordinator).")
    var initPath: String?

    @Flag(help: "Resume from the run directory's latest checkpoint (passed to the coordinator).")
    var resume = false

    func validate() throws {
        if let workers, workers < 0 { throw ValidationError("--workers must not be negative, got \(workers)") }
        if let steps, steps < 1 { throw ValidationError("--steps must be at least 1, got \(steps)") }
    }

    func run() throws {
        let stop = StopSignal.install()
        let cfg = try loadConfigOrExit(config)
        let workerCount = workers ?? cfg.cluster.workers
        let launcher = getpid()
        let logger = Logger(label: "launch")
        let supervisor = ProcessSupervisor(logger: logger)
        // Looked at before the coordinator starts writing checkpoints of its own.
        let finished = resume && Self.isAtLastStep(runDirectory: cfg.run.runDirectory, steps: steps ?? cfg.run.steps)
        // The coordinator writes its endpoint here once bound (a fresh name: no stale marker).
        let boundFile = (NSTemporaryDirectory() as NSString).appendingPathComponent("cerm-launch-\(launcher)-\(UUID().uuidString).bound")
        defer { try? FileManager.default.removeItem(atPath: boundFile) }
        var startWorkers = workerCount > 0
        do {
            let executable = try Self.currentExecutable()
            let endpoint = try Self.localEndpoint(cfg.cluster.endpoint)
            var coordinator = ["coordinator", "--config", config]
            if let steps { coordinator += ["--steps", String(steps)] }
            if let initPath { coordinator += ["--init", initPath] }
            if resume { coordinator.append("--resume") }
            coordinator += ["--parent-pid", String(launcher), "--bound-file", boundFile]
            try supervisor.spawn(name: "coordinator", executable: executable, arguments: coordinator)
            // Workers start only once this coordinator has bound the endpoint: started earlier,
            // they would join whatever else listens on the port (another run's coordinator)
            // while ours fails to bind.
            if startWorkers {
                switch supervisor.waitUntilReady("coordinator", timeout: Self.bindTimeout, stop: stop, isReady: {
                    FileManager.default.fileExists(atPath: boundFile)
                }) {
                case .ready:
                    break
                case let .exited(status):
                    // The coordinator printed its error (a port in use, a bad key file) itself.
                    if status != 0 { logger.error("the coordinator exited with status \(status) before binding \(cfg.cluster.endpoint); no worker started") }
                    startWorkers = false
                case .stopped:
                    startWorkers = false  // waitForPrimary forwards the stop to the coordinator
                case .timedOut:
                    throw CermError.invalid("the coordinator did not bind \(cfg.cluster.endpoint) within \(Int(Self.bindTimeout)) s; no worker started")
                }
            }
            for index in 0..<(startWorkers ? workerCount : 0) {
                let name = "worker-\(index)"
                try supervisor.spawn(name: name, executable: executable, arguments: [
                    "worker", "--connect", endpoint, "--config", config, "--name", name,
                    "--threads", String(max(1, cfg.cluster.workerThreads)), "--parent-pid", String(launcher),
                ])
            }
        } catch {
            supervisor.forward(signal: SIGTERM)
            supervisor.stopAll(grace: 5)
            throw exitWithError(error)
        }
        // Workers that never joined get no goodbye: when the coordinator failed or had nothing
        // to do, waiting for them to leave on their own would only end in a warning.
        let status = supervisor.waitForPrimary("coordinator", stop: stop, stopWhenOthersFail: startWorkers) { status in
            guard startWorkers, status != 0 || finished else { return false }
            logger.info(status != 0 ? "stopping the workers: the coordinator failed"
                                    : "stopping the workers: the run was already at step \(steps ?? cfg.run.steps)")
            return true
        }
        logger.info("coordinator exited with status \(status)")
        if status != 0 { throw ExitCode(status) }
    }

    /// Longest wait for the coordinator to bind before the workers start. It loads the
    /// checkpoint, model and data first (and exits on failure, which ends the wait at once), so
    /// this only guards against a coordinator stuck before binding.
    static let bindTimeout = 900.0

    /// Whether the newest checkpoint of `runDirectory` (by file name, not opened) is at `steps`
    /// or beyond, so that a resumed coordinator has nothing to do. A hint for stopping the
    /// workers: if that file is damaged the coordinator trains from an older one and says
    /// goodbye to its workers as usual.
    static func isAtLastStep(runDirectory: String, steps: Int) -> Bool {
        guard let newest = CheckpointFormat.checkpointFiles(in: runDirectory).last else { return false }
        return newest.step >= steps
    }

    /// The absolute path of the running `cerm` binary (children run the same build).
    static func currentExecutable() throws -> String {
        if let resolved = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return resolved }
        if let path = Bundle.main.executablePath { return path }
        throw CermError.invalid("cannot determine the path of the running executable")
    }

    /// Where local workers connect for the coordinator's bind endpoint: a wildcard host becomes
    /// loopback; a wildcard port cannot be known in advance.
    static func localEndpoint(_ endpoint: String) throws -> String {
        guard endpoint.hasPrefix("tcp://") else { return endpoint }
        let address = endpoint.dropFirst("tcp://".count)
        guard let colon = address.lastIndex(of: ":") else { return endpoint }
        let host = address[..<colon], port = address[address.index(after: colon)...]
        guard port != "*" && port != "0" else {
            throw CermError.invalid("cluster.endpoint \(endpoint): cerm launch needs a fixed port for its workers")
        }
        return (host == "*" || host == "0.0.0.0") ? "tcp://127.0.0.1:\(port)" : endpoint
    }
}
