import Configuration
import Datasets
import Foundation
import Method
import Shared

// CE-RM's data curation (docs/DESIGN.md §1.5, docs/METHOD.md "Curation"): RL trains on the pairs the
// starting model is uncertain about. The paper's reason: a pair the model always judges the
// same way gives every trajectory of its groups the same reward and so no advantage. On the
// default run the SFT model's sampled judgments already disagree on most pairs and curation
// did not raise held-out accuracy (docs/experiments/2026-12-01-curation-before-rl.md), so
// `curation.enabled` is off by default.

/// How pairs are screened and which are kept (`[curation]`).
public struct CurationOptions: Sendable, Equatable {
    /// Pairs of the training file screened (stratified by task type); all when larger.
    public var candidates: Int
    /// Sampled judgments per pair (k).
    public var samples: Int
    /// A pair is kept when its sampled accuracy is at most this (CE-RM: 0.6).
    public var maxAccuracy: Double
    /// A pair is kept only when its sampled accuracy is at least this (0 keeps the pairs the
    /// model always gets wrong, as CE-RM's filter does).
    public var minAccuracy: Double
    /// Keep a pair only when its judgments disagree (not every sample earns the same credit):
    /// a pair judged identically by every sample, e.g. both responses always scored 10/10,
    /// gives all its trajectories one reward and so no advantage.
    public var requireDisagreement: Bool
    /// Sampling temperature of both turns (the rollout temperature: the policy RL samples).
    public var temperature: Float
    /// The run seed; the candidates and every judgment's sampling seed derive from it.
    public var seed: UInt64

    public init(candidates: Int, samples: Int, maxAccuracy: Double = 0.6, minAccuracy: Double = 0,
                requireDisagreement: Bool = false, temperature: Float = 1, seed: UInt64) {
        self.candidates = candidates
        self.samples = samples
        self.maxAccuracy = maxAccuracy
        self.minAccuracy = minAccuracy
        self.requireDisagreement = requireDisagreement
        self.temperature = temperature
        self.seed = seed
    }

    /// The options of a run's `[curation]` section.
    public init(config: Config) {
        self.init(candidates: config.curation.candidates, samples: config.curation.samples,
                  maxAccuracy: config.curation.maxAccuracy, minAccuracy: config.curation.minAccuracy,
                  requireDisagreement: config.curation.requireDisagreement,
                  temperature: Float(config.rollout.temperature), seed: config.run.seed)
    }

    /// The seed of the evaluation options that sample the judgments: a stream of (run seed,
    /// "curate"), so curation never reuses the held-out evaluation's draws.
    var judgmentSeed: UInt64 {
        var rng = SplitMix64(seed: seed, streams: 0x6375_7261_7465)
        return rng.next()
    }
}

/// One screened pair: where it is in the training file and how often the model judged it right.
public struct ScreenedPair: Sendable, Equatable {
    /// Index of the pair in the loaded training pairs.
    public var index: Int
    public var pair: PreferencePair
    /// The pairwise credit of each sampled judgment (1 right, ½ tie, 0 wrong).
    public var credits: [Double]

    /// Mean credit over the sampled judgments; 0 without judgments.
    public var accuracy: Double { credits.isEmpty ? 0 : credits.reduce(0, +) / Double(credits.count) }
    /// Whether the judgments earned different credits.
    public var judgmentsDisagree: Bool { credits.contains { $0 != credits.first } }
}

/// The outcome of a curation pass.
public struct CurationResult: Sendable, Equatable {
    /// Every screened pair, in screening order.
    public var screened: [ScreenedPair]
    /// The kept pairs, task types interleaved (round-robin in screening order).
    public var kept: [ScreenedPair]
    public var seconds = 0.0

    /// Screened and kept counts and the mean screened accuracy per task type (`(none)` when absent).
    public var byTaskType: [(type: String, screened: Int, kept: Int, meanAccuracy: Double)] {
        let types = Curation.taskTypes(screened.map(\.pair))
        return types.map { type in
            let mine = screened.filter { $0.pair.taskTypeKey == type }
            let kept = kept.filter { $0.pair.taskTypeKey == type }.count
            return (type, mine.count, kept, mine.isEmpty ? 0 : mine.map(\.accuracy).reduce(0, +) / Double(mine.count))
        }
    }

    /// Histogram of screened accuracies: (accuracy, pairs), ascending.
    public var accuracyHistogram: [(accuracy: Double, pairs: Int)] {
        Dictionary(grouping: screened, by: \.accuracy).map { ($0.key, $0.value.count) }.sorted { $0.accuracy < $1.accuracy }
    }

    /// One line per task type and the histogram, for logs and `cerm curate`.
    public var summary: String {
        var lines = ["kept \(kept.count) of \(screened.count) screened pairs" + String(format: " (%.0f s)", seconds)]
        for row in byTaskType {
            lines.append(String(format: "  %@: %d screened, %d kept, mean sampled accuracy %.2f", row.type, row.screened, row.kept, row.meanAccuracy))
        }
        lines.append("  judgments disagree on \(screened.filter(\.judgmentsDisagree).count) of \(screened.count) pairs")
        lines.append("  accuracy histogram: " + accuracyHistogram.map { String(format: "%.3g: %d", $0.accuracy, $0.pairs) }.joined(separator: ", "))
        return lines.joined(separator: "\n")
    }

