import Foundation
import Testing
@testable import Engine

/// Prints the generation benchmark; opt-in (`CERM_BENCH=1`) because it only means something in a
/// release build: `CERM_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter GenerationBenchmarkRun`.
@Suite("GenerationBenchmarkRun", .enabled(if: ProcessInfo.processInfo.environment["CERM_BENCH"] == "1"))
struct GenerationBenchmarkRun {
    @Test("generation throughput at batch 1, 8, 32, 128")
    func benchmark() throws {
        let report = try GenerationBenchmark.run()
        print(report)
        #expect(report.measurements.count == 4)
        #expect(report.measurements.allSatisfy { $0.generatedTokens > 0 && $0.tokensPerSecond > 0 })
    }
}
