@testable import Engine
import Foundation
import Testing

@Suite("Sampling")
struct SamplingTests {
    @Test("Philox4x32-10 matches the Random123 known-answer vectors")
    func philoxKnownAnswers() {
        let zero = CounterRNG.philox4x32(counter: (0, 0, 0, 0), key: (0, 0))
        #expect([zero.0, zero.1, zero.2, zero.3] == [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8])
        let ones = CounterRNG.philox4x32(counter: (.max, .max, .max, .max), key: (.max, .max))
        #expect([ones.0, ones.1, ones.2, ones.3] == [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd])
        let pi = CounterRNG.philox4x32(counter: (0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344),
                                       key: (0xa409_3822, 0x299f_31d0))
        #expect([pi.0, pi.1, pi.2, pi.3] == [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1])
    }

    @Test("uniform is a pure function of (seed, index) in [0, 1)")
    func uniformIsPure() {
        let a = (0..<1000).map { CounterRNG.uniform(seed: 42, index: UInt64($0)) }
        let b = (0..<1000).reversed().map { CounterRNG.uniform(seed: 42, index: UInt64($0)) }.reversed()
        #expect(a == Array(b))
        #expect(a.allSatisfy { $0 >= 0 && $0 < 1 })
        #expect(CounterRNG.uniform(seed: 43, index: 0) != a[0])
        let mean = a.reduce(0, +) / Double(a.count)
        #expect(abs(mean - 0.5) < 0.05)
    }

    @Test("greedy picks the first maximum and reports the T=1 log-probability")
    func greedy() {
        let sampler = TokenSampler(vocabSize: 4)
        let logits: [Float] = [0.5, 2, 2, -1]
        let pick = sampler.sample(logits: logits, temperature: 0, topP: 1, uniform: 0.99)
        #expect(pick.token == 1)
        let expected = GenerationTestModels.logSoftmax(logits)[1]
        #expect(abs(Double(pick.logProb) - expected) < 1e-6)
    }

    @Test("log-probability is log_softmax(logits / T) and ignores top-p truncation")
    func logProbabilityWithTemperatureAndTopP() {
        let sampler = TokenSampler(vocabSize: 5)
        let logits: [Float] = [1, 3, 0, 2.5, -2]
        let expected = GenerationTestModels.logSoftmax(logits, temperature: 0.5)
        for u in stride(from: 0.0, to: 1.0, by: 0.05) {
            let pick = sampler.sample(logits: logits, temperature: 0.5, topP: 0.9, uniform: u)
            #expect(abs(Double(pick.logProb) - expected[Int(pick.token)]) < 1e-6)
            let rescored = logits.withUnsafeBufferPointer {
                sampler.logProbability(of: pick.token, logits: $0, temperature: 0.5)
            }
            #expect(rescored == pick.logProb)
        }
    }

    @Test("inverse-CDF draw walks token ids in order")
    func inverseCDF() {
        let sampler = TokenSampler(vocabSize: 3)
        let logits: [Float] = [0, 0, Foundation.log(2)]  // probabilities 1/4, 1/4, 1/2
        #expect(sampler.sample(logits: logits, temperature: 1, topP: 1, uniform: 0.2).token == 0)
        #expect(sampler.sample(logits: logits, temperature: 1, topP: 1, uniform: 0.3).token == 1)
        #expect(sampler.sample(logits: logits, temperature: 1, topP: 1, uniform: 0.6).token == 2)
    }

    @Test("tiny top-p keeps only the most probable token")
    func topPTinyIsGreedy() {
        let sampler = TokenSampler(vocabSize: 6)
        let logits: [Float] = [0.1, 1.5, 1.5, -3, 1.4, 0]
        for u in stride(from: 0.0, to: 1.0, by: 0.1) {
            #expect(sampler.sample(logits: logits, temperature: 1, topP: 1e-6, uniform: u).token == 1)
        }
    }

    /// Chi-square goodness of fit of 40 000 draws (deterministic seeds) against the exact
    /// distribution, with and without a nucleus. 99.99th percentile of χ²(7) is ≈ 29.9.
    @Test("draws follow softmax(logits / T), restricted and renormalised by top-p")
    func distribution() {
        let logits: [Float] = [1.0, 0.2, -0.5, 2.0, 0.0, 1.3, -1.0, 0.7]
        let temperature: Float = 0.8
        let sampler = TokenSampler(vocabSize: logits.count)
        let probabilities = GenerationTestModels.logSoftmax(logits, temperature: temperature).map { Foundation.exp($0) }
        let draws = 40_000

        func chiSquare(topP: Float, expected: [Double]) -> (Double, [Int]) {
            var counts = [Int](repeating: 0, count: logits.count)
            for i in 0..<draws {
                let u = CounterRNG.uniform(seed: 2024, index: UInt64(i))
                counts[Int(sampler.sample(logits: logits, temperature: temperature, topP: topP, uniform: u).token)] += 1
            }
            var statistic = 0.0
            for (count, p) in zip(counts, expected) where p > 0 {
                let e = p * Double(draws)
                statistic += (Double(count) - e) * (Double(count) - e) / e
            }
            return (statistic, counts)
        }
        let (full, _) = chiSquare(topP: 1, expected: probabilities)
        #expect(full < 30)

        // Nucleus 0.7: sorted probabilities of tokens 3, 5, 0, 7… accumulate past 0.7 at token 7.
        let order = probabilities.indices.sorted { probabilities[$0] > probabilities[$1] }
        var kept: Set<Int> = []
        var mass = 0.0
        for index in order where mass < 0.7 {
            kept.insert(index)
            mass += probabilities[index]
        }
        let nucleus = probabilities.indices.map { kept.contains($0) ? probabilities[$0] / mass : 0 }
        let (truncated, counts) = chiSquare(topP: 0.7, expected: nucleus)
        #expect(truncated < 30)
        for index in probabilities.indices where !kept.contains(index) { #expect(counts[index] == 0) }
    }
}
