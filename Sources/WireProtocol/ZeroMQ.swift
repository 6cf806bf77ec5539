import CZeroMQ
import Runtime
#if canImport(Glibc)
import Glibc
#endif

/// A ZeroMQ error with libzmq's own message and the operation that failed.
public struct ZMQError: Error, Equatable, CustomStringConvertible {
    /// `errno` as reported by `zmq_errno()`.
    public let code: Int32
    /// What was being done, e.g. `bind tcp://0.0.0.0:5555`.
    public let operation: String
    /// libzmq's message for `code` (`zmq_strerror`).
    public var message: String { String(cString: zmq_strerror(code)) }

    public init(code: Int32, operation: String) {
        self.code = code
        self.operation = operation
    }

    static func last(_ operation: String) -> ZMQError { ZMQError(code: zmq_errno(), operation: operation) }

    /// The context was terminated while the call was blocked.
    public var isTerminated: Bool { code == cerm_zmq_eterm() }
    public var description: String { "zmq: \(operation): \(message)" }
}

/// A ZeroMQ context. Thread-safe (libzmq contexts are), so it may be shared across threads;
/// sockets made from it are not.
public final class ZMQContext: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    /// Creates a context with `ioThreads` background I/O threads.
    public init(ioThreads: Int = 1) throws {
        guard let h = zmq_ctx_new() else { throw ZMQError.last("zmq_ctx_new") }
        handle = h
        if zmq_ctx_set(h, ZMQ_IO_THREADS, Int32(ioThreads)) != 0 {
            let err = ZMQError.last("zmq_ctx_set io_threads")
            zmq_ctx_term(h)
            throw err
        }
    }

    /// Makes blocking calls on this context's sockets return with `ETERM`, without waiting.
    public func shutdown() { zmq_ctx_shutdown(handle) }

    deinit { zmq_ctx_term(handle) }

    /// The libzmq version as (major, minor, patch).
    public static var version: (Int, Int, Int) {
        var a: Int32 = 0, b: Int32 = 0, c: Int32 = 0
        zmq_version(&a, &b, &c)
        return (Int(a), Int(b), Int(c))
    }

    /// Whether libzmq was built with a capability, e.g. `"curve"`.
    public static func has(_ capability: String) -> Bool { zmq_has(capability) != 0 }
}

/// The socket patterns cerm uses.
public enum ZMQSocketType: Sendable {
    case router, dealer, pair, req, rep, push, pull, pub, sub

    var raw: Int32 {
        switch self {
        case .router: ZMQ_ROUTER
        case .dealer: ZMQ_DEALER
        case .pair: ZMQ_PAIR
        case .req: ZMQ_REQ
        case .rep: ZMQ_REP
        case .push: ZMQ_PUSH
        case .pull: ZMQ_PULL
        case .pub: ZMQ_PUB
        case .sub: ZMQ_SUB
        }
    }
}

/// Bytes that libzmq sends without copying them (`zmq_msg_init_data`): each message that
/// carries them keeps them alive until libzmq has sent it, so one encoded weight chunk answers
/// every worker's request with no copy per request.
public final class SharedFrame: @unchecked Sendable {
    fileprivate let storage: UnsafeMutableRawBufferPointer
    public let count: Int

    /// `count` bytes, all written by `fill` (nothing reads them before).
    public init(count: Int, fill: (UnsafeMutableRawBufferPointer) -> Void) {
        storage = .allocate(byteCount: max(1, count), alignment: 16)
        self.count = count
        fill(UnsafeMutableRawBufferPointer(rebasing: storage[0..<count]))
    }

    deinit { storage.deallocate() }

    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage[0..<count]) }
}

/// One frame of a message to send.
public enum OutgoingFrame {
    /// Copied into the message.
    case copied([UInt8])
    /// Sent without a copy.
    case shared(SharedFrame)
}

/// A ZeroMQ socket. Not thread-safe: it belongs to one thread or actor for its whole life.
/// The socket is closed on `close()` or when it is released; it keeps its context alive.
public final class ZMQSocket {
    private var handle: UnsafeMutableRawPointer?
    /// The context the socket was made from (kept alive by the socket).
    public let context: ZMQContext
    /// The pattern this socket was created with.
    public let type: ZMQSocketType

    /// Creates a socket of `type`. Linger defaults to 0 so that closing never blocks on
    /// undelivered messages: every cerm message is either idempotent or re-requested.
    public init(context: ZMQContext, type: ZMQSocketType) throws {
        guard let h = zmq_socket(context.handle, type.raw) else { throw ZMQError.last("zmq_socket") }
        self.handle = h
        self.context = context
        self.type = type
        try setOption(ZMQ_LINGER, Int32(0), name: "linger")
    }

