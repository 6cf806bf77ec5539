import Foundation
import Shared

/// The safetensors format (huggingface/safetensors `docs/source/index.mdx`):
///
///     header length N (u64, little-endian) · N bytes of UTF-8 JSON · data
///     JSON: {"__metadata__": {str: str}?, NAME: {"dtype": "F32", "shape": [...],
///            "data_offsets": [begin, end]}, ...}   (offsets relative to the data, end exclusive)
///
/// The reader maps the file and checks everything against its size before use; the writer
/// writes float32 (see ``write(_:metadata:to:)``).
public struct SafetensorsFile: Sendable {
    /// One tensor's entry in the header.
    public struct Tensor: Sendable, Equatable {
        public let name: String
        public let dtype: String
        public let shape: [Int]
        /// Byte range in the file (absolute).
        public let bytes: Range<Int>
        public var elementCount: Int { shape.reduce(1, *) }
    }

    /// Bytes per element of the dtypes cerm converts to float32.
    public static let floatDTypes: [String: Int] = ["F32": 4, "F16": 2, "BF16": 2]
    /// Bytes per element of every dtype the format defines (for checking the layout of any file).
    static let dtypeSizes: [String: Int] = floatDTypes.merging([
        "F64": 8, "I64": 8, "U64": 8, "I32": 4, "U32": 4, "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1,
        "F8_E4M3": 1, "F8_E5M2": 1,
    ]) { a, _ in a }
    /// The reference implementation's limit on the header size.
    static let maxHeaderLength = 100_000_000

    public let path: String
    /// Tensors by name.
    public let tensors: [String: Tensor]
    /// `__metadata__` (string values only, as the format requires).
    public let metadata: [String: String]
    let file: MappedFile

    public init(path: String) throws {
        let file = try MappedFile(path: path)
        self.file = file
        self.path = path
        var reader = ByteReader(file.bytes, path: path)
        let headerLength = try reader.read(UInt64.self, "header length")
        guard headerLength <= UInt64(min(reader.remaining, Self.maxHeaderLength)) else {
            throw CermError.io(path: path, reason: "header length \(headerLength) is past the end of the file (\(file.bytes.count) bytes)")
        }
        let headerBytes = try reader.readBytes(Int(headerLength), "header")
        let text = try decodeUTF8(headerBytes, path: path, what: "the JSON header")
        let header: JSONValue
        do {
            header = try JSONParser.parse(Array(text.utf8))
        } catch {
            throw CermError.io(path: path, reason: "the JSON header is not valid JSON (byte \(error.offset): \(error.message))")
        }
        guard case let .object(members) = header else {
            throw CermError.io(path: path, reason: "the JSON header is a \(header.typeName), expected an object")
        }
        let dataStart = reader.offset
        let dataSize = reader.remaining
        var tensors: [String: Tensor] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in members {
            if name == "__metadata__" {
                guard case let .object(entries) = value else {
                    throw CermError.io(path: path, reason: "__metadata__ is a \(value.typeName), expected an object of strings")
                }
                for (key, entry) in entries {
                    guard case let .string(string) = entry else {
                        throw CermError.io(path: path, reason: "__metadata__ \(key) is a \(entry.typeName), expected a string")
                    }
                    metadata[key] = string
                }
                continue
            }
            func bad(_ reason: String) -> CermError { CermError.io(path: path, reason: "tensor \(name): \(reason)") }
            guard case let .string(dtype) = value["dtype"] ?? .null else { throw bad("dtype is missing or not a string") }
            guard let elementSize = Self.dtypeSizes[dtype] else { throw bad("unknown dtype \(dtype)") }
            guard case let .array(dimensions) = value["shape"] ?? .null else { throw bad("shape is missing or not an array") }
            let shapeText = "[" + dimensions.map(HuggingFaceModel.describe).joined(separator: ", ") + "]"
            var shape: [Int] = []
            var count = 1
            for dimension in dimensions {
                guard case let .number(number, true) = dimension, let size = Int(exactly: number), size >= 0 else {
                    throw bad("shape \(shapeText) is not a list of non-negative integers")
                }
                let (product, overflow) = count.multipliedReportingOverflow(by: size)
                guard !overflow else { throw bad("shape \(shapeText) has too many elements") }
                shape.append(size)
                count = product
            }
            guard case let .array(offsets) = value["data_offsets"] ?? .null, offsets.count == 2,
                  case let .number(b, true) = offsets[0], case let .number(e, true) = offsets[1],
                  let begin = Int(exactly: b), let end = Int(exactly: e), begin >= 0, begin <= end else {
                throw bad("data_offsets must be two integers [begin, end] with begin ≤ end")
            }
            guard end <= dataSize else {
                throw bad("data_offsets [\(begin), \(end)] are past the end of the data (\(dataSize) bytes)")
            }
            let (byteCount, overflow) = count.multipliedReportingOverflow(by: elementSize)
            guard !overflow, byteCount == end - begin else {
                throw bad("shape \(shape) of \(dtype) needs \(overflow ? "too many" : String(byteCount)) bytes, data_offsets [\(begin), \(end)] hold \(end - begin)")
            }
            guard tensors.updateValue(Tensor(name: name, dtype: dtype, shape: shape, bytes: (dataStart + begin)..<(dataStart + end)), forKey: name) == nil else {
                throw bad("appears twice in the header")
            }
        }
        self.tensors = tensors
        self.metadata = metadata
    }

