import Configuration
import Shared

// Rewards of the three modes (`reward.mode`), from pairwise labels only.

/// The reward of one trajectory and what the metrics and group filters need to know about it.
public struct TrajectoryOutcome: Sendable, Equatable {
    public var id: TrajectoryID
    /// The scalar reward GRPO normalises within the trajectory's group.
    public var reward: Double
    /// Whether the trajectory's output parsed.
    public var formatValid: Bool
    /// Whether the outcome counts as correct for ReasonGRM's uniform-group filter
    /// (`reward.skip_uniform_groups`); each mode's rewards document their definition.
    public var correct: Bool

    public init(id: TrajectoryID, reward: Double, formatValid: Bool, correct: Bool) {
        self.id = id
        self.reward = reward
        self.formatValid = formatValid
        self.correct = correct
    }
}

/// CE-RM's win-rate rewards (docs/DESIGN.md §3) for one preference pair.
///
/// With `w(a, b)` = 1 / ½ / 0 for a > b / a = b / a < b on valid scores, "valid beats ⊥" and
/// "⊥ wins nothing" applied from the side of the trajectory being rewarded:
/// - `r(E+_ij) = [valid] · mean_k w(s+_ij, s-_ik)`; a valid E+ against an invalid E- wins (1).
/// - `r(E-_ik) = [valid] · mean_j w(s+_ij, s-_ik)`: the rejected evaluation wins when the
///   chosen was scored above it; a valid E- against an invalid E+ wins (1).
/// - `r(C_i) = [valid] · mean_{j,k} w(s+_ij, s-_ik)`: the criteria win when their evaluations
///   rank chosen over rejected; a valid E+ beats an invalid E- (1), an invalid E+ wins
///   nothing (0), two invalid evaluations give 0.
///
/// Evaluations under invalid criteria are never sampled (``RolloutPlan``), so an invalid
/// criteria set contributes one trajectory with reward 0 and no evaluations. A mean over no
/// comparisons (the other side has no samples) is 0.
///
/// "Correct" (for `skip_uniform_groups`): a criteria or evaluation trajectory is correct when
/// its reward exceeds ½, i.e. it won the majority of its comparisons.
public enum CermRewards {
    /// The scores of one pair's rollout.
    public struct PairScores: Sendable, Equatable {
        public var pairID: UInt64
        /// Validity of criteria trajectory i (nc entries).
        public var criteriaValid: [Bool]
        /// `chosen[i][j]`: overall score of evaluation j of the chosen response under criteria
        /// i, nil when invalid (⊥). Rows of invalid criteria are ignored (may be empty).
        public var chosen: [[Double?]]
        /// `rejected[i][k]`: the same for the rejected response.
        public var rejected: [[Double?]]

        public init(pairID: UInt64, criteriaValid: [Bool], chosen: [[Double?]], rejected: [[Double?]]) {
            self.pairID = pairID
            self.criteriaValid = criteriaValid
            self.chosen = chosen
            self.rejected = rejected
        }

        /// Scores from parse results: `criteria[i]`, `evaluations[i][r][j]` (r = 0 chosen,
        /// 1 rejected); the overall score of each valid evaluation.
        public init(pairID: UInt64, criteria: [ParseResult<ParsedCriteria>],
                    evaluations: [[[ParseResult<ParsedEvaluation>]]]) {
            func scores(_ i: Int, _ r: Int) -> [Double?] {
                guard i < evaluations.count, r < evaluations[i].count else { return [] }
                return evaluations[i][r].map { $0.value?.overall }
            }
            self.init(pairID: pairID, criteriaValid: criteria.map(\.isValid),
                      chosen: criteria.indices.map { scores($0, 0) },
                      rejected: criteria.indices.map { scores($0, 1) })
        }
    }

    /// The pair's implied accuracy: chosen vs rejected mean score over all evaluations under
    /// valid criteria (``MethodMetrics/impliedAccuracy(chosen:rejected:)``).
    public static func impliedAccuracy(_ pair: PairScores) -> Double {
        let valid = pair.criteriaValid.indices.filter { pair.criteriaValid[$0] }
        let chosen = valid.flatMap { $0 < pair.chosen.count ? pair.chosen[$0] : [] }
        let rejected = valid.flatMap { $0 < pair.rejected.count ? pair.rejected[$0] : [] }
        return MethodMetrics.impliedAccuracy(chosen: chosen, rejected: rejected)
    }

