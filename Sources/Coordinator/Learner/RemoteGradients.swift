import Engine
import Method
import PolicyGradient
import WireProtocol

/// The weights a mini-batch's gradient is taken at, as workers fetch them.
public enum GradientWeights: Sendable {
    /// A policy version already published (the first mini-batch of an update).
    case published(version: UInt64)
    /// The weights after the update's earlier mini-batches, to publish as `version`
    /// (``WeightsVersion/intermediate(step:miniBatch:)``) before any task names it.
    case intermediate(version: UInt64, weights: ModelWeights)

    public var version: UInt64 {
        switch self {
        case let .published(version), let .intermediate(version, _): version
        }
    }
}

/// What a gradient task's arithmetic depends on besides its rows and weights: the learner's own
/// settings, sent with each task (GRADIENT_TASK).
public struct GradientSettings: Sendable, Equatable {
    public var temperature: Float
    public var loss: GRPOLossOptions
    public var workspaceFloats: Int
    /// The model's parameter count: every gradient has this many values.
    public var parameterCount: Int

    public init(temperature: Float, loss: GRPOLossOptions, workspaceFloats: Int, parameterCount: Int) {
        self.temperature = temperature
        self.loss = loss
        self.workspaceFloats = workspaceFloats
        self.parameterCount = parameterCount
    }
}

/// Computes the shards of a mini-batch elsewhere (`grpo.distributed_update`: on the workers,
/// through the coordinator's socket thread). Called from the learner thread.
public protocol RemoteGradients: AnyObject, Sendable {
    /// Each shard's gradient and pass, in shard order, taken at `weights`. Blocks until every
    /// shard has an accepted result (a worker lost on the way has its shard re-run elsewhere);
    /// throws ``RemoteGradientsUnavailable`` when the learner must compute them itself.
    func compute(step: Int, miniBatch: Int, shards: [[GradientRow]], weights: GradientWeights, settings: GradientSettings) throws
        -> [ShardGradient]
}

/// ``RemoteGradients`` cannot deliver this round (a stop was requested, or the transport is
/// gone): the learner computes the shards in its own process instead, with the same bits.
public struct RemoteGradientsUnavailable: Error, CustomStringConvertible {
    public var reason: String

    public init(reason: String) { self.reason = reason }

    public var description: String { "the workers' gradients are not coming: \(reason)" }
}
