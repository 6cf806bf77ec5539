import ArgumentParser
import Configuration
import Engine
import EngineConfiguration
import Foundation
import Shared

/// `cerm bench engine`: the engine's speed against the machine's own sgemm, in one run.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks (release build recommended).",
        subcommands: [Engine_.self])

    struct Engine_: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "engine",
            abstract: "OpenBLAS sgemm at the model's shapes, training tokens/s and GFLOP/s (as a fraction of sgemm), generation tokens/s at batch 1, 8, 32, 128.")

        @Option(help: "BLAS threads (1 = one worker's share of the machine).")
        var threads: Int = 1

        @Option(help: "Training batch: sequences × length.")
        var batch: Int = 8
        @Option(help: "Training sequence length.")
        var length: Int = 256

        @Option(help: "Generation batch sizes, comma-separated.")
        var generationBatches: String = "1,8,32,128"

        @Flag(help: "Also measure the [model] of the config (cluster.toml) for training.")
        var configModel = false
        @Option(help: "Config whose [model] --config-model measures.")
        var config: String = "cluster.toml"

        func run() throws {
            BLAS.setThreads(threads)
            let batches = generationBatches.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !batches.isEmpty, batches.allSatisfy({ $0 > 0 }) else {
                throw ValidationError("--generation-batches: expected positive integers separated by commas, got \"\(generationBatches)\"")
            }
            print("# cerm bench engine (threads \(threads), \(ProcessInfo.processInfo.activeProcessorCount) cores, OpenBLAS \(BLAS.coreName) kernels)")
            print("## training (forward + backward), hidden-512 reference config")
            let training = try EngineBenchmark.run(batchSize: batch, sequenceLength: length, threads: threads)
            print(training.summary)
            if configModel {
                let section = try Config.load(path: config).model
                print("## training, [model] of \(config)")
                print(try EngineBenchmark.run(config: TransformerConfig(section), batchSize: batch,
                                              sequenceLength: min(length, section.maxSeqLen), threads: threads).summary)
            }
            print("## generation, hidden-512 reference config, prompt 64, 64 new tokens")
            print(try GenerationBenchmark.run(batches: batches))
        }
    }
}
