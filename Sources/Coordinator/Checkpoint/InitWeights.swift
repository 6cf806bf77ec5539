import Engine
import Foundation
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
