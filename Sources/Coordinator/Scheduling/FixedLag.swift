import Configuration
import Foundation
import Shared

/// Which policy version each step of a fixed-lag run samples with (`cluster.mode =
/// "fixed-lag"`, docs/PROTOCOL.md, "Modes"): step k samples with the version published after
/// step k − 1 − lag (`cluster.max_staleness`), or with the weights the run started from for the
/// first steps. The version depends on the step alone, never on timing, so rollouts overlap the
/// update as in async mode and the weights stay bitwise the same for any number of workers and
/// through kills, as in sync mode. Pure: no socket, no clock.
public struct FixedLag: Sendable, Equatable {
    public let lag: Int
    /// The steps completed when this process started (0, or the resumed checkpoint's step).
    public let startStep: Int
    /// Versions before the start that can be served: the start version and those the resumed
    /// checkpoint kept (``GRPOLearner/previousPolicies``).
    public var kept: Set<UInt64>
    /// The checkpoint resumed from, for errors (nil: a fresh run).
    public let checkpoint: String?
    /// The version published after each step since the start (the start step's included).
    private var versionAfterStep: [Int: UInt64]

    /// Nil unless `settings` are fixed-lag. `policyVersion` is the version after
    /// `completedSteps` steps (the learner's at the start), restored from `checkpoint` if any.
    public init?(settings: SchedulerSettings, completedSteps: Int, policyVersion: UInt64, checkpoint: String? = nil) {
        guard settings.mode == .fixedLag else { return nil }
        lag = Int(settings.maxStaleness)
        startStep = completedSteps
        self.checkpoint = checkpoint
        kept = [policyVersion]
        versionAfterStep = [completedSteps: policyVersion]
    }

    /// The learner published `version` after step `step`.
    public mutating func published(_ version: UInt64, afterStep step: Int) {
        versionAfterStep[step] = version
    }

    /// The version step `step` samples with. Versions before the start are counted back one a
    /// step (the learner bumps its version once per update) and must be ones the checkpoint
    /// kept; otherwise the error names the step, the version and what the checkpoint holds.
    public func version(forStep step: Int) throws -> UInt64 {
        let source = max(0, step - 1 - lag)
        if source >= startStep {
            guard let version = versionAfterStep[source] else {
                throw CermError.invalid("fixed-lag: step \(step) samples with the version after step \(source), which is not published yet")
            }
            return version
        }
        let start = versionAfterStep[startStep]!
        let back = UInt64(startStep - source)
        guard back <= start, kept.contains(start - back) else {
            let held = kept.sorted().map { "v\($0)" }.joined(separator: ", ")
            throw CermError.invalid("fixed-lag (max_staleness = \(lag)): step \(step) samples with the policy after step \(source), "
                                    + "which the checkpoint of step \(startStep)\(checkpoint.map { " (\($0))" } ?? "") does not hold "
                                    + "(it holds \(held)); resume from a "
                                    + "checkpoint of a fixed-lag run with max_staleness ≥ \(lag), or continue it in sync mode")
        }
        return start - back
    }
}
