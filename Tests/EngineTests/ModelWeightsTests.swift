@testable import Engine
import Foundation
import Shared
import TestSupport
import Testing

@Suite struct ModelWeightsTests {
    @Test func splitMix64MatchesTheReferenceSequence() {
        // Vigna's splitmix64 seeded with 0 yields 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, ...
        #expect(ParameterInitNoise.splitMix64(seed: 0, counter: 0) == 0xE220_A839_7B1D_CDAF)
        #expect(ParameterInitNoise.splitMix64(seed: 0, counter: 1) == 0x6E78_9E6A_A1B9_65F4)
    }

    @Test func initialisationFollowsTheDocumentedRecipe() throws {
        let config = TrainingTestData.qwenTinyAllFeatures
        let w = ModelWeights(config: config, seed: 42, initStd: 0.02)
        #expect(try w.tensor("model.norm.weight") == [Float](repeating: 1, count: 16))
        #expect(try w.tensor("model.layers.1.self_attn.q_norm.weight") == [Float](repeating: 1, count: 4))
        #expect(try w.tensor("model.layers.0.self_attn.k_proj.bias") == [Float](repeating: 0, count: 8))
        let embed = try w.tensor("model.embed_tokens.weight")
        let mean = embed.reduce(0.0) { $0 + Double($1) } / Double(embed.count)
        let std = (embed.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(embed.count)).squareRoot()
        #expect(abs(mean) < 0.002)
        #expect(abs(std - 0.02) < 0.002)
        // Element i is std · BoxMuller(splitmix(seed, 2i), splitmix(seed, 2i+1)).
        let spec = try w.spec("model.layers.0.mlp.up_proj.weight")
        let i = spec.offset + 5
        #expect(w.values[i] == Float(0.02 * ParameterInitNoise.standardNormal(seed: 42, index: UInt64(i))))
    }

    @Test func sameSeedIsBitIdenticalAndOtherSeedsDiffer() {
        let config = TrainingTestData.llamaTiny
        let a = ModelWeights(config: config, seed: 7, initStd: 0.02)
        let b = ModelWeights(config: config, seed: 7, initStd: 0.02)
        let c = ModelWeights(config: config, seed: 8, initStd: 0.02)
        #expect(a == b)
        #expect(a.checksum == b.checksum)
        #expect(a != c)
        #expect(a.checksum != c.checksum)
    }

    @Test func equalityAndChecksumAreBitExact() {
        var a = ModelWeights(config: TrainingTestData.llamaTiny)
        let zero = a
        a.values[3] = -0.0
        #expect(a != zero)  // -0 == +0 numerically, but not bitwise
        #expect(a.checksum != zero.checksum)
        var copy = a
        copy.values[3] = 0
        #expect(copy == zero)
        #expect(a.values[3].sign == .minus)  // copies are independent
    }

