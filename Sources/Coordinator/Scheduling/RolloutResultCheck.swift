import Configuration
import Method
import Shared
import WireProtocol

/// Checks a RESULT's trajectories against the rollout plan of their step before the coordinator
/// accepts them (docs/PROTOCOL.md, "Coordinator's acceptance rules", rule 5), so that what the
/// learner refuses never reaches it: a protocol-valid but inconsistent result is dropped and
/// its task re-queued instead of failing the run at the update.
///
/// Per pair of the task it rebuilds the plan's trajectory set (in `cerm` mode the evaluation
/// requests follow from the criteria outputs received, exactly as the learner rebuilds them)
/// and requires exactly that set, each trajectory's prompt length as rebuilt, one behaviour
/// and one reference log-prob per token (finite), tokens inside the vocabulary and prompt +
/// output − 1 ≤ `model.max_seq_len` when there is output (an empty output after a prompt that
/// does not fit is what an honest worker returns, finish `context`).
public struct RolloutResultCheck: Sendable {
    public var rollout: RolloutConfig
    /// The run model's conversation: the plan's prompts are rendered through it.
    public var chat: any ChatCodec
    public var mode: RewardMode
    public var runSeed: UInt64
    public var maxSeqLen: Int
    public var vocabSize: Int

    public init(rollout: RolloutConfig, chat: any ChatCodec, mode: RewardMode, runSeed: UInt64, maxSeqLen: Int, vocabSize: Int) {
        self.rollout = rollout
        self.chat = chat
        self.mode = mode
        self.runSeed = runSeed
        self.maxSeqLen = maxSeqLen
        self.vocabSize = vocabSize
    }

    /// The check of `[rollout]`, `reward.mode`, `run.seed` and `[model]`, prompts rendered through `chat`.
    public init(config: Config, chat: any ChatCodec) {
        self.init(rollout: config.rollout, chat: chat, mode: config.reward.mode, runSeed: config.run.seed,
                  maxSeqLen: config.model.maxSeqLen, vocabSize: config.model.vocabSize)
    }

    /// Nil when `trajectories` are exactly what the plan of `step` asks for `pairs`, with
    /// consistent contents; otherwise the first problem, naming the trajectory.
    public func problem(step: UInt64, pairs: [TaskPair], trajectories: [Trajectory]) -> String? {
        let plan = RolloutPlan(config: rollout, chat: chat, runSeed: runSeed, step: step)
        var byPair: [UInt64: [Trajectory]] = [:]
        for trajectory in trajectories { byPair[trajectory.id.pairID, default: []].append(trajectory) }
        for pair in pairs.sorted(by: { $0.pairID < $1.pairID }) {
            let received = (byPair.removeValue(forKey: pair.pairID) ?? []).sorted { $0.id < $1.id }
            // Token ids are checked before they become prompt material.
            for trajectory in received {
                if let fault = TrajectoryFault.contentFault(of: trajectory, vocabSize: vocabSize) { return fault.description }
            }
            var outputs: [TrajectoryID: [TokenID]] = [:]
            for trajectory in received { outputs[trajectory.id] = trajectory.tokens.map { TokenID(truncatingIfNeeded: $0) } }
            let prompts = plan.expectedPrompts(for: pair, mode: mode, outputs: outputs)
            for trajectory in received {
                let id = trajectory.id
                guard let prompt = prompts[id] else {
                    if id.stage == .evaluation, mode == .cerm, (0..<plan.nc).contains(id.criteriaIndex),
                       prompts[.criteria(pair: pair.pairID, id.criteriaIndex)] != nil {
                        return "\(id) is not in the rollout plan: criteria set c\(id.criteriaIndex) does not parse, so it has no evaluations"
                    }
                    return "\(id) is not in the rollout plan"
                }
                if let fault = TrajectoryFault.promptLengthFault(of: trajectory, prompt: prompt)
                    ?? TrajectoryFault.contextFault(of: trajectory, promptLength: prompt.count, maxSeqLen: maxSeqLen) {
                    return fault.description
                }
            }
            let got = Set(received.map(\.id))
            if let missing = prompts.keys.sorted().first(where: { !got.contains($0) }) {
                return "\(missing) is missing (the rollout plan asks for \(prompts.count) trajectories of pair \(pair.pairID), the result has \(got.count))"
            }
        }
        if let stray = byPair.values.joined().map(\.id).min() { return "\(stray) names a pair outside the task" }
        return nil
    }

}

