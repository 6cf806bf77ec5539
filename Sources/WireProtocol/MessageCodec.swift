import Configuration
import Method
import Shared

/// A message encoded once, to be sent many times (``MessageCodec/encodeShared(weightsChunk:index:count:totalBytes:checksum:data:)``).
public struct EncodedMessage: Sendable {
    public let header: [UInt8]
    public let body: SharedFrame

    /// Its two data frames, the body shared.
    public var frames: [OutgoingFrame] { [.copied(header), .shared(body)] }
    /// Its two data frames as plain bytes (tests, tools).
    public var frameBytes: [[UInt8]] { [header, Array(body.bytes)] }
}

/// Encodes ``Message``s to the two data frames of cerm protocol v4 and decodes them back with
/// exhaustive validation (docs/PROTOCOL.md). Decoding never traps: any input either yields a
/// message that satisfies every rule of the protocol or a ``ProtocolError`` naming the fault.
public struct MessageCodec: Sendable {
    /// The protocol version this codec speaks.
    public static let version: UInt16 = 4
    /// ASCII `CERM`.
    public static let magic: [UInt8] = [0x43, 0x45, 0x52, 0x4D]
    /// Magic, version, type, flags, body length.
    public static let headerSize = 12
    /// Bytes a WEIGHTS_CHUNK message adds to its data; defined with the config rule that needs it
    /// (``ClusterConfig/weightsChunkOverhead``: `max_message_bytes` must hold a full chunk).
    public static let weightsChunkOverhead = ClusterConfig.weightsChunkOverhead
    /// Log-probabilities may exceed 0 by this much (float rounding), no more.
    public static let logprobTolerance: Float = 1e-5

    public var limits: ProtocolLimits

    public init(limits: ProtocolLimits = ProtocolLimits()) {
        self.limits = limits
    }

    // MARK: Encoding

    /// The header and body frames of `message`. Throws ``ProtocolError/messageTooLarge(bytes:limit:)``
    /// when the message would exceed `max_message_bytes` (the peer would drop it).
    public func encode(_ message: Message) throws(ProtocolError) -> [[UInt8]] {
        let body = try Self.encodeBody(message)
        let total = Self.headerSize + body.count
        guard total <= limits.maxMessageBytes, body.count <= Int(UInt32.max) else {
            throw .messageTooLarge(bytes: total, limit: limits.maxMessageBytes)
        }
        return [Self.header(type: message.type.rawValue, bodyLength: body.count), body]
    }

    /// A header frame; exposed so tests and tools can build malformed messages deliberately.
    public static func header(type: UInt8, bodyLength: Int, version: UInt16 = MessageCodec.version, flags: UInt8 = 0) -> [UInt8] {
        var w = ByteWriter(reservingCapacity: headerSize)
        for b in magic { w.u8(b) }
        w.u16(version)
        w.u8(type)
        w.u8(flags)
        w.u32(UInt32(truncatingIfNeeded: bodyLength))
        return w.bytes
    }

