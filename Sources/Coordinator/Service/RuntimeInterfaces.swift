import Configuration
import Engine
import EngineConfiguration
import Shared
import WireProtocol

/// The coordinator's learner: turns a completed step's trajectories into new policy weights.
///
/// ``CoordinatorService`` calls every method from its learner thread only, one call at a time,
/// never from the socket thread, so an implementation needs no locking of its own (hence
/// `@unchecked Sendable` is acceptable for a class holding mutable model state).
public protocol Learner: AnyObject, Sendable {
    /// Version of the current policy weights. Must increase with every ``update(step:pairs:rollouts:)``
    /// and stay below ``WeightsVersion/firstIntermediate``.
    var policyVersion: UInt64 { get }
    /// Serialized weights of ``policyVersion`` (the bytes workers receive in
    /// ``RolloutExecutor``-side `prepare`).
    func currentWeights() throws -> [UInt8]
    /// ``currentWeights()`` as version ``policyVersion``, cut into chunks of `chunkBytes` for
    /// the workers (a learner that can read its weights in place skips the copy of
    /// ``currentWeights()``).
    func publishedWeights(chunkBytes: Int) throws -> PublishedWeights
    /// Serialized weights of the frozen reference model (served as ``WeightsVersion/reference``).
    func referenceWeights() throws -> [UInt8]
    /// Fixed-lag mode: serialized weights of the versions before ``policyVersion`` that steps
    /// still sample with, oldest first (restored from a checkpoint with the rest).
    func previousPolicyWeights() throws -> [(version: UInt64, bytes: [UInt8])]
    /// The run's model, architecture and tokenizer, as workers take it (served as
    /// ``WeightsVersion/model``; EngineConfiguration's `RunModel.wireDescription`).
    func modelDescription() -> [UInt8]
    /// One GRPO update from step `step`'s rollouts (canonical trajectory order); bumps
    /// ``policyVersion``. `pairs` are the step's pairs as sent to workers (labels stay with the
    /// learner's data). The returned metrics' reward/loss fields are kept; the runtime fills in
    /// step, timings, token counts and workers alive.
    func update(step: Int, pairs: [TaskPair], rollouts: StepRollouts) throws -> StepMetrics
    /// Everything needed to continue after `step` optimizer steps; `dataCursor` is where the
    /// next step's pairs start. The learner fills in the rest (tensors, AdamW state, RNG, config
    /// text, model config, tokenizer); the runtime writes it as `step_<step>.h5`.
    func trainingState(step: Int, dataCursor: DataCursor) throws -> TrainingState
    /// Continues from a checkpoint (model, optimizer, policy version, RNG).
    func restore(from state: TrainingState) throws
    /// `grpo.distributed_update`: from now on each mini-batch's shard gradients come from
    /// `remote` (the workers) instead of this process.
    func distributeGradients(to remote: any RemoteGradients) throws
}

extension Learner {
    public func publishedWeights(chunkBytes: Int) throws -> PublishedWeights {
        PublishedWeights(version: policyVersion, bytes: try currentWeights(), chunkBytes: chunkBytes)
    }

    /// A learner that keeps no previous policies cannot serve fixed-lag runs.
    public func previousPolicyWeights() throws -> [(version: UInt64, bytes: [UInt8])] { [] }

    public func distributeGradients(to remote: any RemoteGradients) throws {
        throw CermError.invalid("grpo.distributed_update: the learner \(type(of: self)) computes its update only in this process")
    }
}

/// Where a step's pairs come from. Used from the learner thread only.
public protocol PairSource: Sendable {
    /// Where the next batch starts (epoch, position, permutation seed); stored in checkpoints.
    var cursor: DataCursor { get }
    /// The next `count` pairs, advancing ``cursor``. Pair ids must be unique within one batch.
    mutating func nextBatch(count: Int) throws -> [TaskPair]
    /// Moves to a cursor taken from ``cursor`` earlier (resume, or rewinding an abandoned step).
    mutating func restore(cursor: DataCursor) throws
}

/// A checkpoint to continue from.
public struct ResumePoint: Sendable {
    public var state: TrainingState
    /// The file it was read from (for the `resumed` event).
    public var path: String
    /// Newer checkpoint files that failed to load and were passed over, newest first. They are
    /// found before `train.log` is open, so the service reports them there (`checkpoint_skipped`).
    public var skipped: [CheckpointError]
    /// Keys whose value in the run's config differs from the checkpoint's stored config
    /// (`old`: the checkpoint's, `new`: the run's); the service warns about each
    /// (`config_changed` events). See ``configChanges(from:to:)``.
    public var configChanges: [ConfigChange]

    public init(state: TrainingState, path: String, skipped: [CheckpointError] = [], configChanges: [ConfigChange] = []) {
        self.state = state
        self.path = path
        self.skipped = skipped
        self.configChanges = configChanges
    }

    /// How `config` differs from the config stored in the checkpoint `state` (read from
    /// `path`), leaving out `run.steps`: raising it (or `--steps`) is how a run is continued,
    /// not a change to warn about. Empty when the checkpoint stores no config. Throws a
    /// ``ConfigError`` naming the checkpoint when its config does not parse (e.g. written by a
    /// build with other keys).
    public static func configChanges(from state: TrainingState, path: String, to config: Config) throws -> [ConfigChange] {
        guard !state.configText.isEmpty else { return [] }
        let stored = try Config.parse(state.configText, file: "\(path) (stored config)")
        return stored.changes(to: config).filter { $0.key != "run.steps" }
    }

    /// Refuses a resume whose `[model]` differs from the model the checkpoint at `path` was
    /// trained with (its stored model config): such a checkpoint cannot be restored, so the
    /// caller calls this before it opens the run directory or logs any config change, instead
    /// of reporting the change as accepted and failing at the restore. Nothing is checked when
    /// the stored model config does not parse (the restore then reports it).
    public static func refuseModelChange(in state: TrainingState, path: String, config: Config) throws {
        guard let stored = try? TransformerConfig.fromJSON(state.modelConfigJSON) else { return }
        let differences = stored.changes(to: TransformerConfig(config.model))
        guard differences.isEmpty else { throw ModelChangedOnResume(path: path, differences: differences) }
    }
}

/// A resume refused because the config's `[model]` differs from the checkpoint's model
/// (``ResumePoint/refuseModelChange(in:path:config:)``).
public struct ModelChangedOnResume: Error, CustomStringConvertible, Equatable {
    /// The checkpoint.
    public var path: String
    /// The differing keys (`old`: the checkpoint's, `new`: the config's).
    public var differences: [ConfigChange]

    public var description: String {
        let keys = differences.mismatches(labelled: "checkpoint")
        return "cannot resume from \(path): its model differs from the config's [model] (\(keys)); "
            + "a run continues only with the model it was trained with: restore the [model] section, "
            + "or start a new run under another run.name"
    }
}
