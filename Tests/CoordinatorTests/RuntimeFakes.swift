@testable import Coordinator
import Foundation
@testable import Method
@testable import Shared
@testable import WireProtocol
import Worker

extension StepRollouts {
    /// A step's trajectories accepted as a scheduler without a result check accepts them: no
    /// rollout plan, no prompts (the fake learner needs none; ``GRPOLearner`` refuses them).
    static func unplanned(step: UInt64, trajectories: [Trajectory], versionByPair: [UInt64: UInt64]) -> StepRollouts {
        StepRollouts(step: step, rollouts: Dictionary(grouping: trajectories, by: \.id.pairID).map { AcceptedRollout(pairID: $0.key, unplanned: $0.value) },
                     versionByPair: versionByPair)
    }
}

/// Deterministic stand-ins for the engine: trajectories and weights are hashes of exactly the
/// inputs a real engine's output depends on, so any mix-up (wrong version, wrong pair, order
/// dependence, lost or duplicated trajectory) changes the final bytes.
enum FakeModel {
    static let vocabulary: UInt64 = 264

    static func mix(_ h: inout UInt64, _ value: UInt64) {
        var v = value
        withUnsafeBytes(of: &v) { h = Checksum.fnv1a64($0, seed: h) }
    }

    /// Bytes of a weights blob derived from `seed`.
    static func expand(_ seed: UInt64, count: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        var h = seed
        while out.count < count {
            mix(&h, UInt64(out.count))
            withUnsafeBytes(of: h.littleEndian) { out.append(contentsOf: $0.prefix(count - out.count)) }
        }
        return out
    }

    /// The two-stage trajectories of one task as a deterministic function of task and weights.
    static func trajectories(task: TaskMessage, weights: [UInt8], reference: [UInt8]) -> [Trajectory] {
        let weightsHash = Checksum.fnv1a64(weights), referenceHash = Checksum.fnv1a64(reference)
        var out: [Trajectory] = []
        for pair in task.pairs {
            let nc = Int(task.parameters.nc), ne = Int(task.parameters.ne)
            var ids: [TrajectoryID] = []
            for i in 0..<nc {
                ids.append(.criteria(pair: pair.pairID, i))
                for r in 0..<pair.responses.count {
                    for j in 0..<ne { ids.append(.evaluation(pair: pair.pairID, criteria: i, response: r, sample: j)) }
                }
            }
            for id in ids.sorted() {
                var h = weightsHash
                let fields: [UInt64] = [task.runSeed, task.step, id.pairID, UInt64(id.stage.rawValue), UInt64(id.criteriaIndex),
                                        UInt64(id.responseIndex), UInt64(id.sampleIndex), UInt64(pair.query.utf8.count)]
                for v in fields { mix(&h, v) }
                let tokens = (0..<3).map { UInt32((h >> (8 * UInt64($0))) % vocabulary) }
                let ref = -Float(referenceHash % 7 + 1) / 10
                out.append(Trajectory(id: id, promptTokenCount: 5, tokens: tokens, behaviourLogprobs: [Float](repeating: -0.5, count: 3),
                                      referenceLogprobs: [Float](repeating: ref, count: 3), finishReason: .eos, text: "t\(h % 1000)"))
            }
        }
        // Reverse order on purpose: the coordinator must not depend on arrival order.
        return out.reversed()
    }
}

/// A worker's engine stand-in. Records what it was given.
final class FakeExecutor: RolloutExecutor, @unchecked Sendable {
    private let lock = NSLock()
    private var weights: [UInt8]?
    private var reference: [UInt8]?
    private(set) var preparedVersions: [(version: UInt64, checksum: UInt64)] = []
    private(set) var referenceLoads = 0
    private(set) var modelDescriptions: [[UInt8]] = []
    private(set) var tasksRun = 0
    let onRun: (@Sendable (TaskMessage) -> Void)?
    let delay: Double
    /// Throws on tasks of this step (an engine failure).
    let failOnStep: UInt64?

    init(delay: Double = 0, failOnStep: UInt64? = nil, onRun: (@Sendable (TaskMessage) -> Void)? = nil) {
        self.delay = delay
        self.failOnStep = failOnStep
        self.onRun = onRun
    }

    var prepared: [(version: UInt64, checksum: UInt64)] { lock.withLock { preparedVersions } }
    var references: Int { lock.withLock { referenceLoads } }
    var models: [[UInt8]] { lock.withLock { modelDescriptions } }

    func prepareModel(description: [UInt8]) throws {
        lock.withLock { modelDescriptions.append(description) }
    }
    var runs: Int { lock.withLock { tasksRun } }

    func prepare(policyVersion: UInt64, weights: [UInt8]) throws {
        lock.withLock {
            self.weights = weights
            preparedVersions.append((policyVersion, Checksum.fnv1a64(weights)))
        }
    }

    func prepareReference(weights: [UInt8]) throws {
        lock.withLock {
            reference = weights
            referenceLoads += 1
        }
    }

    func run(task: TaskMessage) throws -> [Trajectory] {
        onRun?(task)
        if task.step == failOnStep { throw CermError.invalid("engine failure on step \(task.step)") }
        if delay > 0 { Thread.sleep(forTimeInterval: delay) }
        return try lock.withLock {
            guard let weights, let reference else { throw CermError.invalid("run before prepare") }
            tasksRun += 1
            return FakeModel.trajectories(task: task, weights: weights, reference: reference)
        }
    }
}

