import Configuration
@testable import Coordinator
import Foundation
import Shared
import TestSupport
import Testing

/// A small state exercising the awkward cases: NaNs with and without payload, signed zeros,
/// infinities, subnormals, empty and scalar tensors, non-ASCII and decomposed Unicode text.
func sampleState(step: Int, marker: Float = 0.5) -> TrainingState {
    let special: [Float] = [.nan, Float(bitPattern: 0x7fc0_1234), -0.0, .infinity, -.infinity, .leastNonzeroMagnitude]
    let tensors = [
        NamedTensor(name: "model.embed_tokens.weight", shape: [3, 2], values: special),
        NamedTensor(name: "model.layers.0.self_attn.q_proj.weight", shape: [2, 4], values: (0..<8).map { Float($0) * marker }),
        NamedTensor(name: "model.layers.0.empty", shape: [0], values: []),
        NamedTensor(name: "lm_head.bias", shape: [2, 0, 3], values: []),
        NamedTensor(name: "model.norm.scale", shape: [], values: [2.5]),
    ]
    let moments = tensors.map { NamedTensor(name: $0.name, shape: $0.shape, values: $0.values.map { $0 * 0.25 }) }
    return TrainingState(
        step: step, policyVersion: UInt64(step) + 100, tensors: tensors, adamM: moments,
        adamV: Array(moments.reversed()), adamStep: step * 4,
        dataCursor: DataCursor(epoch: 2, position: 17, permutationSeed: 0xdead_beef_cafe_f00d),
        rngState: [1, .max, 0x0123_4567_89ab_cdef],
        configText: "[run]\nname = \"démo ✓ 🚀\"\n# cafe\u{301} vs café\n",
        modelConfigJSON: #"{"hidden_size": 8, "model_type": "qwen3"}"#,
        tokenizerDescription: "byte-level, 259 ids, ⟨eos⟩=2",
        extra: ["run": "démo", "quote\"key": "line\nbreak", "": "empty key"])
}

