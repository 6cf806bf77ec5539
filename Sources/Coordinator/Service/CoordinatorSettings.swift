import Configuration
import EngineConfiguration
import Method
import Shared
import WireProtocol

/// CURVE material of a coordinator: its secret key and the worker public keys it admits.
public struct CoordinatorCurve: Sendable, Equatable {
    public var secretKey: String
    public var authorizedKeys: [String]

    public init(secretKey: String, authorizedKeys: [String]) {
        self.secretKey = secretKey
        self.authorizedKeys = authorizedKeys
    }
}

/// Everything ``CoordinatorService`` needs from the configuration, as plain values so tests can
/// use sizes the config schema would not accept (tiny weight chunks, sub-second heartbeats).
public struct CoordinatorSettings: Sendable {
    /// `cluster.endpoint` (a `*` port is resolved at bind, see ``CoordinatorService/waitForEndpoint(timeout:)``).
    public var endpoint: String
    public var scheduler: SchedulerSettings
    public var limits: ProtocolLimits
    public var rollout: RolloutParameters
    /// `run.seed`: sampling seeds derive from it.
    public var runSeed: UInt64
    /// `run.steps`: the run ends after this many optimizer steps.
    public var steps: Int
    /// `grpo.pairs_per_batch`.
    public var pairsPerBatch: Int
    /// `run.save_every`; a checkpoint is also written at the last step and on a graceful stop.
    public var saveEvery: Int
    /// `cluster.weight_chunk_bytes`.
    public var weightChunkBytes: Int
    /// CURVE server with ZAP, or nil for a plain socket (loopback only unless `allowInsecure`).
    public var curve: CoordinatorCurve?
    /// `cluster.allow_insecure`.
    public var allowInsecure: Bool
    /// Longest the socket thread blocks in one receive; bounds the latency of step hand-overs.
    public var pollMilliseconds: Int
    /// `grpo.distributed_update`: the learner's mini-batch gradients are computed by the workers.
    public var distributedUpdate = false

    public init(endpoint: String, scheduler: SchedulerSettings, limits: ProtocolLimits, rollout: RolloutParameters,
                runSeed: UInt64, steps: Int, pairsPerBatch: Int, saveEvery: Int, weightChunkBytes: Int,
                curve: CoordinatorCurve? = nil, allowInsecure: Bool = false, pollMilliseconds: Int = 10) {
        self.endpoint = endpoint
        self.scheduler = scheduler
        self.limits = limits
        self.rollout = rollout
        self.runSeed = runSeed
        self.steps = max(0, steps)
        self.pairsPerBatch = max(1, pairsPerBatch)
        self.saveEvery = max(1, saveEvery)
        self.weightChunkBytes = max(1, weightChunkBytes)
        self.curve = curve
        self.allowInsecure = allowInsecure
        self.pollMilliseconds = max(1, pollMilliseconds)
    }

    /// The settings of a run's configuration. Loads the CURVE key files when
    /// `cluster.curve_secret_key_file` is set (then `cluster.authorized_keys_file` is required);
    /// errors name the config key, the file and the line at fault.
    /// Results are checked against prompts rendered through `runModel`'s chat.
    public init(config: Config, runModel: RunModel) throws {
        let cluster = config.cluster
        let curve = try CurveKeyFiles.coordinatorKeys(of: cluster).map {
            CoordinatorCurve(secretKey: $0.keys.secretKey, authorizedKeys: $0.authorized)
        }
        self.init(endpoint: cluster.endpoint, scheduler: SchedulerSettings(config: config, chat: runModel.chat), limits: ProtocolLimits(config: config),
                  rollout: RolloutParameters(config: config.rollout), runSeed: config.run.seed, steps: config.run.steps,
                  pairsPerBatch: config.grpo.pairsPerBatch, saveEvery: config.run.saveEvery,
                  weightChunkBytes: cluster.weightChunkBytes, curve: curve, allowInsecure: cluster.allowInsecure)
        distributedUpdate = config.grpo.distributedUpdate
    }

    /// Throws unless the endpoint may be bound as configured: with CURVE keys always, without
    /// them only when it is local or `allowInsecure` (``EndpointSecurity/checkInsecureBind(_:allowInsecure:)``).
    public func checkBindAllowed() throws {
        if curve == nil { try EndpointSecurity.checkInsecureBind(endpoint, allowInsecure: allowInsecure) }
    }

    /// Whether step `step` (1-based count of optimizer steps) gets a checkpoint.
    public func isSaveDue(step: Int) -> Bool { step > 0 && (step % saveEvery == 0 || step == steps) }

    /// Policy versions the publisher keeps: the current one, plus those async results may still
    /// name, or the `max_staleness` older ones fixed-lag steps sample with (and one more).
    /// Sync mode accepts results of the current version only (any older one is stale), so
    /// it keeps no other: a worker still fetching the previous version gets WEIGHTS_UNAVAILABLE,
    /// drops that task and asks for work of the current one (each version is 0.5 GiB at 135M).
    var retainedVersions: Int { scheduler.mode == .sync ? 1 : Int(min(scheduler.maxStaleness, 1000)) + 2 }
}