    /// `w(a, b)` for the chosen side's score `a` against the rejected side's `b`, seen from
    /// the trajectory that produced `a`: valid beats ⊥, ⊥ wins nothing.
    public static func win(_ a: Double?, over b: Double?) -> Double {
        guard let a else { return 0 }
        guard let b else { return 1 }
        return a > b ? 1 : (a == b ? 0.5 : 0)
    }

    /// The rewards of every trajectory of the pair, in canonical order: nc criteria, then the
    /// evaluations under valid criteria.
    public static func rewards(_ pair: PairScores) -> [TrajectoryOutcome] {
        var criteria: [TrajectoryOutcome] = []
        var evaluations: [TrajectoryOutcome] = []
        for (i, isValid) in pair.criteriaValid.enumerated() {
            let chosen = i < pair.chosen.count ? pair.chosen[i] : []
            let rejected = i < pair.rejected.count ? pair.rejected[i] : []
            var criteriaReward = 0.0
            if isValid {
                criteriaReward = mean(chosen.flatMap { a in rejected.map { b in win(a, over: b) } })
                for (j, a) in chosen.enumerated() {
                    let reward = a == nil ? 0 : mean(rejected.map { win(a, over: $0) })
                    evaluations.append(TrajectoryOutcome(
                        id: .evaluation(pair: pair.pairID, criteria: i, response: 0, sample: j),
                        reward: reward, formatValid: a != nil, correct: reward > 0.5))
                }
                for (k, b) in rejected.enumerated() {
                    // The rejected evaluation "wins" when it scored below the chosen one.
                    let reward = b == nil ? 0 : mean(chosen.map { a in a == nil ? 1 : win(a, over: b) })
                    evaluations.append(TrajectoryOutcome(
                        id: .evaluation(pair: pair.pairID, criteria: i, response: 1, sample: k),
                        reward: reward, formatValid: b != nil, correct: reward > 0.5))
                }
            }
            criteria.append(TrajectoryOutcome(id: .criteria(pair: pair.pairID, i), reward: criteriaReward,
                                               formatValid: isValid, correct: criteriaReward > 0.5))
        }
        return (criteria + evaluations).sorted { $0.id < $1.id }
    }
}

/// PaTaRM's preference-aware reward (PAR) plus its format term, for one pair's judgments.
///
/// `m+`, `m-` are the means of the *valid* scores of the chosen and rejected judgments.
/// `R(y+_i) = [s+_i > m-] · f(s+_i − m-)`, `R(y-_j) = [s-_j < m+] · f(m+ − s-_j)`, where
/// `f` is `constant` 1.3 or `graded` 1.2 for 0 < δ ≤ 2, 1.4 for δ > 2 (PaTaRM §5.2). An
/// invalid judgment has R_PAR = 0; when the other side has no valid judgment its mean does
/// not exist and R_PAR = 0 (the seed does not define it; no comparison, no reward). The
/// format term (PaTaRM §3.1) is −1.5 when tags are missing or misordered (also for truncated
/// output or a stray special token, which leave the tag structure incomplete), −1.0 when the
/// score is invalid (`no_score`, `malformed_score`, `score_out_of_range`), else 0.
///
/// "Correct" (for `skip_uniform_groups`): R_PAR > 0, the score lies on the right side of the
/// other response's mean.
public enum ParRewards {
    /// `f(δ)` for a positive margin δ.
    public static func margin(_ delta: Double, _ function: ParMarginFunction) -> Double {
        guard delta > 0 else { return 0 }
        switch function {
        case .constant: return 1.3
        case .graded: return delta <= 2 ? 1.2 : 1.4
        }
    }

    /// PaTaRM's format term for a parse result.
    public static func formatReward(_ failure: ParseFailure?) -> Double {
        switch failure {
        case nil: return 0
        case .noScore?, .malformedScore?, .scoreOutOfRange?: return -1.0
        default: return -1.5
        }
    }

