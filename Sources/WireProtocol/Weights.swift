/// The coordinator's side of weight distribution: serialized weights by version, cut into
/// chunks on request (docs/PROTOCOL.md, "Weights"). Keeps the newest `retain` versions.
public struct WeightsPublisher: Sendable {
    public let chunkBytes: Int
    public let retain: Int
    private var versions: [UInt64: [UInt8]] = [:]

    /// `chunkBytes` from `cluster.weight_chunk_bytes`; `retain` ≥ 1 (async mode needs
    /// `max_staleness + 1`).
    public init(chunkBytes: Int, retain: Int) {
        self.chunkBytes = max(1, chunkBytes)
        self.retain = max(1, retain)
    }

    /// The newest published version, if any.
    public var latestVersion: UInt64? { versions.keys.max() }

    /// Publishes `bytes` as `version`, dropping versions beyond the newest `retain`.
    public mutating func publish(version: UInt64, bytes: [UInt8]) {
        versions[version] = bytes
        for old in versions.keys.sorted().dropLast(retain) { versions[old] = nil }
    }

    /// Number of chunks of a published version (an empty blob is one empty chunk).
    public func chunkCount(version: UInt64) -> Int? {
        versions[version].map { max(1, ($0.count + chunkBytes - 1) / chunkBytes) }
    }

    /// The answer to WEIGHTS_REQUEST: the chunk, or WEIGHTS_UNAVAILABLE when the version is not
    /// held or the index is out of range.
    public func reply(version: UInt64, chunkIndex: UInt32) -> Message {
        guard let bytes = versions[version], let count = chunkCount(version: version), Int(chunkIndex) < count else {
            return .weightsUnavailable(version: version, latestVersion: latestVersion ?? 0)
        }
        let start = Int(chunkIndex) * chunkBytes
        let data = Array(bytes[start..<min(start + chunkBytes, bytes.count)])
        return .weightsChunk(WeightsChunk(version: version, chunkIndex: chunkIndex, chunkCount: UInt32(clamping: count),
                                          totalBytes: UInt64(bytes.count), data: data))
    }
}

/// A worker's side: collects the chunks of one version and yields the bytes when all arrived
/// and add up. Chunk checksums are verified by the codec on decode.
public struct WeightsAssembler: Sendable {
    public let version: UInt64
    private var chunks: [UInt32: [UInt8]] = [:]
    private var chunkCount: UInt32?
    private var totalBytes: UInt64?

    public init(version: UInt64) { self.version = version }

    /// The next chunk index to request, nil once every chunk is in.
    public var nextMissingChunk: UInt32? {
        guard let count = chunkCount else { return 0 }
        return (0..<count).first { chunks[$0] == nil }
    }

    /// Adds a chunk; throws when it contradicts earlier chunks (count, total) or the version.
    /// Returns the complete weights once the last chunk is in.
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
        chunks[chunk.chunkIndex] = chunk.data
        guard nextMissingChunk == nil else { return nil }
        var bytes: [UInt8] = []
        for i in 0..<chunk.chunkCount { bytes.append(contentsOf: chunks[i] ?? []) }
        guard UInt64(bytes.count) == chunk.totalBytes else {
            chunks = [:]
            throw .invalidValue(field: "WEIGHTS_CHUNK.total_bytes", reason: "chunks add up to \(bytes.count) bytes, declared \(chunk.totalBytes)")
        }
        return bytes
    }
}
