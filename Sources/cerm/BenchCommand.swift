import ArgumentParser
import Configuration
import Coordinator
import Engine
import EngineConfiguration
import Foundation
import Shared
import Tokenizers

/// `cerm bench engine`: the engine's speed against the machine's own sgemm, in one run;
/// `cerm bench tokenizer`: encoding speed on one thread; `cerm bench learner` and `cerm bench worker`:
/// one learner update and one worker's batch on a given model (time; peak memory with `/usr/bin/time -v`);
/// `cerm bench rollout` and `cerm bench weights`: a worker's rollout and a weight broadcast at a config's shapes.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks (release build recommended).",
        subcommands: [Engine_.self, Tokenizer_.self, Learner_.self, Worker_.self, Rollout_.self, Weights_.self])

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

        @Flag(help: "Also measure the model of the config (cluster.toml; its model.source when set) for training.")
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
                // Resolved: a pretrained `model.source` gives the architecture, not `[model]`'s defaults.
                var loaded = try Config.load(path: config)
                let architecture = try RunModel.resolve(&loaded).architecture
                print("## training, the model of \(config)")
                print(try EngineBenchmark.run(config: architecture, batchSize: batch,
                                              sequenceLength: min(length, architecture.maxSeqLen), threads: threads).summary)
            }
            print("## generation, hidden-512 reference config, prompt 64, 64 new tokens")
            print(try GenerationBenchmark.run(batches: batches))
        }
    }

    struct Learner_: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "learner",
            abstract: "One GRPO learner update (one mini-batch, AdamW step) on random trajectories with the given model.",
            discussion: "The learner as in a run: policy, frozen reference, AdamW moments, one gradient buffer and workspace per data shard, micro-batches under the default workspace budget. Measure its peak memory with /usr/bin/time -v.")

        @Option(help: "The model: a GGUF file, a Hugging Face model directory or a cerm weights file.")
        var model: String
        @Option(help: "Trajectories in the mini-batch.")
        var trajectories: Int = 64
        @Option(help: "Prompt tokens per trajectory.")
        var prompt: Int = 100
        @Option(help: "Output tokens per trajectory.")
        var output: Int = 200
        @Option(help: "Threads: data shards run in parallel, the rest go to BLAS.")
        var threads: Int = ProcessInfo.processInfo.activeProcessorCount

        func run() throws {
            do {
                let weights = try WeightsFile.load(path: model).weights
                BLAS.setThreads(max(1, threads / min(threads, GRPOLearner.dataShards)))
                print(try LearnerBenchmark.run(weights: weights, trajectories: trajectories, promptLength: prompt,
                                               outputLength: output, threads: threads))
            } catch {
                throw exitWithError(error)
            }
        }
    }

    struct Worker_: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "worker",
            abstract: "One worker batch with the given model: the policy samples a batch of random prompts, the reference scores the outputs.",
            discussion: "The two generators a worker holds (policy and reference, each with its weights and KV cache). No stop tokens, so every row runs to its full length. Each batch size is measured twice: prefill alone (one new token), then the whole generation; decode tokens/s is the difference. Measure its peak memory with /usr/bin/time -v.")

        @Option(help: "The model: a GGUF file, a Hugging Face model directory or a cerm weights file.")
        var model: String
        @Option(help: "Sequences in the batch; several sizes comma-separated (e.g. 1,4,16,32).")
        var batch: String = "32"
        @Option(help: "Prompt tokens per sequence.")
        var prompt: Int = 256
        @Option(help: "New tokens per sequence.")
        var newTokens: Int = 256
        @Option(help: "BLAS threads.")
        var threads: Int = 1
        @Flag(help: "Leave out the reference scoring.")
        var skipScoring = false

        func run() throws {
            let batches = batch.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !batches.isEmpty, batches.allSatisfy({ $0 > 0 }), prompt > 0, newTokens > 0 else {
                throw ValidationError("--batch, --prompt and --new-tokens must be positive")
            }
            do {
                let weights = try WeightsFile.load(path: model).weights
                let c = weights.config
                guard prompt + newTokens <= c.maxSeqLen else {
                    throw ValidationError("\(prompt + newTokens) tokens exceed the model's max_seq_len \(c.maxSeqLen)")
                }
                BLAS.setThreads(threads)
                let policy = try Generator(config: c, parameters: weights.values)
                let reference = try Generator(config: c, parameters: weights.values)
                policy.stopTokens = []
                for batch in batches {
                    var rng = SplitMix64(seed: 1)
                    let requests = (0..<batch).map { index in
                        GenerationRequest(prompt: (0..<prompt).map { _ in TokenID(rng.below(c.vocabSize)) }, seed: UInt64(index),
                                          maxNewTokens: newTokens, temperature: 1)
                    }
                    let prefillStart = Date()
                    _ = try policy.generate(requests: requests.map { var r = $0; r.maxNewTokens = 1; return r })
                    let prefill = Date().timeIntervalSince(prefillStart)
                    let start = Date()
                    let results = try policy.generate(requests: requests)
                    let generated = Date().timeIntervalSince(start)
                    var scoring = 0.0
                    if !skipScoring {
                        let scoreStart = Date()
                        _ = try reference.score(zip(requests, results).map { ScoringRequest(prompt: $0.prompt, tokens: $1.tokens) })
                        scoring = Date().timeIntervalSince(scoreStart)
                    }
                    let tokens = results.reduce(0) { $0 + $1.tokens.count }
                    // The first token of each row comes from the prefill.
                    let decode = max(generated - prefill, 1e-9)
                    print(String(format: "worker batch: %d × (%d prompt + %d new) tokens, BLAS threads %d: generated %d tokens in %.1f s (%.0f tokens/s); prefill %.2f s, decode %.1f tokens/s (%.1f ms a step); reference scoring %.1f s (%.0f tokens/s)",
                                 batch, prompt, newTokens, threads, tokens, generated, Double(tokens) / generated, prefill,
                                 Double(tokens - batch) / decode, 1000 * decode / Double(max(1, newTokens - 1)),
                                 scoring, skipScoring ? 0 : Double(batch * (prompt + newTokens)) / scoring))
                }
            } catch let error as ValidationError {
                throw error
            } catch {
                throw exitWithError(error)
            }
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
