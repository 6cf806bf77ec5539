import Foundation
import Shared

/// Exports model tensors in the Hugging Face layout: `model.safetensors` (float32) and
/// `config.json`.
public enum HuggingFaceExport {
    /// Writes `model.safetensors` and `config.json` for `state` into `directory` (created when
    /// missing) and returns the written paths. `source` names the checkpoint in errors.
    @discardableResult
    public static func export(_ state: TrainingState, to directory: String, source: String) throws -> [String] {
        let configPath = (directory as NSString).appendingPathComponent("config.json")
        try createParentDirectory(of: configPath)
        let config = try configJSON(from: state.modelConfigJSON, source: source)
        try atomicWrite(configPath) { try $0.write(contentsOf: Data(config.utf8)) }
        let weightsPath = (directory as NSString).appendingPathComponent("model.safetensors")
        try writeSafetensors(state.policyTensors, metadata: ["format": "pt", "cerm_step": "\(state.step)",
                                                       "cerm_policy_version": "\(state.policyVersion)"], to: weightsPath)
        return [weightsPath, configPath]
    }

    /// The safetensors header for `tensors`: JSON with `__metadata__` first and tensors sorted by
    /// name (UTF-8 byte order), each `{"dtype":"F32","shape":[...],"data_offsets":[begin,end]}`,
    /// padded with spaces to a multiple of 8 bytes. Also returns the tensors in data order.
    static func safetensorsHeader(_ tensors: [NamedTensor], metadata: [String: String]) -> (header: [UInt8], order: [NamedTensor]) {
        let order = tensors.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
        var entries: [String] = []
        if !metadata.isEmpty {
            let meta = metadata.sorted { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
                .map { CheckpointFormat.jsonString($0.key) + ":" + CheckpointFormat.jsonString($0.value) }
            entries.append("\"__metadata__\":{" + meta.joined(separator: ",") + "}")
        }
        var offset = 0
        for tensor in order {
            let end = offset + tensor.values.count * 4
            entries.append(CheckpointFormat.jsonString(tensor.name)
                + ":{\"dtype\":\"F32\",\"shape\":[" + tensor.shape.map(String.init).joined(separator: ",")
                + "],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        var header = Array(("{" + entries.joined(separator: ",") + "}").utf8)
        while header.count % 8 != 0 { header.append(UInt8(ascii: " ")) }
        return (header, order)
    }

    /// Writes a float32 safetensors file (little-endian), through a temporary file and rename.
    public static func writeSafetensors(_ tensors: [NamedTensor], metadata: [String: String], to path: String) throws {
        var seen = Set<String>()
        for tensor in tensors {
            guard seen.insert(tensor.name).inserted else { throw CermError.io(path: path, reason: "duplicate tensor \(tensor.name)") }
            guard tensor.shape.reduce(1, *) == tensor.values.count else {
                throw CermError.io(path: path, reason: "tensor \(tensor.name) has shape \(tensor.shape) but \(tensor.values.count) values")
            }
        }
        let (header, order) = safetensorsHeader(tensors, metadata: metadata)
        try atomicWrite(path) { handle in
            try handle.write(contentsOf: withUnsafeBytes(of: UInt64(header.count).littleEndian) { Data($0) })
            try handle.write(contentsOf: Data(header))
            for tensor in order {
                try tensor.values.withUnsafeBytes { try handle.write(contentsOf: Data($0)) }
            }
        }
    }

    /// `config.json` from the stored model config: the stored JSON object as written by the
    /// engine, with `"torch_dtype": "float32"` added when it has none.
    static func configJSON(from modelConfigJSON: String, source: String) throws -> String {
        let parsed: Any
        do { parsed = try JSONSerialization.jsonObject(with: Data(modelConfigJSON.utf8)) } catch {
            throw CermError.io(path: source, reason: "stored model config is not JSON: \(error.localizedDescription)")
        }
        guard let object = parsed as? [String: Any] else {
            throw CermError.io(path: source, reason: "stored model config is not a JSON object")
        }
        var text = modelConfigJSON.trimmingCharacters(in: .whitespacesAndNewlines)
        if object["torch_dtype"] == nil {
            // Insert textually so every stored number keeps its exact spelling.
            let opening = text.index(after: text.startIndex)
            text.insert(contentsOf: object.isEmpty ? "\"torch_dtype\": \"float32\"" : "\"torch_dtype\": \"float32\", ", at: opening)
        }
        return text + "\n"
    }

    /// Writes `path` through `.<name>.tmp` in the same directory, fsyncs and renames.
    static func atomicWrite(_ path: String, _ body: (FileHandle) throws -> Void) throws {
        let directory = (path as NSString).deletingLastPathComponent
        let tmp = (directory as NSString).appendingPathComponent("." + (path as NSString).lastPathComponent + ".tmp")
        guard FileManager.default.createFile(atPath: tmp, contents: nil), let handle = FileHandle(forWritingAtPath: tmp) else {
            throw CermError.io(path: tmp, reason: "cannot create")
        }
        do {
            try body(handle)
            try handle.synchronize()
            try handle.close()
            guard rename(tmp, path) == 0 else { throw CermError.io(path: path, reason: "rename: \(String(cString: strerror(errno)))") }
        } catch {
            try? handle.close()
            try? FileManager.default.removeItem(atPath: tmp)
            if let error = error as? CermError { throw error }
            throw CermError.io(path: path, reason: "write failed: \(error.localizedDescription)")
        }
    }
}
