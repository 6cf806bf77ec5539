import Dispatch
import Shared

/// A version of weights cut into WEIGHTS_CHUNK messages (docs/PROTOCOL.md, "Weights"), each
/// encoded once with its XXH64 checksum, so that serving a request costs neither a checksum nor
/// a copy of the chunk (``SharedFrame``). Built where the weights are (the coordinator's learner
/// thread), then handed to the socket thread's ``WeightsPublisher``.
public struct PublishedWeights: Sendable {
    public let version: UInt64
    fileprivate let chunks: [EncodedMessage]

    /// Cuts `bytes` into chunks of `chunkBytes` (an empty blob is one empty chunk); the
    /// chunks' checksums and copies are spread over the cores.
    public init(version: UInt64, bytes: UnsafeRawBufferPointer, chunkBytes: Int) {
        let chunkBytes = max(1, chunkBytes), total = bytes.count
        let count = max(1, (total + chunkBytes - 1) / chunkBytes)
        let encoded = UnsafeMutableBufferPointer<EncodedMessage?>.allocate(capacity: count)
        encoded.initialize(repeating: nil)
        defer { encoded.deinitialize().deallocate() }
        let base = UInt(bitPattern: bytes.baseAddress), out = UInt(bitPattern: encoded.baseAddress)
        DispatchQueue.concurrentPerform(iterations: count) { index in
            let start = index * chunkBytes, end = min(start + chunkBytes, total)
            let data = UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: base).map { $0 + start }, count: end - start)
            UnsafeMutablePointer<EncodedMessage?>(bitPattern: out)?[index] = MessageCodec.encodeShared(
                weightsChunk: version, index: UInt32(index), count: UInt32(count), totalBytes: UInt64(total),
                checksum: Checksum.xxh64(data), data: data)
        }
        self.version = version
        chunks = encoded.map { $0! }
    }

    public init(version: UInt64, bytes: [UInt8], chunkBytes: Int) {
        self = bytes.withUnsafeBytes { PublishedWeights(version: version, bytes: $0, chunkBytes: chunkBytes) }
    }

    public var chunkCount: Int { chunks.count }
}

/// The answer to a WEIGHTS_REQUEST.
public enum WeightsReply: Sendable {
    /// Chunk `index` of `count`, as encoded when its version was published.
    case chunk(EncodedMessage, index: UInt32, count: UInt32)
    /// WEIGHTS_UNAVAILABLE: the version is not held or the index is out of range.
    case unavailable(version: UInt64, latestVersion: UInt64)

    public var messageType: MessageType {
        switch self {
        case .chunk: .weightsChunk
        case .unavailable: .weightsUnavailable
        }
    }

    /// The reply as the peer decodes it (tests, tools).
    public func decoded(_ codec: MessageCodec = MessageCodec(limits: ProtocolLimits(maxMessageBytes: Int(UInt32.max)))) throws -> Message {
        switch self {
        case let .chunk(encoded, _, _): try codec.decode(encoded.frameBytes)
        case let .unavailable(version, latest): .weightsUnavailable(version: version, latestVersion: latest)
        }
    }
}

/// The coordinator's side of weight distribution: the published versions, newest `retain` kept,
/// and the chunk that answers each request (docs/PROTOCOL.md, "Weights").
public struct WeightsPublisher: Sendable {
    public let retain: Int
    private var versions: [UInt64: PublishedWeights] = [:]

    /// `retain` ≥ 1 (async mode needs `max_staleness + 1`). The chunks are the published
    /// versions' own (``PublishedWeights``, cut by `cluster.weight_chunk_bytes`).
    public init(retain: Int) {
        self.retain = max(1, retain)
    }

    /// The newest published version, if any.
    public var latestVersion: UInt64? { versions.keys.max() }

    /// Publishes `weights`, dropping versions beyond the newest `retain` (a chunk still being
    /// sent lives until libzmq has sent it).
    public mutating func publish(_ weights: PublishedWeights) {
        versions[weights.version] = weights
        for old in versions.keys.sorted().dropLast(retain) { versions[old] = nil }
    }

    /// Number of chunks of a published version (an empty blob is one empty chunk).
    public func chunkCount(version: UInt64) -> Int? { versions[version]?.chunkCount }

    /// The answer to WEIGHTS_REQUEST: the chunk, or WEIGHTS_UNAVAILABLE when the version is not
    /// held or the index is out of range.
    public func reply(version: UInt64, chunkIndex: UInt32) -> WeightsReply {
        guard let published = versions[version], Int(chunkIndex) < published.chunks.count else {
            return .unavailable(version: version, latestVersion: latestVersion ?? 0)
        }
        return .chunk(published.chunks[Int(chunkIndex)], index: chunkIndex, count: UInt32(published.chunks.count))
    }
}

