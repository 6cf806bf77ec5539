@testable import Engine
import EngineConfiguration
import Foundation
import Shared

/// Tiny models with deterministic pseudo-random weights for the generation tests.
enum GenerationTestModels {
    static func config(_ family: ModelFamily, maxSeqLen: Int = 64) -> TransformerConfig {
        TransformerConfig(
            family: family, hiddenSize: 32, layers: 2, heads: 4, kvHeads: 2, headDim: 8, ffnSize: 48,
            vocabSize: ByteTokenizer.vocabularySize, maxSeqLen: maxSeqLen, ropeTheta: 10_000, rmsNormEps: 1e-6,
            qkNorm: family == .qwen3, qkvBias: family == .qwen2, tieEmbeddings: family != .qwen2)
    }

    /// Weights uniform in ±scale (norm weights 1 ± 0.2), from SplitMix64(seed).
    static func parameters(_ config: TransformerConfig, seed: UInt64 = 7) -> [Float] {
        let layout = ParameterLayout(config)
        var state = seed
        func next() -> Float {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return Float(Double(z >> 11) * 0x1p-53) * 2 - 1
        }
        var values = [Float](repeating: 0, count: layout.totalCount)
        for spec in layout.specs {
            let isNorm = spec.name.hasSuffix("norm.weight") || spec.name.hasSuffix("layernorm.weight")
            let fanIn = spec.shape.count == 2 ? spec.shape[1] : 1
            let scale: Float = spec.name.contains("embed") ? 1 : (spec.name.hasSuffix(".bias") ? 0.2 : 2 / Float(fanIn).squareRoot())
            for i in spec.offset ..< spec.offset + spec.count {
                values[i] = isNorm ? 1 + 0.2 * next() : scale * next()
            }
        }
        return values
    }

    static func generator(_ family: ModelFamily, maxSeqLen: Int = 64) throws -> Generator {
        let config = config(family, maxSeqLen: maxSeqLen)
        return try Generator(config: config, parameters: parameters(config))
    }

    static func tokens(_ text: String) -> [TokenID] { ByteTokenizer().encode(text) }

    static func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    static func argmax(_ row: [Float]) -> TokenID {
        var best = 0
        for i in row.indices where row[i] > row[best] { best = i }
        return TokenID(best)
    }

    static func logSoftmax(_ row: [Float], temperature: Float = 1) -> [Double] {
        let scaled = row.map { Double($0) / Double(temperature) }
        let maximum = scaled.max() ?? 0
        let logTotal = Foundation.log(scaled.reduce(0) { $0 + Foundation.exp($1 - maximum) }) + maximum
        return scaled.map { $0 - logTotal }
    }
}
