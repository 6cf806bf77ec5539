import Engine
import Foundation
import Shared

/// The two kinds of HDF5 file cerm writes, told apart by their root attributes: a run
/// checkpoint (docs/CHECKPOINT.md) and an SFT weights file (`ModelWeights.save`,
/// docs/ENGINE_TRAINING.md). Commands that take one kind use this to say which kind they were
/// given instead of failing on a missing attribute deep inside the reader.
public enum CermFileKind: Sendable, Equatable, CustomStringConvertible {
    /// A run checkpoint (root attribute `format = "cerm-checkpoint"`) and its `step` attribute
    /// (nil when that is missing or not one integer).
    case checkpoint(step: Int?)
    /// An SFT weights file: a root `model_config_json` attribute and no `format` attribute.
    case sftWeights

    /// The root attribute that marks an SFT weights file.
    public static let sftWeightsAttribute = "model_config_json"

    /// The kind of `path`, from its root attributes alone (no tensor is read). Throws a
    /// ``CheckpointError`` when the file is missing, not HDF5, truncated or of another
    /// `format`, and a `CermError.io` naming the file when it is an HDF5 file of neither kind.
    public static func detect(path: String) throws -> CermFileKind {
        let file = try CheckpointReader.open(path)
        defer { try? file.close() }
        let root = file.root
        if root.hasAttribute("format") {
            guard let format = try? root.stringAttribute("format") else {
                throw CheckpointError(path: path, reason: .wrongFormat("'format' attribute is not a string"))
            }
            guard format == CheckpointFormat.name else {
                throw CheckpointError(path: path, reason: .wrongFormat("format is \(CheckpointFormat.jsonString(format))"))
            }
            let step = (try? root.attribute("step", as: Int64.self)).flatMap { $0.count == 1 && $0[0] >= 0 ? Int($0[0]) : nil }
            return .checkpoint(step: step)
        }
        if root.hasAttribute(sftWeightsAttribute) { return .sftWeights }
        throw CermError.io(path: path, reason: "neither a run checkpoint nor an SFT weights file "
                           + "(no 'format' or '\(sftWeightsAttribute)' attribute on /)")
    }

    /// "an RL checkpoint (step 3)" or "an SFT weights file", for messages.
    public var description: String {
        switch self {
        case let .checkpoint(step): return "an RL checkpoint" + (step.map { " (step \($0))" } ?? "")
        case .sftWeights: return "an SFT weights file"
        }
    }
}

/// An SFT weights file read completely, with its checksum recomputed but not judged (for
/// `cerm inspect`; ``ModelWeights/load(path:)`` is the verifying load).
public struct LoadedSFTWeights: Sendable {
    public var path: String
    public var weights: ModelWeights
    /// The root attribute `model_config_json` as stored.
    public var modelConfigJSON: String
    /// The root attribute `tokenizer`, or nil when absent.
    public var tokenizerDescription: String?
    /// The root attribute `weights_fnv1a64`, or nil when the file has none.
    public var storedChecksum: UInt64?
    /// The group `tokenizer/`, nil when absent (cerm's byte tokenizer).
    public var storedTokenizer: StoredTokenizer?
    /// The root attribute `provenance_json` (``SFTProvenance``), nil when absent.
    public var provenance: String?
    /// ``ModelWeights/checksum`` of the loaded values.
    public var computedChecksum: UInt64 { weights.checksum }
    /// True when the stored checksum equals the computed one, or none is stored (as
    /// ``ModelWeights/load(path:)`` accepts).
    public var checksumMatches: Bool { storedChecksum.map { $0 == computedChecksum } ?? true }

    /// Reads the SFT weights file at `path`; errors name the file.
    public static func read(path: String) throws -> LoadedSFTWeights {
        guard try CermFileKind.detect(path: path) == .sftWeights else {
            throw CermError.io(path: path, reason: "not an SFT weights file")
        }
        let file = try ModelWeights.readFile(path: path)
        var stored: UInt64?
        if let values = file.storedChecksums {
            guard values.count == 1 else {
                throw CermError.io(path: path, reason: "attribute weights_fnv1a64 has \(values.count) values, expected 1")
            }
            stored = values[0]
        }
        return LoadedSFTWeights(path: path, weights: file.weights, modelConfigJSON: file.modelConfigJSON,
                                tokenizerDescription: file.tokenizer, storedChecksum: stored, storedTokenizer: file.storedTokenizer,
                                provenance: file.provenance)
    }
}