    static func encodeBody(_ message: Message) throws(ProtocolError) -> [UInt8] {
        var w = ByteWriter()
        switch message {
        case let .hello(h):
            w.string(h.name)
            w.u16(h.capacity)
            w.u16(h.protocolVersion)
            w.u64(h.configHash)
            w.u8(h.kind.rawValue)
        case let .welcome(m):
            w.u32(m.heartbeatIntervalMs)
            w.u32(m.heartbeatTimeoutMs)
            w.u64(m.policyVersion)
            w.u32(m.maxMessageBytes)
        case let .refuse(reason), let .goodbye(reason):
            w.string(reason)
        case let .ready(credit):
            w.u16(credit)
        case let .task(t):
            w.u64(t.taskID)
            w.u64(t.step)
            w.u64(t.policyVersion)
            w.u64(t.runSeed)
            w.u16(t.parameters.nc)
            w.u16(t.parameters.ne)
            w.u32(t.parameters.criteriaMaxTokens)
            w.u32(t.parameters.evaluationMaxTokens)
            w.f64(t.parameters.temperature)
            w.f64(t.parameters.topP)
            w.u32(UInt32(truncatingIfNeeded: t.pairs.count))
            for pair in t.pairs {
                w.u64(pair.pairID)
                w.string(pair.query)
                w.u32(UInt32(truncatingIfNeeded: pair.responses.count))
                for response in pair.responses { w.string(response) }
            }
        case let .result(r):
            w.u64(r.taskID)
            w.u64(r.policyVersion)
            w.u32(UInt32(truncatingIfNeeded: r.trajectories.count))
            for (index, t) in r.trajectories.enumerated() {
                try encode(t.id, field: "RESULT.trajectories[\(index)]", &w)
                w.u32(t.promptTokenCount)
                w.u32Array(t.tokens)
                w.f32Array(t.behaviourLogprobs)
                w.f32Array(t.referenceLogprobs)
                w.u8(t.finishReason.rawValue)
                w.string(t.text)
            }
        case let .heartbeat(version):
            w.u64(version)
        case let .weightsRequest(version, chunkIndex):
            w.u64(version)
            w.u32(chunkIndex)
        case let .weightsChunk(c):
            encodeChunk(id: c.version, c.chunkIndex, c.chunkCount, c.totalBytes, c.checksum, c.data, &w)
        case let .weightsUnavailable(version, latest):
            w.u64(version)
            w.u64(latest)
        case let .gradientTask(t):
            w.u64(t.taskID)
            w.u64(t.step)
            w.u32(t.miniBatch)
            w.u32(t.shard)
            w.u64(t.policyVersion)
            w.f32(t.temperature)
            w.f64(t.loss.clipLow)
            w.f64(t.loss.clipHigh)
            w.f64(t.loss.klCoef)
            w.u8(UInt8(KLEstimator.allCases.firstIndex(of: t.loss.klEstimator) ?? 0))
            w.u64(t.workspaceFloats)
            w.u32(UInt32(truncatingIfNeeded: t.rows.count))
            for (index, row) in t.rows.enumerated() {
                try encode(row.id, field: "GRADIENT_TASK.rows[\(index)]", &w)
                w.u32(UInt32(truncatingIfNeeded: row.promptLength))
                w.u32Array(row.sequence.map { UInt32(bitPattern: $0) })
                w.f64Array(row.behaviourLogprobs)
                w.f64Array(row.referenceLogprobs)
                w.f64(row.advantage)
                w.f64(row.scale)
            }
        case let .gradientResult(r):
            w.u64(r.taskID)
            w.u64(r.policyVersion)
            w.u32(UInt32(truncatingIfNeeded: r.logprobs.count))
            for (logprobs, entropy) in zip(r.logprobs, r.entropySums) {
                w.f32Array(logprobs)
                w.f64(entropy)
            }
            w.u32(r.microBatches)
            w.u64(r.totalBytes)
            w.u32(r.chunkCount)
        case let .gradientChunk(c):
            encodeChunk(id: c.taskID, c.chunkIndex, c.chunkCount, c.totalBytes, c.checksum, c.data, &w)
        }
        return w.bytes
    }

    /// WEIGHTS_CHUNK's and GRADIENT_CHUNK's body: the id (version or task), then as named.
    private static func encodeChunk(id: UInt64, _ index: UInt32, _ count: UInt32, _ total: UInt64, _ checksum: UInt64,
                                    _ data: ArraySlice<UInt8>, _ w: inout ByteWriter) {
        encodeChunkFields(id: id, index, count, total, checksum, dataCount: data.count, &w)
        w.raw(data)
    }

    /// A chunk's body up to its data: id, index, count, total, checksum and the data's length.
    private static func encodeChunkFields(id: UInt64, _ index: UInt32, _ count: UInt32, _ total: UInt64, _ checksum: UInt64,
                                          dataCount: Int, _ w: inout ByteWriter) {
        w.u64(id)
        w.u32(index)
        w.u32(count)
        w.u64(total)
        w.u64(checksum)
        w.u32(UInt32(truncatingIfNeeded: dataCount))
    }