    /// The rewards of the pair's judgments in canonical order: chosen (response 0) samples,
    /// then rejected (response 1) samples.
    public static func rewards(pairID: UInt64, chosen: [ParseResult<ParsedJudgment>], rejected: [ParseResult<ParsedJudgment>],
                               function: ParMarginFunction) -> [TrajectoryOutcome] {
        let chosenScores = chosen.compactMap { $0.value?.score }
        let rejectedScores = rejected.compactMap { $0.value?.score }
        let chosenMean = chosenScores.isEmpty ? nil : mean(chosenScores)
        let rejectedMean = rejectedScores.isEmpty ? nil : mean(rejectedScores)
        func outcome(_ result: ParseResult<ParsedJudgment>, response: Int, sample: Int) -> TrajectoryOutcome {
            var par = 0.0
            if let score = result.value?.score {
                if response == 0, let rejectedMean, score > rejectedMean {
                    par = margin(score - rejectedMean, function)
                } else if response == 1, let chosenMean, score < chosenMean {
                    par = margin(chosenMean - score, function)
                }
            }
            return TrajectoryOutcome(
                id: TrajectoryID(pairID: pairID, stage: .judgment, responseIndex: response, sampleIndex: sample),
                reward: par + formatReward(result.failure), formatValid: result.isValid, correct: par > 0)
        }
        return chosen.enumerated().map { outcome($1, response: 0, sample: $0) }
            + rejected.enumerated().map { outcome($1, response: 1, sample: $0) }
    }
}

/// RM-R1's correctness reward for pairwise judgments: +1 when the verdict names the chosen
/// response, −1 otherwise (wrong verdict, both or neither verdict, any parse failure).
/// "Correct" is reward +1.
public enum PairwiseRewards {
    /// One comparison's verdict and where its prompt placed the chosen response.
    public struct Sample: Sendable, Equatable {
        public var verdict: ParseResult<PairwiseVerdict>
        public var chosenIsA: Bool

        public init(verdict: ParseResult<PairwiseVerdict>, chosenIsA: Bool) {
            self.verdict = verdict
            self.chosenIsA = chosenIsA
        }

        /// Whether the verdict names the chosen response.
        public var isCorrect: Bool {
            guard let verdict = verdict.value else { return false }
            return (verdict == .a) == chosenIsA
        }
    }

    /// The rewards of the pair's comparisons, sample j at `samples[j]`.
    public static func rewards(pairID: UInt64, samples: [Sample]) -> [TrajectoryOutcome] {
        samples.enumerated().map { index, sample in
            TrajectoryOutcome(id: TrajectoryID(pairID: pairID, stage: .comparison, sampleIndex: index),
                              reward: sample.isCorrect ? 1 : -1, formatValid: sample.verdict.isValid,
                              correct: sample.isCorrect)
        }
    }
}

/// Scoring responses at inference (Best-of-N, test-time scaling over k criteria samples).
public enum ResponseScoring {
    /// Each response's score: the mean of its valid overall scores, `scores[r]` holding the
    /// scores of response r under the k criteria samples (nil = invalid); nil when none is valid.
    public static func meanScores(_ scores: [[Double?]]) -> [Double?] {
        scores.map { values in
            let valid = values.compactMap { $0 }
            return valid.isEmpty ? nil : mean(valid)
        }
    }

    /// The index of the best response by ``meanScores(_:)``: the highest mean, the lowest index
    /// on ties; responses without a valid score never win; nil when no response has one.
    public static func best(_ scores: [[Double?]]) -> Int? {
        var best: (index: Int, score: Double)?
        for (index, score) in meanScores(scores).enumerated() {
            guard let score else { continue }
            if score > (best?.score ?? -Double.infinity) { best = (index, score) }
        }
        return best?.index
    }
}

/// Arithmetic mean; 0 for no values.
func mean(_ values: [Double]) -> Double {
    values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count)
}

/// Everything the learner needs from one pair's generated outputs.
public struct PairScoring: Sendable, Equatable {
    /// One outcome per trajectory, in canonical order.
    public var outcomes: [TrajectoryOutcome]
    /// The parse failure of each invalid trajectory.
    public var failures: [TrajectoryID: ParseFailure]
    /// The pair's implied accuracy: `cerm` and `par` compare the mean valid scores of chosen and
    /// rejected (``MethodMetrics/impliedAccuracy(chosen:rejected:)``); `pairwise` is the
    /// fraction of comparisons whose verdict names the chosen response.
    public var impliedAccuracy: Double
}

