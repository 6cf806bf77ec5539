import Configuration
import Datasets
import Foundation
import Method
import Shared
import WireProtocol

/// The training pairs of `data.train`, served in a fresh seeded permutation per epoch.
///
/// - Pair ids are the pair's index in the loaded file (0-based, in file order; a Best-of-N
///   line contributes its N−1 "best beats k" pairs consecutively), so they are stable across
///   runs of the same file.
/// - Epoch `e` visits the pairs in a Fisher–Yates permutation drawn by ``SplitMix64`` from
///   ``permutationSeed(runSeed:epoch:)``; nothing depends on time or hashing order.
/// - A batch may span an epoch boundary. A pair the batch already holds from the end of the
///   previous epoch is skipped where it comes up again at the start of the new one (ids must
///   be unique within a batch); that position still counts as consumed, so the cursor stays a
///   plain (epoch, position) pair.
/// - Responses are sent as `[chosen, rejected]`: the learner's rewards rely on response 0
///   being the chosen one.
public struct DatasetPairSource: PairSource {
    /// The pairs, indexed by pair id.
    public let pairs: [PreferencePair]
    public let runSeed: UInt64
    /// Where the data came from, for error messages.
    public let source: String
    /// Lines `data.skip_bad` skipped, in file order (empty without it).
    public let skipped: [DataError]
    public private(set) var cursor: DataCursor
    /// The current epoch's permutation of pair indices.
    private var order: [Int]

    /// Loads the RL pairs (``Config/rlTrainPath``: the curated file when `curation.enabled`,
    /// else `data.train`) with `data.format` and `data.skip_bad`; `run.seed` seeds the epochs.
    /// Prompts are measured as the run model's `chat` renders them.
    public init(config: Config, chat: any ChatCodec) throws {
        let path = config.rlTrainPath
        if config.curation.enabled, !FileManager.default.fileExists(atPath: path) {
            throw CermError.io(path: path, reason: "curation.enabled is true but the curated pairs are missing: run `cerm curate` (which `cerm pipeline` does after SFT) or set curation.enabled = false to train on data.train")
        }
        let loader = PreferenceLoader(format: config.data.format, skipBad: config.data.skipBad,
                                      recordCheck: Self.promptFitCheck(config: config, chat: chat))
        let loaded = try loader.loadPairs(path: path)
        try self.init(pairs: loaded.pairs, runSeed: config.run.seed, source: path, skipped: loaded.report.skipped)
    }

    /// A record check for ``PreferenceLoader``: a record one of whose prompts is longer than
    /// `model.max_seq_len` before anything is generated (``RolloutPlan/oversizedPrompt(for:mode:maxSeqLen:)``)
    /// is a data error `FILE:LINE: FIELD: the … prompt needs N tokens, model.max_seq_len is M`;
    /// such a pair could only ever yield empty trajectories.
    public static func promptFitCheck(config: Config, chat: any ChatCodec) -> @Sendable (PreferenceRecord) -> (field: String, message: String)? {
        let plan = RolloutPlan(config: config.rollout, chat: chat, runSeed: config.run.seed, step: 0)
        let mode = config.reward.mode
        let maxSeqLen = config.model.maxSeqLen
        return { record in
            let item: RolloutItem
            let fields: [String]
            switch record {
            case let .pair(pair):
                item = RolloutItem(pairID: 0, query: pair.query, chosen: pair.chosen, rejected: pair.rejected)
                fields = ["chosen", "rejected"]
            case let .bestOfN(best):
                item = RolloutItem(pairID: 0, query: best.query, responses: best.responses)
                fields = best.responses.indices.map { "responses[\($0)]" }
            }
            guard let oversized = plan.oversizedPrompt(for: item, mode: mode, maxSeqLen: maxSeqLen) else { return nil }
            let field = oversized.responseIndex.map { fields[$0] } ?? "query"
            let prompt = switch oversized.stage {
            case .criteria: "criteria"
            case .evaluation: "evaluation"
            case .judgment: "judgment"
            case .comparison: "comparison"
            }
            return (field, "the \(prompt) prompt needs \(oversized.tokens) tokens, model.max_seq_len is \(maxSeqLen)")
        }
    }

