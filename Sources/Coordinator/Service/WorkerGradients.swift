import Method
import PolicyGradient
import Runtime
import Shared
import WireProtocol

/// One mini-batch's gradient tasks as the learner thread hands them to the socket thread.
struct GradientRequest: Sendable {
    var round: GradientRoundKey
    /// The weights version the tasks compute at.
    var version: UInt64
    /// The weights to publish as `version` first (an intermediate version), or nil when it is
    /// a policy version already published.
    var weights: PublishedWeights?
    /// Each shard's rows, in shard order.
    var shards: [[GradientRow]]
    var settings: GradientSettings

    /// The GRADIENT_TASK of shard `shard` under task id `taskID`.
    func message(taskID: UInt64, shard: UInt32) -> Message {
        .gradientTask(GradientTaskMessage(
            taskID: taskID, step: round.step, miniBatch: round.miniBatch, shard: shard, policyVersion: version,
            temperature: settings.temperature, loss: settings.loss, workspaceFloats: UInt64(settings.workspaceFloats),
            rows: shards[Int(shard)]))
    }
}

/// A gradient being received: its GRADIENT_RESULT and the float32 values of the chunks so far.
struct GradientReceipt {
    /// Why a chunk does not continue the gradient.
    struct Fault: Error, CustomStringConvertible {
        var description: String
    }

    let peer: RoutingID
    let key: GradientShardKey
    let header: GradientResultMessage
    private var values: [Float]
    private var received = 0
    private var nextChunk: UInt32 = 0

    init(peer: RoutingID, key: GradientShardKey, header: GradientResultMessage, parameterCount: Int) {
        self.peer = peer
        self.key = key
        self.header = header
        values = [Float](repeating: 0, count: parameterCount)
    }

    /// Takes the next chunk (they come in index order); true once the last one is in and every
    /// value is finite. Throws when the chunk does not continue the gradient, or the whole holds
    /// a NaN or infinity (named with its parameter index).
    mutating func add(_ chunk: GradientChunk) throws(Fault) -> Bool {
        guard chunk.chunkIndex == nextChunk, chunk.chunkCount == header.chunkCount, chunk.totalBytes == header.totalBytes else {
            throw Fault(description: "chunk \(chunk.chunkIndex) of \(chunk.chunkCount) (\(chunk.totalBytes) bytes) where chunk \(nextChunk) of \(header.chunkCount) (\(header.totalBytes) bytes) was due")
        }
        let end = received + chunk.data.count
        guard end <= Int(header.totalBytes), chunk.chunkIndex + 1 < header.chunkCount || end == Int(header.totalBytes) else {
            throw Fault(description: "chunks end at byte \(end), the gradient has \(header.totalBytes)")
        }
        let start = received
        values.withUnsafeMutableBytes { target in
            chunk.data.withUnsafeBytes { source in
                target.baseAddress!.advanced(by: start).copyMemory(from: source.baseAddress!, byteCount: source.count)
            }
        }
        received = end
        nextChunk += 1
        guard nextChunk == header.chunkCount else { return false }
        // Little-endian on the wire, as the host stores floats (cerm builds for little-endian only).
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw Fault(description: "parameter \(bad) of the gradient is \(values[bad])")
        }
        return true
    }

    /// The complete gradient with its pass.
    var result: ShardGradient {
        ShardGradient(gradient: values, pass: ShardPass(logprobs: header.logprobs, entropySums: header.entropySums,
                                                              microBatches: Int(header.microBatches)))
    }
}

/// ``RemoteGradients`` through the coordinator's socket thread: the learner thread posts a
/// mini-batch's shards as gradient tasks and waits until every one has an accepted gradient.
/// A stop request ends the wait: the round's tasks are dropped and the learner computes the
/// shards itself (``RemoteGradientsUnavailable``), so an update that started finishes with the
/// same bits even when no worker is left to answer.
final class WorkerGradients: RemoteGradients, @unchecked Sendable {
    private let mailbox: CoordinatorMailbox
    private let stop: StopSignal
    private let chunkBytes: Int

    init(mailbox: CoordinatorMailbox, stop: StopSignal, chunkBytes: Int) {
        self.mailbox = mailbox
        self.stop = stop
        self.chunkBytes = chunkBytes
    }

    func compute(step: Int, miniBatch: Int, shards: [[GradientRow]], weights: GradientWeights, settings: GradientSettings) throws
        -> [ShardGradient] {
        let round = GradientRoundKey(step: UInt64(step), miniBatch: UInt32(miniBatch))
        var published: PublishedWeights?
        if case let .intermediate(version, values) = weights {
            published = values.withWireBytes { PublishedWeights(version: version, bytes: $0, chunkBytes: chunkBytes) }
        }
        mailbox.post(.gradients(GradientRequest(round: round, version: weights.version, weights: published, shards: shards, settings: settings)))
        guard let gradients = mailbox.waitForGradients(round, stop: stop) else {
            mailbox.post(.cancelGradients(round))
            throw RemoteGradientsUnavailable(reason: mailbox.shouldStop(stop) ? "a stop was requested" : "the socket thread stopped serving")
        }
        return gradients
    }
}
