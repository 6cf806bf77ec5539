import ArgumentParser
import Configuration
import Engine
import EngineConfiguration
import Foundation
import Shared
import Tokenizers

/// `cerm bench engine`: the engine's speed against the machine's own sgemm, in one run;
/// `cerm bench tokenizer`: encoding speed on one thread.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks (release build recommended).",
        subcommands: [Engine_.self, Tokenizer_.self])

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

    struct Tokenizer_: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "tokenizer",
            abstract: "Encoding speed in MB of text per second on one thread, over a corpus encoded repeatedly.")

        @Option(help: "The tokenizer: a tokenizer.json file or a directory holding one.")
        var tokenizer: String

        @Option(help: "Corpus: JSON lines of strings (.jsonl) or a plain text file (one text per line).")
        var corpus: String = "Tests/TokenizersTests/Fixtures/corpus.jsonl"

        @Option(help: "Keep encoding for at least this many seconds.")
        var seconds: Double = 5

        func run() throws {
            let loaded: BPETokenizer
            let texts: [String]
            do {
                loaded = try BPETokenizer(source: tokenizer)
                texts = try TokenizerBenchmark.texts(fromFile: corpus)
            } catch {
                throw exitWithError(error)
            }
            print("# cerm bench tokenizer (\(tokenizer), \(texts.count) texts from \(corpus), 1 thread)")
            print(TokenizerBenchmark.run(loaded, texts: texts, minimumSeconds: seconds).summary)
        }
    }
}
