import Foundation
@testable import Shared
import TestSupport
import Testing

@Suite struct HDF5Tests {
    /// A corrupted dataspace dimension (as a random byte flip makes it) is an error naming the
    /// dataset and the bytes actually stored, not an allocation of terabytes that kills the
    /// process. The fixture is made here: a 1-D dataset whose distinctive length is patched.
    @Test func corruptDimensionIsAnErrorNotAnAllocation() throws {
        let path = temporaryPath("corrupt-dims.h5")
        let length = 5_4321
        do {
            let file = try HDF5File(path: path, mode: .truncate)
            try file.root.write("x", [UInt8](repeating: 7, count: length), shape: [length])
            try file.close()
        }
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let needle = withUnsafeBytes(of: UInt64(length).littleEndian) { Array($0) }
        let huge: UInt64 = 0x0000_00F3_0000_0000
        // The first occurrence is the dataspace message (the layout message's size comes later).
        let index = try #require((0...(bytes.count - 8)).first { Array(bytes[$0..<($0 + 8)]) == needle })
        withUnsafeBytes(of: huge.littleEndian) { bytes.replaceSubrange(index..<(index + 8), with: $0) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let file = try HDF5File(path: path, mode: .readOnly)
        defer { try? file.close() }
        #expect(try file.root.shape(of: "x") == [Int(huge)])
        let expected = HDF5Error(operation: "read", path: "\(path):/x",
                                 stack: "shape [\(huge)] needs \(huge) bytes but the dataset stores \(length) bytes in a file of \(bytes.count) (corrupt file?)")
        #expect(throws: expected) { _ = try file.root.read("x", as: UInt8.self) }
        var small = [UInt8](repeating: 0, count: 4)
        #expect(throws: expected) { try small.withUnsafeMutableBufferPointer { try file.root.read("x", into: $0) } }
    }

    @Test func datasetsAndAttributesRoundTrip() throws {
        let path = temporaryPath("roundtrip.h5")
        let floats: [Float] = [1.5, -0.0, .greatestFiniteMagnitude, .leastNonzeroMagnitude, 3.25, -7]
        let ints: [Int64] = [Int64.min, -1, 0, 42, Int64.max]
        let bytes: [UInt8] = [0, 255, 10, 13]
        do {
            let file = try HDF5File(path: path, mode: .truncate)
            let root = file.root
            try root.write("model/a/weights", floats, shape: [2, 3])
            try root.write("ints", ints, shape: [5])
            try root.write("bytes", bytes, shape: [4])
            try root.write("empty", [Float](), shape: [0, 3])
            try root.writeText("config", "[run]\nname = \"ünïcode ✓\"\n")
            try root.setAttribute("format", "cerm-test")
            try root.setAttribute("step", Int64(17))
            try root.setAttribute("scales", [Float(0.5), 2])
            let group = try root.group("model/a")
            try group.setAttribute("note", "inside a group")
            try file.flush()
            try file.close()
        }
        #expect(HDF5File.isHDF5(path: path))
        let file = try HDF5File(path: path, mode: .readOnly)
        let root = file.root
        let (values, shape) = try root.read("model/a/weights", as: Float.self)
        #expect(shape == [2, 3])
        #expect(values.map(\.bitPattern) == floats.map(\.bitPattern))
        #expect(try root.read("ints", as: Int64.self).values == ints)
        #expect(try root.read("bytes", as: UInt8.self).values == bytes)
        #expect(try root.shape(of: "empty") == [0, 3])
        #expect(try root.readText("config") == "[run]\nname = \"ünïcode ✓\"\n")
        #expect(try root.stringAttribute("format") == "cerm-test")
        #expect(try root.attribute("step", as: Int64.self) == [17])
        #expect(try root.attribute("scales", as: Float.self) == [0.5, 2])
        #expect(try root.group("model/a").stringAttribute("note") == "inside a group")
        #expect(try root.group("model").names() == ["a"])
        #expect(try root.names() == ["bytes", "config", "empty", "ints", "model"])
        #expect(root.hasAttribute("step") && !root.hasAttribute("nope"))
    }

    @Test func overwritingReplacesDatasetsAndAttributes() throws {
        let path = temporaryPath("overwrite.h5")
        let file = try HDF5File(path: path, mode: .truncate)
        try file.root.write("x", [Float(1), 2, 3], shape: [3])
        try file.root.write("x", [Float(9), 8], shape: [2])
        try file.root.setAttribute("v", Int64(1))
        try file.root.setAttribute("v", Int64(2))
        #expect(try file.root.read("x", as: Float.self).values == [9, 8])
        #expect(try file.root.attribute("v", as: Int64.self) == [2])
        var into = [Float](repeating: 0, count: 2)
        try into.withUnsafeMutableBufferPointer { try file.root.read("x", into: $0) }
        #expect(into == [9, 8])
    }

    @Test func errorsNameTheFileAndObjectWithHDF5Message() throws {
        let path = temporaryPath("errors.h5")
        let file = try HDF5File(path: path, mode: .truncate)
        do {
            _ = try file.root.read("missing", as: Float.self)
            Issue.record("reading a missing dataset must fail")
        } catch let error as HDF5Error {
            #expect(error.operation == "open dataset")
            #expect(error.path == "\(path):/missing")
            #expect(error.stack.contains("H5Dopen2"))
        }
        #expect(throws: HDF5Error.self) { try file.root.write("bad", [Float(1)], shape: [2]) }
        do {
            _ = try HDF5File(path: "/nonexistent/dir/x.h5", mode: .readOnly)
            Issue.record("opening a missing file must fail")
        } catch let error as HDF5Error {
            #expect(error.description.hasPrefix("HDF5: open /nonexistent/dir/x.h5: "))
        }
    }

    @Test func garbageFileIsNotHDF5() throws {
        let path = temporaryPath("garbage.h5")
        try Data("not an hdf5 file at all".utf8).write(to: URL(fileURLWithPath: path))
        #expect(!HDF5File.isHDF5(path: path))
        #expect(throws: HDF5Error.self) { try HDF5File(path: path, mode: .readOnly) }
    }
}