/// A rule a received trajectory breaks, with the one text that states it. The coordinator's
/// acceptance (``RolloutResultCheck``) and the learner (``GRPOLearnerError``) check with the
/// same functions and say the same words.
public enum TrajectoryFault: Sendable, Equatable, CustomStringConvertible {
    /// Behaviour or reference log-probs are not one per generated token.
    case logprobCount(TrajectoryID, tokens: Int, behaviour: Int, reference: Int)
    /// A behaviour or reference log-prob is NaN or infinite.
    case nonFiniteLogprob(TrajectoryID, index: Int)
    /// A generated token id outside the model's vocabulary.
    case tokenOutOfVocabulary(TrajectoryID, index: Int, token: UInt32, vocabSize: Int)
    /// The worker's prompt differs in length from the one the rollout plan rebuilds.
    case promptLength(TrajectoryID, reported: Int, rebuilt: Int)
    /// Prompt + output do not fit the model's context.
    case sequenceTooLong(TrajectoryID, length: Int, maxSeqLen: Int)

    /// The first of one behaviour and one reference log-prob per token, all finite, and token
    /// ids inside the vocabulary that `trajectory` breaks.
    public static func contentFault(of trajectory: Trajectory, vocabSize: Int) -> TrajectoryFault? {
        let id = trajectory.id
        let n = trajectory.tokens.count
        guard trajectory.behaviourLogprobs.count == n, trajectory.referenceLogprobs.count == n else {
            return .logprobCount(id, tokens: n, behaviour: trajectory.behaviourLogprobs.count, reference: trajectory.referenceLogprobs.count)
        }
        for (index, (behaviour, reference)) in zip(trajectory.behaviourLogprobs, trajectory.referenceLogprobs).enumerated()
        where !(behaviour.isFinite && reference.isFinite) {
            return .nonFiniteLogprob(id, index: index)
        }
        if let index = trajectory.tokens.firstIndex(where: { Int($0) >= vocabSize }) {
            return .tokenOutOfVocabulary(id, index: index, token: trajectory.tokens[index], vocabSize: vocabSize)
        }
        return nil
    }

    /// Whether the worker reports the length of `prompt`, the one the rollout plan rebuilds.
    public static func promptLengthFault(of trajectory: Trajectory, prompt: [TokenID]) -> TrajectoryFault? {
        let reported = Int(trajectory.promptTokenCount)
        return reported == prompt.count ? nil : .promptLength(trajectory.id, reported: reported, rebuilt: prompt.count)
    }

    /// Prompt + output − 1 ≤ `maxSeqLen` when there is output: the forward reads every token but
    /// the last, and an empty output after a prompt that does not fit is what an honest worker
    /// returns (finish `context`).
    public static func contextFault(of trajectory: Trajectory, promptLength: Int, maxSeqLen: Int) -> TrajectoryFault? {
        let n = trajectory.tokens.count
        guard n == 0 || promptLength + n - 1 <= maxSeqLen else {
            return .sequenceTooLong(trajectory.id, length: promptLength + n, maxSeqLen: maxSeqLen)
        }
        return nil
    }

    /// The trajectory at fault.
    public var trajectory: TrajectoryID {
        switch self {
        case let .logprobCount(id, _, _, _), let .nonFiniteLogprob(id, _), let .tokenOutOfVocabulary(id, _, _, _),
             let .promptLength(id, _, _), let .sequenceTooLong(id, _, _): id
        }
    }

    /// The rule broken, without the trajectory.
    public var rule: String {
        switch self {
        case let .logprobCount(_, tokens, behaviour, reference):
            "\(tokens) generated tokens but \(behaviour) behaviour and \(reference) reference log-probs"
        case let .nonFiniteLogprob(_, index): "behaviour or reference log-prob of token \(index) is not finite"
        case let .tokenOutOfVocabulary(_, index, token, vocabSize): "generated token \(index) is \(token), outside the vocabulary of \(vocabSize)"
        case let .promptLength(_, reported, rebuilt): "generated after a \(reported)-token prompt but the rollout plan rebuilds \(rebuilt) tokens"
        case let .sequenceTooLong(_, length, maxSeqLen): "prompt + output is \(length) tokens, model.max_seq_len is \(maxSeqLen)"
        }
    }

    public var description: String { "\(trajectory): \(rule)" }
}

extension RolloutPlan {
    /// The prompt of every trajectory this plan asks for of `pair` under reward `mode`, given
    /// the outputs received so far: in `cerm` mode the criteria outputs decide which evaluations
    /// exist. The coordinator checks results against it on arrival (``RolloutResultCheck``) and
    /// the learner rebuilds the trained sequences from it.
    public func expectedPrompts(for pair: TaskPair, mode: RewardMode, outputs: [TrajectoryID: [TokenID]]) -> [TrajectoryID: [TokenID]] {
        let requests: [RolloutRequest]
        switch mode {
        case .cerm:
            let criteriaOutputs = (0..<max(nc, 0)).map { outputs[.criteria(pair: pair.pairID, $0)] ?? [] }
            requests = criteriaRequests(for: pair) + evaluationRequests(for: pair, criteriaOutputs: criteriaOutputs).requests
        case .par:
            requests = judgmentRequests(for: pair)
        case .pairwise:
            requests = comparisonRequests(for: pair)
        }
        var prompts: [TrajectoryID: [TokenID]] = [:]
        for request in requests { prompts[request.id] = request.promptTokens }
        return prompts
    }
}