    /// A WEIGHTS_CHUNK encoded once to be sent many times: the frames ``encode(_:)`` makes of
    /// `.weightsChunk(…)`, with the body a ``SharedFrame`` that libzmq sends without copying.
    /// `data` is copied once, into the body.
    public static func encodeShared(weightsChunk version: UInt64, index: UInt32, count: UInt32, totalBytes: UInt64, checksum: UInt64,
                                    data: UnsafeRawBufferPointer) -> EncodedMessage {
        var fields = ByteWriter(reservingCapacity: 40)
        encodeChunkFields(id: version, index, count, totalBytes, checksum, dataCount: data.count, &fields)
        let prefix = fields.bytes
        let body = SharedFrame(count: prefix.count + data.count) { out in
            prefix.withUnsafeBytes { out.copyMemory(from: $0) }
            if data.count > 0 { UnsafeMutableRawBufferPointer(rebasing: out[prefix.count...]).copyMemory(from: data) }
        }
        return EncodedMessage(header: header(type: MessageType.weightsChunk.rawValue, bodyLength: body.count), body: body)
    }

    /// A trajectory id: pair id, stage and three u16 indices.
    private static func encode(_ id: TrajectoryID, field: String, _ w: inout ByteWriter) throws(ProtocolError) {
        let indices = [id.criteriaIndex, id.responseIndex, id.sampleIndex]
        guard indices.allSatisfy({ (0...Int(UInt16.max)).contains($0) }) else {
            throw .invalidValue(field: field, reason: "trajectory indices must fit u16 (\(id))")
        }
        w.u64(id.pairID)
        w.u8(id.stage.rawValue)
        w.u16(UInt16(id.criteriaIndex))
        w.u16(UInt16(id.responseIndex))
        w.u16(UInt16(id.sampleIndex))
    }

    // MARK: Decoding

    /// Decodes the data frames of one message (without the ROUTER's routing-id frame).
    public func decode(_ frames: [[UInt8]]) throws(ProtocolError) -> Message {
        guard frames.count == 2 else { throw .wrongFrameCount(frames.count) }
        return try decode(header: frames[0], body: frames[1])
    }

    /// What can still be read of data frames that failed ``decode(_:)``: the type of a complete
    /// header that carries the cerm magic, and the task id of a RESULT, GRADIENT_RESULT or
    /// GRADIENT_CHUNK (the first field of its body) when the body holds 8 bytes.
    public static func salvage(_ frames: [[UInt8]]) -> (type: MessageType?, taskID: UInt64?) {
        guard frames.count == 2, frames[0].count == headerSize else { return (nil, nil) }
        var h = ByteReader(frames[0])
        guard let magic = try? [h.u8("magic"), h.u8("magic"), h.u8("magic"), h.u8("magic")], magic == Self.magic,
              (try? h.u16("version")) != nil, let rawType = try? h.u8("type"),
              let type = MessageType(rawValue: rawType) else { return (nil, nil) }
        guard type == .result || type == .gradientResult || type == .gradientChunk else { return (type, nil) }
        var r = ByteReader(frames[1])
        return (type, try? r.u64("\(type).task_id"))
    }

    /// Decodes a header frame and a body frame.
    public func decode(header: [UInt8], body: [UInt8]) throws(ProtocolError) -> Message {
        guard header.count == Self.headerSize else { throw .badHeaderSize(header.count) }
        let total = header.count + body.count
        guard total <= limits.maxMessageBytes else { throw .messageTooLarge(bytes: total, limit: limits.maxMessageBytes) }
        var h = ByteReader(header)
        let magic = [try h.u8("magic"), try h.u8("magic"), try h.u8("magic"), try h.u8("magic")]
        guard magic == Self.magic else { throw .badMagic(magic) }
        let version = try h.u16("version")
        guard version == Self.version else { throw .unsupportedVersion(received: version, supported: Self.version) }
        let rawType = try h.u8("type")
        guard let type = MessageType(rawValue: rawType) else { throw .unknownMessageType(rawType) }
        let flags = try h.u8("flags")
        guard flags == 0 else { throw .unknownFlags(flags) }
        let declared = Int(try h.u32("body_length"))
        guard declared == body.count else { throw .bodyLengthMismatch(declared: declared, actual: body.count) }

        var r = ByteReader(body)
        let message = try decodeBody(type, &r)
        try r.expectEnd(type.description)
        return message
    }

