import Foundation
import Testing
@testable import ModelFormats
import Shared

/// The GGUF reader against files written by gguf-py's GGUFWriter, and dequantization against
/// gguf-py's numpy `gguf.quants.dequantize` (bit for bit).
@Suite struct GGUFFileTests {
    static let dequantPath = Fixtures.path("dequant.gguf")

    @Test func readsEveryMetadataType() throws {
        let file = try GGUFFile(path: Self.dequantPath)
        #expect(file.version == 3)
        #expect(file.alignment == 64)
        #expect(file.dataOffset % 64 == 0)
        #expect(file.metadata["general.architecture"] == .string("test"))
        #expect(file.metadata["test.uint8"] == .uint8(200))
        #expect(file.metadata["test.int8"] == .int8(-100))
        #expect(file.metadata["test.uint16"] == .uint16(60000))
        #expect(file.metadata["test.int16"] == .int16(-30000))
        #expect(file.metadata["test.uint32"] == .uint32(4_000_000_000))
        #expect(file.metadata["test.int32"] == .int32(-2_000_000_000))
        #expect(file.metadata["test.float32"] == .float32(0.1))
        #expect(file.metadata["test.uint64"] == .uint64(1 << 63 + 5))
        #expect(file.metadata["test.int64"] == .int64(-(1 << 62)))
        #expect(file.metadata["test.float64"] == .float64(0.1))
        #expect(file.metadata["test.bool"] == .bool(true))
        #expect(try file.string("test.string") == "héllo ✓")
        #expect(try file.strings("test.strings") == ["a", "", "ζ"])
        #expect(file.metadata["test.nested"] == .array([.array([.int32(1), .int32(2)]), .array([.int32(3)]), .array([.int32(-4), .int32(5), .int32(6)])]))
        #expect(try file.int("test.uint32") == 4_000_000_000)
        #expect(try file.double("test.float32") == Double(Float(0.1)))
    }

    @Test func typedAccessorErrorsNameTheKey() throws {
        let file = try GGUFFile(path: Self.dequantPath)
        #expect(throws: CermError.io(path: Self.dequantPath, reason: "metadata test.string is a string, expected an integer")) {
            try file.int("test.string")
        }
        #expect(throws: CermError.io(path: Self.dequantPath, reason: "metadata key test.absent is missing")) {
            try file.string("test.absent")
        }
        #expect(throws: CermError.io(path: Self.dequantPath, reason: "metadata test.nested is a array, expected strings in the array")) {
            try file.strings("test.nested")
        }
    }

    /// Every supported type: blocks of random bytes (finite f16 scales) dequantized by gguf-py.
    @Test(arguments: ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q5_K", "Q6_K"])
    func dequantizesBitForBitAsGGML(type: String) throws {
        let file = try GGUFFile(path: Self.dequantPath)
        let quantized = try #require(file.tensor("q.\(type)"))
        let expected = try #require(file.tensor("expected.\(type)"))
        #expect(quantized.type.name == type)
        #expect(quantized.shape == expected.shape)
        #expect(expected.type == .f32)
        let got = try file.floats(quantized), want = try file.floats(expected)
        #expect(got.count == want.count && got.count >= 128)
        // The pages released after the first conversion read back the same.
        #expect(try file.floats(quantized).map(\.bitPattern) == got.map(\.bitPattern))
        let mismatches = zip(got, want).enumerated().filter { $0.element.0.bitPattern != $0.element.1.bitPattern }
        #expect(mismatches.isEmpty, "\(type): \(mismatches.count) of \(got.count) differ, first at \(mismatches.first.map { "\($0.offset): \($0.element.0) vs \($0.element.1)" } ?? "")")
    }

    @Test func halfFloatConversionIsExact() {
        #expect(Dequantize.halfToFloat(0x3C00) == 1)
        #expect(Dequantize.halfToFloat(0xC000) == -2)
        #expect(Dequantize.halfToFloat(0x0001) == 0x1p-24)
        #expect(Dequantize.halfToFloat(0x8000).bitPattern == (-Float(0)).bitPattern)
        #expect(Dequantize.halfToFloat(0x7BFF) == 65504)
        #expect(Dequantize.halfToFloat(0x7C00) == .infinity)
        #expect(Dequantize.halfToFloat(0x7E00).isNaN)
    }

    @Test func readsVersion2AndRefusesOthers() throws {
        let directory = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Self.dequantPath)))
        bytes[4] = 2
        let v2 = try GGUFFile(path: Fixtures.write(bytes, named: "v2.gguf", in: directory))
        #expect(v2.version == 2)
        #expect(v2.tensors.count == 18)
        bytes[4] = 1
        let v1 = try Fixtures.write(bytes, named: "v1.gguf", in: directory)
        #expect(throws: CermError.io(path: v1, reason: "GGUF version 1 is not supported, only 2 and 3 (GGUF v1 is not supported; convert it again)")) {
            try GGUFFile(path: v1)
        }
        let notGGUF = try Fixtures.write(Array("{\"a\": 1}".utf8), named: "x.gguf", in: directory)
        #expect(throws: CermError.io(path: notGGUF, reason: "not a GGUF file (the first 4 bytes are not \"GGUF\")")) {
            try GGUFFile(path: notGGUF)
        }
    }

    @Test func unsupportedTensorTypeIsAnErrorNamingTensorAndType() throws {
        let directory = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var builder = GGUFBuilder()
        builder.set("general.architecture", .string("test"))
        builder.tensors = [.init(name: "blk.0.attn_q.weight", dimensions: [32, 2], type: GGMLType(rawValue: 6)!, bytes: [UInt8](repeating: 0, count: 44))]
        let path = try Fixtures.write(try builder.bytes(), named: "q5_0.gguf", in: directory)
        let file = try GGUFFile(path: path)
        #expect(file.tensors.first?.type.name == "Q5_0")
        #expect(throws: CermError.io(path: path, reason: "tensor blk.0.attn_q.weight has type Q5_0, which cerm cannot read (supported: BF16, F16, F32, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K, Q8_0)")) {
            try file.floats(file.tensors[0])
        }
    }

    @Test func tensorPastTheEndIsAnErrorNamingIt() throws {
        let directory = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var builder = GGUFBuilder()
        builder.set("general.architecture", .string("test"))
        builder.tensors = [.init(name: "a", dimensions: [4], type: .f32, bytes: [UInt8](repeating: 0, count: 16)),
                           .init(name: "b", dimensions: [8, 2], type: .f32, bytes: [UInt8](repeating: 0, count: 64))]
        var bytes = try builder.bytes()
        bytes.removeLast(8)
        let path = try Fixtures.write(bytes, named: "short.gguf", in: directory)
        #expect(throws: CermError.io(path: path, reason: "tensor b: data at offset 32 of 64 bytes is past the end of the data section (88 bytes)")) {
            try GGUFFile(path: path)
        }
    }
}
