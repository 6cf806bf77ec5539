import Foundation
import Shared

/// HDF5 persistence of weights.
///
/// File layout written by ``ModelWeights/save(to:)`` (readable with h5py):
/// - root attribute `model_config_json`: ``TransformerConfig/jsonString()``
/// - root attribute `tokenizer`: ``ByteTokenizer/description``, or ``StoredTokenizer/description``
/// - root attribute `weights_fnv1a64` (UInt64): ``ModelWeights/checksum``, verified on load
/// - root attribute `provenance_json` (optional): how the weights were made (`cerm sft` writes
///   its recipe, docs/ENGINE_TRAINING.md); absent in files of other writers and older builds
/// - group `model/`: one float32 dataset per Hugging Face tensor name, with its HF shape
/// - group `tokenizer/` (a pretrained model's tokenizer and chat template, ``StoredTokenizer``):
///   absent for models that use cerm's byte tokenizer (docs/CHECKPOINT.md, "Tokenizer").

extension ModelWeights {
    /// Name of the group holding the tensors in files written by ``save(to:)``.
    public static let hdf5Group = "model"

    /// Writes the weights, model config, tokenizer (nil: cerm's byte tokenizer) and `provenance`
    /// (nil: none) to a new HDF5 file at `path` (replacing it). Not atomic: checkpoint writers
    /// should write a temporary name and rename.
    public func save(to path: String, tokenizer: StoredTokenizer? = nil, provenance: String? = nil) throws {
        let file = try HDF5File(path: path, mode: .truncate)
        let root = file.root
        try root.setAttribute("model_config_json", config.jsonString())
        try root.setAttribute("tokenizer", tokenizer?.description ?? ByteTokenizer().description)
        try root.setAttribute("weights_fnv1a64", checksum)
        if let provenance { try root.setAttribute("provenance_json", provenance) }
        try write(to: root.group(Self.hdf5Group, create: true))
        try tokenizer?.write(to: root)
        try file.flush()
        try file.close()
    }

    /// Reads a file written by ``save(to:)``; checks every tensor's shape and the checksum.
    public static func load(path: String) throws -> ModelWeights {
        try loadVerified(path: path).weights
    }

    /// Reads a file written by ``save(to:tokenizer:)`` with its stored tokenizer; a checksum
    /// mismatch is an error naming the file.
    public static func loadVerified(path: String) throws -> StoredFile {
        let file = try readFile(path: path)
        if let stored = file.storedChecksums, stored.first != file.weights.checksum {
            throw CermError.io(path: path, reason: "weights checksum mismatch (stored \(stored.first.map { String($0, radix: 16) } ?? "none"), computed \(String(file.weights.checksum, radix: 16)))")
        }
        return file
    }

    /// What a file written by ``save(to:)`` holds, read without verifying the checksum (that
    /// is the caller's: ``load(path:)`` refuses a mismatch, `cerm inspect` reports it).
    public struct StoredFile: Sendable {
        public var weights: ModelWeights
        /// The root attribute `model_config_json` as stored.
        public var modelConfigJSON: String
        /// The root attribute `tokenizer`, nil when absent.
        public var tokenizer: String?
        /// The root attribute `weights_fnv1a64`, nil when absent.
        public var storedChecksums: [UInt64]?
        /// The group `tokenizer/`, nil when absent (cerm's byte tokenizer).
        public var storedTokenizer: StoredTokenizer?
        /// The root attribute `provenance_json`, nil when absent.
        public var provenance: String?
    }

    /// Reads every part of a file written by ``save(to:)``; checks the tensors' shapes, not
    /// the checksum. Errors name the file.
    public static func readFile(path: String) throws -> StoredFile {
        let file = try HDF5File(path: path, mode: .readOnly)
        defer { try? file.close() }
        let root = file.root
        let json = try root.stringAttribute("model_config_json")
        let config: TransformerConfig
        do {
            config = try TransformerConfig.fromJSON(json)
        } catch {
            throw CermError.io(path: path, reason: "attribute model_config_json is not a valid model config: \(error)")
        }
        let weights = try read(config: config, from: root.group(hdf5Group))
        let tokenizer = root.hasAttribute("tokenizer") ? try root.stringAttribute("tokenizer") : nil
        let stored: [UInt64]? = root.hasAttribute("weights_fnv1a64") ? try root.attribute("weights_fnv1a64") : nil
        return StoredFile(weights: weights, modelConfigJSON: json, tokenizer: tokenizer, storedChecksums: stored,
                          storedTokenizer: try StoredTokenizer.read(from: root),
                          provenance: root.hasAttribute("provenance_json") ? try root.stringAttribute("provenance_json") : nil)
    }

    /// Writes one dataset per tensor (HF name and shape) into `group`.
    public func write(to group: HDF5Group) throws {
        try layout.write(values, to: group)
    }

    /// Reads every tensor of `config`'s layout by HF name from `group` (e.g. a checkpoint's
    /// `model/` or an engine fixture's `weights/`). Missing tensors and shape mismatches are
    /// errors naming the tensor; extra datasets in the group are ignored.
    public static func read(config: TransformerConfig, from group: HDF5Group) throws -> ModelWeights {
        do {
            try config.validate()
        } catch {
            throw CermError.io(path: group.file.path, reason: "\(error)")
        }
        var weights = ModelWeights(config: config)
        try weights.layout.read(into: &weights.values, from: group)
        return weights
    }
}

extension ModelGradients {
    /// Reads gradients by HF name from `group` (e.g. an engine fixture's `grads/`).
    public static func read(config: TransformerConfig, from group: HDF5Group) throws -> ModelGradients {
        var grads = ModelGradients(config: config)
        try grads.layout.read(into: &grads.values, from: group)
        return grads
    }
}

extension ParameterLayout {
    /// Writes a flat buffer in this layout as one dataset per tensor into `group`.
    /// Used for weights and for optimizer moments in checkpoints.
    public func write(_ values: [Float], to group: HDF5Group) throws {
        guard values.count == totalCount else {
            throw CermError.invalid("ParameterLayout.write: \(values.count) values, layout needs \(totalCount)")
        }
        try values.withUnsafeBufferPointer { buf in
            for spec in specs {
                let slice = UnsafeBufferPointer(rebasing: buf[spec.range])
                try group.write(spec.name, values: slice, shape: spec.shape)
            }
        }
    }

    /// Reads every tensor of this layout by name from `group` into a flat buffer.
    public func read(into values: inout [Float], from group: HDF5Group) throws {
        if values.count != totalCount { values = [Float](repeating: 0, count: totalCount) }
        for spec in specs {
            guard group.contains(spec.name) else {
                throw CermError.io(path: group.file.path, reason: "missing tensor \(group.path)/\(spec.name)")
            }
            let shape = try group.shape(of: spec.name)
            guard shape == spec.shape else {
                throw CermError.io(path: group.file.path, reason: "tensor \(group.path)/\(spec.name) has shape \(shape), expected \(spec.shape)")
            }
            try values.withUnsafeMutableBufferPointer { buf in
                try group.read(spec.name, into: UnsafeMutableBufferPointer(rebasing: buf[spec.range]))
            }
        }
    }
}
