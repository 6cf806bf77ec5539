import Configuration
import Method
import Shared
import WireProtocol

/// Checks a RESULT's trajectories against the rollout plan of their step before the coordinator
/// accepts them (docs/PROTOCOL.md, "Coordinator's acceptance rules", rule 5): a protocol-valid
/// but inconsistent result is dropped and its task re-queued instead of failing the run at the
/// update, and what it accepts (``AcceptedRollout``: the trajectories with their rebuilt
/// prompts) is what the learner trains on.
///
/// Per pair of the task it rebuilds the plan's trajectory set and prompts (in `cerm` mode the
/// evaluation requests follow from the criteria outputs received) and requires exactly that
/// set, each trajectory's prompt length as rebuilt, one behaviour and one reference log-prob per
/// token (finite), tokens inside the vocabulary and prompt + output − 1 ≤ `model.max_seq_len`
/// when there is output (an empty output after a prompt that does not fit is what an honest
/// worker returns, finish `context`).
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

    /// The rollouts of `pairs` in pair-id order, each trajectory with the prompt the plan of
    /// `step` rebuilds for it, when `trajectories` are exactly what that plan asks for `pairs`
    /// with consistent contents; otherwise throws the first fault, naming the trajectory. What
    /// it accepts is the learner's input: the learner neither rebuilds a prompt nor checks again.
    public func accept(step: UInt64, pairs: [TaskPair], trajectories: [Trajectory]) throws(TrajectoryFault) -> [AcceptedRollout] {
        let plan = RolloutPlan(config: rollout, chat: chat, runSeed: runSeed, step: step)
        let byPair = try TrajectoryFault.grouped(trajectories, pairIDs: pairs.map(\.pairID))
        var accepted: [AcceptedRollout] = []
        for pair in pairs.sorted(by: { $0.pairID < $1.pairID }) {
            let received = byPair[pair.pairID] ?? []
            // Token ids are checked before they become prompt material.
            for trajectory in received {
                if let fault = TrajectoryFault.contentFault(of: trajectory, vocabSize: vocabSize) { throw fault }
            }
            let outputs = AcceptedRollout.outputs(of: received)
            let prompts = plan.expectedPrompts(for: pair, mode: mode, outputs: outputs)
            var checked: [[TokenID]] = []
            for trajectory in received {
                let id = trajectory.id
                guard let prompt = prompts[id] else {
                    let unparsed = id.stage == .evaluation && mode == .cerm && (0..<plan.nc).contains(id.criteriaIndex)
                        && prompts[.criteria(pair: pair.pairID, id.criteriaIndex)] != nil
                    throw .notInPlan(id, unparsedCriteria: unparsed)
                }
                if let fault = TrajectoryFault.promptLengthFault(of: trajectory, prompt: prompt)
                    ?? TrajectoryFault.contextFault(of: trajectory, promptLength: prompt.count, maxSeqLen: maxSeqLen) {
                    throw fault
                }
                checked.append(prompt)
            }
            let got = Set(received.map(\.id))
            if let missing = prompts.keys.sorted().first(where: { !got.contains($0) }) {
                throw .missing(missing, planned: prompts.count, received: got.count)
            }
            accepted.append(AcceptedRollout(pairID: pair.pairID, trajectories: received, prompts: checked, outputs: outputs))
        }
        return accepted
    }

    /// A step's rollouts from trajectories received outside a scheduler (tests drive the learner
    /// so): accepted by ``accept(step:pairs:trajectories:)`` all pairs at once, every pair
    /// sampled with `policyVersion`.
    public func stepRollouts(step: UInt64, pairs: [TaskPair], trajectories: [Trajectory],
                             policyVersion: UInt64 = 0) throws(TrajectoryFault) -> StepRollouts {
        StepRollouts(step: step, rollouts: try accept(step: step, pairs: pairs, trajectories: trajectories),
                     versionByPair: Dictionary(pairs.map { ($0.pairID, policyVersion) }, uniquingKeysWith: { first, _ in first }))
    }
}

/// One pair's rollout as the coordinator accepted it: the learner's input.
public struct AcceptedRollout: Equatable, Sendable {
    public let pairID: UInt64
    /// The pair's trajectories in canonical (``TrajectoryID``) order.
    public let trajectories: [Trajectory]
    /// `prompts[i]` is the prompt the rollout plan rebuilds for `trajectories[i]`, the context
    /// its worker generated in (only the length travels); nil when accepted without a plan (a
    /// scheduler without ``SchedulerSettings/resultCheck``), which the learner refuses.
    public let prompts: [[TokenID]]?
    /// Each trajectory's output as token ids (the rewarder's input).
    public let outputs: [TrajectoryID: [TokenID]]

