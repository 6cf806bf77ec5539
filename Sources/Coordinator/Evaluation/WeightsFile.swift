import Engine
import Foundation
import ModelFormats
import Shared

/// Loads model weights from either file kind the trainer writes, or from a pretrained model
/// (a GGUF file or a Hugging Face directory, imported as `cerm import` does).
public enum WeightsFile {
    /// What a weights file turned out to be.
    public enum Kind: String, Sendable {
        /// `ModelWeights.save` (SFT output): tensors under `model/`, config attribute.
        case modelWeights = "model-weights"
        /// An RL checkpoint (`format = "cerm-checkpoint"`).
        case checkpoint
        /// A GGUF file or Hugging Face model directory (``ModelImport``).
        case pretrained
    }

    /// The file's kind (``CermFileKind/detect(path:)``); a file of neither kind is an error
    /// naming it.
    public static func kind(path: String) throws -> Kind {
        switch try CermFileKind.detect(path: path) {
        case .sftWeights: return .modelWeights
        case .checkpoint: return .checkpoint
        }
    }

    /// A model cerm trained, as one of its files holds it.
    public struct Trained: Sendable {
        public var weights: ModelWeights
        /// ``Kind/modelWeights`` or ``Kind/checkpoint``.
        public var kind: Kind
        /// The model's stored tokenizer and chat template; nil: cerm's byte tokenizer.
        public var tokenizer: StoredTokenizer?
        /// A checkpoint's step and policy version; nil for a weights file.
        public var checkpoint: (step: Int, policyVersion: UInt64)?
        /// A weights file's `provenance_json` attribute (``SFTProvenance``); nil when absent.
        public var provenance: String?
    }

    /// The weights stored in `path`: an SFT weights file or the policy of an RL checkpoint
    /// (verified against its checksum), with the model's stored tokenizer and chat template (nil:
    /// cerm's byte tokenizer). With a `probe`, a child reads the file first
    /// (``CheckpointReader/probeFirst(path:with:)``), so a file that crashes libhdf5 is an
    /// error naming it rather than the death of this process. A GGUF file or Hugging Face
    /// directory is imported (kind ``Kind/pretrained``).
    public static func load(path: String, probe: (any CheckpointProbe)? = nil) throws
        -> (weights: ModelWeights, kind: Kind, tokenizer: StoredTokenizer?) {
        if ModelImport.isModelSource(path: path) {
            let model = try ModelImport.load(path: path)
            return (model.weights, .pretrained, try model.tokenizer.storedTokenizer(chatTemplate: "auto", source: path))
        }
        let trained = try loadTrained(path: path, probe: probe)
        return (trained.weights, trained.kind, trained.tokenizer)
    }

    /// The model in `path`, a file cerm wrote (SFT weights or RL checkpoint), as ``load(path:probe:)``
    /// reads it, with a checkpoint's step and version; any other file is an error naming it.
    public static func loadTrained(path: String, probe: (any CheckpointProbe)? = nil) throws -> Trained {
        try CheckpointReader.probeFirst(path: path, with: probe)
        switch try CermFileKind.detect(path: path) {
        case .sftWeights:
            let file = try ModelWeights.loadVerified(path: path)
            return Trained(weights: file.weights, kind: .modelWeights, tokenizer: file.storedTokenizer, provenance: file.provenance)
        case .checkpoint:
            let state = try CheckpointReader.load(path: path)
            return Trained(weights: try policyWeights(of: state, path: path), kind: .checkpoint, tokenizer: state.tokenizer,
                           checkpoint: (state.step, state.policyVersion))
        }
    }

    /// The policy of a checkpoint's state as weights of its stored model config: every
    /// parameter of that config must be among the policy tensors, with its shape, and no other
    /// (the `reference.*` tensors are left out). `path` names the checkpoint in errors.
    public static func policyWeights(of state: TrainingState, path: String) throws -> ModelWeights {
        let config: TransformerConfig
        do {
            config = try TransformerConfig.fromJSON(state.modelConfigJSON)
        } catch {
            throw CermError.io(path: path, reason: "model config is not valid: \(error)")
        }
        let layout = ParameterLayout(config)
        do {
            let values = try layout.flatten(state.policyTensors.map { ($0.name, $0.shape, $0.values) })
            return try ModelWeights(config: config, values: values)
        } catch let CermError.invalid(message) {
            let detail = message.hasPrefix("ParameterLayout.flatten: ") ? String(message.dropFirst("ParameterLayout.flatten: ".count)) : message
            throw CermError.io(path: path, reason: "policy tensors do not match the stored model config: \(detail)")
        }
    }

    /// Writes `weights` (and the model's tokenizer, nil: cerm's byte tokenizer; and how they were
    /// made, ``SFTProvenance``) to `path` atomically: to a hidden temporary name in the same
    /// directory, fsynced, then renamed over `path` (and the directory fsynced), so neither a
    /// reader nor a crash ever leaves a half-written file under `path`.
    public static func saveAtomically(_ weights: ModelWeights, tokenizer: StoredTokenizer? = nil, provenance: SFTProvenance? = nil,
                                      to path: String) throws {
        let directory = try createParentDirectory(of: path)
        let name = (path as NSString).lastPathComponent
        let temporary = (directory.isEmpty ? "" : directory + "/") + ".\(name).tmp"
        try weights.save(to: temporary, tokenizer: tokenizer, provenance: provenance?.json())
        // The data must be on disk before the rename makes it the weights file: a crash after
        // the rename must never leave a truncated model under the final name.
        do {
            try fsyncFile(temporary)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(atPath: temporary)
            throw CermError.io(path: path, reason: "cannot rename \(temporary) to it (\(reason))")
        }
        try? fsyncFile(directory.isEmpty ? "." : directory)
    }
}
