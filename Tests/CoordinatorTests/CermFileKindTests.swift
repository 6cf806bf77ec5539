@testable import Coordinator
import Engine
import EngineConfiguration
import Foundation
import Shared
import TestSupport
import Testing

/// The two kinds of .h5 cerm writes are told apart wherever one is given for the other.
@Suite struct CermFileKindTests {
    /// A run directory with `step_3.h5` and an SFT weights file `model.h5`.
    static func files() throws -> (dir: String, checkpoint: String, sft: String, weights: ModelWeights) {
        let dir = try makeTemporaryDirectory("file-kinds")
        try CheckpointWriter(directory: dir, keepLast: 3).write(sampleState(step: 3))
        let weights = ModelWeights(config: TransformerConfig(LearnerFixture.config().model), seed: 5, initStd: 0.1)
        let sft = (dir as NSString).appendingPathComponent("model.h5")
        try weights.save(to: sft)
        return (dir, (dir as NSString).appendingPathComponent("step_3.h5"), sft, weights)
    }

    @Test func detectsCheckpointsSFTWeightsAndNeither() throws {
        let (dir, checkpoint, sft, _) = try Self.files()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try CermFileKind.detect(path: checkpoint) == .checkpoint(step: 3))
        #expect(try CermFileKind.detect(path: sft) == .sftWeights)
        #expect(CermFileKind.checkpoint(step: 3).description == "an RL checkpoint (step 3)")
        #expect(CermFileKind.sftWeights.description == "an SFT weights file")
        #expect(try WeightsFile.kind(path: checkpoint) == .checkpoint)
        #expect(try WeightsFile.kind(path: sft) == .modelWeights)

        let plain = (dir as NSString).appendingPathComponent("plain.h5")
        let file = try HDF5File(path: plain, mode: .truncate)
        try file.root.write("x", [Float(1)], shape: [1])
        try file.close()
        let neither = CermError.io(path: plain, reason: "neither a run checkpoint nor an SFT weights file (no 'format' or 'model_config_json' attribute on /)")
        #expect(throws: neither) { try CermFileKind.detect(path: plain) }
        // Before, any HDF5 file without `format` was taken for SFT weights by `cerm eval`.
        #expect(throws: neither) { try WeightsFile.load(path: plain) }
        let missing = (dir as NSString).appendingPathComponent("none.h5")
        #expect(throws: CheckpointError(path: missing, reason: .notFound)) { try CermFileKind.detect(path: missing) }
    }

    /// `--resume`, `cerm status --verify` and every checkpoint reader name an SFT file as such.
    @Test func checkpointReaderSaysAnSFTFileIsNotARunCheckpoint() throws {
        let (dir, _, sft, _) = try Self.files()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let error = CheckpointError(path: sft, reason: .sftWeightsFile)
        #expect(throws: error) { try CheckpointReader.load(path: sft) }
        #expect(throws: error) { try CheckpointReader.resume(from: sft) }
        #expect(error.description == "\(sft) is an SFT weights file, not a run checkpoint (SFT weights go to --init or `cerm eval --checkpoint`)")
    }

    /// `cerm coordinator --init step_3.h5` used to fail with an HDF5 error stack about a
    /// missing `model_config_json` attribute.
    @Test func initRefusesAnRLCheckpointNamingIt() throws {
        let (dir, checkpoint, sft, weights) = try Self.files()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: CermError.invalid("\(checkpoint) is an RL checkpoint (step 3), not an SFT weights file: --resume \(checkpoint) "
                                          + "continues that run; --init takes SFT weights (`cerm sft` writes them to sft.output)")) {
            try GRPOLearner(config: LearnerFixture.config(), runModel: RunModel(ownModel: LearnerFixture.config().model), initPath: checkpoint)
        }
        let garbage = (dir as NSString).appendingPathComponent("garbage.h5")
        try Data("not hdf5".utf8).write(to: URL(fileURLWithPath: garbage))
        #expect(throws: CermError.io(path: garbage, reason: "cannot load SFT weights (--init): not an HDF5 file (no HDF5 signature)")) {
            try GRPOLearner(config: LearnerFixture.config(), runModel: RunModel(ownModel: LearnerFixture.config().model), initPath: garbage)
        }
        #expect(try GRPOLearner(config: LearnerFixture.config(), runModel: RunModel(ownModel: LearnerFixture.config().model), initPath: sft).currentWeights() == weights.wireBytes)
    }

    /// `cerm inspect` of an SFT file: tensors and checksum status, without judging it.
    @Test func sftWeightsReadForInspectionReportAChecksumMismatch() throws {
        let (dir, checkpoint, sft, weights) = try Self.files()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let loaded = try LoadedSFTWeights.read(path: sft)
        #expect(loaded.weights == weights)
        #expect(loaded.storedChecksum == weights.checksum && loaded.checksumMatches)
        #expect(loaded.modelConfigJSON == weights.config.jsonString())
        #expect(loaded.tokenizerDescription == ByteTokenizer().description)

        let file = try HDF5File(path: sft, mode: .readWrite)
        try file.root.setAttribute("weights_fnv1a64", weights.checksum ^ 1)
        try file.close()
        let tampered = try LoadedSFTWeights.read(path: sft)
        #expect(tampered.storedChecksum == weights.checksum ^ 1)
        #expect(!tampered.checksumMatches)
        #expect(throws: CermError.io(path: checkpoint, reason: "not an SFT weights file")) { try LoadedSFTWeights.read(path: checkpoint) }
    }

    /// `cerm export` of an SFT weights file: every parameter, the family's config, no step.
    @Test func sftWeightsExport() throws {
        let (dir, _, sft, weights) = try Self.files()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = (dir as NSString).appendingPathComponent("hf")
        let written = try HuggingFaceExport.export(try ModelWeights.load(path: sft), to: out, source: sft)
        let header = try HuggingFaceExportTests.safetensorsHeader(written[0])
        #expect(Set(header.keys) == Set(weights.layout.specs.map(\.name) + ["__metadata__"]))
        #expect(header["__metadata__"] as? [String: String] == ["format": "pt"])
        #expect(try String(contentsOfFile: written[1], encoding: .utf8) == HuggingFaceExport.configJSON(for: weights.config, source: sft))
    }
}