    init(pairID: UInt64, trajectories: [Trajectory], prompts: [[TokenID]]?, outputs: [TrajectoryID: [TokenID]]) {
        self.pairID = pairID
        self.trajectories = trajectories
        self.prompts = prompts
        self.outputs = outputs
    }

    /// The trajectories of pair `pairID` accepted without a rollout plan: no prompts.
    public init(pairID: UInt64, unplanned trajectories: [Trajectory]) {
        let sorted = trajectories.sorted { $0.id < $1.id }
        self.init(pairID: pairID, trajectories: sorted, prompts: nil, outputs: Self.outputs(of: sorted))
    }

    /// The outputs of `trajectories` by id, as token ids.
    static func outputs(of trajectories: [Trajectory]) -> [TrajectoryID: [TokenID]] {
        var outputs: [TrajectoryID: [TokenID]] = [:]
        for trajectory in trajectories { outputs[trajectory.id] = trajectory.tokens.map { TokenID(truncatingIfNeeded: $0) } }
        return outputs
    }
}

/// A rule a received result breaks, with the one text that states it: the coordinator's
/// acceptance (``TaskScheduler``, ``RolloutResultCheck``) is the one place these are checked.
public enum TrajectoryFault: Error, Sendable, Equatable, CustomStringConvertible {
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
    /// A trajectory of a pair the task (or step) does not hold.
    case outsideTask(TrajectoryID)
    /// The same trajectory id twice.
    case duplicate(TrajectoryID)
    /// The rollout plan does not ask for this trajectory; `unparsedCriteria`: it is an
    /// evaluation under a criteria set whose output does not parse.
    case notInPlan(TrajectoryID, unparsedCriteria: Bool)
    /// A trajectory the rollout plan asks for is not there (`planned` of the pair, `received`).
    case missing(TrajectoryID, planned: Int, received: Int)

    /// `trajectories` by pair, each pair's in canonical order, when every one names a pair of
    /// `pairIDs` and no id comes twice.
    public static func grouped(_ trajectories: [Trajectory], pairIDs: [UInt64]) throws(TrajectoryFault) -> [UInt64: [Trajectory]] {
        let pairs = Set(pairIDs)
        var byPair: [UInt64: [Trajectory]] = [:]
        var seen = Set<TrajectoryID>()
        for trajectory in trajectories {
            guard pairs.contains(trajectory.id.pairID) else { throw .outsideTask(trajectory.id) }
            guard seen.insert(trajectory.id).inserted else { throw .duplicate(trajectory.id) }
            byPair[trajectory.id.pairID, default: []].append(trajectory)
        }
        return byPair.mapValues { $0.sorted { $0.id < $1.id } }
    }

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

    public var description: String {
        switch self {
        case let .logprobCount(id, tokens, behaviour, reference):
            "\(id): \(tokens) generated tokens but \(behaviour) behaviour and \(reference) reference log-probs"
        case let .nonFiniteLogprob(id, index): "\(id): behaviour or reference log-prob of token \(index) is not finite"
        case let .tokenOutOfVocabulary(id, index, token, vocabSize): "\(id): generated token \(index) is \(token), outside the vocabulary of \(vocabSize)"
        case let .promptLength(id, reported, rebuilt): "\(id): generated after a \(reported)-token prompt but the rollout plan rebuilds \(rebuilt) tokens"
        case let .sequenceTooLong(id, length, maxSeqLen): "\(id): prompt + output is \(length) tokens, model.max_seq_len is \(maxSeqLen)"
        case let .outsideTask(id): "\(id) names a pair outside the task"
        case let .duplicate(id): "\(id) received twice"
        case let .notInPlan(id, unparsed):
            "\(id) is not in the rollout plan" + (unparsed ? ": criteria set c\(id.criteriaIndex) does not parse, so it has no evaluations" : "")
        case let .missing(id, planned, received):
            "\(id) is missing (the rollout plan asks for \(planned) trajectories of pair \(id.pairID), the result has \(received))"
        }
    }
}

extension RolloutPlan {
    /// The prompt of every trajectory this plan asks for of `pair` under reward `mode`, given
    /// the outputs received so far: in `cerm` mode the criteria outputs decide which evaluations
    /// exist. The coordinator checks results against it on arrival (``RolloutResultCheck``), and
    /// the prompts it accepts are the ones the learner trains on.
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
