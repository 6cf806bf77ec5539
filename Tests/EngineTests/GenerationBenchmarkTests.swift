@testable import Engine
import Foundation
import Shared
import Testing

/// Prints the generation benchmark; opt-in (`CERM_BENCH=1`) because it only means something in a
/// release build: `CERM_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter GenerationBenchmarkRun`.
@Suite("GenerationBenchmarkRun", .enabled(if: ProcessInfo.processInfo.environment["CERM_BENCH"] == "1"))
struct GenerationBenchmarkRun {
    @Test("generation throughput at batch 1, 8, 32, 128")
    func benchmark() throws {
        // CERM_BENCH_THREADS=1 measures one core (OpenBLAS and the engine's matmul alike).
        if let threads = ProcessInfo.processInfo.environment["CERM_BENCH_THREADS"].flatMap(Int.init) {
            BLAS.setThreads(threads)
            InvariantMatmul.threadOverride = threads
        }
        // CERM_BENCH_PROMPT=n measures long contexts (attention-heavy) instead of the 64-token prompts.
        let promptLength = ProcessInfo.processInfo.environment["CERM_BENCH_PROMPT"].flatMap(Int.init) ?? 64
        let report = try GenerationBenchmark.run(promptLength: promptLength)
        print(report)
        #expect(report.measurements.count == 4)
        #expect(report.measurements.allSatisfy { $0.generatedTokens > 0 && $0.tokensPerSecond > 0 })
    }
}
