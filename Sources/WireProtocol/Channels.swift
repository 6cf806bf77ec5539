import CZeroMQ
import Logging
import Runtime
import Shared

/// The routing id a ROUTER assigns to one connected peer. Identifies a worker for the life of
/// one connection (docs/PROTOCOL.md, section 1).
public struct RoutingID: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public var description: String {
        bytes.isEmpty ? "<empty>" : bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}

/// CURVE settings of a ROUTER (server) or DEALER (client).
public enum ChannelSecurity: Sendable {
    /// No encryption; only allowed on local endpoints unless overridden
    /// (``EndpointSecurity/checkInsecureBind(_:allowInsecure:)``).
    case none
    /// CURVE server with this secret key (Z85).
    case curveServer(secretKey: String)
    /// CURVE client of `serverKey` with its own key pair (Z85).
    case curveClient(serverKey: String, keys: CurveKeyPair)
}

/// Returns the remaining milliseconds of a deadline, for poll loops that drop bad messages
/// and keep waiting.
private func remainingMs(until deadline: Double?, clock: SystemClock) -> Int {
    guard let deadline else { return -1 }
    return max(0, Int(((deadline - clock.now()) * 1000).rounded(.up)))
}

/// A message ``RouterChannel/receive(timeoutMs:)`` dropped because it failed validation, with
/// what could still be read of it, so the caller can act on it (e.g. re-queue the task of a
/// registered worker whose RESULT does not decode).
public struct MalformedMessage: Sendable, Equatable {
    public let peer: RoutingID
    /// The header's message type, when the header is complete and carries the cerm magic.
    public let type: MessageType?
    /// A RESULT's task id (the first field of its body), when the body holds 8 bytes.
    public let taskID: UInt64?
    public let error: ProtocolError

    public init(peer: RoutingID, type: MessageType?, taskID: UInt64?, error: ProtocolError) {
        self.peer = peer
        self.type = type
        self.taskID = taskID
        self.error = error
    }

    /// Reads what it can of `frames` (header, body) that failed decoding with `error`.
    public init(peer: RoutingID, frames: [[UInt8]], error: ProtocolError) {
        let salvaged = MessageCodec.salvage(frames)
        self.init(peer: peer, type: salvaged.type, taskID: salvaged.taskID, error: error)
    }
}

/// The coordinator's ROUTER socket speaking cerm protocol v4. `receive` decodes and validates
/// every message; a malformed one is counted and dropped, never fatal, and logged with its peer
/// as far as ``warnings`` admits. Belongs to one thread.
public final class RouterChannel {
    public let socket: ZMQSocket
    public let codec: MessageCodec
    /// The endpoint actually bound (a `*` port resolved).
    public let endpoint: String
    private let logger: Logger
    /// Rate-limits the warnings of dropped messages per peer (docs/PROTOCOL.md, "Limits").
    public let warnings: PeerWarningLimiter
    /// Messages dropped because they failed validation; counts every one, logged or not.
    public private(set) var droppedMalformed = 0
    /// The latest dropped messages not yet taken (at most ``malformedBacklog``).
    private var malformed: [MalformedMessage] = []
    /// Dropped messages kept for ``takeMalformed()``; older ones are forgotten.
    public static let malformedBacklog = 256

    /// The messages dropped since the last call, oldest first (see ``MalformedMessage``).
    public func takeMalformed() -> [MalformedMessage] {
        defer { malformed = [] }
        return malformed
    }

    /// Binds a ROUTER at `endpoint`. With `.curveServer`, start a ``ZAPAuthenticator`` on the
    /// same context first. `warnings` defaults to a limiter on the system clock that logs
    /// through `logger`; the coordinator passes the one it shares and flushes.
    public init(context: ZMQContext, bind endpoint: String, codec: MessageCodec, security: ChannelSecurity,
                logger: Logger = Logger(label: "cerm.router"), warnings: PeerWarningLimiter? = nil) throws {
        socket = try ZMQSocket(context: context, type: .router)
        // libzmq drops larger frames and the connection that sent them before buffering them
        // (per frame only: a many-frame message is buffered whole; docs/PROTOCOL.md, "Limits").
        try socket.setMaxMessageSize(Int64(codec.limits.maxMessageBytes))
        try socket.setRouterMandatory(true)
        switch security {
        case .none: break
        case let .curveServer(secretKey):
            try socket.setZAPDomain("cerm")
            try socket.setCurveServer(secretKey: secretKey)
        case .curveClient:
            throw CermError.invalid("a ROUTER channel is a CURVE server, not a client")
        }
        try socket.bind(endpoint)
        self.endpoint = try socket.lastEndpoint
        self.codec = codec
        self.logger = logger
        self.warnings = warnings ?? PeerWarningLimiter(clock: SystemClock(), logger: logger)
    }

    /// A peer's queue is full (it stopped reading): the message was dropped.
    public struct QueueFull: Error, Equatable {
        public let peer: RoutingID
    }

