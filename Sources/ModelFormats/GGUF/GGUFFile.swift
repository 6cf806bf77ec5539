import Foundation
import Shared

/// One metadata value of a GGUF file (`gguf_type` in `ggml/include/gguf.h`).
public enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case uint64(UInt64), int64(Int64), float32(Float), float64(Double), bool(Bool), string(String)
    /// Elements all of one type (arrays of arrays are allowed by the format).
    case array([GGUFValue])

    /// The value as an `Int` when it is an integer of any width that fits.
    public var intValue: Int? {
        switch self {
        case let .uint8(v): Int(v)
        case let .int8(v): Int(v)
        case let .uint16(v): Int(v)
        case let .int16(v): Int(v)
        case let .uint32(v): Int(v)
        case let .int32(v): Int(v)
        case let .uint64(v): Int(exactly: v)
        case let .int64(v): Int(v)
        default: nil
        }
    }

    /// The value as a `Double` when it is a number (integer or float).
    public var doubleValue: Double? {
        switch self {
        case let .float32(v): Double(v)
        case let .float64(v): v
        default: intValue.map(Double.init)
        }
    }

    /// The GGUF type name, for error messages.
    public var typeName: String {
        switch self {
        case .uint8: "uint8"
        case .int8: "int8"
        case .uint16: "uint16"
        case .int16: "int16"
        case .uint32: "uint32"
        case .int32: "int32"
        case .uint64: "uint64"
        case .int64: "int64"
        case .float32: "float32"
        case .float64: "float64"
        case .bool: "bool"
        case .string: "string"
        case .array: "array"
        }
    }
}

/// Where one tensor's data is in a GGUF file.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    public let type: GGMLType
    /// ggml's `ne`: `dimensions[0]` is the fastest-varying (contiguous) one, so a Hugging Face
    /// `[out, in]` weight is stored as `[in, out]`.
    public let dimensions: [Int]
    /// Offset of the first byte from the start of the data section.
    public let offset: Int
    /// Bytes of data (`elementCount / blockSize · typeSize`).
    public let byteCount: Int

    /// The shape in row-major order (slowest first), as Hugging Face and numpy write it.
    public var shape: [Int] { dimensions.reversed() }
    public var elementCount: Int { dimensions.reduce(1, *) }
}

/// A GGUF file (versions 2 and 3), memory-mapped and parsed as `ggml/src/gguf.cpp` does:
///
///     magic "GGUF" · version u32 · tensor count u64 · metadata count u64
///     metadata: key (string) · type u32 · value          (string = length u64 · UTF-8 bytes)
///     tensor infos: name · n_dims u32 · ne[n_dims] i64 · ggml type u32 · offset u64
///     padding to `general.alignment` (default 32) · data section
///
/// Every count, length and offset is checked against the file size before it is used
/// (overflow-safe), so a damaged file is a ``CermError/io(path:reason:)`` naming the file and the
/// key, tensor or offset at fault.
public struct GGUFFile: Sendable {
    public static let magic: [UInt8] = Array("GGUF".utf8)
    public static let defaultAlignment = 32
    /// ggml's `GGML_MAX_DIMS`.
    static let maxDimensions = 4
    /// Arrays of arrays deeper than this are refused (no real file nests at all).
    static let maxArrayDepth = 8

    public let path: String
    public let version: Int
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    /// Tensor infos in file order.
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    /// File offset of the data section.
    public let dataOffset: Int
    let file: MappedFile

    /// Maps and parses `path`.
    public init(path: String) throws {
        try self.init(file: MappedFile(path: path))
    }