/// A worker's side: collects the chunks of one version and yields the bytes when all arrived
/// and add up. Chunk checksums are verified by the codec on decode.
///
/// Up to ``window`` chunks are asked for at once (``takeRequests()``), so the coordinator
/// serves the next chunk while the worker verifies the one it just received. Each chunk is
/// copied to its place in the final buffer as it arrives (every chunk but the last has the
/// size of the first non-last one), so a version is held once, not once in chunks and once whole.
/// The buffer may be the previous version's, handed back once it was loaded (``init(version:reusing:)``):
/// a fresh 538 MB buffer costs 131,000 page faults to touch, 0.2 s of a 0.5 s fetch at 135M.
public struct WeightsAssembler: Sendable {
    public let version: UInt64
    /// Chunks in flight at most: two keep both ends busy; more would only queue bytes.
    public static let window = 2
    private var chunkCount: UInt32?
    private var totalBytes: UInt64?
    /// The size of every chunk but the last, once a non-last chunk (or the only one) arrived.
    private var chunkBytes: Int?
    /// Chunks that arrived before ``chunkBytes`` was known.
    private var early: [UInt32: ArraySlice<UInt8>] = [:]
    private var received: Set<UInt32> = []
    private var bytes: [UInt8] = []
    /// A buffer to assemble into when it has the version's size (else it is dropped).
    private var spare: [UInt8]
    /// Asked for and not yet received.
    private var requested: Set<UInt32> = []

    /// `reusing` is a buffer no one else holds (else the first chunk copies it whole); its
    /// bytes are all overwritten before the weights are handed out.
    public init(version: UInt64, reusing buffer: [UInt8] = []) {
        self.version = version
        spare = buffer
    }

    /// The next chunk index to request, nil once every chunk is in.
    public var nextMissingChunk: UInt32? {
        guard let count = chunkCount else { return 0 }
        return (0..<count).first { !received.contains($0) && early[$0] == nil }
    }

    /// The chunks to request now, marked as requested: chunk 0 until the count is known, then
    /// missing chunks in order while fewer than ``window`` are in flight.
    public mutating func takeRequests() -> [UInt32] {
        guard let count = chunkCount else {
            return requested.insert(0).inserted ? [0] : []
        }
        var taken: [UInt32] = []
        var index: UInt32 = 0
        while requested.count < Self.window && index < count {
            if !received.contains(index) && early[index] == nil && requested.insert(index).inserted { taken.append(index) }
            index += 1
        }
        return taken
    }

    /// Adds a chunk; throws when it contradicts earlier chunks (count, total, sizes) or the
    /// version. Returns the complete weights once the last chunk is in.
    public mutating func add(_ chunk: WeightsChunk) throws(ProtocolError) -> [UInt8]? {
        guard chunk.version == version else {
            throw .invalidValue(field: "WEIGHTS_CHUNK.version", reason: "expected \(version), got \(chunk.version)")
        }
        if let count = chunkCount, count != chunk.chunkCount {
            throw .invalidValue(field: "WEIGHTS_CHUNK.chunk_count", reason: "changed from \(count) to \(chunk.chunkCount)")
        }
        if let total = totalBytes, total != chunk.totalBytes {
            throw .invalidValue(field: "WEIGHTS_CHUNK.total_bytes", reason: "changed from \(total) to \(chunk.totalBytes)")
        }
        chunkCount = chunk.chunkCount
        totalBytes = chunk.totalBytes
        requested.remove(chunk.chunkIndex)
        let last = chunk.chunkCount - 1
        if chunkBytes == nil && (chunk.chunkIndex < last || chunk.chunkCount == 1) {
            chunkBytes = chunk.chunkCount == 1 ? Int(chunk.totalBytes) : chunk.data.count
        }
        guard let size = chunkBytes else {
            early[chunk.chunkIndex] = chunk.data
            return nil
        }
        let total = Int(chunk.totalBytes), full = Int(last) * size
        var arrived = early
        early = [:]
        arrived[chunk.chunkIndex] = chunk.data
        for (index, data) in arrived {
            let offset = Int(index) * size
            var fault: ProtocolError?
            if index == last {
                if full + data.count != total {
                    fault = .invalidValue(field: "WEIGHTS_CHUNK.total_bytes", reason: "chunks add up to \(full + data.count) bytes, declared \(total)")
                }
            } else if data.count != size {
                fault = .invalidValue(field: "WEIGHTS_CHUNK.data", reason: "chunk \(index) has \(data.count) bytes, the chunks before the last \(size)")
            } else if offset + size > total {
                fault = .invalidValue(field: "WEIGHTS_CHUNK.total_bytes", reason: "chunk \(index) ends at byte \(offset + size), beyond \(total)")
            }
            if let fault {
                reset()
                throw fault
            }
            if bytes.isEmpty && total > 0 {
                // Every byte is written by a chunk before the buffer is handed out.
                bytes = spare.count == total ? spare : [UInt8](unsafeUninitializedCapacity: total) { _, initialized in initialized = total }
                spare = []
            }
            bytes.withUnsafeMutableBytes { out in
                data.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: out[offset ..< offset + data.count]).copyMemory(from: $0) }
            }
            received.insert(index)
        }
        guard received.count == Int(chunk.chunkCount) else { return nil }
        defer { bytes = [] }
        return bytes
    }

    private mutating func reset() {
        chunkBytes = nil
        early = [:]
        received = []
        bytes = []
        requested = []
    }
}