    @Test func namedTensorAccessChecksNamesAndSizes() throws {
        var w = ModelWeights(config: TrainingTestData.llamaTiny)
        try w.setTensor("model.norm.weight", [Float](repeating: 2, count: 16))
        #expect(try w.tensor("model.norm.weight") == [Float](repeating: 2, count: 16))
        #expect(throws: CermError.invalid("ModelWeights: model.norm.weight has 16 elements, got 3")) {
            try w.setTensor("model.norm.weight", [1, 2, 3])
        }
        #expect(throws: CermError.invalid("ModelWeights: no parameter named lm_head.weight in a llama model with this config")) {
            try w.tensor("lm_head.weight")
        }
    }

    @Test func saveLoadRoundTripIsBitExact() throws {
        for config in [TrainingTestData.qwenTinyAllFeatures, TrainingTestData.llamaTiny] {
            var w = ModelWeights(config: config, seed: 3, initStd: 0.5)
            w.values[1] = -0.0
            w.values[2] = .leastNonzeroMagnitude
            let path = temporaryPath("engine-roundtrip.h5")
            defer { try? FileManager.default.removeItem(atPath: path) }
            try w.save(to: path)
            let loaded = try ModelWeights.load(path: path)
            #expect(loaded == w)
            #expect(loaded.config == config)

            let file = try HDF5File(path: path, mode: .readOnly)
            #expect(try file.root.stringAttribute("tokenizer") == ByteTokenizer().description)
            #expect(try TransformerConfig.fromJSON(file.root.stringAttribute("model_config_json")) == config)
            #expect(try file.root.group("model").shape(of: "model.layers.1.mlp.down_proj.weight") == [16, 24])
            try file.close()
        }
    }

    @Test func loadRejectsCorruptAndIncompleteFiles() throws {
        let w = ModelWeights(config: TrainingTestData.llamaTiny, seed: 3, initStd: 0.5)
        let path = temporaryPath("engine-corrupt.h5")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try w.save(to: path)
        do {
            let file = try HDF5File(path: path, mode: .readWrite)
            try file.root.group("model").write("model.norm.weight", [Float](repeating: 0.5, count: 16), shape: [16])
            try file.close()
        }
        #expect(throws: CermError.self) { try ModelWeights.load(path: path) }
        do {
            let file = try HDF5File(path: path, mode: .readWrite)
            try file.root.group("model").write("model.norm.weight", [Float](repeating: 0.5, count: 8), shape: [8])
            try file.close()
        }
        #expect(throws: CermError.io(path: path, reason: "tensor /model/model.norm.weight has shape [8], expected [16]")) {
            try ModelWeights.load(path: path)
        }
    }

    static let storedTokenizer = StoredTokenizer(
        tokenizerJSON: Array(#"{"model": {"type": "BPE"}}"#.utf8), bosToken: "<s>", eosToken: "<|im_end|>", padToken: nil,
        unkToken: nil, chatTemplate: "chatml", chatTemplateSystem: "You are helpful.\n",
        chatTemplateJinja: "{% for m in messages %}<|im_start|>{{ m.content }}<|im_end|>{% endfor %}")

    @Test func aStoredTokenizerTravelsWithTheWeights() throws {
        let w = ModelWeights(config: TrainingTestData.llamaTiny, seed: 3, initStd: 0.5)
        let path = temporaryPath("tokenizer")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try w.save(to: path, tokenizer: Self.storedTokenizer)
        let loaded = try ModelWeights.loadVerified(path: path)
        #expect(loaded.weights == w)
        #expect(loaded.storedTokenizer == Self.storedTokenizer)
        #expect(loaded.tokenizer == Self.storedTokenizer.description)
        #expect(Self.storedTokenizer.description == #"tokenizer.json (26 bytes); chat template chatml with a default system message, "#
                + #"Jinja text kept; bos_token "<s>", eos_token "<|im_end|>""#)

        // Without the group: cerm's byte tokenizer.
        try w.save(to: path)
        #expect(try ModelWeights.loadVerified(path: path).storedTokenizer == nil)
    }

    @Test func aDamagedTokenizerGroupIsAnErrorNamingTheKey() throws {
        let w = ModelWeights(config: TrainingTestData.llamaTiny, seed: 3, initStd: 0.5)
        let path = temporaryPath("tokenizer-damaged")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try w.save(to: path)
        do {
            let file = try HDF5File(path: path, mode: .readWrite)
            let group = try file.root.group("tokenizer", create: true)
            try group.write("tokenizer_json", [UInt8]("{}".utf8), shape: [2])
            try file.close()
        }
        #expect(throws: CermError.io(path: path, reason: "missing attribute /tokenizer/@chat_template")) { try ModelWeights.loadVerified(path: path) }
        try w.save(to: path)
        do {
            let file = try HDF5File(path: path, mode: .readWrite)
            try file.root.group("tokenizer", create: true).setAttribute("chat_template", "chatml")
            try file.close()
        }
        #expect(throws: CermError.io(path: path, reason: "missing dataset /tokenizer/tokenizer_json")) { try ModelWeights.loadVerified(path: path) }
    }
}

@Suite struct ParameterLayoutTensorTests {
    @Test func tensorsAndFlattenRoundTrip() throws {
        let w = ModelWeights(config: TrainingTestData.qwenTinyAllFeatures, seed: 1, initStd: 0.1)
        let tensors = try w.layout.tensors(of: w.values)
        #expect(tensors.map(\.name) == w.layout.specs.map(\.name))
        #expect(tensors[0].shape == [32, 16])
        #expect(try w.layout.flatten(tensors.reversed()) == w.values)
        #expect(throws: CermError.invalid("ParameterLayout.flatten: missing tensor model.norm.weight")) {
            try w.layout.flatten(tensors.filter { $0.name != "model.norm.weight" })
        }
        #expect(throws: CermError.invalid("ParameterLayout.flatten: unknown tensor extra")) {
            try w.layout.flatten(tensors + [("extra", [1], [0])])
        }
    }
}