    init(file: MappedFile) throws {
        let path = file.path
        self.file = file
        self.path = path
        var reader = ByteReader(file.bytes, path: path)
        guard reader.remaining >= 4, Array(try reader.readBytes(4, "magic")) == Self.magic else {
            throw CermError.io(path: path, reason: "not a GGUF file (the first 4 bytes are not \"GGUF\")")
        }
        let version = try reader.read(UInt32.self, "version")
        guard version == 2 || version == 3 else {
            let hint = version == 1 ? " (GGUF v1 is not supported; convert it again)"
                : version > 0xFFFF ? " (a big-endian file? only little-endian is read)" : ""
            throw CermError.io(path: path, reason: "GGUF version \(version) is not supported, only 2 and 3\(hint)")
        }
        self.version = Int(version)
        let tensorCount = try reader.read(UInt64.self, "tensor count")
        let metadataCount = try reader.read(UInt64.self, "metadata count")
        // Smallest encodings: a metadata entry is a key length, a type and a one-byte value; a
        // tensor info a name length, n_dims, type and offset.
        guard metadataCount <= UInt64(reader.remaining / 13) else {
            throw CermError.io(path: path, reason: "metadata count \(metadataCount) does not fit in the file (\(file.bytes.count) bytes)")
        }
        guard tensorCount <= UInt64(reader.remaining / 24) else {
            throw CermError.io(path: path, reason: "tensor count \(tensorCount) does not fit in the file (\(file.bytes.count) bytes)")
        }

        var metadata: [String: GGUFValue] = [:]
        var keys: [String] = []
        for index in 0..<Int(metadataCount) {
            let key = try Self.readString(&reader, "key of metadata entry \(index)")
            let typeID = try reader.read(UInt32.self, "type of metadata \(key)")
            let value = try Self.readValue(&reader, typeID: typeID, key: key, depth: 0)
            guard metadata.updateValue(value, forKey: key) == nil else {
                throw CermError.io(path: path, reason: "metadata key \(key) appears twice")
            }
            keys.append(key)
        }
        self.metadata = metadata
        self.metadataKeys = keys

        var alignment = Self.defaultAlignment
        if let value = metadata["general.alignment"] {
            guard case let .uint32(a) = value, a > 0, a & (a - 1) == 0 else {
                throw CermError.io(path: path, reason: "metadata general.alignment must be a uint32 power of 2, got \(value)")
            }
            alignment = Int(a)
        }
        self.alignment = alignment

        struct RawInfo { let name: String; let type: GGMLType; let dimensions: [Int]; let offset: UInt64 }
        var infos: [RawInfo] = []
        var names = Set<String>()
        for index in 0..<Int(tensorCount) {
            let name = try Self.readString(&reader, "name of tensor \(index)")
            guard names.insert(name).inserted else { throw CermError.io(path: path, reason: "tensor \(name) appears twice") }
            let dimensionCount = try reader.read(UInt32.self, "dimension count of tensor \(name)")
            guard dimensionCount <= Self.maxDimensions else {
                throw CermError.io(path: path, reason: "tensor \(name) has \(dimensionCount) dimensions, at most \(Self.maxDimensions) allowed")
            }
            var dimensions: [Int] = []
            var elements = 1
            for _ in 0..<Int(dimensionCount) {
                let ne = try reader.read(Int64.self, "dimensions of tensor \(name)")
                let (product, overflow) = elements.multipliedReportingOverflow(by: Int(ne))
                guard ne >= 0, !overflow else {
                    throw CermError.io(path: path, reason: "tensor \(name) has invalid dimension \(ne)")
                }
                dimensions.append(Int(ne))
                elements = product
            }
            let typeID = try reader.read(UInt32.self, "type of tensor \(name)")
            guard let type = GGMLType(rawValue: typeID) else {
                throw CermError.io(path: path, reason: "tensor \(name) has unknown ggml type \(typeID)")
            }
            let rowLength = dimensions.first ?? 1
            if rowLength % type.blockSize != 0 {
                throw CermError.io(path: path, reason: "tensor \(name): row length \(rowLength) is not a multiple of the \(type) block size \(type.blockSize)")
            }
            let offset = try reader.read(UInt64.self, "offset of tensor \(name)")
            infos.append(RawInfo(name: name, type: type, dimensions: dimensions, offset: offset))
        }

        // The data section starts at the next multiple of the alignment.
        let headerEnd = reader.offset
        let padding = (alignment - headerEnd % alignment) % alignment
        let fileSize = file.bytes.count
        guard padding <= fileSize - headerEnd else {
            throw CermError.io(path: path, reason: "truncated: the data section would start at \(headerEnd + padding), past the end (\(fileSize) bytes)")
        }
        dataOffset = headerEnd + padding
        let dataSize = fileSize - dataOffset
        tensors = try infos.map { info in
            // The product of the dimensions was overflow-checked above and the division is exact
            // (the row length is a multiple of the block size).
            let blocks = info.dimensions.reduce(1, *) / info.type.blockSize
            let (bytes, overflow) = blocks.multipliedReportingOverflow(by: info.type.typeSize)
            guard !overflow, info.offset <= UInt64(dataSize), bytes <= dataSize - Int(info.offset) else {
                throw CermError.io(path: path, reason: "tensor \(info.name): data at offset \(info.offset) of \(overflow ? "too many" : String(bytes)) bytes is past the end of the data section (\(dataSize) bytes)")
            }
            guard Int(info.offset) % alignment == 0 else {
                throw CermError.io(path: path, reason: "tensor \(info.name): offset \(info.offset) is not a multiple of the alignment \(alignment)")
            }
            return GGUFTensorInfo(name: info.name, type: info.type, dimensions: info.dimensions, offset: Int(info.offset), byteCount: bytes)
        }
    }