    /// The kept pairs as canonical JSON lines (docs/DATA.md), each with its screening
    /// accuracy under `curation_accuracy` (an extra key the loaders ignore).
    public var jsonLines: String {
        kept.map { screened in
            var line = screened.pair.jsonLine
            line.removeLast()
            return line + ",\"curation_accuracy\":" + String(screened.accuracy) + "}\n"
        }.joined()
    }
}

/// CE-RM's curation: screen training pairs with sampled judgments of the starting model and
/// keep those it is uncertain about, balanced across task types.
public enum Curation {
    /// The candidate pairs: all pairs of `data.train` under `data.format` and `data.skip_bad`;
    /// `log` gets the lines `data.skip_bad` skipped (``LoadReport/skippedLinesReport(rest:limit:)``).
    public static func trainPairs(config: Config, log: (String) -> Void) throws -> [PreferencePair] {
        let (pairs, report) = try PreferenceLoader(format: config.data.format, skipBad: config.data.skipBad).loadPairs(path: config.data.train)
        report.skippedLinesReport(rest: "curation screens the other \(report.records) records").forEach(log)
        return pairs
    }

    /// Task types in order of first appearance (`(none)` for pairs without one).
    static func taskTypes(_ pairs: [PreferencePair]) -> [String] {
        var seen = Set<String>()
        return pairs.compactMap { pair in
            let type = pair.taskTypeKey
            return seen.insert(type).inserted ? type : nil
        }
    }

    /// `count` candidate indices (all pairs when `count` ≥ their number), balanced across task
    /// types: each type's pairs in a seeded permutation, taken round-robin over the types, so a
    /// type runs short only when it has no pairs left.
    public static func candidates(_ pairs: [PreferencePair], count: Int, seed: UInt64) -> [Int] {
        var rng = SplitMix64(seed: seed, streams: 0x6361_6E64)
        let order = rng.shuffled(Array(pairs.indices))
        let types = taskTypes(pairs)
        var queues = Dictionary(uniqueKeysWithValues: types.map { ($0, [Int]()) })
        for index in order { queues[pairs[index].taskTypeKey]!.append(index) }
        return interleave(types.map { queues[$0]! }, limit: count)
    }

    /// Takes one element from each list in turn until `limit` are taken or all are empty.
    static func interleave<T>(_ lists: [[T]], limit: Int) -> [T] {
        var out: [T] = []
        var position = 0
        while out.count < limit {
            var tookAny = false
            for list in lists where position < list.count && out.count < limit {
                out.append(list[position])
                tookAny = true
            }
            guard tookAny else { break }
            position += 1
        }
        return out
    }

    /// The pairwise credit of each judgment from the responses' scores per judgment
    /// (`chosen[s]`, `rejected[s]`, nil = no valid score), by the held-out evaluation's rule
    /// (``EvaluationScoring/pairwiseCredit(chosen:rejected:)``).
    public static func credits(chosen: [Double?], rejected: [Double?]) -> [Double] {
        zip(chosen, rejected).map { EvaluationScoring.pairwiseCredit(chosen: $0, rejected: $1) }
    }

    /// Whether a screened pair is kept: accuracy within [min, max] and, with
    /// `requireDisagreement`, judgments that do not all earn the same credit.
    public static func keeps(_ pair: ScreenedPair, options: CurationOptions) -> Bool {
        pair.accuracy >= options.minAccuracy && pair.accuracy <= options.maxAccuracy
            && (!options.requireDisagreement || pair.judgmentsDisagree)
    }

    /// The kept pairs of `screened` with task types interleaved, so that consecutive RL
    /// batches mix the types instead of running through one type's pairs at a time.
    public static func select(_ screened: [ScreenedPair], options: CurationOptions) -> [ScreenedPair] {
        let kept = screened.filter { keeps($0, options: options) }
        let types = taskTypes(kept.map(\.pair))
        return interleave(types.map { type in kept.filter { $0.pair.taskTypeKey == type } }, limit: kept.count)
    }

    /// Screens `pairs` with `options.samples` sampled judgments each (unified criteria, both
    /// turns at `options.temperature`) and selects the uncertain ones. The result depends only
    /// on the pairs, the model and the options, never on `threads`.
    public static func run(pairs: [PreferencePair], options: CurationOptions, format: any PromptFormat, threads: Int,
                           makeBackend: @Sendable () throws -> any JudgeBackend,
                           progress: @escaping @Sendable (Int, Int) -> Void = { _, _ in }) throws -> CurationResult {
        let start = Date()
        let indices = candidates(pairs, count: options.candidates, seed: options.seed)
        // Items are numbered by their index in the training file, which keys their sampling seeds.
        let items = indices.map { EvaluationItem(pair: pairs[$0], index: $0) }
        let evaluator = Evaluator(format: format, options: EvaluationOptions(
            k: options.samples, criteriaMode: .unified, temperature: options.temperature, seed: options.judgmentSeed,
            sampledCriteriaTemperature: options.temperature))
        let total = items.count
        let (scores, _) = try evaluator.scores(of: items, threads: threads, makeBackend: makeBackend) { progress($0, total) }
        let screened = zip(indices, scores).map { index, itemScores in
            ScreenedPair(index: index, pair: pairs[index],
                         credits: credits(chosen: itemScores.first ?? [], rejected: itemScores.count > 1 ? itemScores[1] : []))
        }
        var result = CurationResult(screened: screened, kept: select(screened, options: options))
        result.seconds = Date().timeIntervalSince(start)
        return result
    }
}