/// Parses and rewards one pair's outputs under the run's `reward.mode`: the one entry point
/// the learner needs per pair.
///
/// Expected trajectories follow ``RolloutPlan``: `cerm` — nc criteria, and for each valid
/// criteria set ne evaluations of response 0 (chosen) and 1 (rejected); `par` — nc·ne
/// judgments of each response; `pairwise` — nc·ne comparisons. An expected output that is
/// absent from `outputs` counts as `truncated`; outputs of unexpected ids are ignored.
public struct PairRewarder: Sendable {
    public var mode: RewardMode
    public var parFunction: ParMarginFunction
    public var format: any PromptFormat
    public var nc: Int
    public var ne: Int
    public var runSeed: UInt64
    public var step: UInt64

    public init(mode: RewardMode, parFunction: ParMarginFunction, format: any PromptFormat, nc: Int, ne: Int,
                runSeed: UInt64, step: UInt64) {
        self.mode = mode
        self.parFunction = parFunction
        self.format = format
        self.nc = nc
        self.ne = ne
        self.runSeed = runSeed
        self.step = step
    }

    /// The rewarder of a run's configuration at `step`; outputs are read through the run model's `chat`.
    public init(reward: RewardConfig, rollout: RolloutConfig, chat: any ChatCodec, runSeed: UInt64, step: UInt64) {
        self.init(mode: reward.mode, parFunction: reward.parF, format: makePromptFormat(rollout.format, chat: chat),
                  nc: rollout.nc, ne: rollout.ne, runSeed: runSeed, step: step)
    }

    /// Parses `outputs` (generated tokens by trajectory, each ending in `⟨eos⟩` unless
    /// truncated) and rewards them.
    public func score(pairID: UInt64, outputs: [TrajectoryID: [TokenID]]) -> PairScoring {
        var failures: [TrajectoryID: ParseFailure] = [:]
        func note<V>(_ id: TrajectoryID, _ result: ParseResult<V>) -> ParseResult<V> {
            if let failure = result.failure { failures[id] = failure }
            return result
        }
        let samples = max(nc, 0) * max(ne, 0)
        switch mode {
        case .cerm:
            var criteria: [ParseResult<ParsedCriteria>] = []
            var evaluations: [[[ParseResult<ParsedEvaluation>]]] = []
            for i in 0..<max(nc, 0) {
                let id = TrajectoryID.criteria(pair: pairID, i)
                let parsed = note(id, format.parseCriteria(tokens: outputs[id] ?? []))
                criteria.append(parsed)
                guard let items = parsed.value?.items else {
                    evaluations.append([[], []])
                    continue
                }
                evaluations.append((0..<2).map { r in
                    (0..<max(ne, 0)).map { j in
                        let id = TrajectoryID.evaluation(pair: pairID, criteria: i, response: r, sample: j)
                        return note(id, format.parseEvaluation(tokens: outputs[id] ?? [], criteriaCount: items.count))
                    }
                })
            }
            let scores = CermRewards.PairScores(pairID: pairID, criteria: criteria, evaluations: evaluations)
            return PairScoring(outcomes: CermRewards.rewards(scores), failures: failures,
                               impliedAccuracy: CermRewards.impliedAccuracy(scores))
        case .par:
            let par = ParFormat()
            let judgments = (0..<2).map { r in
                (0..<samples).map { j in
                    let id = TrajectoryID(pairID: pairID, stage: .judgment, responseIndex: r, sampleIndex: j)
                    return note(id, par.parseJudgment(tokens: outputs[id] ?? []))
                }
            }
            let accuracy = MethodMetrics.impliedAccuracy(chosen: judgments[0].map { $0.value?.score },
                                                         rejected: judgments[1].map { $0.value?.score })
            return PairScoring(outcomes: ParRewards.rewards(pairID: pairID, chosen: judgments[0], rejected: judgments[1],
                                                            function: parFunction),
                               failures: failures, impliedAccuracy: accuracy)
        case .pairwise:
            let pairwise = PairwiseFormat()
            let comparisons = (0..<samples).map { j in
                let id = TrajectoryID(pairID: pairID, stage: .comparison, sampleIndex: j)
                return PairwiseRewards.Sample(verdict: note(id, pairwise.parseVerdict(tokens: outputs[id] ?? [])),
                                              chosenIsA: PairwiseFormat.chosenIsA(seed: id.seed(runSeed: runSeed, step: step)))
            }
            let correct = comparisons.filter(\.isCorrect).count
            return PairScoring(outcomes: PairwiseRewards.rewards(pairID: pairID, samples: comparisons), failures: failures,
                               impliedAccuracy: comparisons.isEmpty ? 0 : Double(correct) / Double(comparisons.count))
        }
    }
}
