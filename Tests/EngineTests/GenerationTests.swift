import CKernels
import COpenBLAS
@testable import Engine
import Foundation
import Shared
import Testing

@Suite("Generation")
struct GenerationTests {
    typealias Models = GenerationTestModels
    static let families: [ModelFamily] = [.llama, .qwen2, .qwen3]

    @Test("prefill and step-by-step decode logits equal the naive full forward", arguments: families)
    func cachedLogitsMatchReference(family: ModelFamily) throws {
        let generator = try Models.generator(family)
        let tokens = Models.tokens("The quick brown fox!") + [ByteTokenizer.Special.sep.rawValue, 7, 200]
        let reference = try ReferenceForward.logits(config: generator.config, parameters: generator.parameters, tokens: tokens)
        let prefilled = try generator.logits(tokens: tokens)
        let stepwise = try generator.stepwiseLogits(tokens: tokens)
        var spread: Float = 0
        for position in tokens.indices {
            #expect(Models.maxAbsDifference(prefilled[position], reference[position]) < 1e-5)
            #expect(Models.maxAbsDifference(stepwise[position], reference[position]) < 1e-5)
            spread = max(spread, (reference[position].max() ?? 0) - (reference[position].min() ?? 0))
        }
        // The logits must be informative for the comparison to mean anything.
        #expect(spread > 1)
    }

