import Foundation
import Shared

/// Writes GGUF v3 files (ggml/src/gguf.cpp's layout): magic, version, tensor and metadata counts,
/// the metadata entries, the tensor infos (dimensions fastest first, offsets relative to the
/// data section), padding to `alignment`, then each tensor's bytes padded to `alignment`.
public struct GGUFWriter {
    public struct Tensor {
        public var name: String
        /// ggml order: the contiguous dimension first (a Hugging Face `[out, in]` is `[in, out]`).
        public var dimensions: [Int]
        public var type: GGMLType
        public var byteCount: Int
        /// The tensor's bytes, asked for when they are written (so a model is never held twice).
        public var bytes: () throws -> [UInt8]

        public init(name: String, dimensions: [Int], type: GGMLType, byteCount: Int, bytes: @escaping () throws -> [UInt8]) {
            self.name = name
            self.dimensions = dimensions
            self.type = type
            self.byteCount = byteCount
            self.bytes = bytes
        }
    }

    public var metadata: [(key: String, value: GGUFValue)] = []
    public var tensors: [Tensor] = []
    public var version: UInt32 = 3
    /// Written as `general.alignment` when not ggml's default 32.
    public var alignment = 32

    public init() {}

    /// Hands the file's bytes to `sink` in order, one header or tensor at a time. A tensor whose
    /// bytes are not `byteCount` long is an error naming it.
    public func serialize(_ sink: ([UInt8]) throws -> Void) throws {
        var out: [UInt8] = []
        func put<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) } }
        func putString(_ s: String) { put(UInt64(s.utf8.count)); out.append(contentsOf: s.utf8) }
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
                put(elements.first?.typeID ?? 0)
                put(UInt64(elements.count))
                elements.forEach(putValue)
            }
        }
        func padding(after count: Int) -> [UInt8] { [UInt8](repeating: 0, count: (alignment - count % alignment) % alignment) }
        out.append(contentsOf: GGUFFile.magic)
        put(version)
        put(UInt64(tensors.count))
        let allMetadata = metadata + (alignment == 32 ? [] : [("general.alignment", GGUFValue.uint32(UInt32(alignment)))])
        put(UInt64(allMetadata.count))
        for (key, value) in allMetadata {
            putString(key)
            put(value.typeID)
            putValue(value)
        }
        var offset = 0
        for tensor in tensors {
            putString(tensor.name)
            put(UInt32(tensor.dimensions.count))
            tensor.dimensions.forEach { put(Int64($0)) }
            put(tensor.type.rawValue)
            put(UInt64(offset))
            offset += tensor.byteCount + padding(after: tensor.byteCount).count
        }
        out += padding(after: out.count)
        try sink(out)
        for tensor in tensors {
            let bytes = try tensor.bytes()
            guard bytes.count == tensor.byteCount else {
                throw CermError.invalid("GGUFWriter: tensor \(tensor.name) has \(bytes.count) bytes, its info says \(tensor.byteCount)")
            }
            try sink(bytes + padding(after: bytes.count))
        }
    }

    /// The whole file in memory (small files, tests).
    public func bytes() throws -> [UInt8] {
        var all: [UInt8] = []
        try serialize { all += $0 }
        return all
    }

    /// Writes the file to `path` through a temporary name, fsync and rename.
    public func write(to path: String) throws {
        try AtomicFile.write(path) { handle in try serialize { try handle.write(contentsOf: Data($0)) } }
    }
}

extension GGUFValue {
    /// The GGUF value type id (`gguf_type`).
    var typeID: UInt32 {
        switch self {
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
}
