import Foundation
import Shared

/// Throughput of batched generation, compared with the machine's `sgemm` rate.
///
/// Run it from a release build (e.g. `CERM_BENCH=1 swift test -c release -Xswiftc -enable-testing
/// --filter GenerationBenchmarkRun`); debug builds are an order of magnitude slower.
public enum GenerationBenchmark {
    /// One batch size's result.
    public struct Measurement: Sendable, CustomStringConvertible {
        public let batch: Int
        public let generatedTokens: Int
        public let seconds: Double
        /// Generated tokens per second (prefill time included).
        public var tokensPerSecond: Double { Double(generatedTokens) / seconds }
        /// Useful floating-point work of the whole call (prefill + decode) per second, in GFLOP/s.
        public let gflops: Double
        /// ``gflops`` over the reference `sgemm` rate.
        public let fractionOfSgemm: Double

        public var description: String {
            String(format: "batch %4d: %8.1f tokens/s  %6.1f GFLOP/s  %5.1f%% of sgemm", batch, tokensPerSecond, gflops,
                   100 * fractionOfSgemm)
        }
    }

    /// The whole benchmark.
    public struct Report: Sendable, CustomStringConvertible {
        /// OpenBLAS `sgemm` rate on 1024³ with the current OpenBLAS thread count, GFLOP/s.
        public let sgemmGFLOPS: Double
        /// ``InvariantMatmul`` rate on `[32, 512] · [1376, 512]ᵀ`, GFLOP/s.
        public let invariantMatmulGFLOPS: Double
        public let kernelVariant: Int
        public let measurements: [Measurement]
        /// ``Generator/prefill(prefix:)`` of a 1024-token prefix, tokens per second.
        public let longPrefillTokensPerSecond: Double

        public var description: String {
            var lines = [String(format: "sgemm 1024^3: %.1f GFLOP/s (OpenBLAS threads %d); invariant matmul [32x512]x[512x1376]: %.1f GFLOP/s (kernel variant %d)",
                                sgemmGFLOPS, BLAS.threads, invariantMatmulGFLOPS, kernelVariant)]
            lines += measurements.map(\.description)
            lines.append(String(format: "prefill of a 1024-token shared prefix: %.0f tokens/s", longPrefillTokensPerSecond))
            return lines.joined(separator: "\n")
        }
    }

    /// The benchmark model: hidden 512, 4 layers, 8 heads, 4 KV heads, FFN 1376, byte vocabulary.
    public static func benchmarkConfig(maxSeqLen: Int = 128) -> TransformerConfig {
        TransformerConfig(family: .qwen3, hiddenSize: 512, layers: 4, heads: 8, kvHeads: 4, headDim: 64, ffnSize: 1376,
                          vocabSize: ByteTokenizer.vocabularySize, maxSeqLen: maxSeqLen, ropeTheta: 10_000,
                          rmsNormEps: 1e-6, qkNorm: true, qkvBias: false, tieEmbeddings: true)
    }

    /// Deterministic pseudo-random weights (uniform, scaled by 1/sqrt(fan-in); norms 1).
    public static func randomParameters(_ config: TransformerConfig, seed: UInt64) -> [Float] {
        let layout = ParameterLayout(config)
        var values = [Float](repeating: 0, count: layout.totalCount)
        var counter: UInt64 = 0
        for spec in layout.specs {
            let isNorm = spec.name.hasSuffix("norm.weight")
            let scale = spec.shape.count == 2 ? 1.7 / Float(spec.shape[1]).squareRoot() : 0
            for i in spec.offset ..< spec.offset + spec.count {
                counter += 1
                values[i] = isNorm ? 1 : scale * Float(2 * CounterRNG.uniform(seed: seed, index: counter) - 1)
            }
        }
        return values
    }

