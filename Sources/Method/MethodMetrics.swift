// The method's per-step metrics (docs/DESIGN.md §4), accumulated over a batch.

/// Accumulates a step's method metrics; ``summary`` gives the finished numbers.
///
/// Feed it every trajectory outcome, every parse result (for failure counts), each pair's
/// implied accuracy, the advantage result and each mini-batch's loss metrics.
public struct MethodMetrics: Sendable, Equatable {
    private var rewardSum: [TrajectoryStage: Double] = [:]
    private var trajectoryCount: [TrajectoryStage: Int] = [:]
    private var validCount = 0
    private var outcomeCount = 0
    /// Parse failures by reason over the step.
    public private(set) var parseFailures: [ParseFailure: Int] = [:]
    private var accuracySum = 0.0
    private var accuracyCount = 0
    private var lossTokens = 0
    private var klWeighted = 0.0
    private var clipWeighted = 0.0
    private var lossSum = 0.0
    private var lossCount = 0
    private var groupCount = 0
    private var zeroStdGroups = 0
    private var skippedGroups = 0
    /// Mean token entropy of the sampled outputs, as measured by the engine.
    public var entropy: Double?
    /// Gradient norm before clipping, as measured by the learner (mean over mini-batches).
    public var gradNorm: Double?

    public init() {}

    /// Adds trajectory rewards (reward mean per kind, valid-format rate).
    public mutating func add(outcomes: [TrajectoryOutcome]) {
        for outcome in outcomes {
            rewardSum[outcome.id.stage, default: 0] += outcome.reward
            trajectoryCount[outcome.id.stage, default: 0] += 1
            outcomeCount += 1
            if outcome.formatValid { validCount += 1 }
        }
    }

    /// Adds one pair's scoring: its outcomes, parse failures and implied accuracy.
    public mutating func add(scoring: PairScoring) {
        add(outcomes: scoring.outcomes)
        for failure in scoring.failures.values { add(failure: failure) }
        add(pairAccuracy: scoring.impliedAccuracy)
    }

    /// Counts one parse failure.
    public mutating func add(failure: ParseFailure) { parseFailures[failure, default: 0] += 1 }

    /// Counts the failure of a parse result, if any.
    public mutating func add<V>(parse result: ParseResult<V>) {
        if let failure = result.failure { add(failure: failure) }
    }

    /// Adds one pair's implied accuracy (1, ½ or 0; see ``impliedAccuracy(chosen:rejected:)``).
    public mutating func add(pairAccuracy: Double) {
        accuracySum += pairAccuracy
        accuracyCount += 1
    }

    /// Adds the group statistics of an advantage computation.
    public mutating func add(advantages: AdvantageResult) {
        groupCount += advantages.groups.count
        zeroStdGroups += advantages.groups.filter(\.zeroStd).count
        skippedGroups += advantages.groups.filter(\.skipped).count
    }

    /// Adds one mini-batch's loss metrics (KL and clip fraction are token-weighted).
    public mutating func add(loss: LossMetrics, value: Double) {
        lossTokens += loss.tokens
        klWeighted += loss.klMean * Double(loss.tokens)
        clipWeighted += loss.clipFraction * Double(loss.tokens)
        lossSum += value
        lossCount += 1
    }

    /// Implied pairwise accuracy of one pair: 1 when the mean of the chosen response's valid
    /// scores exceeds the rejected's, ½ on a tie, 0 below. A side without valid scores is ⊥:
    /// valid beats ⊥, and two ⊥ sides give 0 (no ranking is not a correct ranking).
    public static func impliedAccuracy(chosen: [Double?], rejected: [Double?]) -> Double {
        let c = chosen.compactMap { $0 }
        let r = rejected.compactMap { $0 }
        return CermRewards.win(c.isEmpty ? nil : mean(c), over: r.isEmpty ? nil : mean(r))
    }

    /// The finished metrics.
    public var summary: StepMethodMetrics {
        var rewards: [TrajectoryStage: Double] = [:]
        for (stage, count) in trajectoryCount where count > 0 { rewards[stage] = (rewardSum[stage] ?? 0) / Double(count) }
        return StepMethodMetrics(
            rewardMean: rewards,
            pairwiseAccuracy: accuracyCount > 0 ? accuracySum / Double(accuracyCount) : nil,
            validFormatRate: outcomeCount > 0 ? Double(validCount) / Double(outcomeCount) : nil,
            parseFailures: parseFailures,
            kl: lossTokens > 0 ? klWeighted / Double(lossTokens) : nil,
            clipFraction: lossTokens > 0 ? clipWeighted / Double(lossTokens) : nil,
            loss: lossCount > 0 ? lossSum / Double(lossCount) : nil,
            entropy: entropy,
            gradNorm: gradNorm,
            fracZeroStd: groupCount > 0 ? Double(zeroStdGroups) / Double(groupCount) : nil,
            fracSkippedGroups: groupCount > 0 ? Double(skippedGroups) / Double(groupCount) : nil)
    }
}

/// A step's method metrics; nil where nothing was measured.
public struct StepMethodMetrics: Sendable, Equatable {
    /// Mean reward per trajectory kind.
    public var rewardMean: [TrajectoryStage: Double]
    /// Mean implied pairwise accuracy over pairs.
    public var pairwiseAccuracy: Double?
    /// Fraction of trajectories whose output parsed.
    public var validFormatRate: Double?
    /// Parse failures by reason.
    public var parseFailures: [ParseFailure: Int]
    /// Token-weighted mean KL estimate.
    public var kl: Double?
    /// Token-weighted clip fraction.
    public var clipFraction: Double?
    /// Mean loss over mini-batches.
    public var loss: Double?
    public var entropy: Double?
    public var gradNorm: Double?
    public var fracZeroStd: Double?
    public var fracSkippedGroups: Double?

    /// Flat `name → value` pairs for `metrics.jsonl`, sorted by name: `reward_<kind>` per
    /// trajectory kind, `accuracy`, `valid_format_rate`, `parse_failures.<reason>` for every
    /// reason (0 when absent, so columns are stable), `kl`, `clip_fraction`, `loss`, `entropy`,
    /// `grad_norm`, `frac_zero_std`, `frac_skipped_groups` (absent when not measured).
    public var flattened: [(key: String, value: Double)] {
        var out: [String: Double] = [:]
        for (stage, value) in rewardMean { out["reward_\(stage)"] = value }
        for reason in ParseFailure.allCases { out["parse_failures.\(reason.rawValue)"] = Double(parseFailures[reason] ?? 0) }
        let optional: [(String, Double?)] = [
            ("accuracy", pairwiseAccuracy), ("valid_format_rate", validFormatRate), ("kl", kl),
            ("clip_fraction", clipFraction), ("loss", loss), ("entropy", entropy), ("grad_norm", gradNorm),
            ("frac_zero_std", fracZeroStd), ("frac_skipped_groups", fracSkippedGroups),
        ]
        for (key, value) in optional { if let value { out[key] = value } }
        return out.sorted { $0.key < $1.key }.map { (key: $0.key, value: $0.value) }
    }
}