    /// A GGUF string: length u64 then that many UTF-8 bytes.
    static func readString(_ reader: inout ByteReader, _ what: String) throws -> String {
        let length = try reader.read(UInt64.self, "length of \(what)")
        guard length <= UInt64(reader.remaining) else { throw reader.truncated(what, needs: Int(clamping: length)) }
        return try decodeUTF8(reader.readBytes(Int(length), what), path: reader.path, what: what)
    }

    static func readValue(_ reader: inout ByteReader, typeID: UInt32, key: String, depth: Int) throws -> GGUFValue {
        let what = "value of metadata \(key)"
        switch typeID {
        case 0: return .uint8(try reader.read(UInt8.self, what))
        case 1: return .int8(try reader.read(Int8.self, what))
        case 2: return .uint16(try reader.read(UInt16.self, what))
        case 3: return .int16(try reader.read(Int16.self, what))
        case 4: return .uint32(try reader.read(UInt32.self, what))
        case 5: return .int32(try reader.read(Int32.self, what))
        case 6: return .float32(try reader.readFloat(what))
        case 7:
            let byte = try reader.read(UInt8.self, what)
            guard byte <= 1 else { throw CermError.io(path: reader.path, reason: "metadata \(key): bool value \(byte) is neither 0 nor 1") }
            return .bool(byte == 1)
        case 8: return .string(try readString(&reader, what))
        case 9:
            guard depth < maxArrayDepth else {
                throw CermError.io(path: reader.path, reason: "metadata \(key): arrays nested deeper than \(maxArrayDepth)")
            }
            let elementType = try reader.read(UInt32.self, "element type of metadata \(key)")
            guard elementType <= 12 else {
                throw CermError.io(path: reader.path, reason: "metadata \(key) is an array of unknown value type \(elementType)")
            }
            let count = try reader.read(UInt64.self, "length of metadata \(key)")
            // Every element takes at least one byte (strings 8, arrays 12): a count the rest of
            // the file cannot hold is refused before anything is allocated.
            let minimumSize: UInt64 = switch elementType {
            case 0, 1, 7: 1
            case 2, 3: 2
            case 4, 5, 6: 4
            case 8, 10, 11, 12: 8
            default: 12
            }
            guard count <= UInt64(reader.remaining) / minimumSize else {
                throw CermError.io(path: reader.path, reason: "metadata \(key): array of \(count) elements does not fit in the file")
            }
            var elements: [GGUFValue] = []
            elements.reserveCapacity(Int(count))
            for _ in 0..<Int(count) {
                elements.append(try readValue(&reader, typeID: elementType, key: key, depth: depth + 1))
            }
            return .array(elements)
        case 10: return .uint64(try reader.read(UInt64.self, what))
        case 11: return .int64(try reader.read(Int64.self, what))
        case 12: return .float64(try reader.readDouble(what))
        default:
            throw CermError.io(path: reader.path, reason: "metadata \(key) has unknown value type \(typeID)")
        }
    }