    private func decodeBody(_ type: MessageType, _ r: inout ByteReader) throws(ProtocolError) -> Message {
        switch type {
        case .hello:
            let name = try r.string("HELLO.name", limit: limits.maxNameBytes)
            let capacity = try r.u16("HELLO.capacity")
            guard capacity >= 1 else { throw .invalidValue(field: "HELLO.capacity", reason: "must be at least 1") }
            let protocolVersion = try r.u16("HELLO.protocol_version")
            let configHash = try r.u64("HELLO.config_hash")
            let kind = try enumValue(WorkerKind.self, "HELLO.kind", &r)
            return .hello(HelloMessage(name: name, capacity: capacity, protocolVersion: protocolVersion, configHash: configHash, kind: kind))
        case .welcome:
            let interval = try r.u32("WELCOME.heartbeat_interval_ms")
            let timeout = try r.u32("WELCOME.heartbeat_timeout_ms")
            guard interval >= 1 else { throw .invalidValue(field: "WELCOME.heartbeat_interval_ms", reason: "must be at least 1") }
            guard timeout > interval else {
                throw .invalidValue(field: "WELCOME.heartbeat_timeout_ms", reason: "must exceed the heartbeat interval (\(interval)), got \(timeout)")
            }
            let version = try r.u64("WELCOME.policy_version")
            let maxBytes = try r.u32("WELCOME.max_message_bytes")
            return .welcome(WelcomeMessage(heartbeatIntervalMs: interval, heartbeatTimeoutMs: timeout, policyVersion: version, maxMessageBytes: maxBytes))
        case .refuse:
            return .refuse(reason: try r.string("REFUSE.reason", limit: limits.maxReasonBytes))
        case .goodbye:
            return .goodbye(reason: try r.string("GOODBYE.reason", limit: limits.maxReasonBytes))
        case .ready:
            let credit = try r.u16("READY.credit")
            guard credit >= 1 else { throw .invalidValue(field: "READY.credit", reason: "must be at least 1") }
            return .ready(credit: credit)
        case .task:
            return .task(try decodeTask(&r))
        case .result:
            return .result(try decodeResult(&r))
        case .heartbeat:
            return .heartbeat(policyVersion: try r.u64("HEARTBEAT.policy_version"))
        case .weightsRequest:
            let version = try r.u64("WEIGHTS_REQUEST.version")
            let chunk = try r.u32("WEIGHTS_REQUEST.chunk_index")
            return .weightsRequest(version: version, chunkIndex: chunk)
        case .weightsChunk:
            return .weightsChunk(try decodeChunk(&r))
        case .weightsUnavailable:
            let version = try r.u64("WEIGHTS_UNAVAILABLE.version")
            let latest = try r.u64("WEIGHTS_UNAVAILABLE.latest_version")
            return .weightsUnavailable(version: version, latestVersion: latest)
        case .gradientTask:
            return .gradientTask(try decodeGradientTask(&r))
        case .gradientResult:
            return .gradientResult(try decodeGradientResult(&r))
        case .gradientChunk:
            return .gradientChunk(try decodeGradientChunk(&r))
        }
    }

    private func decodeTrajectoryID(_ field: String, _ r: inout ByteReader) throws(ProtocolError) -> TrajectoryID {
        let pairID = try r.u64("\(field).pair_id")
        let stage = try enumValue(TrajectoryStage.self, "\(field).stage", &r)
        let criteriaIndex = try r.u16("\(field).criteria_index")
        let responseIndex = try r.u16("\(field).response_index")
        let sampleIndex = try r.u16("\(field).sample_index")
        return TrajectoryID(pairID: pairID, stage: stage, criteriaIndex: Int(criteriaIndex), responseIndex: Int(responseIndex),
                            sampleIndex: Int(sampleIndex))
    }

