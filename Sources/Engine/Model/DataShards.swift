import Dispatch

/// Splitting a batch into data shards whose gradients are computed separately (in parallel, on
/// their own ``Transformer`` replicas) and summed in shard order.
///
/// The shard count, not the thread count, fixes the arithmetic: running the shards one after
/// the other or at once gives the same bits.
public enum DataShards {
    /// The shard count of the trainers (SFT and the GRPO learner): one per core of the
    /// 2-core machine the defaults are sized for.
    public static let standardCount = 2

    /// Which shard each row goes to: in row order, each row joins the shard with the fewest
    /// tokens so far (the lowest index on ties), so the shards' work is balanced and the split
    /// depends on the lengths alone.
    public static func assignment(lengths: [Int], shards: Int) -> [Int] {
        var load = [Int](repeating: 0, count: max(1, shards))
        return lengths.map { length in
            let shard = load.indices.min { load[$0] < load[$1] }!
            load[shard] += length
            return shard
        }
    }

    /// Runs `body(shard)` for every shard in `0..<count`, at most `threads` at a time. With one
    /// thread they run in order on the caller's thread.
    public static func run(count: Int, threads: Int, _ body: @Sendable (Int) -> Void) {
        let concurrent = min(max(1, threads), count)
        guard concurrent > 1 else {
            for shard in 0..<count { body(shard) }
            return
        }
        let rounds = (count + concurrent - 1) / concurrent
        DispatchQueue.concurrentPerform(iterations: concurrent) { lane in
            for round in 0..<rounds where round * concurrent + lane < count {
                body(round * concurrent + lane)
            }
        }
    }
}

/// One data shard of a training step: a model replica, its gradient buffer, the rows of the
/// batch assigned to it (with their indices in the batch) and the error of its last phase.
/// Touched by one thread at a time: the trainer fills it, one worker thread runs a phase, and
/// the trainer reads it after the phase has joined. Trainers subclass it with what a phase of
/// theirs leaves behind.
open class DataShard<Row>: @unchecked Sendable {
    public let model: Transformer
    public var gradients: ModelGradients
    public var rows: [Row] = []
    public var rowIndices: [Int] = []
    public var error: (any Error)?

    public init(model: Transformer) {
        self.model = model
        gradients = ModelGradients(config: model.config)
    }

    /// Takes the rows of `batch` that ``DataShards/assignment(lengths:shards:)`` gave shard
    /// `index`, in batch order, and the weights to compute with.
    public func take(_ batch: [Row], assignment: [Int], index: Int, weights: ModelWeights) {
        rowIndices = assignment.indices.filter { assignment[$0] == index }
        rows = rowIndices.map { batch[$0] }
        model.weights = weights
    }
}

extension DataShards {
    /// `count` shards made by `make`: the first computes on `model` itself, the others on
    /// replicas of its weights.
    public static func replicas<Shard>(of model: Transformer, count: Int, _ make: (Transformer) -> Shard) throws -> [Shard] {
        var shards = [make(model)]
        for _ in 1..<max(1, count) { shards.append(make(try Transformer(weights: model.weights))) }
        return shards
    }
}