private func flipByte(in path: String, at offset: Int) throws {
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    bytes[offset] ^= 0x01
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

private func truncate(_ path: String, to fraction: Double) throws {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    try data.prefix(Int(Double(data.count) * fraction)).write(to: URL(fileURLWithPath: path))
}

/// Offset of the first occurrence of `needle` in the file at `path`.
private func offset(of needle: [UInt8], inFile path: String) throws -> Int? {
    let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    guard bytes.count >= needle.count else { return nil }
    return (0...(bytes.count - needle.count)).first { bytes[$0..<($0 + needle.count)].elementsEqual(needle) }
}

private func reason(of body: () throws -> Void) -> CheckpointError? {
    do { try body(); return nil } catch { return error as? CheckpointError }
}

@Suite("Checkpoint")
struct CheckpointTests {
    @Test func roundTripIsBitExact() throws {
        let dir = try makeTemporaryDirectory("roundtrip")
        let state = sampleState(step: 7)
        let result = try CheckpointWriter(directory: dir, keepLast: 3).write(state)
        #expect(result.path == (dir as NSString).appendingPathComponent("step_7.h5"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["step_7.h5"])

        let loaded = try CheckpointReader.read(path: result.path)
        #expect(loaded.checksumMatches)
        #expect(loaded.storedChecksum == result.checksum)
        #expect(loaded.formatVersion == 2)
        #expect(loaded.state.isBitIdentical(to: state))
        // The payload NaN and -0 survive as bits, not just as "some NaN" / "zero".
        #expect(loaded.state.tensors[0].values[1].bitPattern == 0x7fc0_1234)
        #expect(loaded.state.tensors[0].values[2].bitPattern == 0x8000_0000)
        #expect(loaded.state.tensors[4].shape == [])
        #expect(loaded.state.tensors[3].shape == [2, 0, 3])
        #expect(Array(loaded.state.configText.utf8) == Array(state.configText.utf8))
        #expect(loaded.state.extra == state.extra)
        #expect(loaded.state.tensors.map(\.name) == state.tensors.map(\.name))
    }

    @Test func minimalStateRoundTrips() throws {
        let dir = try makeTemporaryDirectory("minimal")
        let state = TrainingState(step: 0, policyVersion: 0, tensors: [], modelConfigJSON: "")
        let result = try CheckpointWriter(directory: dir, keepLast: 1).write(state)
        let loaded = try CheckpointReader.load(path: result.path)
        #expect(loaded.isBitIdentical(to: state))
        #expect(loaded == state)
    }

    @Test func saveCadenceFollowsRunConfig() {
        var run = RunConfig()
        run.saveEvery = 10
        run.steps = 25
        #expect((0...25).filter { CheckpointWriter.isSaveDue(step: $0, run: run) } == [10, 20, 25])
    }

    @Test func bitIdenticalComparisonSeesPayloadAndTextBytes() {
        let state = sampleState(step: 1)
        var otherNaN = state
        otherNaN.tensors[0].values[1] = Float(bitPattern: 0x7fc0_0001)
        #expect(!state.isBitIdentical(to: otherNaN))
        var composed = state
        composed.configText = state.configText.replacingOccurrences(of: "cafe\u{301}", with: "café")
        #expect(composed.configText == state.configText)  // canonically equivalent for Swift ...
        #expect(!state.isBitIdentical(to: composed))      // ... but not the same bytes
    }

    /// Tensors that are ranges of one flat buffer (as a learner's state shares its parameters)
    /// are checksummed, written and read back exactly as the same tensors holding copies.
    @Test func tensorsSharingABufferAreWrittenAsTheirCopiesWouldBe() throws {
        let owned = sampleState(step: 4)
        func shared(_ tensors: [NamedTensor]) -> [NamedTensor] {
            let buffer = [-1] + tensors.flatMap(\.values) + [-2]
            var offset = 1
            return tensors.map { tensor in
                defer { offset += tensor.count }
                return NamedTensor(name: tensor.name, shape: tensor.shape, sharing: buffer, range: offset..<(offset + tensor.count))
            }
        }
        var state = owned
        state.tensors = shared(owned.tensors)
        state.adamM = shared(owned.adamM)
        state.adamV = shared(owned.adamV)
        #expect(state.isBitIdentical(to: owned))
        #expect(state.tensors.map(\.count) == owned.tensors.map(\.values.count))
        #expect(state.tensors[1].values == owned.tensors[1].values)
        let extra = CheckpointFormat.encodeExtra(owned.extra)
        #expect(CheckpointFormat.checksum(of: state, extraJSON: extra) == CheckpointFormat.checksum(of: owned, extraJSON: extra))

        let dir = try makeTemporaryDirectory("shared")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let written = try CheckpointWriter(directory: dir, keepLast: 1).write(state)
        #expect(written.checksum == CheckpointFormat.checksum(of: owned, extraJSON: extra))
        #expect(try CheckpointReader.load(path: written.path).isBitIdentical(to: owned))

        // Changing a shared tensor changes neither the buffer nor the tensors sharing it.
        var changed = state.tensors[1]
        changed.values[0] = 9
        #expect(changed.values[0] == 9 && changed.count == owned.tensors[1].count)
        #expect(state.isBitIdentical(to: owned))
    }

    @Test func checksumIsStableAcrossRuns() {
        // Pinned: a change to the canonical traversal must be a new format version.
        let state = TrainingState(step: 1, policyVersion: 2, tensors: [NamedTensor(name: "w", shape: [1], values: [1])])
        let extra = CheckpointFormat.encodeExtra(state.extra)
        #expect(extra == Array("{}".utf8))
        #expect(CheckpointFormat.checksum(of: state, extraJSON: extra) == referenceChecksumOfTinyState(version: 2))
        // Version 1 files (no tokenizer part) keep their checksums.
        #expect(CheckpointFormat.checksum(of: state, extraJSON: extra, formatVersion: 1) == referenceChecksumOfTinyState(version: 1))
        var withTokenizer = state
        withTokenizer.tokenizer = StoredTokenizer(tokenizerJSON: Array("{}".utf8), bosToken: nil, eosToken: "e", padToken: nil,
                                                  unkToken: nil, chatTemplate: "none", chatTemplateSystem: nil, chatTemplateJinja: nil)
        #expect(CheckpointFormat.checksum(of: withTokenizer, extraJSON: extra) == referenceChecksumOfTinyState(version: 2, tokenizerEOS: "e"))
    }

    @Test func aStoredTokenizerRoundTripsAndVersion1FilesStillLoad() throws {
        let tokenizer = StoredTokenizer(tokenizerJSON: Array(#"{"model": {}}"#.utf8), bosToken: "<s>", eosToken: "</s>", padToken: nil,
                                        unkToken: "<unk>", chatTemplate: "chatml", chatTemplateSystem: "Be brief.",
                                        chatTemplateJinja: "{{ messages }}")
        let dir = try makeTemporaryDirectory("tokenizer")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var state = TrainingState(step: 3, policyVersion: 3, tensors: [NamedTensor(name: "w", shape: [1], values: [1])])
        state.tokenizer = tokenizer
        let written = try CheckpointWriter(directory: dir, keepLast: 5).write(state)
        let loaded = try CheckpointReader.read(path: written.path)
        #expect(loaded.formatVersion == 2)
        #expect(loaded.checksumMatches)
        #expect(loaded.state.tokenizer == tokenizer)
        #expect(loaded.state.isBitIdentical(to: state))

        // The checksum covers the tokenizer: a changed template is a mismatch.
        do {
            let file = try HDF5File(path: written.path, mode: .readWrite)
            try file.root.group("tokenizer").setAttribute("chat_template", "llama3")
            try file.close()
        }
        #expect(try !CheckpointReader.read(path: written.path).checksumMatches)

        // A version 1 file: no tokenizer group, the checksum without the tokenizer part.
        let v1State = TrainingState(step: 4, policyVersion: 4, tensors: state.tensors)
        let v1 = try CheckpointWriter(directory: dir, keepLast: 5).write(v1State)
        do {
            let file = try HDF5File(path: v1.path, mode: .readWrite)
            try file.root.setAttribute("format_version", Int64(1))
            try file.root.setAttribute("checksum", CheckpointFormat.checksum(of: v1State, extraJSON: CheckpointFormat.encodeExtra([:]), formatVersion: 1))
            try file.close()
        }
        let old = try CheckpointReader.load(path: v1.path)
        #expect(old.tokenizer == nil)
        #expect(old.step == 4)
    }

    @Test func flippedTensorByteIsAChecksumMismatch() throws {
        let dir = try makeTemporaryDirectory("flip")
        // 0.5 * 7 = 3.5 appears once; its bytes locate the tensor data in the file.
        let result = try CheckpointWriter(directory: dir, keepLast: 3).write(sampleState(step: 3, marker: 0.5))
        let needle = withUnsafeBytes(of: Float(3.5).bitPattern.littleEndian) { Array($0) }
        let at = try #require(try offset(of: needle, inFile: result.path))
        try flipByte(in: result.path, at: at)

        let error = try #require(reason { _ = try CheckpointReader.load(path: result.path) })
        #expect(error.path == result.path)
        guard case let .checksumMismatch(stored, computed) = error.reason else {
            Issue.record("expected checksum mismatch, got \(error)"); return
        }
        #expect(stored == result.checksum)
        #expect(computed != stored)
        #expect(error.description.contains("step_3.h5"))
        // `read` (used by `cerm inspect`) still returns the content, flagged.
        let loaded = try CheckpointReader.read(path: result.path)
        #expect(!loaded.checksumMatches)
        #expect(loaded.state.tensors[1].values[7] != 3.5)
    }

    @Test func truncatedFileIsRejectedWithItsName() throws {
        let dir = try makeTemporaryDirectory("truncated")
        let result = try CheckpointWriter(directory: dir, keepLast: 3).write(sampleState(step: 5))
        try truncate(result.path, to: 0.6)
        let error = try #require(reason { _ = try CheckpointReader.load(path: result.path) })
        #expect(error.path == result.path)
        guard case .truncated = error.reason else { Issue.record("expected truncated, got \(error)"); return }
        #expect(error.description.contains("step_5.h5"))
        #expect(error.description.contains("truncated"))
    }

    @Test func nonHDF5AndMissingFilesAreNamed() throws {
        let dir = try makeTemporaryDirectory("nothdf5")
        let textFile = (dir as NSString).appendingPathComponent("step_1.h5")
        try Data("hello, not hdf5".utf8).write(to: URL(fileURLWithPath: textFile))
        #expect(reason { _ = try CheckpointReader.load(path: textFile) } == CheckpointError(path: textFile, reason: .notHDF5("no HDF5 signature")))
        let empty = (dir as NSString).appendingPathComponent("step_2.h5")
        try Data().write(to: URL(fileURLWithPath: empty))
        #expect(reason { _ = try CheckpointReader.load(path: empty) } == CheckpointError(path: empty, reason: .notHDF5("empty file")))
        let absent = (dir as NSString).appendingPathComponent("step_3.h5")
        #expect(reason { _ = try CheckpointReader.load(path: absent) } == CheckpointError(path: absent, reason: .notFound))
    }

    @Test func missingDatasetWrongFormatAndVersionAreReported() throws {
        let dir = try makeTemporaryDirectory("structure")
        let state = sampleState(step: 2)
        func storeVariant(_ name: String, _ edit: (HDF5Group) throws -> Void) throws -> String {
            let path = (dir as NSString).appendingPathComponent(name)
            let file = try HDF5File(path: path, mode: .truncate)
            let extra = CheckpointFormat.encodeExtra(state.extra)
            try CheckpointWriter.store(state, extraJSON: extra, checksum: CheckpointFormat.checksum(of: state, extraJSON: extra), in: file.root)
            try edit(file.root)
            try file.close()
            return path
        }
        let intact = try storeVariant("intact.h5") { _ in }
        #expect(try CheckpointReader.load(path: intact).isBitIdentical(to: state))

        let ghost = try storeVariant("ghost.h5") { root in
            let names = CheckpointFormat.encodeNames(state.tensors.map(\.name) + ["model.ghost.weight"])
            try root.write("meta/model_names", names, shape: [names.count])
        }
        #expect(reason { _ = try CheckpointReader.load(path: ghost) }
            == CheckpointError(path: ghost, reason: .missing("dataset /model/model.ghost.weight")))

        let unlisted = try storeVariant("unlisted.h5") { root in
            let names = CheckpointFormat.encodeNames([])
            try root.write("meta/optim_m_names", names, shape: [names.count])
        }
        #expect(reason { _ = try CheckpointReader.load(path: unlisted) }
            == CheckpointError(path: unlisted, reason: .malformed("dataset /optim/m/lm_head.bias is not listed in /meta/optim_m_names")))

        let future = try storeVariant("future.h5") { try $0.setAttribute("format_version", Int64(4)) }
        #expect(reason { _ = try CheckpointReader.load(path: future) } == CheckpointError(path: future, reason: .unsupportedVersion(4)))
        #expect(CheckpointError(path: future, reason: .unsupportedVersion(4)).description
                == "checkpoint \(future): unsupported format version 4 (this build reads versions 1 to 3)")

        let other = try storeVariant("other.h5") { try $0.setAttribute("format", "something-else") }
        #expect(reason { _ = try CheckpointReader.load(path: other) }
            == CheckpointError(path: other, reason: .wrongFormat(#"format is "something-else""#)))

        let plain = (dir as NSString).appendingPathComponent("plain.h5")
        let file = try HDF5File(path: plain, mode: .truncate)
        try file.root.write("x", [Float(1)], shape: [1])
        try file.close()
        #expect(reason { _ = try CheckpointReader.load(path: plain) }
            == CheckpointError(path: plain, reason: .wrongFormat("no 'format' attribute on /")))
    }

    @Test func resumePicksNewestValidAndReportsSkipped() throws {
        let dir = try makeTemporaryDirectory("resume")
        let writer = CheckpointWriter(directory: dir, keepLast: 10)
        for step in [1, 2, 3] { try writer.write(sampleState(step: step)) }
        let path3 = (dir as NSString).appendingPathComponent("step_3.h5")
        try truncate(path3, to: 0.5)
        let path10 = (dir as NSString).appendingPathComponent("step_10.h5")
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: path10))

        var skipped: [CheckpointError] = []
        let found = try #require(CheckpointReader.findResumeCheckpoint(runDir: dir) { skipped.append($0) })
        #expect(found.path == (dir as NSString).appendingPathComponent("step_2.h5"))
        #expect(found.state.isBitIdentical(to: sampleState(step: 2)))
        // Newest first: step 10 (numeric, not lexicographic order), then step 3.
        #expect(skipped.map(\.path) == [path10, path3])
        #expect(skipped[0].reason == .notHDF5("no HDF5 signature"))
        guard case .truncated = skipped[1].reason else { Issue.record("expected truncated, got \(skipped[1])"); return }

        // The directory form of --resume does the same; the file form insists on that file.
        #expect(try CheckpointReader.resume(from: dir).path == found.path)
        #expect(try CheckpointReader.resume(from: found.path).state.step == 2)
        #expect(reason { _ = try CheckpointReader.resume(from: path3) }?.path == path3)
    }

    @Test func nothingToResumeFromIsExplained() throws {
        func failure(_ body: () throws -> Void) -> String? {
            do { try body(); return nil } catch { return "\(error)" }
        }
        let emptyDir = try makeTemporaryDirectory("resume-empty")
        #expect(try CheckpointReader.findResumeCheckpoint(runDir: emptyDir) == nil)
        #expect(failure { _ = try CheckpointReader.resume(from: emptyDir, isRunDirectory: true) }
            == "no checkpoint to resume: run directory \(emptyDir) has no step_<N>.h5 files (start without --resume)")
        #expect(failure { _ = try CheckpointReader.resume(from: emptyDir) }
            == "no checkpoint to resume: \(emptyDir) has no step_<N>.h5 files")
        let absent = emptyDir + "/never-run"
        #expect(failure { _ = try CheckpointReader.resume(from: absent, isRunDirectory: true) }
            == "no checkpoint to resume: run directory \(absent) does not exist (start without --resume)")
        #expect(failure { _ = try CheckpointReader.resume(from: absent + "/step_3.h5") }
            == "no checkpoint to resume: \(absent)/step_3.h5 does not exist")

        // Every file damaged: the error lists each one with its reason, newest first.
        let writer = CheckpointWriter(directory: emptyDir, keepLast: 10)
        try writer.write(sampleState(step: 1))
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: (emptyDir as NSString).appendingPathComponent("step_2.h5")))
        // Cut inside the HDF5 signature.
        try Data([0x89, 0x48, 0x44, 0x46]).write(to: URL(fileURLWithPath: (emptyDir as NSString).appendingPathComponent("step_1.h5")))
        var skipped: [String] = []
        #expect(failure { _ = try CheckpointReader.resume(from: emptyDir, isRunDirectory: true) { skipped.append($0.path) } }
            == "no checkpoint to resume: every step_<N>.h5 file of run directory \(emptyDir) failed to load: step_2.h5: not an HDF5 file (no HDF5 signature); step_1.h5: truncated file (only 4 bytes)")
        #expect(skipped == ["step_2.h5", "step_1.h5"].map { (emptyDir as NSString).appendingPathComponent($0) })
    }

    @Test func keepsLastKValidAndRemovesStaleTemporaries() throws {
        let dir = try makeTemporaryDirectory("retention")
        let stale = (dir as NSString).appendingPathComponent(".step_99.h5.tmp")
        try Data("half a checkpoint".utf8).write(to: URL(fileURLWithPath: stale))
        let writer = CheckpointWriter(directory: dir, keepLast: 2)
        var deletedByWrite: [[String]] = []
        for step in 1...4 { deletedByWrite.append(try writer.write(sampleState(step: step)).deleted.map { ($0 as NSString).lastPathComponent }) }
        #expect(deletedByWrite == [[".step_99.h5.tmp"], [], ["step_1.h5"], ["step_2.h5"]])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["step_3.h5", "step_4.h5"])

        // A corrupt checkpoint does not count towards keep_last: 5 and 3 are kept around a bad 4.
        try flipByte(in: (dir as NSString).appendingPathComponent("step_4.h5"),
                     at: try #require(try offset(of: withUnsafeBytes(of: Float(3.5).bitPattern.littleEndian) { Array($0) },
                                                 inFile: (dir as NSString).appendingPathComponent("step_4.h5"))))
        // A writer counts only files it wrote, unchanged since (4 was modified).
        try writer.write(sampleState(step: 5))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["step_3.h5", "step_4.h5", "step_5.h5"])
        // A restarted one (as after a crash or a resume) never parses older files — a corrupt
        // one could crash libhdf5 — nor counts them: it keeps them until it has written
        // keep_last of its own, then deletes them unread.
        let restarted = CheckpointWriter(directory: dir, keepLast: 2)
        try restarted.write(sampleState(step: 7))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["step_3.h5", "step_4.h5", "step_5.h5", "step_7.h5"])
        try restarted.write(sampleState(step: 8))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["step_7.h5", "step_8.h5"])
    }

    /// A FIFO (or any non-regular file) named like a checkpoint is skipped with a named reason
    /// before anything opens it: opening a FIFO would block until a writer appears, hanging
    /// `--resume` and a live run's retention.
    @Test func nonRegularCheckpointFilesAreSkippedWithoutOpening() throws {
        let dir = try makeTemporaryDirectory("fifo")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try CheckpointWriter(directory: dir, keepLast: 3).write(sampleState(step: 1))
        let fifo = (dir as NSString).appendingPathComponent("step_2.h5")
        #expect(mkfifo(fifo, 0o600) == 0)
        let expected = CheckpointError(path: fifo, reason: .notHDF5("not a regular file"))
        #expect(expected.description == "checkpoint \(fifo): not an HDF5 file (not a regular file)")
        // Run where a regression would block, so the test fails instead of hanging.
        let attempt = Background("fifo") { () -> [String] in
            var skipped: [CheckpointError] = []
            let found = try CheckpointReader.findResumeCheckpoint(runDir: dir) { skipped.append($0) }
            let direct = Result { try CheckpointReader.load(path: fifo) }
            guard case let .failure(error as CheckpointError) = direct, error == expected else { return ["load did not refuse the FIFO"] }
            // Retention (keep_last 3) verifies older files: the FIFO does not count and stays.
            try CheckpointWriter(directory: dir, keepLast: 3).write(sampleState(step: 3))
            return [found.map { ($0.path as NSString).lastPathComponent } ?? "none"] + skipped.map(\.description)
        }
        #expect(try attempt.value(timeout: 10) == ["step_1.h5", expected.description])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["step_1.h5", "step_2.h5", "step_3.h5"])
    }

    @Test func failedWriteLeavesPreviousCheckpointsIntact() throws {
        struct InjectedFailure: Error {}
        let dir = try makeTemporaryDirectory("failure")
        try CheckpointWriter(directory: dir, keepLast: 1).write(sampleState(step: 1))
        for stage in [CheckpointWriteStage.datasetsWritten, .beforeRename] {
            let failing = CheckpointWriter(directory: dir, keepLast: 1) { if $0 == stage { throw InjectedFailure() } }
            // A new step and a rewrite of the existing step both fail cleanly.
            for (step, marker) in [(2, Float(0.5)), (1, Float(9))] {
                let error = try #require(reason { try failing.write(sampleState(step: step, marker: marker)) })
                #expect(error.path == (dir as NSString).appendingPathComponent("step_\(step).h5"))
                guard case .writeFailed = error.reason else { Issue.record("expected writeFailed, got \(error)"); return }
                #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["step_1.h5"])
                #expect(try CheckpointReader.load(path: (dir as NSString).appendingPathComponent("step_1.h5"))
                    .isBitIdentical(to: sampleState(step: 1)))
            }
        }
        // A directory that cannot exist (its parent is a file) fails with the target named.
        let blocker = (dir as NSString).appendingPathComponent("not-a-dir")
        try Data("x".utf8).write(to: URL(fileURLWithPath: blocker))
        let error = try #require(reason { try CheckpointWriter(directory: blocker + "/run", keepLast: 1).write(sampleState(step: 1)) })
        #expect(error.path == blocker + "/run/step_1.h5")
    }

    @Test func inconsistentStateIsRefusedBeforeWriting() throws {
        let dir = try makeTemporaryDirectory("invalid")
        let writer = CheckpointWriter(directory: dir, keepLast: 1)
        var badShape = sampleState(step: 1)
        badShape.tensors[1].shape = [3, 3]
        let path = (dir as NSString).appendingPathComponent("step_1.h5")
        #expect(reason { try writer.write(badShape) } == CheckpointError(path: path, reason: .invalidState(
            "tensor model/model.layers.0.self_attn.q_proj.weight has shape [3, 3] (9 values) but 8 values")))
        var badName = sampleState(step: 1)
        badName.adamV[0].name = "a/b"
        #expect(reason { try writer.write(badName) } == CheckpointError(path: path, reason: .invalidState(
            #"tensor name "a/b" in optim/v is not a valid HDF5 link name"#)))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == [])
    }
}

