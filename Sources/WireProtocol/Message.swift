import Configuration
import Method
import Shared

/// The compute backend of a worker's engine (HELLO `kind`).
public enum WorkerKind: UInt8, Sendable, CaseIterable {
    case cpu = 0
    case gpu = 1
}

// `FinishReason` is the engine's (Sources/Shared/FinishReason.swift): a trajectory carries what
// the generator reported.

// `TrajectoryID` and `TrajectoryStage` are the method's (Sources/Method/RolloutPlan.swift):
// the wire carries exactly the ids the rollout plan assigns.

/// One sampled trajectory as a worker reports it.
public struct Trajectory: Equatable, Sendable {
    public var id: TrajectoryID
    /// Prompt length the tokens were generated after.
    public var promptTokenCount: UInt32
    /// Generated token ids (never the prompt).
    public var tokens: [UInt32]
    /// log π_old per generated token, from the sampling worker.
    public var behaviourLogprobs: [Float]
    /// log π_ref per generated token, from the frozen reference model.
    public var referenceLogprobs: [Float]
    public var finishReason: FinishReason
    /// The decoded generated text.
    public var text: String

    public init(id: TrajectoryID, promptTokenCount: UInt32, tokens: [UInt32], behaviourLogprobs: [Float],
                referenceLogprobs: [Float], finishReason: FinishReason, text: String) {
        self.id = id
        self.promptTokenCount = promptTokenCount
        self.tokens = tokens
        self.behaviourLogprobs = behaviourLogprobs
        self.referenceLogprobs = referenceLogprobs
        self.finishReason = finishReason
        self.text = text
    }
}

/// Sampling parameters of a task's two-stage rollout.
public struct RolloutParameters: Equatable, Sendable {
    public var nc: UInt16
    public var ne: UInt16
    public var criteriaMaxTokens: UInt32
    public var evaluationMaxTokens: UInt32
    public var temperature: Double
    public var topP: Double

    public init(nc: UInt16, ne: UInt16, criteriaMaxTokens: UInt32, evaluationMaxTokens: UInt32, temperature: Double, topP: Double) {
        self.nc = nc
        self.ne = ne
        self.criteriaMaxTokens = criteriaMaxTokens
        self.evaluationMaxTokens = evaluationMaxTokens
        self.temperature = temperature
        self.topP = topP
    }

    /// The parameters of `[rollout]`.
    public init(config: RolloutConfig) {
        self.init(nc: UInt16(clamping: config.nc), ne: UInt16(clamping: config.ne),
                  criteriaMaxTokens: UInt32(clamping: config.criteriaMaxTokens),
                  evaluationMaxTokens: UInt32(clamping: config.evaluationMaxTokens),
                  temperature: config.temperature, topP: config.topP)
    }
}

/// One pair's prompt material as sent to a worker: the rollout plan's item, responses in the
/// pair's order (chosen, then rejected). Workers sample every response the same way and never
/// use the order; rewards are computed by the coordinator.
public typealias TaskPair = RolloutItem

/// TASK: rollouts to sample for a few pairs.
public struct TaskMessage: Equatable, Sendable {
    public var taskID: UInt64
    public var step: UInt64
    public var policyVersion: UInt64
    public var runSeed: UInt64
    public var parameters: RolloutParameters
    public var pairs: [TaskPair]

    public init(taskID: UInt64, step: UInt64, policyVersion: UInt64, runSeed: UInt64, parameters: RolloutParameters, pairs: [TaskPair]) {
        self.taskID = taskID
        self.step = step
        self.policyVersion = policyVersion
        self.runSeed = runSeed
        self.parameters = parameters
        self.pairs = pairs
    }
}

/// RESULT: the trajectories of one task.
public struct ResultMessage: Equatable, Sendable {
    public var taskID: UInt64
    public var policyVersion: UInt64
    public var trajectories: [Trajectory]

    public init(taskID: UInt64, policyVersion: UInt64, trajectories: [Trajectory]) {
        self.taskID = taskID
        self.policyVersion = policyVersion
        self.trajectories = trajectories
    }
}

/// HELLO: a worker introduces itself.
public struct HelloMessage: Equatable, Sendable {
    public var name: String
    /// Tasks the worker can hold at once (≥ 1).
    public var capacity: UInt16
    public var protocolVersion: UInt16
    /// `Config.hash` of the worker's configuration.
    public var configHash: UInt64
    public var kind: WorkerKind

