import Foundation
import Shared

/// Throughput of the training path against raw OpenBLAS sgemm, for `cerm bench engine`.
///
/// Measures (1) sgemm GFLOP/s at the model's projection shapes (`[N, in] · Wᵀ` for every
/// linear layer, N = batch · seqLen tokens), aggregated as total flops / total time, and
/// (2) a full forward + backward over a random batch: tokens/s and achieved GFLOP/s, counting
/// the flops of every matrix product the pass performs (projections, LM head, attention
/// scores and values over the causal blocks; backward = 2 × forward). `fractionOfSgemm` = (2) / (1): how much of the
/// machine's matmul speed the engine keeps after its own kernels and small attention products.
public enum EngineBenchmark {
    /// The benchmark's reference architecture: hidden 512, 4 layers, 8 heads over 4 KV heads
    /// (head_dim 64), ffn 1376, byte vocabulary, QK-norm, tied embeddings.
    public static let referenceConfig = TransformerConfig(
        family: .qwen3, hiddenSize: 512, layers: 4, heads: 8, kvHeads: 4, headDim: 64, ffnSize: 1376,
        vocabSize: ByteTokenizer.vocabularySize, maxSeqLen: 512, ropeTheta: 1_000_000, rmsNormEps: 1e-6,
        qkNorm: true, qkvBias: false, tieEmbeddings: true)

    /// One matmul shape's measurement.
    public struct SgemmShape: Sendable {
        public let m: Int, n: Int, k: Int
        public let gflops: Double
    }

    /// What ``run(config:batchSize:sequenceLength:iterations:threads:)`` measured.
    public struct Result: Sendable {
        public let config: TransformerConfig
        public let batchSize: Int
        public let sequenceLength: Int
        public let threads: Int
        /// Per projection shape (m = tokens, n = out, k = in).
        public let sgemmShapes: [SgemmShape]
        /// Total flops / total time over ``sgemmShapes``.
        public let sgemmGFLOPS: Double
        /// Mean seconds of one forward and one backward pass.
        public let forwardSeconds: Double
        public let backwardSeconds: Double
        /// Matmul flops of one forward + backward.
        public let trainFlops: Double
        public let trainTokensPerSecond: Double
        public let trainGFLOPS: Double
        public var fractionOfSgemm: Double { sgemmGFLOPS > 0 ? trainGFLOPS / sgemmGFLOPS : 0 }

        /// A short human-readable report.
        public var summary: String {
            var lines = ["engine benchmark: hidden \(config.hiddenSize), layers \(config.layers), heads \(config.heads)/\(config.kvHeads), ffn \(config.ffnSize), batch \(batchSize)×\(sequenceLength), BLAS threads \(threads)"]
            for s in sgemmShapes {
                lines.append(String(format: "  sgemm %5d×%5d×%5d  %7.1f GFLOP/s", s.m, s.n, s.k, s.gflops))
            }
            lines.append(String(format: "  sgemm (model shapes)   %7.1f GFLOP/s", sgemmGFLOPS))
            lines.append(String(format: "  forward %.3f s, backward %.3f s, %.0f tokens/s, %.1f GFLOP/s = %.0f%% of sgemm",
                                forwardSeconds, backwardSeconds, trainTokensPerSecond, trainGFLOPS, 100 * fractionOfSgemm))
            return lines.joined(separator: "\n")
        }
    }

    /// Matmul flops of one forward pass over rows of the given lengths.
    public static func forwardFlops(config c: TransformerConfig, lengths: [Int]) -> Double {
        let n = Double(lengths.reduce(0, +))
        let h = Double(c.hiddenSize), q = Double(c.qDim), kv = Double(c.kvDim), f = Double(c.ffnSize)
        let perLayerLinear = 2 * n * (h * q + 2 * h * kv + q * h + 3 * h * f)
        // Scores and values over the causal blocks the engine computes.
        let attention = lengths.reduce(0.0) {
            $0 + 4 * Double(Transformer.attentionScoreEntries(length: $1)) * Double(c.headDim) * Double(c.heads)
        }
        return Double(c.layers) * (perLayerLinear + attention) + 2 * n * h * Double(c.vocabSize)
    }