    /// Serves `pairs` (ids = indices) with epochs seeded from `runSeed`. Throws when empty.
    /// `skipped`: the bad lines left out of `pairs` (``skippedLinesReport(limit:)``).
    public init(pairs: [PreferencePair], runSeed: UInt64, source: String = "<pairs>", skipped: [DataError] = []) throws {
        guard !pairs.isEmpty else { throw CermError.io(path: source, reason: "data.train holds no preference pairs") }
        self.pairs = pairs
        self.runSeed = runSeed
        self.source = source
        self.skipped = skipped
        let seed = Self.permutationSeed(runSeed: runSeed, epoch: 0)
        cursor = DataCursor(epoch: 0, position: 0, permutationSeed: seed)
        order = Self.permutation(count: pairs.count, seed: seed)
    }

    /// Log lines about the lines `data.skip_bad` skipped, so a run never trains on a silently
    /// smaller file (``LoadReport/skippedLinesReport(file:skipped:rest:limit:)``): a count, then
    /// one `FILE:LINE: FIELD: message` per skipped line, at most `limit` of them and then how
    /// many more. Empty when nothing was skipped.
    public func skippedLinesReport(limit: Int = 20) -> [String] {
        LoadReport.skippedLinesReport(file: source, skipped: skipped, rest: "training on the other \(pairs.count) pairs", limit: limit)
    }

    /// The permutation seed of `epoch`: a SplitMix64 stream over (run seed, "perm", epoch).
    public static func permutationSeed(runSeed: UInt64, epoch: Int) -> UInt64 {
        var generator = SplitMix64(seed: runSeed, streams: 0x7065_726D, UInt64(truncatingIfNeeded: epoch))
        return generator.next()
    }

    /// Indices `0..<count` shuffled by Fisher–Yates with ``SplitMix64`` seeded by `seed`.
    public static func permutation(count: Int, seed: UInt64) -> [Int] {
        var generator = SplitMix64(seed: seed)
        return generator.shuffled(Array(0..<count))
    }

    /// The next `count` pairs in permutation order, moving into the next epoch when this one
    /// runs out. `count` may not exceed the number of pairs (ids must be unique in a batch).
    public mutating func nextBatch(count: Int) throws -> [TaskPair] {
        guard count <= pairs.count else {
            throw CermError.io(path: source, reason: "grpo.pairs_per_batch = \(count) exceeds the \(pairs.count) pairs of the file; a batch cannot hold a pair twice")
        }
        var batch: [TaskPair] = []
        var taken = Set<Int>()
        while batch.count < count {
            if cursor.position >= order.count { startEpoch(cursor.epoch + 1) }
            let index = order[cursor.position]
            cursor.position += 1
            guard taken.insert(index).inserted else { continue }
            let pair = pairs[index]
            batch.append(TaskPair(pairID: UInt64(index), query: pair.query, responses: [pair.chosen, pair.rejected]))
        }
        return batch
    }

    /// Continues at `cursor`: its epoch's permutation is rebuilt from the stored seed.
    public mutating func restore(cursor newCursor: DataCursor) throws {
        guard newCursor.epoch >= 0, (0...pairs.count).contains(newCursor.position) else {
            throw CermError.io(path: source, reason: "data cursor epoch \(newCursor.epoch) position \(newCursor.position) does not fit the \(pairs.count) pairs of the file (was the data changed?)")
        }
        cursor = newCursor
        order = Self.permutation(count: pairs.count, seed: newCursor.permutationSeed)
    }

    private mutating func startEpoch(_ epoch: Int) {
        let seed = Self.permutationSeed(runSeed: runSeed, epoch: epoch)
        cursor = DataCursor(epoch: epoch, position: 0, permutationSeed: seed)
        order = Self.permutation(count: pairs.count, seed: seed)
    }
}