    public init(name: String, capacity: UInt16, protocolVersion: UInt16 = MessageCodec.version, configHash: UInt64, kind: WorkerKind) {
        self.name = name
        self.capacity = capacity
        self.protocolVersion = protocolVersion
        self.configHash = configHash
        self.kind = kind
    }
}

/// WELCOME: the coordinator admits a worker and tells it its timing.
public struct WelcomeMessage: Equatable, Sendable {
    public var heartbeatIntervalMs: UInt32
    public var heartbeatTimeoutMs: UInt32
    /// The latest policy version the coordinator holds.
    public var policyVersion: UInt64
    public var maxMessageBytes: UInt32

    public init(heartbeatIntervalMs: UInt32, heartbeatTimeoutMs: UInt32, policyVersion: UInt64, maxMessageBytes: UInt32) {
        self.heartbeatIntervalMs = heartbeatIntervalMs
        self.heartbeatTimeoutMs = heartbeatTimeoutMs
        self.policyVersion = policyVersion
        self.maxMessageBytes = maxMessageBytes
    }
}

/// WEIGHTS_CHUNK: one piece of a policy version's serialized weights.
public struct WeightsChunk: Equatable, Sendable {
    public var version: UInt64
    public var chunkIndex: UInt32
    public var chunkCount: UInt32
    public var totalBytes: UInt64
    /// XXH64 of `data` (``Checksum/xxh64(_:)-(UInt8)``).
    public var checksum: UInt64
    /// A view of the published version's bytes (coordinator) or of the received frame
    /// (worker): a slice, so neither side copies a chunk only to hand it on.
    public var data: ArraySlice<UInt8>

    public init(version: UInt64, chunkIndex: UInt32, chunkCount: UInt32, totalBytes: UInt64, checksum: UInt64, data: ArraySlice<UInt8>) {
        self.version = version
        self.chunkIndex = chunkIndex
        self.chunkCount = chunkCount
        self.totalBytes = totalBytes
        self.checksum = checksum
        self.data = data
    }

    /// A chunk whose checksum is computed from `data`.
    public init(version: UInt64, chunkIndex: UInt32, chunkCount: UInt32, totalBytes: UInt64, data: ArraySlice<UInt8>) {
        self.init(version: version, chunkIndex: chunkIndex, chunkCount: chunkCount, totalBytes: totalBytes,
                  checksum: data.withUnsafeBytes { Checksum.xxh64($0) }, data: data)
    }
}

/// GRADIENT_TASK: the gradient of one data shard of a mini-batch of the GRPO update
/// (`grpo.distributed_update`), to be computed at weights `policyVersion` (a policy version or
/// ``WeightsVersion/intermediate(step:miniBatch:)``).
/// The task carries everything the arithmetic depends on besides the weights (temperature, the
/// loss's clip range and KL term, the micro-batch budget), so a worker computes exactly what the
/// coordinator's own learner would.
public struct GradientTaskMessage: Equatable, Sendable {
    public var taskID: UInt64
    public var step: UInt64
    public var miniBatch: UInt32
    public var shard: UInt32
    public var policyVersion: UInt64
    /// The softmax temperature log-probs are taken at (the rollout's).
    public var temperature: Float
    /// Clip range, β and KL estimator (the aggregation is in each row's scale).
    public var loss: GRPOLossOptions
    /// Largest forward + backward workspace (floats) of one micro-batch: it fixes how the rows
    /// are split, and so the bits of the sum.
    public var workspaceFloats: UInt64
    public var rows: [GradientRow]

    public init(taskID: UInt64, step: UInt64, miniBatch: UInt32, shard: UInt32, policyVersion: UInt64, temperature: Float,
                loss: GRPOLossOptions, workspaceFloats: UInt64, rows: [GradientRow]) {
        self.taskID = taskID
        self.step = step
        self.miniBatch = miniBatch
        self.shard = shard
        self.policyVersion = policyVersion
        self.temperature = temperature
        self.loss = loss
        self.workspaceFloats = workspaceFloats
        self.rows = rows
    }
}

/// GRADIENT_RESULT: what a gradient task measured (per row, the output tokens' log-probs and
/// their Σ entropy) and the size of its gradient, whose float32 values follow in `chunkCount`
/// GRADIENT_CHUNKs of the same task.
public struct GradientResultMessage: Equatable, Sendable {
    public var taskID: UInt64
    public var policyVersion: UInt64
    public var logprobs: [[Float]]
    public var entropySums: [Double]
    public var microBatches: UInt32
    /// 4 × the model's parameter count.
    public var totalBytes: UInt64
    public var chunkCount: UInt32