    /// Queues `message` for `peer` without ever blocking the caller: a peer that is gone or
    /// stopped reading must not stall heartbeats and weights for everyone else (liveness and
    /// re-requests recover the loss). Returns false when the peer is no longer connected;
    /// throws ``QueueFull`` when its queue is full, a ``ProtocolError`` when the message
    /// cannot be encoded.
    @discardableResult
    public func send(_ message: Message, to peer: RoutingID) throws -> Bool {
        try send(frames: try codec.encode(message).map(OutgoingFrame.copied), to: peer)
    }

    /// As ``send(_:to:)-(Message,_)``, for a message encoded beforehand: its body goes out
    /// without a copy.
    @discardableResult
    public func send(_ encoded: EncodedMessage, to peer: RoutingID) throws -> Bool {
        try send(frames: encoded.frames, to: peer)
    }

    /// As ``send(_:to:)-(Message,_)``, for the answer to a WEIGHTS_REQUEST.
    @discardableResult
    public func send(_ reply: WeightsReply, to peer: RoutingID) throws -> Bool {
        switch reply {
        case let .chunk(encoded, _, _): try send(encoded, to: peer)
        case let .unavailable(version, latest): try send(.weightsUnavailable(version: version, latestVersion: latest), to: peer)
        }
    }

    private func send(frames: [OutgoingFrame], to peer: RoutingID) throws -> Bool {
        do {
            guard try socket.send([.copied(peer.bytes)] + frames, dontWait: true) else { throw QueueFull(peer: peer) }
            return true
        } catch let error as ZMQError where error.code == cerm_zmq_ehostunreach() {
            return false
        }
    }

    /// Waits up to `timeoutMs` (−1 forever) for the next valid message; nil on timeout or as
    /// soon as `wakeup` is signalled.
    public func receive(timeoutMs: Int, wakeup: Wakeup? = nil) throws -> (peer: RoutingID, message: Message)? {
        let clock = SystemClock()
        let deadline = timeoutMs < 0 ? nil : clock.now() + Double(timeoutMs) / 1000
        while true {
            guard let frames = try socket.receive(timeoutMs: remainingMs(until: deadline, clock: clock), wakeup: wakeup) else { return nil }
            guard let first = frames.first else { continue }
            let peer = RoutingID(first)
            let body = Array(frames.dropFirst())
            do {
                return (peer, try codec.decode(body))
            } catch {
                droppedMalformed += 1
                if warnings.admit("dropped malformed message", from: "peer \(peer)") {
                    logger.warning("dropped malformed message from peer \(peer): \(error)")
                }
                if malformed.count >= Self.malformedBacklog { malformed.removeFirst() }
                malformed.append(MalformedMessage(peer: peer, frames: body, error: error))
            }
            if deadline != nil && remainingMs(until: deadline, clock: clock) == 0 { return nil }
        }
    }
}

/// A worker's DEALER socket speaking cerm protocol v4; malformed messages are logged and
/// dropped. Belongs to one thread.
public final class DealerChannel {
    public let socket: ZMQSocket
    public let codec: MessageCodec
    private let logger: Logger
    /// Messages dropped because they failed validation.
    public private(set) var droppedMalformed = 0

    /// Connects a DEALER to `endpoint` (the connection completes in the background).
    public init(context: ZMQContext, connect endpoint: String, codec: MessageCodec, security: ChannelSecurity,
                logger: Logger = Logger(label: "cerm.dealer")) throws {
        socket = try ZMQSocket(context: context, type: .dealer)
        try socket.setMaxMessageSize(Int64(codec.limits.maxMessageBytes))
        switch security {
        case .none: break
        case let .curveClient(serverKey, keys):
            try socket.setCurveClient(serverKey: serverKey, publicKey: keys.publicKey, secretKey: keys.secretKey)
        case .curveServer:
            throw CermError.invalid("a DEALER channel is a CURVE client, not a server")
        }
        try socket.connect(endpoint)
        self.codec = codec
        self.logger = logger
    }

    /// Queues `message` for the coordinator; false when there is no connection to queue on.
    /// Never blocks: a DEALER whose handshake failed (a CURVE key the coordinator does not
    /// list) has no pipe, and a blocking send would wait forever.
    @discardableResult
    public func send(_ message: Message) throws -> Bool {
        try socket.send(try codec.encode(message), dontWait: true)
    }

    /// Waits up to `timeoutMs` (−1 forever) for the next valid message; nil on timeout or as
    /// soon as `wakeup` is signalled.
    public func receive(timeoutMs: Int, wakeup: Wakeup? = nil) throws -> Message? {
        let clock = SystemClock()
        let deadline = timeoutMs < 0 ? nil : clock.now() + Double(timeoutMs) / 1000
        while true {
            guard let frames = try socket.receive(timeoutMs: remainingMs(until: deadline, clock: clock), wakeup: wakeup) else { return nil }
            do {
                return try codec.decode(frames)
            } catch {
                droppedMalformed += 1
                logger.warning("dropped malformed message from the coordinator: \(error)")
            }
            if deadline != nil && remainingMs(until: deadline, clock: clock) == 0 { return nil }
        }
    }
}
