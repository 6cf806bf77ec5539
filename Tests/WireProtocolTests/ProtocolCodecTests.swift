@testable import Configuration
@testable import Method
@testable import Shared
import Testing
@testable import WireProtocol

/// Sample messages, one or more of every type, shared by the protocol tests.
enum ProtocolSamples {
    static let trajectory = Trajectory(
        id: TrajectoryID(pairID: 42, stage: .evaluation, criteriaIndex: 3, responseIndex: 1, sampleIndex: 1),
        promptTokenCount: 17, tokens: [5, 263, 0], behaviourLogprobs: [-0.5, -1.25, 0],
        referenceLogprobs: [-0.75, -2, -0.125], finishReason: .length, text: "Score: \\boxed{7.5} — ok ✓")

    static let task = TaskMessage(
        taskID: 9, step: 3, policyVersion: 3, runSeed: 1234,
        parameters: RolloutParameters(nc: 4, ne: 2, criteriaMaxTokens: 96, evaluationMaxTokens: 64, temperature: 1, topP: 0.95),
        pairs: [TaskPair(pairID: 42, query: "What is 2+2? Answer in one word.", responses: ["Four.", "Five, probably."]),
                TaskPair(pairID: 43, query: "", responses: ["ünïcödé 🙂"])])

    static let all: [Message] = [
        .hello(HelloMessage(name: "worker-1", capacity: 2, configHash: 0xDEAD_BEEF_0123_4567, kind: .cpu)),
        .hello(HelloMessage(name: "", capacity: 65535, protocolVersion: 7, configHash: 0, kind: .gpu)),
        .welcome(WelcomeMessage(heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 10_000, policyVersion: 12, maxMessageBytes: 1 << 26)),
        .refuse(reason: "config hash mismatch"),
        .ready(credit: 3),
        .task(task),
        .result(ResultMessage(taskID: 9, policyVersion: 3, trajectories: [
            trajectory,
            Trajectory(id: TrajectoryID(pairID: 42, stage: .criteria, criteriaIndex: 0, responseIndex: 0, sampleIndex: 0),
                       promptTokenCount: 0, tokens: [], behaviourLogprobs: [], referenceLogprobs: [], finishReason: .eos, text: ""),
        ])),
        .result(ResultMessage(taskID: 10, policyVersion: 0, trajectories: [])),
        .heartbeat(policyVersion: .max),
        .weightsRequest(version: 4, chunkIndex: 17),
        .weightsChunk(WeightsChunk(version: 4, chunkIndex: 1, chunkCount: 3, totalBytes: 10, data: [1, 2, 3, 4])),
        .weightsChunk(WeightsChunk(version: 0, chunkIndex: 0, chunkCount: 1, totalBytes: 0, data: [])),
        .weightsUnavailable(version: 1, latestVersion: 5),
        .goodbye(reason: "shutting down"),
        .gradientTask(gradientTask),
        .gradientResult(GradientResultMessage(taskID: 12, policyVersion: 3, logprobs: [[-0.5, -1.25], [0]], entropySums: [2.5, 0],
                                              microBatches: 2, totalBytes: 16, chunkCount: 2)),
        .gradientChunk(GradientChunk(taskID: 12, chunkIndex: 1, chunkCount: 2, totalBytes: 16, data: [0, 0, 128, 63])),
    ]

    static let gradientTask = GradientTaskMessage(
        taskID: 12, step: 3, miniBatch: 1, shard: 1, policyVersion: WeightsVersion.intermediate(step: 3, miniBatch: 1), temperature: 0.7,
        loss: GRPOLossOptions(clipLow: 0.2, clipHigh: 0.28, klCoef: 0.05, klEstimator: .k2), workspaceFloats: 1 << 20,
        rows: [GradientRow(id: trajectory.id, sequence: [1, 2, 263, 5], promptLength: 2, behaviourLogprobs: [-0.5, -1.25],
                           referenceLogprobs: [-0.75, 0], advantage: -0.5, scale: 0.125),
               GradientRow(id: .criteria(pair: 42, 0), sequence: [7, 8], promptLength: 1, behaviourLogprobs: [-3],
                           referenceLogprobs: [-2], advantage: 0, scale: 0)])
}