    /// Generates `newTokens` tokens (temperature 1) after `promptLength`-token prompts at each batch size.
    public static func run(batches: [Int] = [1, 8, 32, 128], promptLength: Int = 64, newTokens: Int = 64) throws -> Report {
        let config = benchmarkConfig(maxSeqLen: promptLength + newTokens)
        let generator = try Generator(config: config, parameters: randomParameters(config, seed: 1))
        let sgemm = sgemmRate()
        let invariant = invariantMatmulRate()
        var measurements: [Measurement] = []
        for batch in batches {
            var requests: [GenerationRequest] = []
            for i in 0..<batch {
                var prompt: [TokenID] = []
                for position in 0..<promptLength { prompt.append(TokenID((position * 7 + i * 13) % 256)) }
                requests.append(GenerationRequest(prompt: prompt, seed: UInt64(i), maxNewTokens: newTokens, temperature: 1))
            }
            _ = try generator.generate(requests: Array(requests.prefix(max(1, batch / 4))))  // warm-up
            let start = DispatchTime.now().uptimeNanoseconds
            let results = try generator.generate(requests: requests)
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            var flops = 0.0
            for result in results {
                // Prompt rows plus every fed generated token (the last sampled token is not fed).
                let fed = promptLength + max(0, result.tokens.count - 1)
                for position in 0..<fed { flops += flopsPerToken(config, contextLength: position + 1, wantsLogits: position >= promptLength - 1) }
            }
            let gflops = flops / seconds / 1e9
            measurements.append(Measurement(batch: batch, generatedTokens: results.reduce(0) { $0 + $1.tokens.count },
                                            seconds: seconds, gflops: gflops, fractionOfSgemm: gflops / sgemm))
        }
        let longConfig = benchmarkConfig(maxSeqLen: 1024)
        let longGenerator = try Generator(config: longConfig, parameters: randomParameters(longConfig, seed: 1))
        var prefix: [TokenID] = []
        for position in 0..<1024 { prefix.append(TokenID(position * 31 % 256)) }
        let start = DispatchTime.now().uptimeNanoseconds
        _ = try longGenerator.prefill(prefix: prefix)
        let prefillSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return Report(sgemmGFLOPS: sgemm, invariantMatmulGFLOPS: invariant, kernelVariant: InvariantMatmul.kernelVariant,
                      measurements: measurements, longPrefillTokensPerSecond: 1024 / prefillSeconds)
    }

    /// Multiply-adds ×2 of one token row: projections, attention over `contextLength` keys, LM head.
    static func flopsPerToken(_ c: TransformerConfig, contextLength: Int, wantsLogits: Bool) -> Double {
        let projections = c.hiddenSize * (c.qDim + 2 * c.kvDim) + c.qDim * c.hiddenSize + 3 * c.hiddenSize * c.ffnSize
        let attention = 2 * c.heads * c.headDim * contextLength
        let head = wantsLogits ? c.hiddenSize * c.vocabSize : 0
        return 2 * Double(c.layers * (projections + attention) + head)
    }

    static func sgemmRate() -> Double {
        let n = 1024
        let a = [Float](repeating: 0.5, count: n * n), b = [Float](repeating: 0.25, count: n * n)
        var c = [Float](repeating: 0, count: n * n)
        var best = Double.infinity
        for _ in 0..<5 {
            let start = DispatchTime.now().uptimeNanoseconds
            try? BLAS.sgemm(transB: .transpose, m: n, n: n, k: n, a: a, b: b, c: &c)
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return 2 * Double(n * n * n) / best / 1e9
    }

    static func invariantMatmulRate() -> Double {
        let m = 32, n = 1376, k = 512
        let a = [Float](repeating: 0.5, count: m * k), b = [Float](repeating: 0.25, count: n * k)
        var c = [Float](repeating: 0, count: m * n)
        var best = Double.infinity
        for _ in 0..<20 {
            let start = DispatchTime.now().uptimeNanoseconds
            a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    c.withUnsafeMutableBufferPointer { pc in
                        InvariantMatmul.multiply(m: m, n: n, k: k, a: pa.baseAddress!, lda: k, b: pb.baseAddress!, ldb: k,
                                                 c: pc.baseAddress!, ldc: n, accumulate: false)
                    }
                }
            }
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return 2 * Double(m * n * k) / best / 1e9
    }
}