    // MARK: Typed metadata

    /// The value of `key` or an error naming it.
    public func value(_ key: String) throws -> GGUFValue {
        guard let value = metadata[key] else { throw CermError.io(path: path, reason: "metadata key \(key) is missing") }
        return value
    }

    private func wrongType(_ key: String, _ value: GGUFValue, expected: String) -> CermError {
        CermError.io(path: path, reason: "metadata \(key) is a \(value.typeName), expected \(expected)")
    }

    /// An integer of any width that fits in `Int`.
    public func int(_ key: String) throws -> Int {
        let value = try value(key)
        guard let int = value.intValue else { throw wrongType(key, value, expected: "an integer") }
        return int
    }

    /// A number (float or integer).
    public func double(_ key: String) throws -> Double {
        let value = try value(key)
        guard let double = value.doubleValue else { throw wrongType(key, value, expected: "a number") }
        return double
    }

    public func string(_ key: String) throws -> String {
        let value = try value(key)
        guard case let .string(string) = value else { throw wrongType(key, value, expected: "a string") }
        return string
    }

    public func bool(_ key: String) throws -> Bool {
        let value = try value(key)
        guard case let .bool(bool) = value else { throw wrongType(key, value, expected: "a bool") }
        return bool
    }

    /// An array of strings.
    public func strings(_ key: String) throws -> [String] {
        try array(key, of: "strings") { if case let .string(string) = $0 { string } else { nil } }
    }

    /// An array of integers.
    public func ints(_ key: String) throws -> [Int] {
        try array(key, of: "integers", \.intValue)
    }

    /// The array `key` with each element converted by `convert` (nil: the wrong type).
    private func array<T>(_ key: String, of elements: String, _ convert: (GGUFValue) -> T?) throws -> [T] {
        let value = try value(key)
        guard case let .array(values) = value else { throw wrongType(key, value, expected: "an array of \(elements)") }
        return try values.map { element in
            guard let converted = convert(element) else { throw wrongType(key, element, expected: "\(elements) in the array") }
            return converted
        }
    }

    /// The tensor named `name`, if the file has it.
    public func tensor(_ name: String) -> GGUFTensorInfo? { tensors.first { $0.name == name } }

    // MARK: Data

    /// The raw bytes of `tensor` inside the map (valid while this file is alive).
    func data(of tensor: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        let start = dataOffset + tensor.offset
        return UnsafeRawBufferPointer(rebasing: file.bytes[start..<(start + tensor.byteCount)])
    }

    /// Converts `tensor` to float32 into `output` (`tensor.elementCount` floats, in the file's
    /// element order: `dimensions[0]` fastest), exactly as ggml's `dequantize_row_*`.
    public func dequantize(_ tensor: GGUFTensorInfo, into output: UnsafeMutableBufferPointer<Float>) throws {
        guard output.count == tensor.elementCount else {
            throw CermError.invalid("GGUFFile.dequantize: \(tensor.name) has \(tensor.elementCount) elements, the buffer \(output.count)")
        }
        guard GGMLType.dequantizable.contains(tensor.type) else {
            throw CermError.io(path: path, reason: "tensor \(tensor.name) has type \(tensor.type), which cerm cannot read (supported: \(GGMLType.dequantizable.map(\.name).sorted().joined(separator: ", ")))")
        }
        Dequantize.blocks(of: tensor.type, from: data(of: tensor), into: output)
        file.releasePages((dataOffset + tensor.offset)..<(dataOffset + tensor.offset + tensor.byteCount))
    }

    /// `tensor` as float32 values (see ``dequantize(_:into:)``).
    public func floats(_ tensor: GGUFTensorInfo) throws -> [Float] {
        var values = [Float](repeating: 0, count: tensor.elementCount)
        try values.withUnsafeMutableBufferPointer { try dequantize(tensor, into: $0) }
        return values
    }
}