    /// Runs the benchmark. `iterations` timed forward/backward pairs follow one warm-up pair.
    /// Sets the BLAS thread count to `threads` for the duration and restores it afterwards.
    public static func run(config: TransformerConfig = referenceConfig, batchSize: Int = 8, sequenceLength: Int = 256,
                           iterations: Int = 3, threads: Int = BLAS.threads) throws -> Result {
        let previousThreads = BLAS.threads
        BLAS.setThreads(threads)
        defer { BLAS.setThreads(previousThreads) }
        let n = batchSize * sequenceLength
        let h = config.hiddenSize

        // (1) sgemm at the projection shapes.
        let shapes: [(Int, Int)] = [(config.qDim, h), (config.kvDim, h), (h, config.qDim), (config.ffnSize, h), (h, config.ffnSize), (config.vocabSize, h)]
        let maxIn = max(h, config.qDim, config.ffnSize), maxOut = max(h, config.qDim, config.ffnSize, config.vocabSize)
        let x = UnsafeMutablePointer<Float>.allocate(capacity: n * maxIn)
        let w = UnsafeMutablePointer<Float>.allocate(capacity: maxOut * maxIn)
        let y = UnsafeMutablePointer<Float>.allocate(capacity: n * maxOut)
        defer { x.deallocate(); w.deallocate(); y.deallocate() }
        for i in 0..<(n * maxIn) { x[i] = Float(i % 17) * 0.01 }
        for i in 0..<(maxOut * maxIn) { w[i] = Float(i % 13) * 0.01 }
        var results: [SgemmShape] = []
        var totalFlops = 0.0, totalTime = 0.0
        for (out, inDim) in shapes {
            let gemm = { BLAS.sgemm(transB: .transpose, m: n, n: out, k: inDim, a: x, lda: inDim, b: w, ldb: inDim, c: y, ldc: out) }
            gemm()  // warm-up
            let reps = 3
            let t0 = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<reps { gemm() }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            let flops = 2 * Double(n) * Double(out) * Double(inDim) * Double(reps)
            results.append(SgemmShape(m: n, n: out, k: inDim, gflops: flops / seconds / 1e9))
            totalFlops += flops
            totalTime += seconds
        }

        // (2) forward + backward.
        let model = try Transformer(weights: ModelWeights(config: config, seed: 1, initStd: 0.02))
        var noise = ParameterInitNoise.splitMix64(seed: 99, counter: 0)
        var inputs: [[TokenID]] = [], targets: [[TokenID]] = []
        for _ in 0..<batchSize {
            var row: [TokenID] = []
            for _ in 0...sequenceLength {
                noise = ParameterInitNoise.splitMix64(seed: noise, counter: 0)
                row.append(TokenID(noise % UInt64(config.vocabSize)))
            }
            inputs.append(Array(row.dropLast()))
            targets.append(Array(row.dropFirst()))
        }
        let batch = TokenBatch(inputs: inputs, targets: targets)
        let dLogprobs = [[Float]](repeating: [Float](repeating: -1 / Float(n), count: sequenceLength), count: batchSize)
        var grads = ModelGradients(config: config)
        var forwardTime = 0.0, backwardTime = 0.0
        for iteration in 0...iterations {
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try model.forward(batch)
            let t1 = DispatchTime.now().uptimeNanoseconds
            try model.backward(dLogprobs: dLogprobs, into: &grads)
            let t2 = DispatchTime.now().uptimeNanoseconds
            if iteration > 0 {
                forwardTime += Double(t1 - t0) / 1e9
                backwardTime += Double(t2 - t1) / 1e9
            }
        }
        let iters = Double(max(iterations, 1))
        let flops = 3 * forwardFlops(config: config, lengths: [Int](repeating: sequenceLength, count: batchSize))
        let step = (forwardTime + backwardTime) / iters
        return Result(config: config, batchSize: batchSize, sequenceLength: sequenceLength, threads: threads,
                      sgemmShapes: results, sgemmGFLOPS: totalFlops / totalTime / 1e9,
                      forwardSeconds: forwardTime / iters, backwardSeconds: backwardTime / iters,
                      trainFlops: flops, trainTokensPerSecond: Double(n) / step, trainGFLOPS: flops / step / 1e9)
    }
}