@Suite struct ProtocolCodecTests {
    let codec = MessageCodec()

    /// Decodes a body under a header of `type` (correct length), for hand-built malformed bodies.
    func decode(_ type: MessageType, _ body: [UInt8], codec: MessageCodec = MessageCodec()) throws(ProtocolError) -> Message {
        try codec.decode([MessageCodec.header(type: type.rawValue, bodyLength: body.count), body])
    }

    func expectError(_ expected: ProtocolError, _ type: MessageType, _ body: [UInt8], codec: MessageCodec = MessageCodec(),
                     sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(throws: expected, sourceLocation: sourceLocation) { try decode(type, body, codec: codec) }
    }

    @Test func everyMessageTypeRoundTrips() throws {
        var covered = Set<MessageType>()
        for message in ProtocolSamples.all {
            let frames = try codec.encode(message)
            #expect(frames.count == 2)
            #expect(frames[0].count == MessageCodec.headerSize)
            #expect(try codec.decode(frames) == message)
            covered.insert(message.type)
        }
        #expect(covered == Set(MessageType.allCases))
    }

    @Test func headerAndBodyBytesAreLittleEndian() throws {
        let frames = try codec.encode(.weightsRequest(version: 0x0102, chunkIndex: 0x0A0B_0C0D))
        #expect(frames[0] == [0x43, 0x45, 0x52, 0x4D, 4, 0, 8, 0, 12, 0, 0, 0])
        #expect(frames[1] == [0x02, 0x01, 0, 0, 0, 0, 0, 0, 0x0D, 0x0C, 0x0B, 0x0A])
        let refuse = try codec.encode(.refuse(reason: "é"))
        #expect(refuse[1] == [2, 0, 0, 0, 0xC3, 0xA9])
    }

