@testable import Engine
import Foundation
import Shared
import Testing

/// The engine against reference outputs of PyTorch/transformers (see Fixtures/README.md of the
/// `fixtures` branch): logits, log-probs, entropies, loss and every parameter gradient.
///
/// Achieved (float32 engine vs float64 reference, Nov 2026): logits ≤ 4.3e-6, log-probs ≤ 1.5e-6,
/// entropies ≤ 5e-7 absolute; gradients ≤ 7.6e-6 of each tensor's max |gradient| (typically ~1e-6).
/// Asserted with margin: 2e-5 absolute and 5e-5 relative.
@Suite struct FixtureTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let names = ["llama_tiny", "qwen2_tiny", "qwen3_tiny"]

    /// The fixture paths, or nil when no fixture has been merged into this tree yet.
    static func fixturePaths() -> [String]? {
        let listing = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        guard listing.contains(where: { $0.hasSuffix(".h5") }) else { return nil }
        return names.map { directory.appendingPathComponent($0 + ".h5").path }
    }

    /// Each fixture with the default attention blocks and with blocks of 2 query rows.
    @Test(arguments: names, [Transformer.defaultAttentionBlockRows, 2])
    func matchesTransformersReference(name: String, attentionBlockRows: Int) throws {
        guard Self.fixturePaths() != nil else {
            // Before the fixtures branch is merged the directory holds no .h5 at all; once any
            // fixture is present, every expected file must be (a missing one fails below).
            withKnownIssue("engine fixtures not present in \(Self.directory.path) yet") {
                Issue.record("no *.h5 fixtures")
            }
            return
        }
        let path = Self.directory.appendingPathComponent(name + ".h5").path
        guard FileManager.default.fileExists(atPath: path) else {
            Issue.record("fixture \(path) is missing")
            return
        }
        let file = try HDF5File(path: path, mode: .readOnly)
        defer { try? file.close() }
        let root = file.root
        let config = try TransformerConfig.fromJSON(root.stringAttribute("config_json"))
        let weights = try ModelWeights.read(config: config, from: root.group("weights"))
        let refGrads = try ModelGradients.read(config: config, from: root.group("grads"))

        let (ids, idShape) = try root.read("input_ids", as: Int64.self)
        let mask: [Int64] = try root.read("attention_mask").values
        let targets: [Int64] = try root.read("targets").values
        let lossWeights: [Float] = try root.read("loss_weights").values
        let refLogits: [Float] = try root.read("logits").values
        let refLogprobs: [Float] = try root.read("logprobs").values
        let refEntropy: [Float] = try root.read("entropy").values
        let refLoss: [Float] = try root.read("loss").values
        let (rows, width) = (idShape[0], idShape[1])
        let vocab = config.vocabSize

        // Right padding → ragged rows of the valid prefix.
        var inputs: [[TokenID]] = [], tgts: [[TokenID]] = [], dLogprobs: [[Float]] = []
        for b in 0..<rows {
            let len = (0..<width).filter { mask[b * width + $0] == 1 }.count
            inputs.append((0..<len).map { TokenID(ids[b * width + $0]) })
            tgts.append((0..<len).map { TokenID(targets[b * width + $0]) })
            dLogprobs.append((0..<len).map { -lossWeights[b * width + $0] })
        }
        let model = try Transformer(weights: weights, attentionBlockRows: attentionBlockRows)
        let pass = try model.forward(TokenBatch(inputs: inputs, targets: tgts), temperature: 1, returnLogits: true)
        let logits = try #require(pass.logits)

        var maxLogitError: Float = 0, maxLogprobError: Float = 0, maxEntropyError: Float = 0
        var loss = 0.0
        for b in 0..<rows {
            for t in 0..<inputs[b].count {
                for v in 0..<vocab {
                    maxLogitError = max(maxLogitError, abs(logits[b][t * vocab + v] - refLogits[(b * width + t) * vocab + v]))
                }
                maxLogprobError = max(maxLogprobError, abs(pass.logprobs[b][t] - refLogprobs[b * width + t]))
                maxEntropyError = max(maxEntropyError, abs(pass.entropy[b][t] - refEntropy[b * width + t]))
                loss -= Double(lossWeights[b * width + t]) * Double(pass.logprobs[b][t])
            }
        }
        #expect(maxLogitError < 2e-5, "\(name): max |logit error| \(maxLogitError)")
        #expect(maxLogprobError < 2e-5, "\(name): max |logprob error| \(maxLogprobError)")
        #expect(maxEntropyError < 2e-5, "\(name): max |entropy error| \(maxEntropyError)")
        #expect(abs(loss - Double(refLoss[0])) < 1e-4 * max(1, abs(Double(refLoss[0]))), "\(name): loss \(loss) vs \(refLoss[0])")

        var grads = ModelGradients(config: config)
        try model.backward(dLogprobs: dLogprobs, into: &grads)
        for spec in weights.layout.specs {
            let ref = refGrads.values[spec.offset..<(spec.offset + spec.count)]
            let got = grads.values[spec.offset..<(spec.offset + spec.count)]
            let scale = ref.map { abs($0) }.max() ?? 0
            let err = zip(got, ref).map { abs($0 - $1) }.max() ?? 0
            #expect(scale > 0, "\(name): reference gradient of \(spec.name) is zero")
            #expect(err <= 5e-5 * scale + 1e-7, "\(name): \(spec.name) max |grad error| \(err), max |grad| \(scale)")
        }
    }
}