/// FNV-1a-64 of the canonical stream of the tiny state in `checksumIsStableAcrossRuns`,
/// computed independently here byte by byte.
/// Version 2 appends the tokenizer: `u64(0)` without one, else `u64(1)` and its fields (here
/// tokenizer.json `{}`, only an EOS name, template `none`).
private func referenceChecksumOfTinyState(version: UInt64, tokenizerEOS: String? = nil) -> UInt64 {
    var bytes: [UInt8] = []
    func u64(_ v: UInt64) { bytes += withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    func str(_ s: String) { u64(UInt64(s.utf8.count)); bytes += Array(s.utf8) }
    str("cerm-checkpoint"); u64(version)
    u64(1); u64(2); u64(0); u64(0); u64(0); u64(0)  // step, version, adam step, cursor
    u64(0)                                          // no rng words
    str("model"); u64(1); str("w"); u64(1); u64(1); u64(4); bytes += [0x00, 0x00, 0x80, 0x3f]
    str("optim/m"); u64(0)
    str("optim/v"); u64(0)
    str(""); str("{}"); str(""); str("{}")
    if version >= 2 {
        if let tokenizerEOS {
            u64(1)
            u64(1); str("{}"); u64(0); u64(1); str(tokenizerEOS); u64(0); u64(0); u64(1); str("none"); u64(0); u64(0)
        } else {
            u64(0)
        }
    }
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h
}
