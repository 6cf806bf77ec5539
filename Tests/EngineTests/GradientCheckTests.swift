@testable import Engine
import Foundation
import Testing

/// Central finite differences against the analytic backward, for every parameter tensor.
@Suite struct GradientCheckTests {
    /// `L = Σ w·logp` in Double over a forward pass.
    static func loss(_ model: Transformer, _ batch: TokenBatch, _ weights: [[Float]], temperature: Float) throws -> Double {
        let pass = try model.forward(batch, temperature: temperature)
        var total = 0.0
        for (lpRow, wRow) in zip(pass.logprobs, weights) {
            for (lp, w) in zip(lpRow, wRow) { total += Double(lp) * Double(w) }
        }
        return total
    }

    /// Checks 6 entries of every tensor (its largest-gradient entry and 5 spread over it):
    /// `|fd − analytic| ≤ 1e-2·|analytic| + 1e-3·max|grad of tensor| + 1e-4`; eps 3e-3 (with init std 0.5
    /// the loss is curved enough that 1e-2 leaves a few-percent truncation error).
    static func check(config: TransformerConfig, temperature: Float, seed: UInt64, attentionBlockRows: Int,
                      lmHeadChunkFloats: Int = Transformer.defaultLMHeadChunkFloats) throws {
        let model = try Transformer(weights: ModelWeights(config: config, seed: seed, initStd: 0.5), attentionBlockRows: attentionBlockRows,
                                    lmHeadChunkFloats: lmHeadChunkFloats)
        let batch = TrainingTestData.batch(vocab: config.vocabSize, seed: seed)
        let lossWeights = TrainingTestData.lossWeights(for: batch, seed: seed + 100)
        _ = try model.forward(batch, temperature: temperature)
        var grads = ModelGradients(config: config)
        try model.backward(dLogprobs: lossWeights, into: &grads)

        let eps: Float = 3e-3
        var checked = 0
        for spec in model.weights.layout.specs {
            let g = Array(grads.values[spec.offset..<(spec.offset + spec.count)])
            let maxGrad = g.map { abs($0) }.max() ?? 0
            #expect(maxGrad > 0, "\(spec.name): gradient is identically zero")
            let argmax = g.indices.max { abs(g[$0]) < abs(g[$1]) } ?? 0
            var picks = [argmax]
            for k in 1...5 { picks.append((k * 7919 + Int(seed)) % spec.count) }
            for local in picks {
                let i = spec.offset + local
                let original = model.weights.values[i]
                model.weights.values[i] = original + eps
                let plus = try loss(model, batch, lossWeights, temperature: temperature)
                model.weights.values[i] = original - eps
                let minus = try loss(model, batch, lossWeights, temperature: temperature)
                model.weights.values[i] = original
                let fd = (plus - minus) / Double(2 * eps)
                let analytic = Double(grads.values[i])
                let tolerance = 1e-2 * abs(analytic) + 1e-3 * Double(maxGrad) + 1e-4
                #expect(abs(fd - analytic) <= tolerance,
                        "\(spec.name)[\(local)]: finite difference \(fd) vs backward \(analytic)")
                checked += 1
            }
        }
        #expect(checked == 6 * model.weights.layout.specs.count)
    }

    /// Blocks of 3 query rows: rows of 6, 3 and 8 tokens use full, single and partial blocks.
    @Test func everyTensorOfQwenStyleModelWithQKNormBiasAndUntiedHead() throws {
        try Self.check(config: TrainingTestData.qwenTinyAllFeatures, temperature: 1, seed: 3, attentionBlockRows: 3)
    }

    @Test func everyTensorOfLlamaStyleModelWithTiedEmbeddings() throws {
        try Self.check(config: TrainingTestData.llamaTiny, temperature: 1, seed: 4, attentionBlockRows: 64)
    }

    @Test func everyTensorAtSamplingTemperature() throws {
        try Self.check(config: TrainingTestData.tinyConfig(family: .qwen2, qkNorm: false, qkvBias: true, tied: true), temperature: 0.7, seed: 5, attentionBlockRows: 2)
    }

    /// The LM head in chunks of 5 of the 17 rows (5, 5, 5, 2), computed again in backward.
    @Test func everyTensorWithTheLMHeadInChunks() throws {
        try Self.check(config: TrainingTestData.qwenTinyAllFeatures, temperature: 0.8, seed: 6, attentionBlockRows: 3,
                       lmHeadChunkFloats: 5 * 32)
        try Self.check(config: TrainingTestData.llamaTiny, temperature: 1, seed: 7, attentionBlockRows: 64, lmHeadChunkFloats: 5 * 32)
    }

    @Test func backwardAccumulatesAndIsLinearInTheWeights() throws {
        let config = TrainingTestData.qwenTinyAllFeatures
        let model = try Transformer(weights: ModelWeights(config: config, seed: 9, initStd: 0.3))
        let batch = TrainingTestData.batch(vocab: config.vocabSize, seed: 9)
        let w = TrainingTestData.lossWeights(for: batch, seed: 10)
        var once = ModelGradients(config: config)
        _ = try model.forward(batch)
        try model.backward(dLogprobs: w, into: &once)
        var twice = ModelGradients(config: config)
        for _ in 0..<2 {
            _ = try model.forward(batch)
            try model.backward(dLogprobs: w, into: &twice)
        }
        var doubled = ModelGradients(config: config)
        _ = try model.forward(batch)
        try model.backward(dLogprobs: w.map { $0.map { 2 * $0 } }, into: &doubled)
        for i in once.values.indices {
            #expect(abs(twice.values[i] - 2 * once.values[i]) <= 1e-5 * max(1, abs(once.values[i])))
            #expect(abs(doubled.values[i] - 2 * once.values[i]) <= 1e-5 * max(1, abs(once.values[i])))
        }
    }
}