    @Test func framingErrors() throws {
        let good = try codec.encode(.heartbeat(policyVersion: 1))
        #expect(throws: ProtocolError.wrongFrameCount(1)) { try codec.decode([good[0]]) }
        #expect(throws: ProtocolError.wrongFrameCount(3)) { try codec.decode(good + [[]]) }
        #expect(throws: ProtocolError.badHeaderSize(11)) { try codec.decode([Array(good[0].prefix(11)), good[1]]) }
        var magic = good[0]; magic[3] = 0x58
        #expect(throws: ProtocolError.badMagic([0x43, 0x45, 0x52, 0x58])) { try codec.decode([magic, good[1]]) }
        #expect(throws: ProtocolError.unsupportedVersion(received: 3, supported: 4)) {
            try codec.decode([MessageCodec.header(type: 7, bodyLength: 8, version: 3), good[1]])
        }
        for badType: UInt8 in [0, 15, 255] {
            #expect(throws: ProtocolError.unknownMessageType(badType)) {
                try codec.decode([MessageCodec.header(type: badType, bodyLength: 8), good[1]])
            }
        }
        #expect(throws: ProtocolError.unknownFlags(0x80)) {
            try codec.decode([MessageCodec.header(type: 7, bodyLength: 8, flags: 0x80), good[1]])
        }
        #expect(throws: ProtocolError.bodyLengthMismatch(declared: 9, actual: 8)) {
            try codec.decode([MessageCodec.header(type: 7, bodyLength: 9), good[1]])
        }
        #expect(throws: ProtocolError.trailingBytes(message: "HEARTBEAT", count: 1)) { try decode(.heartbeat, good[1] + [0]) }
    }

    @Test func messageSizeLimitAppliesToEncodeAndDecode() throws {
        let small = MessageCodec(limits: ProtocolLimits(maxMessageBytes: 40))
        let big = Message.refuse(reason: String(repeating: "x", count: 30)) // 12 + 4 + 30 = 46 bytes
        #expect(throws: ProtocolError.messageTooLarge(bytes: 46, limit: 40)) { try small.encode(big) }
        let frames = try codec.encode(big)
        #expect(throws: ProtocolError.messageTooLarge(bytes: 46, limit: 40)) { try small.decode(frames) }
    }

    /// Every proper prefix of every sample body is reported as truncated, never as anything
    /// else and never by trapping.
    @Test func everyTruncationIsDetected() throws {
        for message in ProtocolSamples.all {
            let body = try MessageCodec.encodeBody(message)
            for cut in 0..<body.count {
                do {
                    _ = try decode(message.type, Array(body.prefix(cut)))
                    Issue.record("\(message.type) cut at \(cut) of \(body.count) decoded")
                } catch {
                    guard case .truncated = error else {
                        Issue.record("\(message.type) cut at \(cut): \(error)")
                        continue
                    }
                }
            }
        }
    }

    @Test func truncationNamesTheField() {
        var w = ByteWriter()
        w.u64(1); w.u64(1); w.u32(1) // one trajectory
        w.u64(42); w.u8(1); w.u16(0); w.u16(0); w.u16(0); w.u32(3)
        w.u32(5); for token: UInt32 in 1...4 { w.u32(token) } // five tokens announced, four present
        #expect(throws: ProtocolError.truncated(field: "RESULT.trajectories[0].tokens", needed: 20, remaining: 16)) {
            try decode(.result, w.bytes)
        }
        let error = ProtocolError.truncated(field: "RESULT.trajectories[0].tokens", needed: 20, remaining: 16)
        #expect(error.description == "truncated at RESULT.trajectories[0].tokens: needs 20 bytes, 16 left")
    }

    @Test func forgedHugeCountsAreRejectedBeforeAllocating() {
        var w = ByteWriter()
        w.u64(1); w.u64(1); w.u32(UInt32.max)
        let unlimited = MessageCodec(limits: ProtocolLimits(maxTrajectoriesPerResult: Int(UInt32.max)))
        #expect(throws: ProtocolError.truncated(field: "RESULT.trajectories", needed: Int(UInt32.max) * 36, remaining: 0)) {
            try decode(.result, w.bytes, codec: unlimited)
        }
        expectError(.countOverLimit(field: "RESULT.trajectories", count: Int(UInt32.max), limit: 1 << 20), .result, w.bytes)
    }

    /// A RESULT body with one trajectory whose arrays and fields can be overridden.
    func resultBody(tokens: [UInt32] = [1, 2], behaviour: [Float] = [-1, -2], reference: [Float] = [-1, -2],
                    stage: UInt8 = 1, finish: UInt8 = 0, text: [UInt8] = Array("ok".utf8), duplicate: Bool = false) -> [UInt8] {
        var w = ByteWriter()
        w.u64(9); w.u64(3); w.u32(duplicate ? 2 : 1)
        for _ in 0..<(duplicate ? 2 : 1) {
            w.u64(42); w.u8(stage); w.u16(0); w.u16(1); w.u16(0); w.u32(10)
            w.u32Array(tokens); w.f32Array(behaviour); w.f32Array(reference)
            w.u8(finish); w.bytes(text)
        }
        return w.bytes
    }

    @Test func resultValidation() throws {
        let t = "RESULT.trajectories[0]"
        _ = try decode(.result, resultBody())
        expectError(.arrayLengthMismatch(field: "\(t).behaviour_logprobs", expected: 2, actual: 1), .result, resultBody(behaviour: [-1]))
        expectError(.arrayLengthMismatch(field: "\(t).reference_logprobs", expected: 2, actual: 3), .result, resultBody(reference: [-1, -1, -1]))
        #expect(throws: ProtocolError.self) { try decode(.result, resultBody(behaviour: [-1, .nan])) }
        do {
            _ = try decode(.result, resultBody(behaviour: [-1, .nan]))
        } catch {
            guard case let .nonFinite(field, index, value) = error else { Issue.record("\(error)"); return }
            #expect(field == "\(t).behaviour_logprobs" && index == 1 && value.isNaN)
            #expect(error.description == "\(t).behaviour_logprobs[1]: NaN value")
        }
        expectError(.nonFinite(field: "\(t).reference_logprobs", index: 0, value: -.infinity), .result, resultBody(reference: [-.infinity, -1]))
        expectError(.positiveLogprob(field: "\(t).behaviour_logprobs", index: 0, value: 0.5), .result, resultBody(behaviour: [0.5, -1]))
        _ = try decode(.result, resultBody(behaviour: [1e-6, -1])) // rounding above 0 is tolerated
        expectError(.invalidEnumValue(field: "\(t).stage", value: 4), .result, resultBody(stage: 4))
        expectError(.invalidEnumValue(field: "\(t).finish_reason", value: 9), .result, resultBody(finish: 9))
        expectError(.invalidUTF8(field: "\(t).text"), .result, resultBody(text: [0x66, 0xFF, 0xFE]))
        expectError(.invalidUTF8(field: "\(t).text"), .result, resultBody(text: [0xC3])) // cut multi-byte sequence
        let smallVocab = MessageCodec(limits: ProtocolLimits(vocabularySize: 264))
        expectError(.tokenOutOfRange(field: "\(t).tokens", index: 1, token: 264, vocabularySize: 264), .result,
                    resultBody(tokens: [263, 264]), codec: smallVocab)
        let fewTokens = MessageCodec(limits: ProtocolLimits(maxTokensPerTrajectory: 1))
        expectError(.countOverLimit(field: "\(t).tokens", count: 2, limit: 1), .result, resultBody(), codec: fewTokens)
        expectError(.invalidValue(field: "RESULT.trajectories[1]", reason: "duplicate trajectory id (pair 42 evaluation c0 r1 s0)"),
                    .result, resultBody(duplicate: true))
        let shortText = MessageCodec(limits: ProtocolLimits(maxStringBytes: 1))
        expectError(.tooLong(field: "\(t).text", length: 2, limit: 1), .result, resultBody(), codec: shortText)
    }

    /// A TASK body with overridable parameters and one pair.
    func taskBody(nc: UInt16 = 4, temperature: Double = 1, topP: Double = 1, pairs: UInt32 = 1, responses: UInt32 = 2,
                  query: [UInt8] = Array("q".utf8), samePairIDs: Bool = false) -> [UInt8] {
        var w = ByteWriter()
        w.u64(1); w.u64(2); w.u64(3); w.u64(4)
        w.u16(nc); w.u16(2); w.u32(96); w.u32(64); w.f64(temperature); w.f64(topP)
        w.u32(pairs)
        for p in 0..<pairs {
            w.u64(samePairIDs ? 0 : UInt64(p)); w.bytes(query); w.u32(responses)
            for _ in 0..<responses { w.string("r") }
        }
        return w.bytes
    }

    @Test func taskValidation() throws {
        _ = try decode(.task, taskBody())
        expectError(.invalidValue(field: "TASK.nc", reason: "must be at least 1"), .task, taskBody(nc: 0))
        expectError(.nonFinite(field: "TASK.temperature", index: nil, value: .infinity), .task, taskBody(temperature: .infinity))
        expectError(.invalidValue(field: "TASK.temperature", reason: "must be ≥ 0, got -1.0"), .task, taskBody(temperature: -1))
        expectError(.invalidValue(field: "TASK.top_p", reason: "must be in (0, 1], got 0.0"), .task, taskBody(topP: 0))
        expectError(.invalidValue(field: "TASK.pairs", reason: "a task has at least one pair"), .task, taskBody(pairs: 0))
        expectError(.invalidValue(field: "TASK.pairs[0].responses", reason: "a pair has at least one response"), .task, taskBody(responses: 0))
        let limits = MessageCodec(limits: ProtocolLimits(maxPairsPerTask: 2, maxResponsesPerPair: 2))
        expectError(.countOverLimit(field: "TASK.pairs", count: 3, limit: 2), .task, taskBody(pairs: 3), codec: limits)
        expectError(.countOverLimit(field: "TASK.pairs[0].responses", count: 3, limit: 2), .task, taskBody(responses: 3), codec: limits)
        expectError(.invalidUTF8(field: "TASK.pairs[0].query"), .task, taskBody(query: [0xED, 0xA0, 0x80])) // UTF-16 surrogate
        expectError(.invalidValue(field: "TASK.pairs[1].pair_id", reason: "pair 0 appears twice in the task"), .task, taskBody(pairs: 2, samePairIDs: true))
    }

    @Test func smallMessageValidation() throws {
        var hello = ByteWriter()
        hello.string("w"); hello.u16(0); hello.u16(1); hello.u64(0); hello.u8(0)
        expectError(.invalidValue(field: "HELLO.capacity", reason: "must be at least 1"), .hello, hello.bytes)
        var kind = ByteWriter()
        kind.string("w"); kind.u16(1); kind.u16(1); kind.u64(0); kind.u8(2)
        expectError(.invalidEnumValue(field: "HELLO.kind", value: 2), .hello, kind.bytes)
        var name = ByteWriter()
        name.bytes([UInt8](repeating: 0x61, count: 257)); name.u16(1); name.u16(1); name.u64(0); name.u8(0)
        expectError(.tooLong(field: "HELLO.name", length: 257, limit: 256), .hello, name.bytes)
        expectError(.invalidValue(field: "READY.credit", reason: "must be at least 1"), .ready, [0, 0])
        var welcome = ByteWriter()
        welcome.u32(1000); welcome.u32(1000); welcome.u64(0); welcome.u32(4096)
        expectError(.invalidValue(field: "WELCOME.heartbeat_timeout_ms", reason: "must exceed the heartbeat interval (1000), got 1000"),
                    .welcome, welcome.bytes)
        var reason = ByteWriter()
        reason.bytes([UInt8](repeating: 0x61, count: 4097))
        expectError(.tooLong(field: "GOODBYE.reason", length: 4097, limit: 4096), .goodbye, reason.bytes)
        expectError(.invalidUTF8(field: "REFUSE.reason"), .refuse, [1, 0, 0, 0, 0x80])
    }

    func chunkBody(index: UInt32 = 0, count: UInt32 = 1, total: UInt64 = 3, checksum: UInt64? = nil, data: [UInt8] = [7, 8, 9]) -> [UInt8] {
        var w = ByteWriter()
        w.u64(5); w.u32(index); w.u32(count); w.u64(total); w.u64(checksum ?? Checksum.xxh64(data)); w.bytes(data)
        return w.bytes
    }

    /// A gradient task, result or chunk that breaks a rule is refused with the field named.
    @Test func gradientMessageValidation() throws {
        func body(_ task: GradientTaskMessage) throws -> [UInt8] { try MessageCodec.encodeBody(.gradientTask(task)) }
        var task = ProtocolSamples.gradientTask
        task.rows[0].promptLength = 4
        expectError(.invalidValue(field: "GRADIENT_TASK.rows[0].prompt_length", reason: "must be at least 1 and below the sequence's 4 tokens, got 4"),
                    .gradientTask, try body(task))
        task = ProtocolSamples.gradientTask
        task.rows[1].scale = -1
        expectError(.invalidValue(field: "GRADIENT_TASK.rows[1].scale", reason: "must be finite and ≥ 0, got -1.0"), .gradientTask, try body(task))
        task = ProtocolSamples.gradientTask
        task.rows[0].behaviourLogprobs = [-0.5]
        expectError(.arrayLengthMismatch(field: "GRADIENT_TASK.rows[0].behaviour_logprobs", expected: 2, actual: 1), .gradientTask, try body(task))
        task = ProtocolSamples.gradientTask
        task.rows[0].referenceLogprobs[1] = -.infinity
        expectError(.nonFinite(field: "GRADIENT_TASK.rows[0].reference_logprobs", index: 1, value: -.infinity), .gradientTask, try body(task))
        task = ProtocolSamples.gradientTask
        task.rows[1].sequence = [7, 300]
        expectError(.tokenOutOfRange(field: "GRADIENT_TASK.rows[1].sequence", index: 1, token: 300, vocabularySize: 264), .gradientTask,
                    try body(task), codec: MessageCodec(limits: ProtocolLimits(vocabularySize: 264)))
        task = ProtocolSamples.gradientTask
        task.temperature = 0
        expectError(.invalidValue(field: "GRADIENT_TASK.temperature", reason: "must be finite and > 0, got 0.0"), .gradientTask, try body(task))
        var estimator = try body(ProtocolSamples.gradientTask)
        estimator[8 + 8 + 4 + 4 + 8 + 4 + 24] = 3  // the kl_estimator byte
        expectError(.invalidEnumValue(field: "GRADIENT_TASK.kl_estimator", value: 3), .gradientTask, estimator)
        task = ProtocolSamples.gradientTask
        task.rows[1].id = task.rows[0].id
        expectError(.invalidValue(field: "GRADIENT_TASK.rows[1]", reason: "duplicate trajectory id (\(task.rows[0].id))"), .gradientTask, try body(task))

        var result = GradientResultMessage(taskID: 1, policyVersion: 1, logprobs: [[-1, .infinity]], entropySums: [1], microBatches: 1,
                                           totalBytes: 8, chunkCount: 1)
        expectError(.nonFinite(field: "GRADIENT_RESULT.rows[0].logprobs", index: 1, value: .infinity), .gradientResult,
                    try MessageCodec.encodeBody(.gradientResult(result)))
        result.logprobs = [[-1, 0.5]]
        expectError(.positiveLogprob(field: "GRADIENT_RESULT.rows[0].logprobs", index: 1, value: 0.5), .gradientResult,
                    try MessageCodec.encodeBody(.gradientResult(result)))
        result.logprobs = [[-1]]
        result.totalBytes = 6
        expectError(.invalidValue(field: "GRADIENT_RESULT.total_bytes", reason: "must be a positive multiple of 4 (float32 values), got 6"),
                    .gradientResult, try MessageCodec.encodeBody(.gradientResult(result)))

        var chunk = try MessageCodec.encodeBody(.gradientChunk(GradientChunk(taskID: 5, chunkIndex: 0, chunkCount: 1, totalBytes: 4, data: [1, 2, 3, 4])))
        chunk[chunk.count - 1] ^= 1
        let declared = Checksum.xxh64([1, 2, 3, 4] as [UInt8]), actual = Checksum.xxh64([1, 2, 3, 5] as [UInt8])
        expectError(.invalidValue(field: "GRADIENT_CHUNK.checksum",
                                  reason: "task 5 chunk 0: declared \(String(declared, radix: 16)), data hashes to \(String(actual, radix: 16))"),
                    .gradientChunk, chunk)
    }

    @Test func weightsChunkValidation() throws {
        _ = try decode(.weightsChunk, chunkBody())
        let actual: UInt64 = 0xc295_f2d4_426a_5667  // XXH64 of [7, 8, 9], from the xxhash package
        expectError(.checksumMismatch(version: 5, chunk: 0, declared: 1, actual: actual), .weightsChunk, chunkBody(checksum: 1))
        expectError(.invalidValue(field: "WEIGHTS_CHUNK.chunk_index", reason: "2 is not below chunk_count 2"), .weightsChunk, chunkBody(index: 2, count: 2))
        expectError(.invalidValue(field: "WEIGHTS_CHUNK.chunk_count", reason: "must be at least 1"), .weightsChunk, chunkBody(index: 0, count: 0))
        expectError(.invalidValue(field: "WEIGHTS_CHUNK.data", reason: "3 bytes exceed total_bytes 2"), .weightsChunk, chunkBody(total: 2))
    }

    /// Random frames and randomly corrupted valid messages: decoding either succeeds or throws,
    /// and a successful decode re-encodes to the same bytes (nothing invalid slips through).
    @Test func corruptedInputNeverTraps() throws {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state >> 17
        }
        let samples = try ProtocolSamples.all.map { try codec.encode($0) }
        var decoded = 0
        for round in 0..<3000 {
            var frames = samples[round % samples.count]
            if round % 5 == 0 {
                frames = (0..<Int(next() % 4)).map { _ in (0..<Int(next() % 40)).map { _ in UInt8(truncatingIfNeeded: next()) } }
            } else {
                let frame = Int(next() % 2)
                for _ in 0..<(1 + Int(next() % 3)) where !frames[frame].isEmpty {
                    let at = Int(next() % UInt64(frames[frame].count))
                    frames[frame][at] ^= UInt8(truncatingIfNeeded: 1 + next() % 255)
                }
            }
            if let message = try? codec.decode(frames) {
                decoded += 1
                #expect(try codec.encode(message) == frames)
            }
        }
        #expect(decoded < 3000)
    }

    /// The overhead the config's max_message_bytes check adds to weight_chunk_bytes is what a
    /// WEIGHTS_CHUNK of that many bytes really takes on the wire.
    @Test func weightsChunkOverheadIsTheEncodedSize() throws {
        let data = [UInt8](repeating: 7, count: 1000)
        let chunk = WeightsChunk(version: 1, chunkIndex: 0, chunkCount: 1, totalBytes: 1000, checksum: Checksum.xxh64(data), data: data[...])
        let frames = try MessageCodec().encode(.weightsChunk(chunk))
        #expect(MessageCodec.weightsChunkOverhead == 48)
        #expect(frames.map(\.count).reduce(0, +) == data.count + MessageCodec.weightsChunkOverhead)
    }

    @Test func limitsFollowTheConfiguration() {
        var config = Config()
        config.cluster.maxMessageBytes = 8192
        config.cluster.pairsPerTask = 3
        config.model.vocabSize = 300
        config.model.maxSeqLen = 128
        #expect(ProtocolLimits(config: config) == ProtocolLimits(maxMessageBytes: 8192, maxPairsPerTask: 3,
                                                                 maxTokensPerTrajectory: 128, vocabularySize: 300))
    }

    @Test func byteReaderReadsWhatWriterWrote() throws {
        var w = ByteWriter()
        w.u8(0xAB); w.u16(0xBEEF); w.u32(0x0102_0304); w.u64(.max - 1); w.f32(-1.5); w.f64(.pi); w.string("hé")
        #expect(Array(w.bytes[1..<7]) == [0xEF, 0xBE, 0x04, 0x03, 0x02, 0x01])
        var r = ByteReader(w.bytes)
        #expect(try r.u8("a") == 0xAB)
        #expect(try r.u16("b") == 0xBEEF)
        #expect(try r.u32("c") == 0x0102_0304)
        #expect(try r.u64("d") == .max - 1)
        #expect(try r.f32("e") == -1.5)
        #expect(try r.f64("f") == .pi)
        #expect(try r.string("g", limit: 10) == "hé")
        #expect(r.remaining == 0)
        #expect(throws: ProtocolError.truncated(field: "h", needed: 1, remaining: 0)) { try r.u8("h") }
    }
}