    public init(taskID: UInt64, policyVersion: UInt64, logprobs: [[Float]], entropySums: [Double], microBatches: UInt32,
                totalBytes: UInt64, chunkCount: UInt32) {
        self.taskID = taskID
        self.policyVersion = policyVersion
        self.logprobs = logprobs
        self.entropySums = entropySums
        self.microBatches = microBatches
        self.totalBytes = totalBytes
        self.chunkCount = chunkCount
    }
}

/// GRADIENT_CHUNK: one piece of a gradient task's gradient (little-endian float32), pushed by the
/// worker after its GRADIENT_RESULT, in index order.
public struct GradientChunk: Equatable, Sendable {
    public var taskID: UInt64
    public var chunkIndex: UInt32
    public var chunkCount: UInt32
    public var totalBytes: UInt64
    /// XXH64 of `data`.
    public var checksum: UInt64
    public var data: ArraySlice<UInt8>

    public init(taskID: UInt64, chunkIndex: UInt32, chunkCount: UInt32, totalBytes: UInt64, checksum: UInt64, data: ArraySlice<UInt8>) {
        self.taskID = taskID
        self.chunkIndex = chunkIndex
        self.chunkCount = chunkCount
        self.totalBytes = totalBytes
        self.checksum = checksum
        self.data = data
    }

    /// A chunk whose checksum is computed from `data`.
    public init(taskID: UInt64, chunkIndex: UInt32, chunkCount: UInt32, totalBytes: UInt64, data: ArraySlice<UInt8>) {
        self.init(taskID: taskID, chunkIndex: chunkIndex, chunkCount: chunkCount, totalBytes: totalBytes,
                  checksum: data.withUnsafeBytes { Checksum.xxh64($0) }, data: data)
    }
}

/// Every message of cerm protocol v4 (docs/PROTOCOL.md, section 4).
public enum Message: Equatable, Sendable {
    case hello(HelloMessage)
    case welcome(WelcomeMessage)
    case refuse(reason: String)
    /// READY: the worker can take `credit` more tasks.
    case ready(credit: UInt16)
    case task(TaskMessage)
    case result(ResultMessage)
    /// Sender's latest (coordinator) or loaded (worker) policy version.
    case heartbeat(policyVersion: UInt64)
    case weightsRequest(version: UInt64, chunkIndex: UInt32)
    case weightsChunk(WeightsChunk)
    case weightsUnavailable(version: UInt64, latestVersion: UInt64)
    case goodbye(reason: String)
    case gradientTask(GradientTaskMessage)
    case gradientResult(GradientResultMessage)
    case gradientChunk(GradientChunk)

    /// The type byte of the header.
    public var type: MessageType {
        switch self {
        case .hello: .hello
        case .welcome: .welcome
        case .refuse: .refuse
        case .ready: .ready
        case .task: .task
        case .result: .result
        case .heartbeat: .heartbeat
        case .weightsRequest: .weightsRequest
        case .weightsChunk: .weightsChunk
        case .weightsUnavailable: .weightsUnavailable
        case .goodbye: .goodbye
        case .gradientTask: .gradientTask
        case .gradientResult: .gradientResult
        case .gradientChunk: .gradientChunk
        }
    }
}

/// Header type codes.
public enum MessageType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case hello = 1, welcome, refuse, ready, task, result, heartbeat, weightsRequest, weightsChunk, weightsUnavailable, goodbye,
         gradientTask, gradientResult, gradientChunk

    public var description: String {
        switch self {
        case .hello: "HELLO"
        case .welcome: "WELCOME"
        case .refuse: "REFUSE"
        case .ready: "READY"
        case .task: "TASK"
        case .result: "RESULT"
        case .heartbeat: "HEARTBEAT"
        case .weightsRequest: "WEIGHTS_REQUEST"
        case .weightsChunk: "WEIGHTS_CHUNK"
        case .weightsUnavailable: "WEIGHTS_UNAVAILABLE"
        case .goodbye: "GOODBYE"
        case .gradientTask: "GRADIENT_TASK"
        case .gradientResult: "GRADIENT_RESULT"
        case .gradientChunk: "GRADIENT_CHUNK"
        }
    }
}
