import ArgumentParser
import Configuration
import Foundation
import Logging
import Runtime
import Shared
import WireProtocol
import Worker

/// `cerm worker --connect ENDPOINT`: a rollout worker on the engine (docs/PROTOCOL.md §7).
struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run a rollout worker: fetch weights from the coordinator, sample CE-RM rollouts, send them back.",
        discussion: """
            The config must be the coordinator's (the handshake compares hashes). The model (architecture, \
            tokenizer, chat template) and its weights come from the coordinator, so model.source need not \
            exist on this host. Exits 0 after the coordinator's goodbye or SIGINT/SIGTERM, 2 when refused, \
            1 when the engine fails.
            """)

    @Option(help: "The coordinator's endpoint, e.g. tcp://127.0.0.1:5557.")
    var connect: String

    @Option(name: .customLong("config"), help: "The run's config file (the same as the coordinator's).")
    var configPath: String = "cluster.toml"

    @Option(help: "Compute threads (default: cluster.worker_threads).")
    var threads: Int?

    @Option(help: "Name shown in the coordinator's logs (default: host-pid).")
    var name: String?

    @Option(help: .hidden)
    var parentPid: Int32?

    func validate() throws {
        // The config's endpoint rule: otherwise a bad port retries for ever ("no reply") and a
        // missing scheme surfaces as a raw libzmq error.
        if let problem = Self.connectProblem(connect) { throw ValidationError("--connect: \(problem)") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
        if let name, name.isEmpty { throw ValidationError("--name must not be empty") }
        // The coordinator drops a longer HELLO as malformed, and the worker would retry for ever.
        let nameLimit = ProtocolLimits().maxNameBytes
        if let name, name.utf8.count > nameLimit {
            throw ValidationError("--name is \(name.utf8.count) bytes; a worker name is at most \(nameLimit) (the protocol's HELLO limit)")
        }
    }

    func run() throws {
        // Handlers first: the parent-death SIGTERM then becomes a graceful stop (GOODBYE).
        let stop = StopSignal.install()
        if let parentPid { ParentDeathSignal.arm(expectedParent: parentPid) }
        // Not resolved: the model comes from the coordinator (WeightsVersion.model).
        let config = try loadConfigOrExit(configPath)
        let threadCount = threads ?? max(1, config.cluster.workerThreads)
        BLAS.setThreads(threadCount)  // also sizes the engine's batch-invariant kernels
        let workerName = name ?? "\(kernelHostName() ?? "worker")-\(getpid())"
        let logger = Logger(label: "worker \(workerName)")
        let outcome: WorkerOutcome
        do {
            let settings = try WorkerSettings(config: config, name: workerName, endpoint: connect)
            for warning in CurveKeyFiles.exposureWarnings(of: config.cluster) { logger.warning("\(warning)") }
            let executor = EngineRolloutExecutor(takingCoordinatorModel: config, logger: logger)
            logger.info("connecting to \(connect) with \(threadCount) threads (config hash \(String(config.hash, radix: 16)))")
            outcome = try WorkerClient(settings: settings, executor: executor, stop: stop, logger: logger).run()
        } catch {
            throw exitWithError(error)
        }
        // WorkerClient already logged the goodbye, refusal or engine failure.
        logger.info("worker exits with status \(outcome.exitCode)")
        if outcome.exitCode != 0 { throw ExitCode(outcome.exitCode) }
    }

    /// Why `endpoint` is not an address a worker can connect to, or nil: the rule of
    /// `cluster.endpoint` (``ClusterConfig/endpointProblem(_:)``), without the wildcards only a
    /// bind accepts.
    static func connectProblem(_ endpoint: String) -> String? {
        if let problem = ClusterConfig.endpointProblem(endpoint) { return problem }
        if endpoint.hasPrefix("tcp://"), endpoint.hasPrefix("tcp://*:") || endpoint.hasSuffix(":*") {
            return "cannot connect to a wildcard host or port, got \(JSONWriter.quote(endpoint)) (expected the coordinator's tcp://HOST:PORT)"
        }
        return nil
    }
}