/// The learner stand-in: "weights" are bytes re-derived from a hash of the old weights and the
/// canonical-ordered trajectories of each step.
final class FakeLearner: Learner, @unchecked Sendable {
    private let lock = NSLock()
    private(set) var policyVersion: UInt64 = 0
    private(set) var weights: [UInt8]
    let reference: [UInt8]
    /// Checksum of the bytes handed out per version.
    private var published: [UInt64: UInt64] = [:]
    /// Policy versions the rollouts of each step were sampled with.
    private var sampledVersions: [Int: Set<UInt64>] = [:]
    /// Seconds each update takes (to test that workers stay alive meanwhile).
    let updateDelay: Double

    init(seed: UInt64 = 7, size: Int = 48, updateDelay: Double = 0) {
        self.updateDelay = updateDelay
        weights = FakeModel.expand(seed, count: size)
        reference = FakeModel.expand(seed ^ 0xabc, count: size)
    }

    var publishedChecksums: [UInt64: UInt64] { lock.withLock { published } }

    func currentWeights() throws -> [UInt8] {
        lock.withLock {
            published[policyVersion] = Checksum.fnv1a64(weights)
            return weights
        }
    }

    func referenceWeights() throws -> [UInt8] { reference }

    /// Any bytes: the fake executor records them and runs no model.
    func modelDescription() -> [UInt8] { Array("fake model".utf8) }

    var versionsByStep: [Int: Set<UInt64>] { lock.withLock { sampledVersions } }

    func update(step: Int, pairs: [TaskPair], rollouts: StepRollouts) throws -> StepMetrics {
        if updateDelay > 0 { Thread.sleep(forTimeInterval: updateDelay) }
        return lock.withLock {
            sampledVersions[step] = Set(rollouts.versionByPair.values)
            var h = Checksum.fnv1a64(weights)
            FakeModel.mix(&h, UInt64(step))
            for t in rollouts.trajectories {
                FakeModel.mix(&h, t.id.pairID)
                FakeModel.mix(&h, UInt64(t.id.stage.rawValue) << 48 | UInt64(t.id.criteriaIndex) << 32 | UInt64(t.id.responseIndex) << 16 | UInt64(t.id.sampleIndex))
                for token in t.tokens { FakeModel.mix(&h, UInt64(token)) }
                h = Array(t.text.utf8).withUnsafeBytes { Checksum.fnv1a64($0, seed: h) }
                FakeModel.mix(&h, UInt64(t.referenceLogprobs.first?.bitPattern ?? 0))
            }
            FakeModel.mix(&h, UInt64(pairs.count))
            weights = FakeModel.expand(h, count: weights.count)
            policyVersion += 1
            return StepMetrics(step: step, policyVersion: policyVersion, loss: Double(h % 1000) / 1000)
        }
    }

    func trainingState(step: Int, dataCursor: DataCursor) throws -> TrainingState {
        lock.withLock {
            TrainingState(step: step, policyVersion: policyVersion,
                          tensors: [NamedTensor(name: "w", shape: [weights.count], values: weights.map { Float($0) })],
                          dataCursor: dataCursor)
        }
    }

    func restore(from state: TrainingState) throws {
        guard let tensor = state.tensors.first(where: { $0.name == "w" }) else { throw CermError.invalid("no tensor w") }
        lock.withLock {
            weights = tensor.values.map { UInt8(clamping: Int($0)) }
            policyVersion = state.policyVersion
        }
    }
}

/// `count` pairs, cycled by epoch; pair ids are unique across epochs.
struct FakePairs: PairSource {
    let count: Int
    private(set) var cursor = DataCursor(permutationSeed: 3)

    init(count: Int) { self.count = count }

    mutating func nextBatch(count batch: Int) throws -> [TaskPair] {
        var out: [TaskPair] = []
        for _ in 0..<batch {
            if cursor.position == count { cursor.epoch += 1; cursor.position = 0 }
            let id = UInt64(cursor.epoch * count + cursor.position)
            out.append(TaskPair(pairID: id, query: "query \(id)" + String(repeating: "?", count: Int(id % 3)), responses: ["a\(id)", "b\(id)"]))
            cursor.position += 1
        }
        return out
    }

    mutating func restore(cursor: DataCursor) throws { self.cursor = cursor }
}

/// Runs `body` on its own thread; `wait` returns its result.
final class Background<T: Sendable>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<T, any Error>?

    init(_ name: String, _ body: @escaping @Sendable () throws -> T) {
        let thread = Thread { [self] in
            result = Result { try body() }
            done.signal()
        }
        thread.name = name
        thread.start()
    }

    /// The result, or nil if the thread is still running after `timeout` seconds.
    func wait(timeout: Double = 20) -> Result<T, any Error>? {
        guard done.wait(timeout: .now() + timeout) == .success else { return nil }
        done.signal()
        return result
    }

    func value(timeout: Double = 20) throws -> T {
        guard let result = wait(timeout: timeout) else { throw CermError.invalid("thread did not finish within \(timeout) s") }
        return try result.get()
    }
}