    @Test("greedy generation is the argmax of the naive forward, with its log-probabilities", arguments: families)
    func greedyMatchesReference(family: ModelFamily) throws {
        let generator = try Models.generator(family)
        let prompt = Models.tokens("Hello")
        let result = try generator.generate(requests: [
            GenerationRequest(prompt: prompt, seed: 1, maxNewTokens: 10, temperature: 0)])[0]
        #expect(!result.tokens.isEmpty)
        let context = prompt + result.tokens
        let reference = try ReferenceForward.logits(config: generator.config, parameters: generator.parameters,
                                                    tokens: Array(context.dropLast()))
        for (j, token) in result.tokens.enumerated() {
            let row = reference[prompt.count - 1 + j]
            #expect(token == Models.argmax(row))
            #expect(abs(Double(result.logProbs[j]) - Models.logSoftmax(row)[Int(token)]) < 1e-5)
        }
        if result.finishReason == .length { #expect(result.tokens.count == 10) }
    }

    @Test("sampled tokens depend only on the seed")
    func seedDeterminism() throws {
        let generator = try Models.generator(.qwen3)
        let request = GenerationRequest(prompt: Models.tokens("abc"), seed: 99, maxNewTokens: 12, temperature: 1.3)
        let first = try generator.generate(requests: [request])[0]
        let second = try generator.generate(requests: [request])[0]
        #expect(first == second)
        var other = request
        other.seed = 100
        #expect(try generator.generate(requests: [other])[0].tokens != first.tokens)
    }

    @Test("a request's output is bitwise the same alone or in batches of 3 and 8", arguments: families)
    func batchInvariance(family: ModelFamily) throws {
        let generator = try Models.generator(family)
        let target = GenerationRequest(prompt: Models.tokens("Rate: "), seed: 5, maxNewTokens: 16, temperature: 0.9, topP: 0.95)
        let companions = (0..<7).map { i in
            GenerationRequest(prompt: Models.tokens(String(repeating: "xy", count: i + 1) + "?"), seed: UInt64(50 + i),
                              maxNewTokens: 3 + 4 * i, temperature: i % 3 == 0 ? 0 : 1.1, topP: i % 2 == 0 ? 1 : 0.8)
        }
        let alone = try generator.generate(requests: [target])[0]
        let inThree = try generator.generate(requests: [companions[0], target, companions[1]])[1]
        let inEight = try generator.generate(requests: Array(companions[2...6]) + [target, companions[0], companions[1]])[5]
        #expect(alone.tokens == inThree.tokens)
        #expect(alone.tokens == inEight.tokens)
        #expect(alone.logProbs == inThree.logProbs)
        #expect(alone.logProbs == inEight.logProbs)
        #expect(alone.tokens.count > 3)
    }

    /// The premise of batch invariance: every row of the engine's matrix product has the same
    /// bits whatever the number of rows, the row's position, the thread count and the kernel variant.
    @Test("InvariantMatmul rows are bitwise independent of row count, position, threads and kernel")
    func matmulRowInvariance() {
        let shapes = [(n: 48, k: 32), (n: 264, k: 32), (n: 37, k: 53), (n: 512, k: 512), (n: 96, k: 1376)]
        for shape in shapes {
            let maxRows = 19
            let b = (0 ..< shape.n * shape.k).map { Float(cos(Double($0) * 0.11)) }
            let target = (0 ..< shape.k).map { Float(sin(Double($0) * 0.37)) }
            let bias = (0 ..< shape.n).map { Float($0) * 0.01 }
            func targetRow(rows m: Int, at position: Int, threads: Int, variant: Int) -> [Float] {
                var a = (0 ..< m * shape.k).map { Float(sin(Double($0 + 31 * m) * 0.913)) }
                a.replaceSubrange(position * shape.k ..< (position + 1) * shape.k, with: target)
                var c = [Float](repeating: 0, count: m * shape.n)
                for row in 0..<m { c.replaceSubrange(row * shape.n ..< (row + 1) * shape.n, with: bias) }
                a.withUnsafeBufferPointer { pa in
                    b.withUnsafeBufferPointer { pb in
                        c.withUnsafeMutableBufferPointer { pc in
                            InvariantMatmul.multiply(m: m, n: shape.n, k: shape.k, a: pa.baseAddress!, lda: shape.k,
                                                     b: pb.baseAddress!, ldb: shape.k, c: pc.baseAddress!, ldc: shape.n,
                                                     accumulate: true, threads: threads, forceVariant: variant)
                        }
                    }
                }
                return Array(c[position * shape.n ..< (position + 1) * shape.n])
            }
            let expected = targetRow(rows: 1, at: 0, threads: 1, variant: -1)
            var mismatches = 0
            // Every variant this CPU has (AVX2 and AVX-512 tile rows in 3s and 4s), every tile position.
            for variant in 0...InvariantMatmul.kernelVariant {
                for m in [1, 2, 3, 4, 5, 8, 13, 19] where m <= maxRows {
                    for position in Set([0, m / 2, m - 1]) {
                        for threads in [1, 2] where targetRow(rows: m, at: position, threads: threads, variant: variant) != expected {
                            mismatches += 1
                        }
                    }
                }
            }
            #expect(mismatches == 0, "n=\(shape.n) k=\(shape.k)")
            // And it is the product: compare with a Double-accumulated reference.
            var worst: Float = 0
            for j in 0..<shape.n {
                var sum = Double(bias[j])
                for p in 0..<shape.k { sum += Double(target[p]) * Double(b[j * shape.k + p]) }
                worst = max(worst, abs(Float(sum) - expected[j]))
            }
            #expect(worst < 1e-3 * Float(shape.k).squareRoot() / 10)
        }
    }

    @Test("attention kernel variants agree bitwise, with and without a prefix segment")
    func attentionVariantsAgree() {
        for headDim in [8, 64, 40, 80] {
            let heads = 4, kvHeads = 2, kvDim = kvHeads * headDim, keys = 151, prefixLength = 70
            let q = (0 ..< heads * headDim).map { Float(sin(Double($0) * 0.7)) }
            let k = (0 ..< keys * kvDim).map { Float(cos(Double($0) * 0.37)) }
            let v = (0 ..< keys * kvDim).map { Float(sin(Double($0) * 0.19 + 1)) }
            // Keys transposed per segment: [kvDim, capacity] with capacity = segment length + 3.
            func transposedKeys(_ range: Range<Int>) -> [Float] {
                let capacity = range.count + 3
                var kt = [Float](repeating: .nan, count: kvDim * capacity)
                for (column, t) in range.enumerated() {
                    for f in 0..<kvDim { kt[f * capacity + column] = k[t * kvDim + f] }
                }
                return kt
            }
            func run(variant: Int, split: Bool) -> [Float] {
                var out = [Float](repeating: .nan, count: heads * headDim)
                var scores = [Float](repeating: 0, count: 2 * 160)
                let cut = split ? prefixLength : 0
                let prefixKT = transposedKeys(0 ..< cut), ownKT = transposedKeys(cut ..< keys)
                let prefixV = Array(v[0 ..< cut * kvDim]), ownV = Array(v[cut * kvDim ..< keys * kvDim])
                cerm_attend_row(Int32(heads), Int32(kvHeads), Int32(headDim), Int32(keys), q, &out,
                                split ? prefixKT : nil, split ? prefixV : nil, Int32(cut), Int32(cut + 3),
                                ownKT, ownV, Int32(keys - cut + 3), Int32(kvDim), 0.3, &scores, 160, Int32(variant))
                return out
            }
            let expected = run(variant: 0, split: false)
            #expect(!expected.contains { $0.isNaN })
            // Against a Double computation of the same attention (no split).
            var worst = 0.0
            for head in 0..<heads {
                let g = head / (heads / kvHeads)
                var logits = [Double](repeating: 0, count: keys)
                for t in 0..<keys {
                    var dot = 0.0
                    for d in 0..<headDim { dot += Double(q[head * headDim + d]) * Double(k[t * kvDim + g * headDim + d]) }
                    logits[t] = dot * 0.3
                }
                let maximum = logits.max()!
                let weights = logits.map { Foundation.exp($0 - maximum) }
                let total = weights.reduce(0, +)
                for d in 0..<headDim {
                    var sum = 0.0
                    for t in 0..<keys { sum += weights[t] / total * Double(v[t * kvDim + g * headDim + d]) }
                    worst = max(worst, abs(sum - Double(expected[head * headDim + d])))
                }
            }
            #expect(worst < 1e-5)
            for variant in 0...InvariantMatmul.kernelVariant {
                #expect(run(variant: variant, split: false) == expected, "headDim \(headDim) variant \(variant)")
                #expect(run(variant: variant, split: true) == expected, "headDim \(headDim) variant \(variant) split")
            }
        }
    }

    @Test("continuing a shared prefix equals generating from the full prompt", arguments: families)
    func sharedPrefixEquivalence(family: ModelFamily) throws {
        let generator = try Models.generator(family)
        let prefixTokens = Models.tokens("Query: is 2+2=4? Criteria: correctness.")
        let suffixes = [Models.tokens(" R: yes"), Models.tokens(" R: no, it is five"), [], Models.tokens("!")]
        let requests = suffixes.enumerated().map { i, suffix in
            GenerationRequest(prompt: suffix, seed: UInt64(10 + i), maxNewTokens: 9, temperature: i == 0 ? 0 : 1, topP: 0.9)
        }
        let prefix = try generator.prefill(prefix: prefixTokens)
        #expect(prefix.length == prefixTokens.count)
        let continued = try generator.generate(continuing: prefix, requests: requests)
        let fromScratch = try generator.generate(requests: requests.map {
            var full = $0
            full.prompt = prefixTokens + $0.prompt
            return full
        })
        for (a, b) in zip(continued, fromScratch) {
            #expect(a.tokens == b.tokens)
            #expect(a.finishReason == b.finishReason)
            #expect(Models.maxAbsDifference(a.logProbs, b.logProbs) < 1e-5)
            // Stronger, by construction of the batch-invariant kernels: identical bits.
            #expect(a.logProbs == b.logProbs)
        }
    }

    @Test("groups with different prefixes batch together and equal their separate runs")
    func prefixGroups() throws {
        let generator = try Models.generator(.qwen3)
        let first = try generator.prefill(prefix: Models.tokens("Criteria set one: brevity."))
        let second = try generator.prefill(prefix: Models.tokens("Set two"))
        let requestsA = (0..<3).map { GenerationRequest(prompt: Models.tokens("R\($0):"), seed: UInt64($0), maxNewTokens: 6 + $0) }
        let requestsB = (0..<2).map { GenerationRequest(prompt: $0 == 0 ? [] : [65], seed: UInt64(9 + $0), maxNewTokens: 7, topP: 0.9) }
        let requestsC = [GenerationRequest(prompt: Models.tokens("no prefix"), seed: 4, maxNewTokens: 5, temperature: 0)]
        let grouped = try generator.generate(groups: [
            PrefixedGenerations(prefix: first, requests: requestsA), PrefixedGenerations(prefix: second, requests: requestsB),
            PrefixedGenerations(prefix: nil, requests: requestsC),
        ])
        #expect(grouped.map(\.count) == [3, 2, 1])
        #expect(grouped[0] == (try generator.generate(continuing: first, requests: requestsA)))
        #expect(grouped[1] == (try generator.generate(continuing: second, requests: requestsB)))
        #expect(grouped[2] == (try generator.generate(requests: requestsC)))

        let scored = try generator.score(groups: [
            PrefixedScorings(prefix: first, requests: zip(requestsA, grouped[0]).map { ScoringRequest(prompt: $0.prompt, tokens: $1.tokens) }),
            PrefixedScorings(prefix: second, requests: zip(requestsB, grouped[1]).map { ScoringRequest(prompt: $0.prompt, tokens: $1.tokens) }),
        ])
        #expect(scored[0] == grouped[0].map(\.logProbs))
        #expect(scored[1] == grouped[1].map(\.logProbs))
    }

    @Test("teacher-forced scores reproduce behaviour log-probabilities and the reference", arguments: families)
    func scoring(family: ModelFamily) throws {
        let generator = try Models.generator(family)
        let prefixTokens = Models.tokens("Shared context. ")
        let prefix = try generator.prefill(prefix: prefixTokens)
        let requests = [
            GenerationRequest(prompt: Models.tokens("A:"), seed: 3, maxNewTokens: 8, temperature: 0.7),
            GenerationRequest(prompt: [], seed: 4, maxNewTokens: 6, temperature: 1),
            GenerationRequest(prompt: Models.tokens("Longer B:"), seed: 5, maxNewTokens: 7, temperature: 0),
        ]
        let generated = try generator.generate(continuing: prefix, requests: requests)
        let scored = try generator.score(zip(requests, generated).map {
            ScoringRequest(prompt: $0.prompt, tokens: $1.tokens, temperature: $0.temperature)
        }, continuing: prefix)
        for (result, scores) in zip(generated, scored) {
            #expect(scores.count == result.tokens.count)
            #expect(Models.maxAbsDifference(scores, result.logProbs) < 1e-6)
        }
        // Without a prefix, against the naive forward at temperature 0.7.
        let prompt = prefixTokens + requests[0].prompt
        let single = try generator.scoreContinuation(prompt: prompt, tokens: generated[0].tokens, temperature: 0.7)
        let reference = try ReferenceForward.logits(config: generator.config, parameters: generator.parameters,
                                                    tokens: prompt + generated[0].tokens)
        for (j, token) in generated[0].tokens.enumerated() {
            let expected = Models.logSoftmax(reference[prompt.count - 1 + j], temperature: 0.7)[Int(token)]
            #expect(abs(Double(single[j]) - expected) < 1e-5)
        }
    }

    @Test("stop sequences end generation and stay in the output")
    func stopSequences() throws {
        let generator = try Models.generator(.llama)
        let base = GenerationRequest(prompt: Models.tokens("Say:"), seed: 8, maxNewTokens: 24, temperature: 0)
        let free = try generator.generate(requests: [base])[0]
        // Pick two consecutive byte tokens from the middle of the free output as the stop string.
        guard let start = (2 ..< free.tokens.count - 1).first(where: { free.tokens[$0] < 256 && free.tokens[$0 + 1] < 256 })
        else {
            Issue.record("free greedy output \(free.tokens) has no two consecutive byte tokens")
            return
        }
        let stop = [UInt8(free.tokens[start]), UInt8(free.tokens[start + 1])]
        let firstEnd = (1 ..< free.tokens.count).first { free.tokens[$0 - 1] == TokenID(stop[0]) && free.tokens[$0] == TokenID(stop[1]) }!
        var stopping = base
        stopping.stopSequences = [[0xFF, 0xFE, 0xFD], stop]
        let stopped = try generator.generate(requests: [stopping, base])
        #expect(stopped[0].finishReason == .stopSequence)
        #expect(stopped[0].tokens == Array(free.tokens[...firstEnd]))
        #expect(stopped[0].logProbs == Array(free.logProbs[...firstEnd]))
        #expect(stopped[1] == free)
    }

    @Test("finish reasons: eos, length and the context limit")
    func finishReasons() throws {
        // A model that always prefers EOS: layers contribute nothing, every embedding has a positive
        // first coordinate, and only the EOS row of the LM head reads it.
        let config = Models.config(.qwen2)
        let layout = ParameterLayout(config)
        var parameters = Models.parameters(config)
        for spec in layout.specs where spec.name.hasSuffix("o_proj.weight") || spec.name.hasSuffix("down_proj.weight") || spec.name == "lm_head.weight" {
            for i in spec.offset ..< spec.offset + spec.count { parameters[i] = 0 }
        }
        let embed = layout.spec("model.embed_tokens.weight")!, head = layout.spec("lm_head.weight")!
        for token in 0..<config.vocabSize { parameters[embed.offset + token * config.hiddenSize] = 3 }
        parameters[head.offset + Int(ByteTokenizer.Special.eos.rawValue) * config.hiddenSize] = 10
        let eosGenerator = try Generator(config: config, parameters: parameters)
        let eos = try eosGenerator.generate(requests: [GenerationRequest(prompt: [1, 2], seed: 0, maxNewTokens: 5, temperature: 0)])[0]
        #expect(eos.tokens == [ByteTokenizer.Special.eos.rawValue])
        #expect(eos.finishReason == .eos)

        let generator = try Models.generator(.llama, maxSeqLen: 16)
        let results = try generator.generate(requests: [
            GenerationRequest(prompt: Models.tokens("abc"), seed: 0, maxNewTokens: 5, temperature: 0),
            GenerationRequest(prompt: Models.tokens("0123456789ab"), seed: 0, maxNewTokens: 50, temperature: 1),
            GenerationRequest(prompt: Models.tokens("abc"), seed: 0, maxNewTokens: 0, temperature: 1),
        ])
        #expect(results[0].tokens.count == 5 || results[0].finishReason == .eos)
        if !results[1].tokens.contains(ByteTokenizer.Special.eos.rawValue) {
            // 12 prompt positions + 4 fed tokens fill max_seq_len 16; the 5th token is still sampled,
            // and the context, not the budget of 50, ended it.
            #expect(results[1].tokens.count == 5)
            #expect(results[1].finishReason == .context)
        }
        #expect(results[2] == GenerationResult(tokens: [], logProbs: [], finishReason: .length))
    }

    @Test("top-p → 0 equals greedy decoding")
    func topPZeroIsGreedy() throws {
        let generator = try Models.generator(.qwen3)
        let prompt = Models.tokens("Why?")
        let greedy = try generator.generate(requests: [GenerationRequest(prompt: prompt, seed: 1, maxNewTokens: 12, temperature: 0)])[0]
        let nucleus = try generator.generate(requests: [GenerationRequest(prompt: prompt, seed: 77, maxNewTokens: 12, temperature: 1, topP: 1e-7)])[0]
        #expect(greedy == nucleus)
    }

    @Test("the decode loop reuses the preallocated workspace")
    func workspaceReuse() throws {
        let generator = try Models.generator(.llama)
        let requests = (0..<4).map { GenerationRequest(prompt: Models.tokens("p\($0)"), seed: UInt64($0), maxNewTokens: 20) }
        _ = try generator.generate(requests: requests)
        let allocations = generator.workspaceAllocationCount
        #expect(allocations >= 1)
        // 4 sequences × up to 20 steps ran, and a second call of the same shape allocates nothing new.
        _ = try generator.generate(requests: requests)
        _ = try generator.generate(requests: Array(requests.prefix(2)))
        #expect(generator.workspaceAllocationCount == allocations)
    }

    @Test("invalid input is rejected with the offending request named")
    func validation() throws {
        let generator = try Models.generator(.llama, maxSeqLen: 16)
        #expect(throws: GenerationError.emptyPrompt(request: 1)) {
            try generator.generate(requests: [GenerationRequest(prompt: [1], seed: 0, maxNewTokens: 1), GenerationRequest(prompt: [], seed: 0, maxNewTokens: 1)])
        }
        #expect(throws: GenerationError.invalidToken(request: 0, position: 1, token: 999, vocabSize: 264)) {
            try generator.generate(requests: [GenerationRequest(prompt: [1, 999], seed: 0, maxNewTokens: 1)])
        }
        #expect(throws: GenerationError.contextTooLong(request: 0, length: 17, maxSeqLen: 16)) {
            try generator.generate(requests: [GenerationRequest(prompt: Array(repeating: 65, count: 17), seed: 0, maxNewTokens: 1)])
        }
        #expect(throws: GenerationError.invalidSampling(request: 0, detail: "topP 0.0 not in (0, 1]")) {
            try generator.generate(requests: [GenerationRequest(prompt: [1], seed: 0, maxNewTokens: 1, topP: 0)])
        }
        #expect(throws: GenerationError.parameterCount(expected: generator.layout.totalCount, actual: 3)) {
            try Generator(config: generator.config, parameters: [1, 2, 3])
        }
        let prefix = try generator.prefill(prefix: [1, 2])
        try generator.setParameters(generator.parameters)
        #expect(throws: GenerationError.self) {
            try generator.generate(continuing: prefix, requests: [GenerationRequest(prompt: [3], seed: 0, maxNewTokens: 1)])
        }
    }
}
