@testable import Engine
@testable import Shared
import Testing

@Suite struct WireWeightsTests {
    static let config = TransformerConfig(family: .qwen3, hiddenSize: 8, layers: 1, heads: 2, kvHeads: 1, headDim: 4,
                                          ffnSize: 12, vocabSize: 264, maxSeqLen: 16, ropeTheta: 10000, rmsNormEps: 1e-6,
                                          qkNorm: true, qkvBias: false, tieEmbeddings: true)

    @Test func wireBytesRoundTripBitExactly() throws {
        var weights = ModelWeights(config: Self.config, seed: 3, initStd: 0.5)
        weights.values[0] = -0.0
        weights.values[1] = .nan
        let bytes = weights.wireBytes
        #expect(bytes.count == weights.values.count * 4)
        let back = try ModelWeights(config: Self.config, wireBytes: bytes)
        #expect(back.values.map(\.bitPattern) == weights.values.map(\.bitPattern))
        // Little-endian: 1.0 is 00 00 80 3F.
        weights.values[2] = 1
        #expect(Array(weights.wireBytes[8..<12]) == [0x00, 0x00, 0x80, 0x3F])
    }

    @Test func wrongSizeIsRejectedWithBothCounts() {
        let needed = ParameterLayout(Self.config).totalCount
        #expect(throws: CermError.invalid("weights: 7 bytes received, the model config needs \(needed * 4) (\(needed) float32 values)")) {
            try ModelWeights(config: Self.config, wireBytes: [UInt8](repeating: 0, count: 7))
        }
    }
}
