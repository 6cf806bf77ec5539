import Engine
import Foundation
import Testing
@testable import ModelFormats
import Shared

/// Hugging Face directories written by transformers' `save_pretrained` (llama float32 in 4
/// shards, qwen2 bfloat16, qwen3 float16), the safetensors reader's errors, and the entry point.
@Suite struct HuggingFaceModelTests {
    @Test(arguments: ["llama", "qwen2", "qwen3"])
    func loadsWithTransformersLogits(family: String) throws {
        let weights = try HuggingFaceModel.weights(directory: Fixtures.path("\(family)_tiny"))
        var expected = GGUFModelTests.expectedConfig(family)
        expected.rmsNormEps = 1e-5
        #expect(weights.config == expected)
        let (error, scale) = try ReferenceLogits.deviation(weights, family: family)
        #expect(error <= 1e-4 * scale, "\(family): max |Δlogit| \(error), max |logit| \(scale)")
        // The GGUF holds the same values in float32 (llama's Q/K permuted): bit-identical tensors.
        let gguf = try GGUFModel.weights(of: GGUFFile(path: Fixtures.path("\(family)_tiny.gguf")))
        #expect(gguf.values.map(\.bitPattern) == weights.values.map(\.bitPattern))
    }

    @Test func shardedDirectoryIsRead() throws {
        let files = try HuggingFaceModel.weightFiles(in: Fixtures.path("llama_tiny"))
        #expect(files.map { ($0 as NSString).lastPathComponent } == (1...4).map { "model-0000\($0)-of-00004.safetensors" })
    }

