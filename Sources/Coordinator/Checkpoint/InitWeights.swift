import Configuration
import Engine
import EngineConfiguration
import Foundation
import Logging
import Shared

extension TrainingState {
    /// `/meta/extra_json` key holding ``ModelWeights/checksum`` of the weights the run started
    /// from (its `--init` SFT weights, or the random init), as 16 lowercase hex digits: the
    /// same value as that SFT weights file's `weights_fnv1a64` attribute.
    public static let initWeightsChecksumKey = "init_weights_fnv1a64"

    /// The checksum of the weights the run started from: the ``initWeightsChecksumKey`` entry
    /// of ``extra``, or, for checkpoints written before that key existed, the checksum of the
    /// frozen reference tensors (which are those weights, ``GRPOLearner``). Nil when neither is
    /// there (or readable): the start of such a run is unknown.
    public var initWeightsChecksum: UInt64? {
        if let hex = extra[Self.initWeightsChecksumKey] { return UInt64(hex, radix: 16) }
        let reference = referenceTensors
        guard !reference.isEmpty, let config = try? TransformerConfig.fromJSON(modelConfigJSON),
              let values = try? ParameterLayout(config).flatten(reference.map { ($0.name, $0.shape, $0.values) }) else { return nil }
        return values.withUnsafeBufferPointer { Checksum.fnv1a64($0) }
    }
}

/// What `cerm pipeline` does with the RL run it finds in the run directory.
public enum RLRunReuse: Sendable, Equatable {
    /// No checkpoint: train RL from the SFT weights.
    case fresh
    /// The run started from the current SFT weights and reached `run.steps`: evaluate it.
    case reuse
    /// The run started from the current SFT weights but is short of `run.steps`: resume it.
    case resume
    /// The run started from other weights (`recorded`: their checksum, nil when the checkpoint
    /// does not say): its files go aside and RL trains anew from the SFT weights.
    case stale(recorded: UInt64?)

    /// The decision for the newest valid checkpoint `existing` (nil: none), given
    /// ``ModelWeights/checksum`` of the current SFT weights and `run.steps`.
    public static func decide(existing: TrainingState?, sftChecksum: UInt64, steps: Int) -> RLRunReuse {
        guard let existing else { return .fresh }
        let recorded = existing.initWeightsChecksum
        guard recorded == sftChecksum else { return .stale(recorded: recorded) }
        return existing.step >= steps ? .reuse : .resume
    }
}

/// The finished stages `cerm pipeline` reuses when it runs again: SFT weights this config would
/// train again, and an RL run that started from them.
public enum PipelineReuse {
    /// What the pipeline does with SFT weights it finds at `sft.output`.
    public enum SFTDecision {
        /// Trained by this recipe (or recording none: `unrecorded`): evaluate them and go on.
        case reuse(ModelWeights, unrecorded: Bool)
        /// Trained otherwise (``SFTProvenance/differences(to:path:)``): move them aside, train anew.
        case stale(reasons: [String])
    }

    /// The recipe SFT would follow now for `config` (``SFTProvenance``): the built-in teacher's
    /// sequences of `data.train` from the starting weights `initial`.
    public static func sftProvenance(config: Config, runModel: RunModel, initial: ModelWeights) throws -> SFTProvenance {
        let format = runModel.promptFormat(config.rollout.format)
        // Skipped lines are reported by `cerm sft`, which reads the same file.
        let sequences = try SFTData.sequences(config, format: format, tracesPath: nil, log: { _ in }).sequences
        return SFTProvenance(config: config, sequences: sequences, initWeightsChecksum: initial.checksum, traces: nil,
                             steps: 0, totalSteps: 0)
    }

    /// The SFT weights at `path`, when they can serve this config at all: the file loads (read
    /// by a child first) and was trained for the config's `[model]`; otherwise an error naming
    /// the file, the differing keys and the remedy (another model is a config mistake more often
    /// than a new experiment).
    public static func sftWeights(path: String, config: Config, runModel: RunModel, probe: (any CheckpointProbe)?) throws
        -> WeightsFile.Trained {
        let trained = try WeightsFile.loadTrained(path: path, probe: probe)
        try runModel.checkTokenizer(trained.tokenizer, of: path)
        let differences = trained.weights.config.changes(to: TransformerConfig(config.model))
        guard differences.isEmpty else {
            let keys = differences.mismatches(labelled: "weights")
            throw CermError.invalid("cannot reuse the SFT weights \(path): they were trained for another [model] (\(keys)); "
                                    + "delete \(path) to train SFT again with this config, or restore the [model] section")
        }
        return trained
    }

    /// Whether the SFT weights `trained` (from `path`) were trained by the recipe `wanted`
    /// (``sftProvenance(config:runModel:initial:)``). A file recording none (an older build's,
    /// or an RL checkpoint) is reused as it is, `unrecorded`.
    public static func sftDecision(_ trained: WeightsFile.Trained, path: String, wanted: SFTProvenance) throws -> SFTDecision {
        guard let json = trained.provenance else { return .reuse(trained.weights, unrecorded: true) }
        let reasons = try SFTProvenance.parse(json, path: path).differences(to: wanted, path: path)
        return reasons.isEmpty ? .reuse(trained.weights, unrecorded: false) : .stale(reasons: reasons)
    }

    /// Moves the SFT weights at `path` and their training curve into `superseded-<UTC time>/`
    /// beside them (nothing deleted).
    public static func moveSFTWeightsAside(path: String) throws -> SupersededFiles? {
        let directory = (path as NSString).deletingLastPathComponent
        let names = [path, SFTMetricsFile.path(forWeights: path)].map { ($0 as NSString).lastPathComponent }
        return try SupersededFiles.moveAside(names: names, in: directory.isEmpty ? "." : directory)
    }

    /// What to do with the RL run in the run directory given the SFT weights `sft` (from
    /// `config.sft.output`). Its newest valid checkpoint (probed in a child first, as `--resume`
    /// does) is reused or resumed only when it started from these weights: after a new SFT its
    /// checkpoints describe a policy trained from the old ones, so they are moved aside (nothing
    /// deleted) and RL trains anew.
    public static func rlRun(config: Config, sft: ModelWeights, probe: (any CheckpointProbe)?, logger: Logger) throws
        -> (decision: RLRunReuse, existing: LoadedCheckpoint?) {
        let runDirectory = config.run.runDirectory
        let existing = try CheckpointReader.findResumeCheckpoint(runDir: runDirectory, probe: probe, logger: logger)
        let decision = RLRunReuse.decide(existing: existing?.state, sftChecksum: sft.checksum, steps: config.run.steps)
        if case let .stale(recorded) = decision, let existing {
            let started = recorded.map { "weights with checksum \(CheckpointFormat.hex($0))" } ?? "unrecorded weights"
            let moved = try SupersededFiles.moveAside(in: runDirectory, startStep: 0, fresh: true)
            let message = "the RL run in \(runDirectory) (\(existing.path)) started from \(started), not from \(config.sft.output) "
                + "(checksum \(CheckpointFormat.hex(sft.checksum))): moved \(moved?.names.joined(separator: ", ") ?? "nothing") "
                + "to \(moved?.destination ?? "-") (nothing deleted); training RL anew"
            logger.warning("\(message)")
        }
        return (decision, existing)
    }
}
