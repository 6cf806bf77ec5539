@testable import Engine
import Foundation
import Shared
import Testing

/// Batch semantics, validation and the forward/backward protocol of ``Transformer``.
@Suite struct TransformerTests {
    static func model(_ config: TransformerConfig = TrainingTestData.qwenTinyAllFeatures, seed: UInt64 = 1) throws -> Transformer {
        try Transformer(weights: ModelWeights(config: config, seed: seed, initStd: 0.3))
    }

    @Test func packedRowsDoNotInfluenceEachOther() throws {
        let m = try Self.model()
        let batch = TrainingTestData.batch(vocab: 32, seed: 2)
        let together = try m.forward(batch)
        for b in 0..<batch.count {
            let alone = try m.forward(TokenBatch(inputs: [batch.inputs[b]], targets: [batch.targets[b]]))
            for t in 0..<batch.inputs[b].count {
                #expect(abs(alone.logprobs[0][t] - together.logprobs[b][t]) <= 1e-6, "row \(b) pos \(t)")
                #expect(abs(alone.entropy[0][t] - together.entropy[b][t]) <= 1e-6, "row \(b) pos \(t)")
            }
        }
    }

    @Test func attentionIsCausal() throws {
        let m = try Self.model()
        let tokens: [TokenID] = [1, 5, 9, 2, 7, 30]
        let targets: [TokenID] = [5, 9, 2, 7, 30, 4]
        var changed = tokens
        changed[4] = 11
        let a = try m.forward(TokenBatch(inputs: [tokens], targets: [targets]))
        let b = try m.forward(TokenBatch(inputs: [changed], targets: [targets]))
        for t in 0..<4 { #expect(abs(a.logprobs[0][t] - b.logprobs[0][t]) <= 1e-6) }
        #expect(abs(a.logprobs[0][4] - b.logprobs[0][4]) > 1e-4)
    }

    @Test func logprobsAreTemperedLogSoftmaxOfReturnedLogits() throws {
        let m = try Self.model()
        let batch = TrainingTestData.batch(vocab: 32, seed: 3)
        for temperature: Float in [1, 0.5] {
            let pass = try m.forward(batch, temperature: temperature, returnLogits: true)
            let logits = try #require(pass.logits)
            for b in 0..<batch.count {
                for t in 0..<batch.inputs[b].count {
                    let row = Array(logits[b][(t * 32)..<((t + 1) * 32)])
                    let ref = LogProbKernel.reference(logits: row, target: Int(batch.targets[b][t]), temperature: temperature)
                    #expect(abs(pass.logprobs[b][t] - ref.logprob) <= 1e-5)
                    #expect(abs(pass.entropy[b][t] - ref.entropy) <= 1e-5)
                    if batch.targets[b][t] < 0 { #expect(pass.logprobs[b][t] == 0) }
                }
            }
        }
    }

    @Test func repeatedPassesAreBitIdentical() throws {
        let m = try Self.model()
        let batch = TrainingTestData.batch(vocab: 32, seed: 4)
        let w = TrainingTestData.lossWeights(for: batch, seed: 5)
        var g1 = ModelGradients(config: m.config), g2 = ModelGradients(config: m.config)
        let p1 = try m.forward(batch)
        try m.backward(dLogprobs: w, into: &g1)
        let p2 = try m.forward(batch)
        try m.backward(dLogprobs: w, into: &g2)
        #expect(p1.logprobs == p2.logprobs)
        #expect(g1 == g2)
    }

    @Test func backwardUsesTheWeightsOfItsForwardPass() throws {
        let m = try Self.model()
        let batch = TrainingTestData.batch(vocab: 32, seed: 6)
        let w = TrainingTestData.lossWeights(for: batch, seed: 7)
        var expected = ModelGradients(config: m.config)
        _ = try m.forward(batch)
        try m.backward(dLogprobs: w, into: &expected)

        var got = ModelGradients(config: m.config)
        _ = try m.forward(batch)
        #expect(m.hasRetainedPass)
        m.weights.values[0] += 1  // e.g. an optimizer step between the phases
        try m.backward(dLogprobs: w, into: &got)
        #expect(got == expected)
        #expect(!m.hasRetainedPass)
    }

    @Test func forwardBackwardEqualsTheTwoPhases() throws {
        let m = try Self.model()
        let batch = TrainingTestData.batch(vocab: 32, seed: 8)
        var separate = ModelGradients(config: m.config), combined = ModelGradients(config: m.config)
        let pass = try m.forward(batch, temperature: 0.8)
        let weights = pass.logprobs.map { $0.map { exp($0) } }  // weights that depend on the pass
        try m.backward(dLogprobs: weights, into: &separate)
        let again = try m.forwardBackward(batch, temperature: 0.8, into: &combined) { p in p.logprobs.map { $0.map { exp($0) } } }
        #expect(again.logprobs == pass.logprobs)
        #expect(combined == separate)
        #expect(combined.l2Norm > 0)
    }

    @Test func attentionBlockingDoesNotChangeResults() throws {
        let config = TrainingTestData.qwenTinyAllFeatures
        let weights = ModelWeights(config: config, seed: 12, initStd: 0.3)
        let batch = TrainingTestData.batch(vocab: 32, seed: 12)
        let w = TrainingTestData.lossWeights(for: batch, seed: 13)
        var results: [(ForwardResult, ModelGradients)] = []
        for blockRows in [1, 3, 64] {
            let m = try Transformer(weights: weights, attentionBlockRows: blockRows)
            var g = ModelGradients(config: config)
            let pass = try m.forward(batch)
            try m.backward(dLogprobs: w, into: &g)
            results.append((pass, g))
        }
        let (refPass, refGrads) = results[2]
        let scale = refGrads.values.map { abs($0) }.max() ?? 1
        for (pass, grads) in results.prefix(2) {
            for b in 0..<batch.count {
                for t in 0..<batch.inputs[b].count { #expect(abs(pass.logprobs[b][t] - refPass.logprobs[b][t]) <= 1e-5) }
            }
            for i in grads.values.indices { #expect(abs(grads.values[i] - refGrads.values[i]) <= 1e-5 * scale) }
        }
        #expect(throws: CermError.self) { try Transformer(weights: weights, attentionBlockRows: 0) }
    }

    @Test func attentionScoreEntriesCountTheCausalBlocks() {
        #expect(Transformer.attentionScoreEntries(length: 100) == 64 * 64 + 36 * 100)
        #expect(Transformer.attentionScoreEntries(length: 7, blockRows: 3) == 3 * 3 + 3 * 6 + 1 * 7)
        #expect(Transformer.attentionScoreEntries(length: 5, blockRows: 1) == 1 + 2 + 3 + 4 + 5)
        #expect(Transformer.attentionScoreEntries(length: 0) == 0)
    }

    @Test func scoredFromBatchShiftsTargets() {
        let batch = TokenBatch(sequences: [[10, 11, 12, 13], [5], [7, 8]], scoredFrom: [2, 0, 1])
        #expect(batch.inputs == [[10, 11, 12], [], [7]])
        #expect(batch.targets == [[-1, 12, 13], [], [8]])
        #expect(batch.tokenCount == 4)
        #expect(batch.scoredCount == 3)
    }

    @Test func emptyRowsAreAllowed() throws {
        let m = try Self.model()
        let pass = try m.forward(TokenBatch(inputs: [[], [3, 4]], targets: [[], [4, 5]]))
        #expect(pass.logprobs[0].isEmpty && pass.logprobs[1].count == 2)
        var g = ModelGradients(config: m.config)
        try m.backward(dLogprobs: [[], [1, 1]], into: &g)
        #expect(g.l2Norm > 0)

        let nothing = try m.forward(TokenBatch(inputs: [[]], targets: [[]]))
        #expect(nothing.logprobs == [[]])
        var untouched = ModelGradients(config: m.config)
        try m.backward(dLogprobs: [[]], into: &untouched)
        #expect(untouched.l2Norm == 0)
    }

    /// The last case computes the LM head in chunks of 5 of the 17 rows.
    @Test(arguments: [(TrainingTestData.qwenTinyAllFeatures, 64, Transformer.defaultLMHeadChunkFloats),
                      (TrainingTestData.llamaTiny, 64, Transformer.defaultLMHeadChunkFloats),
                      (TrainingTestData.qwenTinyAllFeatures, 5, Transformer.defaultLMHeadChunkFloats),
                      (TrainingTestData.llamaTiny, 64, 5 * 32 + 7)])
    func workspaceEstimateIsExact(config: TransformerConfig, blockRows: Int, lmHeadChunkFloats: Int) throws {
        // A fresh instance allocates each buffer exactly once at its first size.
        let m = try Transformer(weights: ModelWeights(config: config, seed: 1, initStd: 0.1), attentionBlockRows: blockRows,
                                lmHeadChunkFloats: lmHeadChunkFloats)
        let batch = TrainingTestData.batch(vocab: config.vocabSize, seed: 1)
        var g = ModelGradients(config: config)
        _ = try m.forward(batch)
        try m.backward(dLogprobs: TrainingTestData.lossWeights(for: batch, seed: 2), into: &g)
        // Buffers never used by this architecture keep their 0 capacity.
        #expect(m.workspace.allocatedFloats == Transformer.workspaceFloats(config: config, lengths: batch.inputs.map(\.count),
                                                                           attentionBlockRows: blockRows,
                                                                           lmHeadChunkFloats: lmHeadChunkFloats))
    }

    @Test func lmHeadChunkRowsChunkOnlyAboveTheThreshold() {
        #expect(Transformer.lmHeadChunkRows(tokens: 17, vocab: 32, chunkFloats: 17 * 32) == 17)
        #expect(Transformer.lmHeadChunkRows(tokens: 17, vocab: 32, chunkFloats: 17 * 32 - 1) == 16)
        #expect(Transformer.lmHeadChunkRows(tokens: 17, vocab: 32, chunkFloats: 5) == 1)
        // SmolLM2's vocabulary chunks at 341 rows; the default model's never does below 63,551 tokens.
        #expect(Transformer.lmHeadChunkRows(tokens: 600, vocab: 49_152, chunkFloats: Transformer.defaultLMHeadChunkFloats) == 341)
        #expect(Transformer.lmHeadChunkRows(tokens: 63_550, vocab: 264, chunkFloats: Transformer.defaultLMHeadChunkFloats) == 63_550)
    }

    /// The LM head in chunks of 4 rows (5 chunks of the 17 tokens, the last of one row; the
    /// first has no weighted row and is skipped in backward) against one product over all rows,
    /// and a training pass (no logits returned), whose chunked head runs over the 12 scored rows
    /// only, gathered 4 at a time. Each row's logits come from the same sgemm dot products
    /// either way, so log-probs, entropies (at scored positions; 0 at the others when gathered),
    /// logits, ∂L/∂xnFinal and with it every gradient but the LM head's are bit-identical;
    /// dW_lm sums the rows' outer products chunk by chunk, a different order, so it matches to
    /// float rounding (1e-5 of the largest entry).
    @Test(arguments: [TrainingTestData.tinyConfig(family: .qwen3, qkNorm: true, qkvBias: true, tied: false, vocab: 320),
                      TrainingTestData.tinyConfig(family: .llama, qkNorm: false, qkvBias: false, tied: true, vocab: 320)])
    func chunkedLMHeadMatchesOneProduct(config: TransformerConfig) throws {
        let weights = ModelWeights(config: config, seed: 21, initStd: 0.3)
        let whole = try Transformer(weights: weights)
        let chunked = try Transformer(weights: weights, lmHeadChunkFloats: 4 * 320)
        let batch = TrainingTestData.batch(vocab: 320, seed: 22)
        var w = TrainingTestData.lossWeights(for: batch, seed: 23)
        w[0] = [Float](repeating: 0, count: w[0].count)  // rows 0..<6: the first chunk has nothing to back-propagate
        for temperature: Float in [1, 0.7] {
            var gWhole = ModelGradients(config: config), gChunked = ModelGradients(config: config)
            let a = try whole.forward(batch, temperature: temperature, returnLogits: true)
            try whole.backward(dLogprobs: w, into: &gWhole)
            let b = try chunked.forward(batch, temperature: temperature, returnLogits: true)
            try chunked.backward(dLogprobs: w, into: &gChunked)
            #expect(b.logprobs == a.logprobs)
            #expect(b.entropy == a.entropy)
            #expect(b.logits == a.logits)
            var gGathered = ModelGradients(config: config)
            let c = try chunked.forward(batch, temperature: temperature)
            try chunked.backward(dLogprobs: w, into: &gGathered)
            #expect(c.logprobs == a.logprobs)
            for (b, row) in batch.targets.enumerated() {
                for (t, target) in row.enumerated() { #expect(c.entropy[b][t] == (target >= 0 ? a.entropy[b][t] : 0), "row \(b) pos \(t)") }
            }
            #expect(chunked.workspace.logits.capacity == 17 * 320)  // grown by returnLogits, never beyond

            let lmHead = config.tieEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight"
            let scale = gWhole.values.map { abs($0) }.max() ?? 1
            for g in [gChunked, gGathered] {
                for spec in weights.layout.specs {
                    let range = spec.range
                    if spec.name == lmHead {
                        for i in range { #expect(abs(g.values[i] - gWhole.values[i]) <= 1e-5 * scale, "\(spec.name)[\(i - spec.offset)]") }
                    } else {
                        #expect(Array(g.values[range]) == Array(gWhole.values[range]), "\(spec.name)")
                    }
                }
                #expect(g.l2Norm > 0)
            }
        }
        // Training passes keep one chunk of logits, not all of them.
        let fresh = try Transformer(weights: weights, lmHeadChunkFloats: 4 * 320)
        var g = ModelGradients(config: config)
        _ = try fresh.forward(batch)
        try fresh.backward(dLogprobs: w, into: &g)
        #expect(fresh.workspace.logits.capacity == 4 * 320)
        #expect(throws: CermError.self) { try Transformer(weights: weights, lmHeadChunkFloats: 0) }
    }

    @Test func weightsOfAnotherConfigAreRejected() throws {
        let m = try Self.model()
        m.weights = ModelWeights(config: TrainingTestData.llamaTiny)
        #expect(throws: CermError.self) { try m.forward(TokenBatch(inputs: [[1]], targets: [[2]])) }
    }

    @Test func invalidInputsAreRejectedWithTheirPosition() throws {
        let m = try Self.model()
        #expect(throws: CermError.invalid("Transformer.forward: row 1 position 2: token 32 outside vocabulary 0..<32")) {
            try m.forward(TokenBatch(inputs: [[1], [1, 2, 32]], targets: [[1], [1, 2, 3]]))
        }
        #expect(throws: CermError.invalid("Transformer.forward: row 0 position 0: target 40 outside vocabulary 0..<32")) {
            try m.forward(TokenBatch(inputs: [[1]], targets: [[40]]))
        }
        #expect(throws: CermError.invalid("Transformer.forward: row 0 has 17 tokens, max_seq_len is 16")) {
            try m.forward(TokenBatch(inputs: [[TokenID](repeating: 1, count: 17)], targets: [[TokenID](repeating: 1, count: 17)]))
        }
        #expect(throws: CermError.invalid("Transformer.forward: row 0 has 2 inputs but 1 targets")) {
            try m.forward(TokenBatch(inputs: [[1, 2]], targets: [[1]]))
        }
        #expect(throws: CermError.invalid("Transformer.forward: temperature must be positive and finite, got 0.0")) {
            try m.forward(TokenBatch(inputs: [[1]], targets: [[1]]), temperature: 0)
        }
        var g = ModelGradients(config: m.config)
        #expect(throws: CermError.invalid("Transformer.backward: no retained forward pass (call forward first; backward consumes it)")) {
            try m.backward(dLogprobs: [[1]], into: &g)
        }
        _ = try m.forward(TokenBatch(inputs: [[1, 2]], targets: [[2, 3]]))
        #expect(throws: CermError.invalid("Transformer.backward: dLogprobs row 0 has 1 entries, the pass row has 2")) {
            try m.backward(dLogprobs: [[1]], into: &g)
        }
        #expect(throws: CermError.invalid("Transformer.backward: dLogprobs[0][1] is not finite (nan)")) {
            try m.backward(dLogprobs: [[1, .nan]], into: &g)
        }
        var otherGrads = ModelGradients(config: TrainingTestData.llamaTiny)
        #expect(throws: CermError.invalid("Transformer.backward: gradients were made for a different model config")) {
            try m.backward(dLogprobs: [[1, 1]], into: &otherGrads)
        }
    }

    /// The same at SmolLM2's widths (hidden 576, vocabulary 49,152; one layer), where the sgemms
    /// run OpenBLAS's real blocking: 51 rows, the first 10 a prompt, so the chunked head gathers
    /// the 41 scored rows in chunks of 25 and 16.
    @Test func chunkedLMHeadIsExactAtSmolLM2Widths() throws {
        let config = TransformerConfig(family: .llama, hiddenSize: 576, layers: 1, heads: 9, kvHeads: 3, headDim: 64, ffnSize: 64,
                                       vocabSize: 49_152, maxSeqLen: 256, ropeTheta: 100_000, rmsNormEps: 1e-5,
                                       qkNorm: false, qkvBias: false, tieEmbeddings: true)
        // Uniform ±0.1, a block of 1,000,003 repeated (28 M draws are slow in a debug build; the
        // block's length is prime, so no two embedding rows are alike).
        var weights = ModelWeights(config: config)
        let block = TrainingTestData.floats(1_000_003, seed: 31, scale: 0.1)
        var values: [Float] = []
        values.reserveCapacity(weights.values.count)
        while values.count < weights.values.count { values.append(contentsOf: block.prefix(weights.values.count - values.count)) }
        weights.values = values
        let tokens = TrainingTestData.ints(52, below: config.vocabSize, seed: 32)
        let batch = TokenBatch(sequences: [tokens], scoredFrom: [11])
        let w = [TrainingTestData.floats(51, seed: 33).enumerated().map { $0.offset < 10 ? 0 : $0.element }]
        var passes: [ForwardResult] = [], grads: [ModelGradients] = []
        for chunkFloats in [Transformer.defaultLMHeadChunkFloats, 25 * 49_152] {
            let m = try Transformer(weights: weights, lmHeadChunkFloats: chunkFloats)
            var g = ModelGradients(config: config)
            passes.append(try m.forward(batch))
            try m.backward(dLogprobs: w, into: &g)
            grads.append(g)
        }
        #expect(passes[1].logprobs == passes[0].logprobs)
        #expect(passes[1].entropy[0][10...] == passes[0].entropy[0][10...])
        #expect(passes[1].entropy[0][..<10].allSatisfy { $0 == 0 } && passes[0].entropy[0][..<10].allSatisfy { $0 > 0 })
        // Every gradient after the (tied) embedding is bit-identical; the embedding within rounding.
        let embed = try #require(weights.layout.spec("model.embed_tokens.weight"))
        grads[0].values.withUnsafeBufferPointer { a in
            grads[1].values.withUnsafeBufferPointer { b in
                let rest = embed.offset + embed.count
                #expect(memcmp(a.baseAddress! + rest, b.baseAddress! + rest, (a.count - rest) * 4) == 0)
                var scale: Float = 0, diff: Float = 0
                for i in embed.offset..<rest {
                    scale = max(scale, abs(a[i]))
                    diff = max(diff, abs(a[i] - b[i]))
                }
                #expect(diff <= 1e-5 * scale, "embed_tokens: largest difference \(diff), largest entry \(scale)")
                #expect(scale > 0)
            }
        }
    }

    /// SFT end to end: a few AdamW steps on one sequence must raise its log-likelihood a lot.
    @Test func supervisedStepsLearnASequence() throws {
        let config = TrainingTestData.llamaTiny
        let m = try Transformer(weights: ModelWeights(config: config, seed: 11, initStd: 0.02))
        var adam = AdamW(layout: m.weights.layout, weightDecay: 0)
        var grads = ModelGradients(config: config)
        let batch = TokenBatch(sequences: [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]], scoredFrom: [1])
        let n = Float(batch.scoredCount)
        func meanNLL() throws -> Float { -(try m.forward(batch).logprobs[0].reduce(0, +)) / n }
        let before = try meanNLL()
        #expect(abs(before - log(32)) < 0.05)  // near-uniform at init
        for _ in 0..<30 {
            _ = try m.forward(batch)
            try m.backward(dLogprobs: [[Float](repeating: -1 / n, count: 9)], into: &grads)
            grads.clipGlobalNorm(maxNorm: 1)
            try adam.step(weights: &m.weights, gradients: grads, learningRate: 1e-2)
            grads.zero()
        }
        let after = try meanNLL()
        #expect(after < 0.25 * before, "mean NLL \(before) → \(after)")
    }
}

@Suite struct ConfigValidationTests {
    @Test func unrunnableConfigsAreRejectedByName() throws {
        var odd = TrainingTestData.llamaTiny
        odd.headDim = 5
        #expect(throws: CermError.invalid("model config: head_dim must be even for RoPE, got 5")) {
            try Transformer(weights: ModelWeights(config: odd))
        }
        var gqa = TrainingTestData.llamaTiny
        gqa.kvHeads = 3
        #expect(throws: CermError.invalid("model config: heads (4) must be a multiple of kv_heads (3)")) { try gqa.validate() }
        var empty = TrainingTestData.llamaTiny
        empty.ffnSize = 0
        #expect(throws: CermError.invalid("model config: ffn_size must be at least 1, got 0")) { try empty.validate() }
        var eps = TrainingTestData.llamaTiny
        eps.rmsNormEps = 0
        #expect(throws: CermError.invalid("model config: rms_norm_eps must be positive, got 0.0")) { try eps.validate() }
        try TrainingTestData.qwenTinyAllFeatures.validate()
    }
}
