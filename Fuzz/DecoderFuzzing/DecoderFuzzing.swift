import Configuration
import Method
import Shared
import WireProtocol

/// The property the decoder fuzzer checks on every input (issue 27, point 3; docs/FUZZING.md),
/// shared by the libFuzzer driver (`make fuzz`) and the tests that replay the committed corpus.
///
/// An input is one message as it arrives at a ROUTER, header and body frames laid end to end:
/// the first ``MessageCodec/headerSize`` bytes (or fewer, when the input is shorter) are the
/// header frame, the rest the body. Decoding must not trap (Swift's overflow and bounds checks
/// crash the fuzzer, which is how it finds a fault), and whatever decodes must encode back to
/// the same bytes: the wire format has one encoding per message, so a decoded message that
/// encodes differently was accepted with a field the decoder misread.
public enum DecoderFuzzing {
    /// The limits the fuzzer decodes under: a 1 MiB message and a 256-token vocabulary, so the
    /// length and token-range checks are reachable from small inputs.
    public static let codec = MessageCodec(limits: ProtocolLimits(maxMessageBytes: 1 << 20, vocabularySize: 256))

    /// A decoded message that does not encode back to its input.
    public struct RoundTripMismatch: Error, CustomStringConvertible {
        public let message: Message
        public let input: [UInt8]
        public let encoded: [UInt8]
        public var description: String {
            "\(message.type) decoded from \(input.count) bytes encodes to \(encoded.count) different bytes (first difference at byte "
                + "\(zip(input, encoded).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(input.count, encoded.count)))"
        }
    }

    /// Splits an input into the header and body frames.
    public static func frames(_ input: [UInt8]) -> [[UInt8]] {
        let split = min(MessageCodec.headerSize, input.count)
        return [Array(input[..<split]), Array(input[split...])]
    }

    /// Runs one input through the decoder as the coordinator does (decode; on failure, salvage
    /// what the error path reads and render the error as the log line does). Returns the
    /// message when the input decodes; throws ``RoundTripMismatch`` when it does not re-encode
    /// to the input.
    @discardableResult
    public static func check(_ input: [UInt8]) throws -> Message? {
        let frames = frames(input)
        let message: Message
        do {
            message = try codec.decode(frames)
        } catch {
            _ = MessageCodec.salvage(frames)
            _ = "\(error)"
            return nil
        }
        _ = "\(message.type)"
        let encoded = try codec.encode(message).joined()
        guard Array(encoded) == input else { throw RoundTripMismatch(message: message, input: input, encoded: Array(encoded)) }
        return message
    }

    /// The seed corpus: one valid message of every type (and of every enum value a field can
    /// take), header and body laid end to end, named by what they hold. `make fuzz` starts from
    /// these (Fuzz/seeds/, written by `cerm-fuzz-decoder --write-seeds`).
    public static func seeds() throws -> [(name: String, bytes: [UInt8])] {
        let parameters = RolloutParameters(nc: 2, ne: 1, criteriaMaxTokens: 8, evaluationMaxTokens: 8, temperature: 1, topP: 0.9)
        let task = TaskMessage(taskID: 7, step: 3, policyVersion: 2, runSeed: 99, parameters: parameters, pairs: [
            TaskPair(pairID: 1, query: "q1", responses: ["good 1", "bad 1"]),
            TaskPair(pairID: 2, query: "qué", responses: ["sí"]),
        ])
        let trajectories = TrajectoryStage.allCases.enumerated().map { index, stage in
            Trajectory(id: TrajectoryID(pairID: 1, stage: stage, criteriaIndex: index, responseIndex: 1, sampleIndex: 0),
                       promptTokenCount: 5, tokens: [1, 2, 255], behaviourLogprobs: [-0.5, -1, 0], referenceLogprobs: [-0.25, -2, -3],
                       finishReason: FinishReason.allCases[index % FinishReason.allCases.count], text: "criteria \(index)")
        }
        let finishes = FinishReason.allCases.map { reason in
            Trajectory(id: .criteria(pair: 4, Int(reason.rawValue)), promptTokenCount: 1, tokens: [3], behaviourLogprobs: [-1],
                       referenceLogprobs: [-1], finishReason: reason, text: "")
        }
        let data: [UInt8] = Array(0..<64)
        var messages: [(String, Message)] = WorkerKind.allCases.map {
            ("hello-\($0)", .hello(HelloMessage(name: "worker-\($0)", capacity: 2, configHash: 0xC0FFEE, kind: $0)))
        }
        messages += [
            ("welcome", .welcome(WelcomeMessage(heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 10_000, policyVersion: 4, maxMessageBytes: 1 << 20))),
            ("refuse", .refuse(reason: "config hash mismatch")),
            ("ready", .ready(credit: 2)),
            ("task", .task(task)),
            ("result", .result(ResultMessage(taskID: 7, policyVersion: 2, trajectories: trajectories))),
            ("result-finish-reasons", .result(ResultMessage(taskID: 8, policyVersion: 2, trajectories: finishes))),
            ("result-empty", .result(ResultMessage(taskID: 9, policyVersion: 2, trajectories: []))),
            ("heartbeat", .heartbeat(policyVersion: 5)),
            ("weights-request", .weightsRequest(version: 5, chunkIndex: 1)),
            ("weights-chunk", .weightsChunk(WeightsChunk(version: 5, chunkIndex: 1, chunkCount: 3, totalBytes: 160, data: data[...]))),
            ("weights-unavailable", .weightsUnavailable(version: 4, latestVersion: 5)),
            ("goodbye", .goodbye(reason: "run finished after 3 steps")),
        ]
        let rows = [
            GradientRow(id: .criteria(pair: 1, 0), sequence: [1, 2, 3, 255], promptLength: 2, behaviourLogprobs: [-0.5, -1],
                        referenceLogprobs: [-0.25, -2], advantage: 0.75, scale: 0.25),
            GradientRow(id: .evaluation(pair: 1, criteria: 0, response: 1, sample: 2), sequence: [4, 5, 6], promptLength: 1,
                        behaviourLogprobs: [0, -3], referenceLogprobs: [-1, -1], advantage: -1.5, scale: 0),
        ]
        messages += KLEstimator.allCases.map { estimator in
            ("gradient-task-\(estimator)", .gradientTask(GradientTaskMessage(
                taskID: 11, step: 3, miniBatch: 1, shard: 0, policyVersion: WeightsVersion.intermediate(step: 3, miniBatch: 1),
                temperature: 1, loss: GRPOLossOptions(clipLow: 0.2, clipHigh: 0.28, klCoef: 1e-3, klEstimator: estimator),
                workspaceFloats: 1 << 28, rows: rows)))
        }
        messages += [
            ("gradient-result", .gradientResult(GradientResultMessage(taskID: 11, policyVersion: 2, logprobs: [[-0.5, -1], [0, -3]],
                                                                      entropySums: [1.5, 0], microBatches: 1, totalBytes: 160, chunkCount: 3))),
            ("gradient-chunk", .gradientChunk(GradientChunk(taskID: 11, chunkIndex: 1, chunkCount: 3, totalBytes: 160, data: data[...]))),
        ]
        return try messages.map { name, message in (name, Array(try codec.encode(message).joined())) }
    }
}
