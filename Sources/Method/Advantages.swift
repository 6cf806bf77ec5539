import Configuration

// Group-relative advantages (GRPO, docs/DESIGN.md §4) with the Dr.GRPO and ReasonGRM variants.

/// How rewards become advantages.
public struct AdvantageOptions: Sendable, Equatable {
    /// Evaluation groups per (pair, response) or per (pair, criteria, response).
    public var evaluationGrouping: EvaluationGrouping
    /// Divide by the group's std (GRPO); false gives Dr.GRPO's `A = r − mean`.
    public var scaleByStd: Bool
    /// ε in `(r − mean) / (std + ε)`.
    public var epsilon: Double
    /// Leave zero-std groups out of the loss entirely (their tokens leave the denominator).
    public var dropZeroStdGroups: Bool
    /// ReasonGRM: leave out groups whose outcomes are all correct or all wrong.
    public var skipUniformGroups: Bool

    public init(evaluationGrouping: EvaluationGrouping = .pairResponse, scaleByStd: Bool = true, epsilon: Double = 1e-6,
                dropZeroStdGroups: Bool = false, skipUniformGroups: Bool = false) {
        self.evaluationGrouping = evaluationGrouping
        self.scaleByStd = scaleByStd
        self.epsilon = epsilon
        self.dropZeroStdGroups = dropZeroStdGroups
        self.skipUniformGroups = skipUniformGroups
    }

    /// The options of a run's `[reward]` and `[grpo]` sections.
    public init(reward: RewardConfig, grpo: GRPOConfig) {
        self.init(evaluationGrouping: reward.evaluationGroups, scaleByStd: grpo.scaleByStd, epsilon: grpo.advantageEps,
                  dropZeroStdGroups: grpo.dropZeroStdGroups, skipUniformGroups: reward.skipUniformGroups)
    }
}

/// A trajectory with its advantage and whether it takes part in the loss.
public struct AdvantagedTrajectory: Sendable, Equatable {
    public var id: TrajectoryID
    public var reward: Double
    public var advantage: Double
    /// False when its group was skipped (uniform outcomes) or dropped (zero std with
    /// `dropZeroStdGroups`): its tokens contribute nothing to the loss or its denominator.
    public var inLoss: Bool
}

/// Statistics of one advantage group.
public struct AdvantageGroup: Sendable, Equatable {
    /// The group's key: the id of its members with the grouped-over fields set to 0.
    public var key: TrajectoryID
    public var size: Int
    public var mean: Double
    /// Sample standard deviation (n − 1); 0 for a single member.
    public var std: Double
    public var zeroStd: Bool
    /// Skipped by the uniform-outcome filter.
    public var skipped: Bool
}

/// The advantages of one batch.
public struct AdvantageResult: Sendable, Equatable {
    /// Every trajectory, in canonical order.
    public var trajectories: [AdvantagedTrajectory]
    /// Every group, in canonical order of keys.
    public var groups: [AdvantageGroup]

    /// Fraction of groups whose rewards have zero std (`frac_zero_std`); 0 without groups.
    public var fracZeroStd: Double {
        groups.isEmpty ? 0 : Double(groups.filter(\.zeroStd).count) / Double(groups.count)
    }

    /// Fraction of groups skipped by the uniform-outcome filter; 0 without groups.
    public var fracSkipped: Double {
        groups.isEmpty ? 0 : Double(groups.filter(\.skipped).count) / Double(groups.count)
    }
}

/// GRPO's group-relative advantages.
///
/// Groups: the nc criteria of a pair; evaluations per (pair, response) — all nc·ne evaluations
/// of one response — or per (pair, criteria, response) with `.pairCriteriaResponse`; `par`
/// judgments per (pair, response); `pairwise` comparisons per pair.
///
/// `A = (r − mean) / (std + ε)` with the *sample* standard deviation (n − 1), as
/// `torch.std` computes it in the GRPO implementations of TRL and verl; `A = r − mean` when
/// `scaleByStd` is false (Dr.GRPO). A group with std ≤ 1e-12 — including a single-member group,
/// which has no relative signal — has A = 0 for all members and counts in `frac_zero_std`.
/// With `skipUniformGroups`, a group is kept only when 0 < #correct < size (ReasonGRM).
public enum Advantages {
    /// The group key of `id` under `grouping`.
    public static func groupKey(of id: TrajectoryID, grouping: EvaluationGrouping) -> TrajectoryID {
        switch id.stage {
        case .criteria, .comparison:
            return TrajectoryID(pairID: id.pairID, stage: id.stage)
        case .judgment:
            return TrajectoryID(pairID: id.pairID, stage: .judgment, responseIndex: id.responseIndex)
        case .evaluation:
            let criteria = grouping == .pairCriteriaResponse ? id.criteriaIndex : 0
            return TrajectoryID(pairID: id.pairID, stage: .evaluation, criteriaIndex: criteria, responseIndex: id.responseIndex)
        }
    }

    /// Advantages of `outcomes` (any order; duplicates of an id are treated as separate members).
    public static func compute(_ outcomes: [TrajectoryOutcome], options: AdvantageOptions) -> AdvantageResult {
        let sorted = outcomes.sorted { $0.id < $1.id }
        var members: [TrajectoryID: [Int]] = [:]
        for (index, outcome) in sorted.enumerated() {
            members[groupKey(of: outcome.id, grouping: options.evaluationGrouping), default: []].append(index)
        }
        var trajectories = sorted.map { AdvantagedTrajectory(id: $0.id, reward: $0.reward, advantage: 0, inLoss: true) }
        var groups: [AdvantageGroup] = []
        for key in members.keys.sorted() {
            let indices = members[key] ?? []
            let rewards = indices.map { sorted[$0].reward }
            let groupMean = mean(rewards)
            let std = rewards.count > 1
                ? (rewards.map { ($0 - groupMean) * ($0 - groupMean) }.reduce(0, +) / Double(rewards.count - 1)).squareRoot()
                : 0
            let zeroStd = !(std > 1e-12)
            let correct = indices.filter { sorted[$0].correct }.count
            let skipped = options.skipUniformGroups && !(correct > 0 && correct < indices.count)
            for index in indices {
                if zeroStd {
                    trajectories[index].advantage = 0
                } else {
                    let centred = sorted[index].reward - groupMean
                    trajectories[index].advantage = options.scaleByStd ? centred / (std + options.epsilon) : centred
                }
                if skipped || (zeroStd && options.dropZeroStdGroups) {
                    trajectories[index].inLoss = false
                    trajectories[index].advantage = 0
                }
            }
            groups.append(AdvantageGroup(key: key, size: indices.count, mean: groupMean, std: std, zeroStd: zeroStd, skipped: skipped))
        }
        return AdvantageResult(trajectories: trajectories, groups: groups)
    }
}
