@testable import Engine
import Foundation
import Shared
import Testing

@Suite struct OptimizerTests {
    /// Two AdamW steps against the formulas evaluated by hand in Double.
    @Test func adamWMatchesHandComputedSteps() throws {
        let config = TrainingTestData.llamaTiny
        var weights = ModelWeights(config: config, seed: 1, initStd: 0.1)
        let start = weights
        var adam = AdamW(layout: weights.layout, beta1: 0.9, beta2: 0.99, epsilon: 1e-8, weightDecay: 0.1)
        var grads = ModelGradients(config: config)
        grads.values = TrainingTestData.floats(grads.values.count, seed: 2)
        let g1 = grads.values
        try adam.step(weights: &weights, gradients: grads, learningRate: 0.01)
        grads.values = TrainingTestData.floats(grads.values.count, seed: 3)
        let g2 = grads.values
        try adam.step(weights: &weights, gradients: grads, learningRate: 0.02)
        #expect(adam.step == 2)

        let matrix = try weights.spec("model.layers.0.mlp.gate_proj.weight").offset + 3
        let norm = try weights.spec("model.layers.1.input_layernorm.weight").offset + 2
        for (i, decays) in [(matrix, true), (norm, false)] {
            var theta = Double(start.values[i]), m = 0.0, v = 0.0
            for (t, (g, lr)) in [(Double(g1[i]), 0.01), (Double(g2[i]), 0.02)].enumerated() {
                m = 0.9 * m + 0.1 * g
                v = 0.99 * v + 0.01 * g * g
                if decays { theta -= lr * 0.1 * theta }
                let mHat = m / (1 - pow(0.9, Double(t + 1))), vHat = v / (1 - pow(0.99, Double(t + 1)))
                theta -= lr * mHat / (vHat.squareRoot() + 1e-8)
            }
            #expect(abs(Double(weights.values[i]) - theta) < 1e-6, "element \(i)")
        }
        #expect(throws: CermError.self) {
            var other = ModelWeights(config: TrainingTestData.qwenTinyAllFeatures)
            try adam.step(weights: &other, gradients: grads, learningRate: 0.01)
        }
    }

    @Test func decayCoversMatricesOnly() throws {
        let layout = ParameterLayout(TrainingTestData.qwenTinyAllFeatures)
        let spans = AdamW.decaySpans(layout: layout)
        #expect(spans.count == layout.specs.count)
        for (span, spec) in zip(spans, layout.specs) {
            #expect(span.range == spec.offset..<(spec.offset + spec.count) && span.mask == (spec.shape.count >= 2 ? 1 : 0), "\(spec.name)")
        }
        #expect(spans.last?.range.upperBound == layout.totalCount)
        #expect(AdamW.decaySpans(layout: layout, decayNormsAndBiases: true).allSatisfy { $0.mask == 1 })
    }

    @Test func globalNormClippingReturnsThePreClipNorm() {
        var g = ModelGradients(config: TrainingTestData.llamaTiny)
        g.values[0] = 3
        g.values[g.values.count - 1] = 4
        #expect(g.clipGlobalNorm(maxNorm: 10) == 5)
        #expect(g.values[0] == 3)
        #expect(g.clipGlobalNorm(maxNorm: 1) == 5)
        #expect(abs(g.values[0] - 0.6) < 1e-7 && abs(g.values[g.values.count - 1] - 0.8) < 1e-7)
        #expect(abs(g.l2Norm - 1) < 1e-6)
        g.values[5] = .infinity
        #expect(g.clipGlobalNorm(maxNorm: 1) == .infinity)
        #expect(abs(g.values[0] - 0.6) < 1e-7)  // untouched
    }

    @Test func gradientsOfShardsAddElementwise() throws {
        var a = ModelGradients(config: TrainingTestData.llamaTiny)
        var b = ModelGradients(config: TrainingTestData.llamaTiny)
        a.values[0] = 1.5
        b.values[0] = -0.25
        b.values[7] = 2
        try a.add(b)
        #expect(a.values[0] == 1.25 && a.values[7] == 2 && b.values[0] == -0.25)
        let other = ModelGradients(config: TrainingTestData.qwenTinyAllFeatures)
        #expect(throws: CermError.invalid("ModelGradients.add: the gradients were made for a different model config")) {
            try a.add(other)
        }
    }

    @Test func learningRateSchedules() {
        #expect(LearningRateSchedule.constant(3e-4).rate(at: 0) == 3e-4)
        #expect(LearningRateSchedule.constant(3e-4).rate(at: 10_000) == 3e-4)
        let s = LearningRateSchedule.warmupCosine(peak: 1, warmupSteps: 10, totalSteps: 110, minRatio: 0.1)
        #expect(abs(s.rate(at: 0) - 0.1) < 1e-6)
        #expect(abs(s.rate(at: 4) - 0.5) < 1e-6)
        #expect(abs(s.rate(at: 9) - 1) < 1e-6)
        #expect(abs(s.rate(at: 10) - 1) < 1e-6)
        #expect(abs(s.rate(at: 60) - 0.55) < 1e-6)  // half-way: 0.1 + 0.9·0.5
        #expect(abs(s.rate(at: 110) - 0.1) < 1e-6)
        #expect(abs(s.rate(at: 500) - 0.1) < 1e-6)
        let noWarmup = LearningRateSchedule.warmupCosine(peak: 2, warmupSteps: 0, totalSteps: 4, minRatio: 0)
        #expect(abs(noWarmup.rate(at: 0) - 2) < 1e-6)
        #expect(abs(noWarmup.rate(at: 2) - 1) < 1e-6)
    }
}
