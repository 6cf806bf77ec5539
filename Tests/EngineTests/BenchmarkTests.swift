import Configuration
@testable import Engine
import EngineConfiguration
import Foundation
import Testing

@Suite struct BenchmarkTests {
    @Test func flopCountOfATinyConfigMatchesHandCount() {
        // hidden 16, q 16, kv 8, ffn 24, vocab 32, 2 layers, 4 heads of dim 4; rows of 3 and 5 tokens.
        let c = TrainingTestData.llamaTiny
        let projectionParams: Double = 16 * 16 + 2 * 16 * 8 + 16 * 16 + 3 * 16 * 24  // q, k+v, o, gate+up+down
        let linear: Double = 2 * 8 * projectionParams
        let attention: Double = 4 * (9 + 25) * 4 * 4  // 4·len²·headDim per head
        let lmHead: Double = 2 * 8 * 16 * 32
        let expected: Double = 2 * (linear + attention) + lmHead
        #expect(EngineBenchmark.forwardFlops(config: c, lengths: [3, 5]) == expected)
    }

    @Test func runsOnATinyConfig() throws {
        let r = try EngineBenchmark.run(config: TrainingTestData.llamaTiny, batchSize: 2, sequenceLength: 8, iterations: 1, threads: 1)
        #expect(r.sgemmShapes.count == 6)
        #expect(r.sgemmGFLOPS > 0 && r.trainGFLOPS > 0 && r.trainTokensPerSecond > 0)
        #expect(r.trainFlops == 3 * EngineBenchmark.forwardFlops(config: TrainingTestData.llamaTiny, lengths: [8, 8]))
    }

    /// The real measurement; run in release: `CERM_ENGINE_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter BenchmarkTests`.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["CERM_ENGINE_BENCH"] != nil))
    func referenceConfigThroughput() throws {
        let threads = Int(ProcessInfo.processInfo.environment["CERM_ENGINE_BENCH_THREADS"] ?? "") ?? 1
        // CERM_ENGINE_BENCH_CONFIG=default measures the [model] default (hidden 128) at length 512.
        let r = ProcessInfo.processInfo.environment["CERM_ENGINE_BENCH_CONFIG"] == "default"
            ? try EngineBenchmark.run(config: TransformerConfig(ModelSection()), batchSize: 8, sequenceLength: 512, threads: threads)
            : try EngineBenchmark.run(threads: threads)
        print(r.summary)
        #expect(r.trainGFLOPS > 0)
    }
}