    private func decodeGradientTask(_ r: inout ByteReader) throws(ProtocolError) -> GradientTaskMessage {
        let taskID = try r.u64("GRADIENT_TASK.task_id")
        let step = try r.u64("GRADIENT_TASK.step")
        let miniBatch = try r.u32("GRADIENT_TASK.mini_batch")
        let shard = try r.u32("GRADIENT_TASK.shard")
        let version = try r.u64("GRADIENT_TASK.policy_version")
        let temperature = try r.f32("GRADIENT_TASK.temperature")
        guard temperature.isFinite, temperature > 0 else {
            throw .invalidValue(field: "GRADIENT_TASK.temperature", reason: "must be finite and > 0, got \(temperature)")
        }
        var loss = GRPOLossOptions()
        for (field, value) in [("clip_low", \GRPOLossOptions.clipLow), ("clip_high", \.clipHigh), ("kl_coef", \.klCoef)] {
            let read = try r.f64("GRADIENT_TASK.\(field)")
            guard read.isFinite, read >= 0 else {
                throw .invalidValue(field: "GRADIENT_TASK.\(field)", reason: "must be finite and ≥ 0, got \(read)")
            }
            loss[keyPath: value] = read
        }
        let estimator = try r.u8("GRADIENT_TASK.kl_estimator")
        guard Int(estimator) < KLEstimator.allCases.count else { throw .invalidEnumValue(field: "GRADIENT_TASK.kl_estimator", value: estimator) }
        loss.klEstimator = KLEstimator.allCases[Int(estimator)]
        let workspace = try r.u64("GRADIENT_TASK.workspace_floats")
        guard workspace >= 1 else { throw .invalidValue(field: "GRADIENT_TASK.workspace_floats", reason: "must be at least 1") }
        // Fixed part of a row: id (15) + prompt length (4) + three array counts (12) + advantage and scale (16).
        let count = try r.count("GRADIENT_TASK.rows", limit: limits.maxTrajectoriesPerResult, minimumElementSize: 47)
        var rows: [GradientRow] = []
        rows.reserveCapacity(count)
        var seen = Set<TrajectoryID>()
        for index in 0..<count {
            let field = "GRADIENT_TASK.rows[\(index)]"
            let id = try decodeTrajectoryID(field, &r)
            guard seen.insert(id).inserted else { throw .invalidValue(field: field, reason: "duplicate trajectory id (\(id))") }
            let promptLength = Int(try r.u32("\(field).prompt_length"))
            let sequence = try r.u32Array("\(field).sequence", limit: limits.maxTokensPerTrajectory)
            for (i, token) in sequence.enumerated() where token >= limits.vocabularySize {
                throw .tokenOutOfRange(field: "\(field).sequence", index: i, token: token, vocabularySize: limits.vocabularySize)
            }
            guard promptLength >= 1, promptLength < sequence.count else {
                throw .invalidValue(field: "\(field).prompt_length",
                                    reason: "must be at least 1 and below the sequence's \(sequence.count) tokens, got \(promptLength)")
            }
            let outputs = sequence.count - promptLength
            let behaviour = try gradientLogprobs("\(field).behaviour_logprobs", tokenCount: outputs, &r)
            let reference = try gradientLogprobs("\(field).reference_logprobs", tokenCount: outputs, &r)
            let advantage = try r.f64("\(field).advantage")
            guard advantage.isFinite else { throw .nonFinite(field: "\(field).advantage", index: nil, value: advantage) }
            let scale = try r.f64("\(field).scale")
            guard scale.isFinite, scale >= 0 else {
                throw .invalidValue(field: "\(field).scale", reason: "must be finite and ≥ 0, got \(scale)")
            }
            rows.append(GradientRow(id: id, sequence: sequence.map { TokenID(bitPattern: $0) }, promptLength: promptLength,
                                    behaviourLogprobs: behaviour, referenceLogprobs: reference, advantage: advantage, scale: scale))
        }
        guard !rows.isEmpty else { throw .invalidValue(field: "GRADIENT_TASK.rows", reason: "a gradient task has at least one row") }
        return GradientTaskMessage(taskID: taskID, step: step, miniBatch: miniBatch, shard: shard, policyVersion: version,
                                   temperature: temperature, loss: loss, workspaceFloats: workspace, rows: rows)
    }

