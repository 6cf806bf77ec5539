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

/// Writes GGUF v3 files from metadata and raw tensor bytes, so tests can damage a valid file in
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

    func bytes() -> [UInt8] {
        var out: [UInt8] = []
        func put<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) } }
        func putString(_ s: String) { put(UInt64(s.utf8.count)); out.append(contentsOf: s.utf8) }
        func typeID(_ value: GGUFValue) -> UInt32 {
            switch value {
            case .uint8: 0
            case .int8: 1
            case .uint16: 2
            case .int16: 3
            case .uint32: 4
            case .int32: 5
            case .float32: 6
            case .bool: 7
            case .string: 8
            case .array: 9
            case .uint64: 10
            case .int64: 11
            case .float64: 12
            }
        }
        func putValue(_ value: GGUFValue) {
            switch value {
            case let .uint8(v): put(v)
            case let .int8(v): put(v)
            case let .uint16(v): put(v)
            case let .int16(v): put(v)
            case let .uint32(v): put(v)
            case let .int32(v): put(v)
            case let .uint64(v): put(v)
            case let .int64(v): put(v)
            case let .float32(v): put(v.bitPattern)
            case let .float64(v): put(v.bitPattern)
            case let .bool(v): put(UInt8(v ? 1 : 0))
            case let .string(v): putString(v)
            case let .array(elements):
                put(elements.first.map(typeID) ?? 0)
                put(UInt64(elements.count))
                elements.forEach(putValue)
            }
        }
        out.append(contentsOf: GGUFFile.magic)
        put(version)
        put(UInt64(tensors.count))
        let allMetadata = metadata + (alignment == 32 ? [] : [("general.alignment", GGUFValue.uint32(UInt32(alignment)))])
        put(UInt64(allMetadata.count))
        for (key, value) in allMetadata {
            putString(key)
            put(typeID(value))
            putValue(value)
        }
        var offset = 0
        var offsets: [Int] = []
        for tensor in tensors {
            offsets.append(offset)
            offset += (tensor.bytes.count + alignment - 1) / alignment * alignment
        }
        for (tensor, offset) in zip(tensors, offsets) {
            putString(tensor.name)
            put(UInt32(tensor.dimensions.count))
            tensor.dimensions.forEach { put(Int64($0)) }
            put(tensor.type.rawValue)
            put(UInt64(offset))
        }
        while out.count % alignment != 0 { out.append(0) }
        for tensor in tensors {
            out.append(contentsOf: tensor.bytes)
            while out.count % alignment != 0 { out.append(0) }
        }
        return out
    }
}
