import Foundation
import Testing
@testable import ModelFormats
import Shared

/// Random truncations and byte changes of small valid files: every case loads or throws a
/// ``CermError``, and none crashes the process (a crash would end the whole test run).
@Suite struct RobustnessTests {

    /// `cases` damaged copies of `original`: the first half truncated at a random length, the
    /// rest with 1–4 bytes set to random values, half of them inside the first `headerSize`
    /// bytes (where the counts, lengths and offsets are).
    static func damagedCopies(of original: [UInt8], headerSize: Int, cases: Int, seed: UInt64) -> [(label: String, bytes: [UInt8])] {
        // Shared's SplitMix64: seeded and platform-independent, so a failing case can be replayed.
        var random = SplitMix64(seed: seed)
        return (0..<cases).map { index in
            if index < cases / 2 {
                let length = random.below(original.count)
                return ("truncated to \(length) bytes", Array(original.prefix(length)))
            }
            var bytes = original
            var changes: [String] = []
            for _ in 0..<(1 + random.below(4)) {
                let position = random.below(2) == 0 ? random.below(headerSize) : random.below(bytes.count)
                let value = UInt8(truncatingIfNeeded: random.next())
                bytes[position] = value
                changes.append("[\(position)]=\(value)")
            }
            return ("bytes " + changes.joined(separator: " "), bytes)
        }
    }

    /// Loads each damaged copy; returns how many loaded. Non-CermError errors are issues.
    static func check(_ copies: [(label: String, bytes: [UInt8])], load: (Int, [UInt8]) throws -> Void) -> Int {
        var loaded = 0
        for (index, copy) in copies.enumerated() {
            do {
                try load(index, copy.bytes)
                loaded += 1
            } catch is CermError {
            } catch {
                Issue.record("case \(index) (\(copy.label)): not a CermError: \(error)")
            }
        }
        return loaded
    }

    @Test func damagedGGUFLoadsOrThrows() throws {
        let path = Fixtures.path("llama_tiny.gguf")
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let headerSize = try GGUFFile(path: path).dataOffset
        let directory = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let copies = Self.damagedCopies(of: original, headerSize: headerSize, cases: 400, seed: 23)
        let loaded = Self.check(copies) { index, bytes in
            _ = try ModelImport.load(path: Fixtures.write(bytes, named: "\(index).gguf", in: directory))
        }
        // Changes to tensor data still load; most header changes and every cut do not.
        #expect(loaded > 0 && loaded < copies.count)
    }

    @Test func damagedSafetensorsLoadsOrThrows() throws {
        let source = Fixtures.path("qwen3_tiny")
        let weightsPath = (source as NSString).appendingPathComponent("model.safetensors")
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: weightsPath)))
        let headerSize = 8 + original.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let directory = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let model = (directory as NSString).appendingPathComponent("model")
        try FileManager.default.copyItem(atPath: source, toPath: model)
        let copies = Self.damagedCopies(of: original, headerSize: headerSize, cases: 400, seed: 24)
        let loaded = Self.check(copies) { _, bytes in
            _ = try Fixtures.write(bytes, named: "model.safetensors", in: model)
            _ = try ModelImport.load(path: model)
        }
        #expect(loaded > 0 && loaded < copies.count)
    }
}
