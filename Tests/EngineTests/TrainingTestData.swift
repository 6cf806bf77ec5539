@testable import Engine
import Foundation
import Shared

/// Deterministic test data.
enum TrainingTestData {
    /// Uniform floats in [-scale, scale] from an LCG, so failures reproduce.
    static func floats(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 &+ 1
        return (0..<n).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
        }
    }

    static func ints(_ n: Int, below bound: Int, seed: UInt64) -> [Int32] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 &+ 7
        return (0..<n).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int32((state >> 33) % UInt64(bound))
        }
    }

    /// A tiny model: hidden 16, 2 layers, 4 heads over 2 KV heads (GQA), head_dim 4, ffn 24.
    static func tinyConfig(family: ModelFamily, qkNorm: Bool, qkvBias: Bool, tied: Bool, vocab: Int = 32) -> TransformerConfig {
        TransformerConfig(family: family, hiddenSize: 16, layers: 2, heads: 4, kvHeads: 2, headDim: 4, ffnSize: 24,
                          vocabSize: vocab, maxSeqLen: 16, ropeTheta: 10000, rmsNormEps: 1e-6,
                          qkNorm: qkNorm, qkvBias: qkvBias, tieEmbeddings: tied)
    }

    static var llamaTiny: TransformerConfig { tinyConfig(family: .llama, qkNorm: false, qkvBias: false, tied: true) }
    static var qwenTinyAllFeatures: TransformerConfig { tinyConfig(family: .qwen3, qkNorm: true, qkvBias: true, tied: false) }

    /// Ragged batch: lengths 6, 3, 8 with some unscored positions.
    static func batch(vocab: Int, seed: UInt64) -> TokenBatch {
        let lengths = [6, 3, 8]
        var inputs: [[TokenID]] = [], targets: [[TokenID]] = []
        for (i, len) in lengths.enumerated() {
            let seq = ints(len + 1, below: vocab, seed: seed + UInt64(i))
            inputs.append(Array(seq.dropLast()))
            targets.append((0..<len).map { t in (t + i) % 4 == 0 ? -1 : seq[t + 1] })
        }
        return TokenBatch(inputs: inputs, targets: targets)
    }

    /// Per-position loss weights for `batch` (any real numbers; 0 where unscored).
    static func lossWeights(for batch: TokenBatch, seed: UInt64) -> [[Float]] {
        batch.targets.enumerated().map { b, row in
            let w = floats(row.count, seed: seed + UInt64(b))
            return zip(row, w).map { $0 < 0 ? 0 : $1 }
        }
    }
}