    /// Converts `tensor` (F32, F16 or BF16, little-endian) to float32 into `output`.
    public func floats(_ tensor: Tensor, into output: UnsafeMutableBufferPointer<Float>) throws {
        guard output.count == tensor.elementCount else {
            throw CermError.invalid("SafetensorsFile.floats: \(tensor.name) has \(tensor.elementCount) elements, the buffer \(output.count)")
        }
        let source = UnsafeRawBufferPointer(rebasing: file.bytes[tensor.bytes])
        let type: GGMLType
        switch tensor.dtype {
        case "F32": type = .f32
        case "F16": type = .f16
        case "BF16": type = .bf16
        default:
            throw CermError.io(path: path, reason: "tensor \(tensor.name) has dtype \(tensor.dtype); cerm reads F32, F16 and BF16")
        }
        Dequantize.blocks(of: type, from: source, into: output)
        file.releasePages(tensor.bytes)
    }

    // MARK: Writing

    /// The header for `tensors`: JSON with `__metadata__` first and tensors sorted by name (UTF-8
    /// byte order), each `{"dtype":"F32","shape":[...],"data_offsets":[begin,end]}`, padded with
    /// spaces to a multiple of 8 bytes. Also returns the tensors in data order.
    static func header(_ tensors: [(name: String, shape: [Int], values: [Float])], metadata: [String: String])
        -> (header: [UInt8], order: [(name: String, shape: [Int], values: [Float])]) {
        let order = tensors.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
        var entries: [String] = []
        if !metadata.isEmpty {
            let meta = metadata.sorted { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
                .map { JSONWriter.quote($0.key) + ":" + JSONWriter.quote($0.value) }
            entries.append("\"__metadata__\":{" + meta.joined(separator: ",") + "}")
        }
        var offset = 0
        for tensor in order {
            let end = offset + tensor.values.count * 4
            entries.append(JSONWriter.quote(tensor.name)
                + ":{\"dtype\":\"F32\",\"shape\":[" + tensor.shape.map(String.init).joined(separator: ",")
                + "],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        var header = Array(("{" + entries.joined(separator: ",") + "}").utf8)
        while header.count % 8 != 0 { header.append(UInt8(ascii: " ")) }
        return (header, order)
    }

    /// Writes a float32 safetensors file (little-endian) through a temporary file and rename.
    public static func write(_ tensors: [(name: String, shape: [Int], values: [Float])], metadata: [String: String], to path: String) throws {
        var seen = Set<String>()
        for tensor in tensors {
            guard seen.insert(tensor.name).inserted else { throw CermError.io(path: path, reason: "duplicate tensor \(tensor.name)") }
            guard tensor.shape.reduce(1, *) == tensor.values.count else {
                throw CermError.io(path: path, reason: "tensor \(tensor.name) has shape \(tensor.shape) but \(tensor.values.count) values")
            }
        }
        let (header, order) = header(tensors, metadata: metadata)
        try AtomicFile.write(path) { handle in
            try handle.write(contentsOf: withUnsafeBytes(of: UInt64(header.count).littleEndian) { Data($0) })
            try handle.write(contentsOf: Data(header))
            for tensor in order {
                try tensor.values.withUnsafeBytes { try handle.write(contentsOf: Data($0)) }
            }
        }
    }
}
