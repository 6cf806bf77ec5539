import Configuration
import Engine
import EngineConfiguration
import Foundation
import Method
import Shared

/// Time and memory of one GRPO learner update at a model's own scale, for `cerm bench learner`:
/// one mini-batch of random trajectories through ``GRPOLearner``'s data shards, micro-batches
/// (default workspace budget) and AdamW step, with the reference model held as in a run.
public enum LearnerBenchmark {
    public struct Result: Sendable, CustomStringConvertible {
        public let config: TransformerConfig
        public let trajectories: Int
        public let promptLength: Int
        public let outputLength: Int
        public let threads: Int
        public let seconds: Double
        public let microBatches: Int
        /// ``Transformer/workspaceFloats(config:lengths:attentionBlockRows:lmHeadChunkFloats:)`` of the
        /// largest micro-batch (each data shard has a workspace of its own).
        public let largestWorkspaceFloats: Int

        public var description: String {
            let tokens = trajectories * (promptLength + outputLength)
            return String(format: "learner update: %d trajectories × (%d prompt + %d output) tokens, %d data shards on %d threads, "
                          + "%d micro-batches (largest workspace %.2f GiB): %.1f s, %.0f tokens/s",
                          trajectories, promptLength, outputLength, GRPOLearner.dataShards, threads, microBatches,
                          Double(largestWorkspaceFloats) * 4 / Double(1 << 30), seconds, Double(tokens) / seconds)
        }
    }

    /// Random tokens (seeded), behaviour and reference log-probs of −5 per output token and
    /// advantages alternating ±1: what the update computes does not depend on the values.
    public static func run(weights: ModelWeights, trajectories: Int, promptLength: Int, outputLength: Int,
                           threads: Int, seed: UInt64 = 1) throws -> Result {
        guard trajectories > 0, promptLength > 0, outputLength > 0 else {
            throw CermError.invalid("learner benchmark: trajectories, prompt and output lengths must be positive")
        }
        let c = weights.config
        guard promptLength + outputLength <= c.maxSeqLen else {
            throw CermError.invalid("learner benchmark: \(promptLength + outputLength) tokens exceed max_seq_len \(c.maxSeqLen)")
        }
        var config = Config()
        config.model = ModelSection(c)
        let learner = try GRPOLearner(config: config, initialWeights: weights, threads: threads)
        var rng = SplitMix64(seed: seed)
        let logprobs = [Double](repeating: -5, count: outputLength)
        var batch: [PreparedTrajectory] = []
        for index in 0..<trajectories {
            var sequence: [TokenID] = []
            for _ in 0..<(promptLength + outputLength) { sequence.append(TokenID(rng.below(c.vocabSize))) }
            batch.append(PreparedTrajectory(id: .criteria(pair: UInt64(index / 2), index % 2), sequence: sequence,
                                            promptLength: promptLength, behaviourLogprobs: logprobs, referenceLogprobs: logprobs,
                                            advantage: index % 2 == 0 ? 1 : -1))
        }
        let start = Date()
        let (pass, _) = try learner.train(miniBatch: batch, step: 0)
        let seconds = Date().timeIntervalSince(start)
        // Each shard splits its rows like the learner does (same assignment, same budget).
        let lengths = batch.map { $0.sequence.count - 1 }
        let assignment = DataShards.assignment(lengths: batch.map { $0.sequence.count }, shards: GRPOLearner.dataShards)
        var largest = 0
        for shard in 0..<GRPOLearner.dataShards {
            let shardLengths = lengths.indices.filter { assignment[$0] == shard }.map { lengths[$0] }
            for range in Transformer.microBatches(config: c, lengths: shardLengths, budgetFloats: learner.workspaceBudgetFloats) {
                largest = max(largest, Transformer.workspaceFloats(config: c, lengths: Array(shardLengths[range])))
            }
        }
        return Result(config: c, trajectories: trajectories, promptLength: promptLength, outputLength: outputLength,
                      threads: threads, seconds: seconds, microBatches: pass.microBatches, largestWorkspaceFloats: largest)
    }
}