    private func gradientLogprobs(_ field: String, tokenCount: Int, _ r: inout ByteReader) throws(ProtocolError) -> [Double] {
        let values = try r.f64Array(field, limit: limits.maxTokensPerTrajectory)
        guard values.count == tokenCount else { throw .arrayLengthMismatch(field: field, expected: tokenCount, actual: values.count) }
        for (i, v) in values.enumerated() {
            guard v.isFinite else { throw .nonFinite(field: field, index: i, value: v) }
            guard v <= Double(Self.logprobTolerance) else { throw .positiveLogprob(field: field, index: i, value: Float(v)) }
        }
        return values
    }

    private func decodeGradientResult(_ r: inout ByteReader) throws(ProtocolError) -> GradientResultMessage {
        let taskID = try r.u64("GRADIENT_RESULT.task_id")
        let version = try r.u64("GRADIENT_RESULT.policy_version")
        // A row: a log-prob count (4) and the entropy sum (8).
        let count = try r.count("GRADIENT_RESULT.rows", limit: limits.maxTrajectoriesPerResult, minimumElementSize: 12)
        var logprobs: [[Float]] = []
        var entropySums: [Double] = []
        for index in 0..<count {
            let field = "GRADIENT_RESULT.rows[\(index)]"
            let values = try r.f32Array("\(field).logprobs", limit: limits.maxTokensPerTrajectory)
            for (i, v) in values.enumerated() {
                guard v.isFinite else { throw .nonFinite(field: "\(field).logprobs", index: i, value: Double(v)) }
                guard v <= Self.logprobTolerance else { throw .positiveLogprob(field: "\(field).logprobs", index: i, value: v) }
            }
            let entropy = try r.f64("\(field).entropy_sum")
            guard entropy.isFinite, entropy >= 0 else {
                throw .invalidValue(field: "\(field).entropy_sum", reason: "must be finite and ≥ 0, got \(entropy)")
            }
            logprobs.append(values)
            entropySums.append(entropy)
        }
        let microBatches = try r.u32("GRADIENT_RESULT.micro_batches")
        let total = try r.u64("GRADIENT_RESULT.total_bytes")
        let chunks = try r.u32("GRADIENT_RESULT.chunk_count")
        guard total > 0, total % 4 == 0 else {
            throw .invalidValue(field: "GRADIENT_RESULT.total_bytes", reason: "must be a positive multiple of 4 (float32 values), got \(total)")
        }
        guard chunks >= 1, UInt64(chunks) <= total else {
            throw .invalidValue(field: "GRADIENT_RESULT.chunk_count", reason: "must be in 1...total_bytes (\(total)), got \(chunks)")
        }
        return GradientResultMessage(taskID: taskID, policyVersion: version, logprobs: logprobs, entropySums: entropySums,
                                     microBatches: microBatches, totalBytes: total, chunkCount: chunks)
    }

    private func decodeGradientChunk(_ r: inout ByteReader) throws(ProtocolError) -> GradientChunk {
        let c = try chunkFields("GRADIENT_CHUNK", &r)
        guard c.actual == c.checksum else {
            throw .invalidValue(field: "GRADIENT_CHUNK.checksum",
                                reason: "task \(c.id) chunk \(c.index): declared \(String(c.checksum, radix: 16)), data hashes to \(String(c.actual, radix: 16))")
        }
        return GradientChunk(taskID: c.id, chunkIndex: c.index, chunkCount: c.count, totalBytes: c.total, checksum: c.checksum, data: c.data)
    }