    deinit { close() }

    /// Closes the socket; further calls fail with `ENOTSOCK`.
    public func close() {
        if let h = handle { zmq_close(h) }
        handle = nil
    }

    private func live(_ operation: String) throws -> UnsafeMutableRawPointer {
        guard let h = handle else { throw ZMQError(code: ENOTSOCK, operation: operation) }
        return h
    }

    /// Binds to `endpoint` (`tcp://127.0.0.1:5555`, `tcp://127.0.0.1:*`, `inproc://name`, …).
    public func bind(_ endpoint: String) throws {
        if zmq_bind(try live("bind"), endpoint) != 0 { throw ZMQError.last("bind \(endpoint)") }
    }

    /// Connects to `endpoint`. Connection happens in the background; this does not block.
    public func connect(_ endpoint: String) throws {
        if zmq_connect(try live("connect"), endpoint) != 0 { throw ZMQError.last("connect \(endpoint)") }
    }

    /// Disconnects from an endpoint given to `connect`.
    public func disconnect(_ endpoint: String) throws {
        if zmq_disconnect(try live("disconnect"), endpoint) != 0 { throw ZMQError.last("disconnect \(endpoint)") }
    }

    /// The endpoint actually bound last (resolves `*` ports).
    public var lastEndpoint: String {
        get throws {
            var buf = [CChar](repeating: 0, count: 512)
            var len = buf.count
            if zmq_getsockopt(try live("getsockopt last_endpoint"), ZMQ_LAST_ENDPOINT, &buf, &len) != 0 {
                throw ZMQError.last("getsockopt last_endpoint")
            }
            return String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    // MARK: Options

    /// Sets an integer option by its libzmq constant.
    public func setOption(_ option: Int32, _ value: Int32, name: String) throws {
        var v = value
        if zmq_setsockopt(try live("setsockopt \(name)"), option, &v, MemoryLayout<Int32>.size) != 0 {
            throw ZMQError.last("setsockopt \(name)")
        }
    }

    /// Sets a 64-bit integer option by its libzmq constant.
    public func setOption(_ option: Int32, _ value: Int64, name: String) throws {
        var v = value
        if zmq_setsockopt(try live("setsockopt \(name)"), option, &v, MemoryLayout<Int64>.size) != 0 {
            throw ZMQError.last("setsockopt \(name)")
        }
    }

    /// Sets a bytes option by its libzmq constant.
    public func setOption(_ option: Int32, _ value: [UInt8], name: String) throws {
        let h = try live("setsockopt \(name)")
        let rc = value.withUnsafeBytes { zmq_setsockopt(h, option, $0.baseAddress, $0.count) }
        if rc != 0 { throw ZMQError.last("setsockopt \(name)") }
    }

    /// Sets a string option (no terminating NUL is sent).
    public func setOption(_ option: Int32, _ value: String, name: String) throws {
        try setOption(option, Array(value.utf8), name: name)
    }

    /// Milliseconds to keep unsent messages after close (default 0).
    public func setLinger(milliseconds: Int) throws { try setOption(ZMQ_LINGER, Int32(milliseconds), name: "linger") }
    /// Identity a ROUTER peer sees for this socket.
    public func setRoutingID(_ id: [UInt8]) throws { try setOption(ZMQ_ROUTING_ID, id, name: "routing_id") }
    /// Makes a ROUTER fail with `EHOSTUNREACH` instead of silently dropping to an unknown peer.
    public func setRouterMandatory(_ on: Bool) throws { try setOption(ZMQ_ROUTER_MANDATORY, Int32(on ? 1 : 0), name: "router_mandatory") }
    /// Largest inbound message libzmq accepts; larger ones disconnect the peer before they are buffered.
    public func setMaxMessageSize(_ bytes: Int64) throws { try setOption(ZMQ_MAXMSGSIZE, bytes, name: "maxmsgsize") }
    /// High-water marks (messages) for sending and receiving.
    public func setHighWaterMarks(send: Int, receive: Int) throws {
        try setOption(ZMQ_SNDHWM, Int32(send), name: "sndhwm")
        try setOption(ZMQ_RCVHWM, Int32(receive), name: "rcvhwm")
    }
    /// Reconnect interval and its exponential-backoff ceiling, in milliseconds.
    public func setReconnect(intervalMs: Int, maxMs: Int) throws {
        try setOption(ZMQ_RECONNECT_IVL, Int32(intervalMs), name: "reconnect_ivl")
        try setOption(ZMQ_RECONNECT_IVL_MAX, Int32(maxMs), name: "reconnect_ivl_max")
    }
    /// Makes this socket a CURVE server with the given Z85 secret key.
    public func setCurveServer(secretKey: String) throws {
        try setOption(ZMQ_CURVE_SERVER, Int32(1), name: "curve_server")
        try setOption(ZMQ_CURVE_SECRETKEY, secretKey, name: "curve_secretkey")
    }
    /// Makes this socket a CURVE client of the server `serverKey` with its own key pair (Z85).
    public func setCurveClient(serverKey: String, publicKey: String, secretKey: String) throws {
        try setOption(ZMQ_CURVE_SERVERKEY, serverKey, name: "curve_serverkey")
        try setOption(ZMQ_CURVE_PUBLICKEY, publicKey, name: "curve_publickey")
        try setOption(ZMQ_CURVE_SECRETKEY, secretKey, name: "curve_secretkey")
    }
    /// ZAP domain for authentication requests of this socket.
    public func setZAPDomain(_ domain: String) throws { try setOption(ZMQ_ZAP_DOMAIN, domain, name: "zap_domain") }

    // MARK: Messages

    /// Sends `frames` as one multipart message. Returns false if `dontWait` and the message
    /// could not be queued right now (`EAGAIN`). Interrupted calls are retried.
    @discardableResult
    public func send(_ frames: [[UInt8]], dontWait: Bool = false) throws -> Bool {
        try send(frames.map(OutgoingFrame.copied), dontWait: dontWait)
    }

    /// As ``send(_:dontWait:)-([[UInt8]],_)``, with frames that may be shared: libzmq sends a
    /// ``SharedFrame`` without copying it and releases it once sent.
    @discardableResult
    public func send(_ frames: [OutgoingFrame], dontWait: Bool = false) throws -> Bool {
        precondition(!frames.isEmpty, "a ZeroMQ message has at least one frame")
        let h = try live("send")
        for (index, frame) in frames.enumerated() {
            var flags: Int32 = dontWait ? ZMQ_DONTWAIT : 0
            if index < frames.count - 1 { flags |= ZMQ_SNDMORE }
            var message = zmq_msg_t()
            switch frame {
            case let .copied(bytes):
                guard zmq_msg_init_size(&message, bytes.count) == 0 else { throw ZMQError.last("zmq_msg_init_size") }
                if !bytes.isEmpty { bytes.withUnsafeBytes { zmq_msg_data(&message).copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
            case let .shared(shared):
                // The message holds a reference until libzmq's I/O thread has sent it.
                let owner = Unmanaged.passRetained(shared).toOpaque()
                let release: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void = { _, owner in
                    if let owner { Unmanaged<SharedFrame>.fromOpaque(owner).release() }
                }
                guard zmq_msg_init_data(&message, shared.storage.baseAddress, shared.count, release, owner) == 0 else {
                    Unmanaged<SharedFrame>.fromOpaque(owner).release()
                    throw ZMQError.last("zmq_msg_init_data")
                }
            }
            while true {
                if zmq_msg_send(&message, h, flags) >= 0 { break }
                let code = zmq_errno()
                if code == cerm_zmq_eintr() { continue }
                zmq_msg_close(&message)
                if code == cerm_zmq_eagain() && index == 0 { return false }
                throw ZMQError(code: code, operation: "send")
            }
        }
        return true
    }

    /// Receives one multipart message. Returns nil if `dontWait` and none is ready, or if the
    /// call was interrupted by a signal (callers loop and check their stop flag).
    public func receive(dontWait: Bool = false) throws -> [[UInt8]]? {
        let h = try live("receive")
        var frames: [[UInt8]] = []
        while true {
            var msg = zmq_msg_t()
            zmq_msg_init(&msg)
            defer { zmq_msg_close(&msg) }
            let rc = zmq_msg_recv(&msg, h, dontWait || !frames.isEmpty ? (frames.isEmpty ? ZMQ_DONTWAIT : 0) : 0)
            if rc < 0 {
                let code = zmq_errno()
                if frames.isEmpty && (code == cerm_zmq_eagain() || code == cerm_zmq_eintr()) { return nil }
                if code == cerm_zmq_eintr() { continue }
                throw ZMQError(code: code, operation: "receive")
            }
            let size = zmq_msg_size(&msg)
            if size == 0 {
                frames.append([])
            } else {
                let base = zmq_msg_data(&msg)!.assumingMemoryBound(to: UInt8.self)
                frames.append(Array(UnsafeBufferPointer(start: base, count: size)))
            }
            if zmq_msg_more(&msg) == 0 { return frames }
        }
    }

    /// Waits up to `timeoutMs` (−1 forever) for a message and receives it; nil on timeout, or
    /// as soon as `wakeup` is signalled (it is drained before returning).
    public func receive(timeoutMs: Int, wakeup: Wakeup? = nil) throws -> [[UInt8]]? {
        let ready = try ZMQPoll.wait([self], wakeup: wakeup, timeoutMs: timeoutMs)
        if ready.woken { wakeup?.drain() }
        guard ready.sockets.first == true else { return nil }
        return try receive(dontWait: true)
    }

    fileprivate var rawHandle: UnsafeMutableRawPointer? { handle }
}

/// `zmq_poll` over sockets for readability.
public enum ZMQPoll {
    /// Returns, per socket, whether it has a message to read. Waits up to `timeoutMs`
    /// (−1 forever, 0 not at all). A signal interrupting the wait reports nothing ready.
    public static func wait(_ sockets: [ZMQSocket], timeoutMs: Int) throws -> [Bool] {
        try wait(sockets, wakeup: nil, timeoutMs: timeoutMs).sockets
    }

    /// As ``wait(_:timeoutMs:)``, also returning early when `wakeup` is signalled (`woken`;
    /// not drained here).
    public static func wait(_ sockets: [ZMQSocket], wakeup: Wakeup?, timeoutMs: Int) throws -> (sockets: [Bool], woken: Bool) {
        var items = try sockets.map { socket -> zmq_pollitem_t in
            guard let h = socket.rawHandle else { throw ZMQError(code: ENOTSOCK, operation: "poll") }
            return zmq_pollitem_t(socket: h, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
        }
        if let wakeup, wakeup.descriptor >= 0 {
            items.append(zmq_pollitem_t(socket: nil, fd: wakeup.descriptor, events: Int16(ZMQ_POLLIN), revents: 0))
        }
        let rc = zmq_poll(&items, Int32(items.count), timeoutMs)
        if rc < 0 {
            let code = zmq_errno()
            if code == cerm_zmq_eintr() { return (Array(repeating: false, count: sockets.count), false) }
            throw ZMQError(code: code, operation: "poll")
        }
        let ready = items.map { ($0.revents & Int16(ZMQ_POLLIN)) != 0 }
        return (Array(ready.prefix(sockets.count)), ready.count > sockets.count && ready[sockets.count])
    }
}

/// CURVE key pairs in Z85 text form (40 characters each).
public struct CurveKeyPair: Sendable, Equatable {
    public let publicKey: String
    public let secretKey: String

    /// Generates a new key pair with libzmq's `zmq_curve_keypair`.
    public static func generate() throws -> CurveKeyPair {
        var pub = [CChar](repeating: 0, count: 41)
        var sec = [CChar](repeating: 0, count: 41)
        if zmq_curve_keypair(&pub, &sec) != 0 { throw ZMQError.last("zmq_curve_keypair") }
        return CurveKeyPair(publicKey: String(nulTerminated: pub), secretKey: String(nulTerminated: sec))
    }

    /// Derives the public key of a Z85 secret key.
    public static func publicKey(ofSecret secret: String) throws -> String {
        var pub = [CChar](repeating: 0, count: 41)
        guard secret.utf8.count == 40, zmq_curve_public(&pub, secret) == 0 else {
            throw ZMQError(code: EINVAL, operation: "derive CURVE public key (a secret key is 40 Z85 characters)")
        }
        return String(nulTerminated: pub)
    }

    /// Whether `key` is a well-formed 40-character Z85 key.
    public static func isValidKey(_ key: String) -> Bool {
        guard key.utf8.count == 40 else { return false }
        var out = [UInt8](repeating: 0, count: 32)
        return zmq_z85_decode(&out, key) != nil
    }

    /// Decodes a Z85 key to its 32 bytes (nil if malformed).
    public static func decode(_ key: String) -> [UInt8]? {
        guard key.utf8.count == 40 else { return nil }
        var out = [UInt8](repeating: 0, count: 32)
        return zmq_z85_decode(&out, key) == nil ? nil : out
    }

    /// Encodes 32 key bytes as Z85.
    public static func encode(_ bytes: [UInt8]) -> String {
        precondition(bytes.count == 32, "CURVE keys are 32 bytes")
        var out = [CChar](repeating: 0, count: 41)
        _ = zmq_z85_encode(&out, bytes, 32)
        return String(nulTerminated: out)
    }
}
