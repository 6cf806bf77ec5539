@testable import Engine
import Foundation
import Shared
import Testing

/// Greedy generation against Hugging Face `transformers` fixtures (see Fixtures/README.md).
///
/// The fixtures come from another branch; when the Fixtures directory holds no `.h5` file at all
/// the test returns without checking (and says so on stdout). A missing single file when others
/// exist is a failure.
@Suite("GenerationFixtures")
struct GenerationFixtureTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    @Test("greedy tokens and step logits match Hugging Face", arguments: ["llama_tiny", "qwen2_tiny", "qwen3_tiny"])
    func matchesHuggingFace(name: String) throws {
        let present = (try? FileManager.default.contentsOfDirectory(atPath: Self.directory.path)) ?? []
        guard present.contains(where: { $0.hasSuffix(".h5") }) else {
            print("GenerationFixtures: no .h5 fixtures in \(Self.directory.path); nothing checked")
            return
        }
        let path = Self.directory.appendingPathComponent(name + ".h5").path
        guard FileManager.default.fileExists(atPath: path) else {
            Issue.record("fixture \(path) is missing")
            return
        }
        let file = try HDF5File(path: path, mode: .readOnly)
        defer { try? file.close() }
        let config = try TransformerConfig.fromJSON(try file.root.stringAttribute("config_json"))
        let layout = ParameterLayout(config)
        var parameters = [Float](repeating: 0, count: layout.totalCount)
        let weights = try file.root.group("weights")
        for spec in layout.specs {
            let (values, shape) = try weights.read(spec.name, as: Float.self)
            #expect(shape == spec.shape, "\(path): weights/\(spec.name) shape \(shape), layout says \(spec.shape)")
            guard values.count == spec.count else { return }
            parameters.replaceSubrange(spec.offset ..< spec.offset + spec.count, with: values)
        }
        let prompt = try file.root.read("gen_prompt", as: Int64.self).values.map { TokenID($0) }
        let expectedTokens = try file.root.read("gen_tokens", as: Int64.self).values.map { TokenID($0) }
        let (flatLogits, logitsShape) = try file.root.read("gen_logits", as: Float.self)
        #expect(logitsShape == [expectedTokens.count, config.vocabSize])

        let generator = try Generator(config: config, parameters: parameters)
        let result = try generator.generate(requests: [
            GenerationRequest(prompt: prompt, seed: 0, maxNewTokens: expectedTokens.count, temperature: 0)])[0]
        // The fixture's greedy loop ignores EOS; ours stops on it (the token is still emitted).
        #expect(result.tokens == Array(expectedTokens.prefix(result.tokens.count)))
        #expect(result.tokens.count == expectedTokens.count || result.tokens.last == ByteTokenizer.Special.eos.rawValue)

        // Logits that chose each token, through the prefill path and the one-row decode path.
        // Tolerance 1e-5 absolute (measured max: ~2e-6, qwen2; logits are O(1)).
        let context = prompt + expectedTokens.dropLast()
        let prefilled = try generator.logits(tokens: context)
        let stepwise = try generator.stepwiseLogits(tokens: context)
        for step in expectedTokens.indices {
            let expected = Array(flatLogits[step * config.vocabSize ..< (step + 1) * config.vocabSize])
            let position = prompt.count - 1 + step
            #expect(GenerationTestModels.maxAbsDifference(prefilled[position], expected) < 1e-5, "\(name) step \(step)")
            #expect(GenerationTestModels.maxAbsDifference(stepwise[position], expected) < 1e-5, "\(name) step \(step)")
        }
    }
}