    private func enumValue<E: RawRepresentable>(_: E.Type, _ field: String, _ r: inout ByteReader) throws(ProtocolError) -> E where E.RawValue == UInt8 {
        let raw = try r.u8(field)
        guard let value = E(rawValue: raw) else { throw .invalidEnumValue(field: field, value: raw) }
        return value
    }

    private func decodeTask(_ r: inout ByteReader) throws(ProtocolError) -> TaskMessage {
        let taskID = try r.u64("TASK.task_id")
        let step = try r.u64("TASK.step")
        let version = try r.u64("TASK.policy_version")
        let seed = try r.u64("TASK.run_seed")
        let nc = try r.u16("TASK.nc")
        let ne = try r.u16("TASK.ne")
        let criteriaMax = try r.u32("TASK.criteria_max_tokens")
        let evaluationMax = try r.u32("TASK.evaluation_max_tokens")
        let temperature = try r.f64("TASK.temperature")
        let topP = try r.f64("TASK.top_p")
        for (field, value) in [("TASK.nc", UInt32(nc)), ("TASK.ne", UInt32(ne)),
                               ("TASK.criteria_max_tokens", criteriaMax), ("TASK.evaluation_max_tokens", evaluationMax)] where value == 0 {
            throw .invalidValue(field: field, reason: "must be at least 1")
        }
        guard temperature.isFinite else { throw .nonFinite(field: "TASK.temperature", index: nil, value: temperature) }
        guard temperature >= 0 else { throw .invalidValue(field: "TASK.temperature", reason: "must be ≥ 0, got \(temperature)") }
        guard topP.isFinite else { throw .nonFinite(field: "TASK.top_p", index: nil, value: topP) }
        guard topP > 0, topP <= 1 else { throw .invalidValue(field: "TASK.top_p", reason: "must be in (0, 1], got \(topP)") }
        // A pair is at least pair_id (8) + query length (4) + response count (4).
        let pairCount = try r.count("TASK.pairs", limit: limits.maxPairsPerTask, minimumElementSize: 16)
        guard pairCount >= 1 else { throw .invalidValue(field: "TASK.pairs", reason: "a task has at least one pair") }
        var pairs: [TaskPair] = []
        pairs.reserveCapacity(pairCount)
        var seenPairs = Set<UInt64>()
        for p in 0..<pairCount {
            let pairID = try r.u64("TASK.pairs[\(p)].pair_id")
            guard seenPairs.insert(pairID).inserted else {
                throw .invalidValue(field: "TASK.pairs[\(p)].pair_id", reason: "pair \(pairID) appears twice in the task")
            }
            let query = try r.string("TASK.pairs[\(p)].query", limit: limits.maxStringBytes)
            let responseCount = try r.count("TASK.pairs[\(p)].responses", limit: limits.maxResponsesPerPair, minimumElementSize: 4)
            guard responseCount >= 1 else { throw .invalidValue(field: "TASK.pairs[\(p)].responses", reason: "a pair has at least one response") }
            var responses: [String] = []
            responses.reserveCapacity(responseCount)
            for i in 0..<responseCount {
                responses.append(try r.string("TASK.pairs[\(p)].responses[\(i)]", limit: limits.maxStringBytes))
            }
            pairs.append(TaskPair(pairID: pairID, query: query, responses: responses))
        }
        let parameters = RolloutParameters(nc: nc, ne: ne, criteriaMaxTokens: criteriaMax, evaluationMaxTokens: evaluationMax,
                                           temperature: temperature, topP: topP)
        return TaskMessage(taskID: taskID, step: step, policyVersion: version, runSeed: seed, parameters: parameters, pairs: pairs)
    }