    /// A copy of the llama fixture directory with `config.json` edited by `edit`.
    static func directoryWithConfig(_ edit: (inout [String: Any]) -> Void, in parent: String) throws -> String {
        let directory = (parent as NSString).appendingPathComponent("model-\(UUID().uuidString)")
        try FileManager.default.copyItem(atPath: Fixtures.path("llama_tiny"), toPath: directory)
        let configPath = (directory as NSString).appendingPathComponent("config.json")
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: configPath))) as? [String: Any])
        edit(&config)
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: configPath))
        return directory
    }

    @Test func unsupportedConfigsAreErrorsNamingTheKey() throws {
        let parent = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let cases: [(String, (inout [String: Any]) -> Void)] = [
            ("rope_scaling is a JSON object: RoPE scaling is not supported", { $0["rope_scaling"] = ["rope_type": "yarn", "factor": 4.0] }),
            ("rope_parameters.rope_type is \"llama3\": RoPE scaling is not supported", { $0["rope_parameters"] = ["rope_type": "llama3", "rope_theta": 5e5] }),
            ("sliding_window is 4096: cerm has no sliding-window attention (a mistral model needs sliding_window null)",
             { $0["model_type"] = "mistral"; $0["sliding_window"] = 4096 }),
            ("model_type gemma is not supported (cerm reads llama, mistral, qwen2 and qwen3)", { $0["model_type"] = "gemma" }),
            ("attention_bias is true: cerm has q/k/v biases only for qwen2 and no o_proj bias", { $0["attention_bias"] = true }),
            ("hidden_size is missing", { $0["hidden_size"] = nil }),
            ("num_hidden_layers must be an integer in 1...16777216", { $0["num_hidden_layers"] = 2.5 }),
        ]
        for (reason, edit) in cases {
            let directory = try Self.directoryWithConfig(edit, in: parent)
            #expect(throws: CermError.io(path: (directory as NSString).appendingPathComponent("config.json"), reason: reason)) {
                try HuggingFaceModel.weights(directory: directory)
            }
        }
        // mistral without a sliding window is llama.
        let mistral = try Self.directoryWithConfig({ $0["model_type"] = "mistral"; $0["sliding_window"] = NSNull() }, in: parent)
        #expect(try HuggingFaceModel.weights(directory: mistral).config.family == .llama)
        let deep = try Self.directoryWithConfig({ $0["num_hidden_layers"] = 1000 }, in: parent)
        #expect(throws: CermError.io(path: (deep as NSString).appendingPathComponent("config.json"),
                                     reason: "num_hidden_layers 1000 needs more tensors than the 20 in the safetensors files")) {
            try HuggingFaceModel.weights(directory: deep)
        }
        let untied = try Self.directoryWithConfig({ $0["tie_word_embeddings"] = false }, in: parent)
        #expect(throws: CermError.io(path: untied, reason: "tensor lm_head.weight is missing")) {
            try HuggingFaceModel.weights(directory: untied)
        }
        let shallow = try Self.directoryWithConfig({ $0["num_hidden_layers"] = 1 }, in: parent)
        let extra = try #require(throws: CermError.self) { try HuggingFaceModel.weights(directory: shallow) }
        #expect(extra.description.hasSuffix("safetensors: tensor model.layers.1.input_layernorm.weight is not part of a llama model with this config.json"))
        // A config that does not match the tensors: the shard and tensor are named.
        let wide = try Self.directoryWithConfig({ $0["intermediate_size"] = 24 }, in: parent)
        let error = try #require(throws: CermError.self) { try HuggingFaceModel.weights(directory: wide) }
        #expect(error.description.hasSuffix("safetensors: tensor model.layers.0.mlp.gate_proj.weight has shape [16, 8], config.json needs [24, 8]"))
    }

    /// A safetensors file: 8-byte little-endian header length, the header, the data.
    static func safetensors(header: String, data: [UInt8], length: UInt64? = nil) -> [UInt8] {
        let headerBytes = Array(header.utf8)
        return withUnsafeBytes(of: (length ?? UInt64(headerBytes.count)).littleEndian, Array.init) + headerBytes + data
    }

    @Test func damagedSafetensorsAreErrorsNamingTheTensor() throws {
        let directory = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let good = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        let cases: [([UInt8], String)] = [
            (Self.safetensors(header: good, data: [], length: 1 << 40), "header length 1099511627776 is past the end of the file (62 bytes)"),
            (Self.safetensors(header: "{\"a\":", data: []), "the JSON header is not valid JSON (byte 6: unexpected end of line)"),
            (Self.safetensors(header: good, data: [0, 0, 0, 0]), "tensor a: data_offsets [0, 8] are past the end of the data (4 bytes)"),
            (Self.safetensors(header: #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8)),
             "tensor a: shape [3] of F32 needs 12 bytes, data_offsets [0, 8] hold 8"),
            (Self.safetensors(header: #"{"a":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8)),
             "tensor a: unknown dtype Q9"),
            (Self.safetensors(header: #"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8)),
             "tensor a: shape [-2] is not a list of non-negative integers"),
        ]
        for (index, (bytes, reason)) in cases.enumerated() {
            let path = try Fixtures.write(bytes, named: "\(index).safetensors", in: directory)
            #expect(throws: CermError.io(path: path, reason: reason)) { try SafetensorsFile(path: path) }
        }
        let ints = try Fixtures.write(Self.safetensors(header: #"{"a":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8)),
                                      named: "ints.safetensors", in: directory)
        let file = try SafetensorsFile(path: ints)
        var out = [Float](repeating: 0, count: 2)
        #expect(throws: CermError.io(path: ints, reason: "tensor a has dtype I32; cerm reads F32, F16 and BF16")) {
            try out.withUnsafeMutableBufferPointer { try file.floats(file.tensors["a"]!, into: $0) }
        }
    }

    @Test func writerOutputReadsBack() throws {
        let directory = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = (directory as NSString).appendingPathComponent("w.safetensors")
        let tensors: [(name: String, shape: [Int], values: [Float])] = [("b", [2, 3], (0..<6).map { Float($0) - 2.5 }), ("a", [], [.pi]), ("é", [0], [])]
        try SafetensorsFile.write(tensors, metadata: ["format": "pt"], to: path)
        let file = try SafetensorsFile(path: path)
        #expect(file.metadata == ["format": "pt"])
        #expect(Set(file.tensors.keys) == ["a", "b", "é"])
        for (name, shape, values) in tensors {
            let tensor = try #require(file.tensors[name])
            #expect(tensor.shape == shape && tensor.dtype == "F32")
            var out = [Float](repeating: .nan, count: values.count)
            try out.withUnsafeMutableBufferPointer { try file.floats(tensor, into: $0) }
            #expect(out == values)
        }
    }
}

@Suite struct ModelImportTests {
    @Test func ggufCarriesItsTokenizerMetadata() throws {
        let model = try ModelImport.load(path: Fixtures.path("llama_tiny.gguf"))
        #expect(model.source == "GGUF v3 file \(Fixtures.path("llama_tiny.gguf")) (llama)")
        #expect(model.config == GGUFModelTests.expectedConfig("llama"))
        guard case let .gguf(tokenizer) = model.tokenizer else {
            Issue.record("expected GGUF tokenizer metadata, got \(model.tokenizer)")
            return
        }
        #expect(tokenizer.model == "gpt2" && tokenizer.pre == "smollm")
        #expect(tokenizer.tokens.count == 32 && tokenizer.tokens.last == "<|im_end|>")
        #expect(tokenizer.tokenTypes.prefix(4) == [3, 3, 3, 1])
        #expect(tokenizer.merges == ["t 1", "t1 0"])
        #expect(tokenizer.bosTokenID == 1 && tokenizer.eosTokenID == 2 && tokenizer.padTokenID == 2)
        #expect(tokenizer.chatTemplate == "{% for message in messages %}{{ message['content'] }}{% endfor %}")
    }

    @Test func directoryCarriesItsTokenizerFiles() throws {
        let directory = Fixtures.path("qwen3_tiny")
        let model = try ModelImport.load(path: directory)
        #expect(model.source == "Hugging Face directory \(directory) (qwen3)")
        #expect(model.tokenizer == .huggingFace(tokenizerJSON: nil, tokenizerConfigJSON: nil,
                                                generationConfigJSON: (directory as NSString).appendingPathComponent("generation_config.json")))
    }

    @Test func anythingElseIsAnErrorSayingWhatWasExpected() throws {
        let directory = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(throws: CermError.io(path: directory, reason: "is a directory without config.json (expected a Hugging Face model directory or a GGUF file)")) {
            try ModelImport.load(path: directory)
        }
        let text = try Fixtures.write(Array("hello".utf8), named: "model.bin", in: directory)
        #expect(throws: CermError.io(path: text, reason: "is neither a GGUF file (it does not start with \"GGUF\") nor a Hugging Face model directory")) {
            try ModelImport.load(path: text)
        }
        let missing = directory + "/absent.gguf"
        #expect(throws: CermError.io(path: missing, reason: "does not exist (expected a GGUF file or a Hugging Face model directory)")) {
            try ModelImport.load(path: missing)
        }
    }
}
