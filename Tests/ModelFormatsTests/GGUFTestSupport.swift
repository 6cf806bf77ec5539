import Foundation
@testable import ModelFormats
import Shared

/// The committed fixtures (written by `scripts/make_modelformats_fixtures.py`).
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// A fresh temporary directory, removed by the caller.
    static func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "modelformats-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// The bytes of `data` written to a new file in `directory`.
    static func write(_ bytes: [UInt8], named name: String, in directory: String) throws -> String {
        let path = (directory as NSString).appendingPathComponent(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }
}

/// GGUF files (``GGUFWriter``) from metadata and raw tensor bytes, so tests can damage a valid file in
/// one precise way (drop or add a tensor, change a key) and check the error.
struct GGUFBuilder {
    struct Tensor { var name: String; var dimensions: [Int]; var type: GGMLType; var bytes: [UInt8] }
    var metadata: [(key: String, value: GGUFValue)] = []
    var tensors: [Tensor] = []
    var version: UInt32 = 3
    var alignment = 32

    /// Everything `file` holds, to be modified and written again.
    init(copying file: GGUFFile) {
        metadata = file.metadataKeys.compactMap { key in key == "general.alignment" ? nil : file.metadata[key].map { (key, $0) } }
        tensors = file.tensors.map { Tensor(name: $0.name, dimensions: $0.dimensions, type: $0.type, bytes: Array(file.data(of: $0))) }
    }

    init() {}

    mutating func set(_ key: String, _ value: GGUFValue) {
        if let index = metadata.firstIndex(where: { $0.key == key }) { metadata[index].value = value } else { metadata.append((key, value)) }
    }

    func bytes() throws -> [UInt8] {
        var writer = GGUFWriter()
        writer.metadata = metadata
        writer.version = version
        writer.alignment = alignment
        writer.tensors = tensors.map { tensor in
            GGUFWriter.Tensor(name: tensor.name, dimensions: tensor.dimensions, type: tensor.type, byteCount: tensor.bytes.count) { tensor.bytes }
        }
        return try writer.bytes()
    }
}