    private func decodeResult(_ r: inout ByteReader) throws(ProtocolError) -> ResultMessage {
        let taskID = try r.u64("RESULT.task_id")
        let version = try r.u64("RESULT.policy_version")
        // Fixed part of a trajectory: 8 + 1 + 2·3 + 4 + three array counts (12) + 1 + text length (4).
        let count = try r.count("RESULT.trajectories", limit: limits.maxTrajectoriesPerResult, minimumElementSize: 36)
        var trajectories: [Trajectory] = []
        trajectories.reserveCapacity(count)
        var seen = Set<TrajectoryID>()
        for t in 0..<count {
            let field = "RESULT.trajectories[\(t)]"
            let id = try decodeTrajectoryID(field, &r)
            let promptTokens = try r.u32("\(field).prompt_tokens")
            let tokens = try r.u32Array("\(field).tokens", limit: limits.maxTokensPerTrajectory)
            for (i, token) in tokens.enumerated() where token >= limits.vocabularySize {
                throw .tokenOutOfRange(field: "\(field).tokens", index: i, token: token, vocabularySize: limits.vocabularySize)
            }
            let behaviour = try logprobs("\(field).behaviour_logprobs", tokenCount: tokens.count, &r)
            let reference = try logprobs("\(field).reference_logprobs", tokenCount: tokens.count, &r)
            let finish = try enumValue(FinishReason.self, "\(field).finish_reason", &r)
            let text = try r.string("\(field).text", limit: limits.maxStringBytes)
            guard seen.insert(id).inserted else { throw .invalidValue(field: field, reason: "duplicate trajectory id (\(id))") }
            trajectories.append(Trajectory(id: id, promptTokenCount: promptTokens, tokens: tokens, behaviourLogprobs: behaviour,
                                           referenceLogprobs: reference, finishReason: finish, text: text))
        }
        return ResultMessage(taskID: taskID, policyVersion: version, trajectories: trajectories)
    }

    private func logprobs(_ field: String, tokenCount: Int, _ r: inout ByteReader) throws(ProtocolError) -> [Float] {
        let values = try r.f32Array(field, limit: limits.maxTokensPerTrajectory)
        guard values.count == tokenCount else { throw .arrayLengthMismatch(field: field, expected: tokenCount, actual: values.count) }
        for (i, v) in values.enumerated() {
            guard v.isFinite else { throw .nonFinite(field: field, index: i, value: Double(v)) }
            guard v <= Self.logprobTolerance else { throw .positiveLogprob(field: field, index: i, value: v) }
        }
        return values
    }

    private func decodeChunk(_ r: inout ByteReader) throws(ProtocolError) -> WeightsChunk {
        let c = try chunkFields("WEIGHTS_CHUNK", &r)
        guard c.actual == c.checksum else { throw .checksumMismatch(version: c.id, chunk: c.index, declared: c.checksum, actual: c.actual) }
        return WeightsChunk(version: c.id, chunkIndex: c.index, chunkCount: c.count, totalBytes: c.total, checksum: c.checksum, data: c.data)
    }

    /// The fields WEIGHTS_CHUNK and GRADIENT_CHUNK share, checked but for the checksum: the id
    /// (version or task), index < count, |data| ≤ total, and the XXH64 of the data as it came.
    private func chunkFields(_ type: String, _ r: inout ByteReader) throws(ProtocolError)
        -> (id: UInt64, index: UInt32, count: UInt32, total: UInt64, checksum: UInt64, actual: UInt64, data: ArraySlice<UInt8>) {
        let id = try r.u64(type == "WEIGHTS_CHUNK" ? "\(type).version" : "\(type).task_id")
        let index = try r.u32("\(type).chunk_index")
        let count = try r.u32("\(type).chunk_count")
        let total = try r.u64("\(type).total_bytes")
        let checksum = try r.u64("\(type).checksum")
        guard count >= 1 else { throw .invalidValue(field: "\(type).chunk_count", reason: "must be at least 1") }
        guard index < count else {
            throw .invalidValue(field: "\(type).chunk_index", reason: "\(index) is not below chunk_count \(count)")
        }
        let data = try r.byteSlice("\(type).data", limit: limits.maxMessageBytes)
        guard UInt64(data.count) <= total else {
            throw .invalidValue(field: "\(type).data", reason: "\(data.count) bytes exceed total_bytes \(total)")
        }
        return (id, index, count, total, checksum, data.withUnsafeBytes { Checksum.xxh64($0) }, data)
    }
}
