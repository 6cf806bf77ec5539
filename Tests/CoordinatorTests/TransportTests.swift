import Foundation
@testable import Method
@testable import Runtime
@testable import Shared
import Testing
@testable import WireProtocol
#if canImport(Glibc)
import Glibc
#endif

/// Real sockets over TCP loopback. Receives that must succeed wait up to a generous deadline
/// and return as soon as the message is there; no assertion depends on timing.
@Suite struct TransportTests {
    static let patience = 10_000

    static func hello(_ name: String) -> Message {
        .hello(HelloMessage(name: name, capacity: 1, configHash: 1, kind: .cpu))
    }

    /// Receives on the router until a message from `peer` arrives; everything else is recorded.
    static func receive(from peer: RoutingID?, on router: RouterChannel, others: inout [(RoutingID, Message)]) throws -> Message? {
        let deadline = SystemClock().now() + Double(patience) / 1000
        while SystemClock().now() < deadline {
            guard let (from, message) = try router.receive(timeoutMs: 200) else { continue }
            if peer == nil || from == peer { return message }
            others.append((from, message))
        }
        return nil
    }

    @Test func routerAndTwoDealersRunAFullExchange() throws {
        let context = try ZMQContext()
        let codec = MessageCodec(limits: ProtocolLimits(maxMessageBytes: 1 << 16, vocabularySize: 264))
        let router = try RouterChannel(context: context, bind: "tcp://127.0.0.1:*", codec: codec, security: .none)
        let workers = try ["w1", "w2"].map { _ in try DealerChannel(context: context, connect: router.endpoint, codec: codec, security: .none) }
        for (i, worker) in workers.enumerated() { try worker.send(Self.hello("w\(i + 1)")) }

        var peers: [String: RoutingID] = [:]
        for _ in 0..<2 {
            let (peer, message) = try #require(try router.receive(timeoutMs: Self.patience))
            guard case let .hello(hello) = message else { Issue.record("expected HELLO, got \(message)"); return }
            peers[hello.name] = peer
            #expect(try router.send(.welcome(WelcomeMessage(heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 5000, policyVersion: 0, maxMessageBytes: 1 << 16)), to: peer))
        }
        #expect(Set(peers.keys) == ["w1", "w2"])
        for worker in workers {
            guard case .welcome = try #require(try worker.receive(timeoutMs: Self.patience)) else { Issue.record("expected WELCOME"); return }
        }

        // One task per worker; each answers with its own trajectories.
        for (i, name) in ["w1", "w2"].enumerated() {
            var task = ProtocolSamplesForTransport.task
            task.taskID = UInt64(100 + i)
            #expect(try router.send(.task(task), to: try #require(peers[name])))
        }
        for worker in workers {
            guard case let .task(task) = try #require(try worker.receive(timeoutMs: Self.patience)) else { Issue.record("expected TASK"); return }
            try worker.send(.result(ResultMessage(taskID: task.taskID, policyVersion: task.policyVersion,
                                                  trajectories: [ProtocolSamplesForTransport.trajectory(pair: task.pairs[0].pairID)])))
        }
        var results: [UInt64: RoutingID] = [:]
        for _ in 0..<2 {
            let (peer, message) = try #require(try router.receive(timeoutMs: Self.patience))
            guard case let .result(result) = message else { Issue.record("expected RESULT, got \(message)"); return }
            #expect(result.trajectories == [ProtocolSamplesForTransport.trajectory(pair: 42)])
            results[result.taskID] = peer
        }
        #expect(results == [100: try #require(peers["w1"]), 101: try #require(peers["w2"])])
        #expect(router.droppedMalformed == 0)
        // A peer that is gone is reported, not fatal.
        #expect(try router.send(.heartbeat(policyVersion: 0), to: RoutingID([0, 1, 2, 3, 4])) == false)
    }

    @Test func malformedInputIsDroppedAndAGoodWorkerKeepsBeingServed() throws {
        let context = try ZMQContext()
        let codec = MessageCodec(limits: ProtocolLimits(maxMessageBytes: 4096))
        let router = try RouterChannel(context: context, bind: "tcp://127.0.0.1:*", codec: codec, security: .none)
        let good = try DealerChannel(context: context, connect: router.endpoint, codec: codec, security: .none)
        try good.send(Self.hello("good"))
        var others: [(RoutingID, Message)] = []
        let (goodPeer, hello) = try #require(try router.receive(timeoutMs: Self.patience))
        #expect(hello == Self.hello("good"))

        // A DEALER that speaks ZMTP but sends garbage, a truncated body and bad headers, then one
        // valid message. Order on one connection is preserved, so when the valid message arrives
        // every bad one before it has been seen and dropped.
        let raw = try ZMQSocket(context: context, type: .dealer)
        try raw.connect(router.endpoint)
        let valid = try codec.encode(.goodbye(reason: "done"))
        let truncated = try codec.encode(.hello(HelloMessage(name: "trunc", capacity: 1, configHash: 1, kind: .cpu)))
        try raw.send([[0xDE, 0xAD, 0xBE, 0xEF]])                                          // one garbage frame
        try raw.send([truncated[0], Array(truncated[1].dropLast(3))])                       // body shorter than declared
        try raw.send([MessageCodec.header(type: 11, bodyLength: 4), [9, 0, 0, 0]])          // string runs past the end
        try raw.send([MessageCodec.header(type: 200, bodyLength: 0), []])                   // unknown type
        try raw.send([Array("XXXX".utf8) + Array(valid[0].dropFirst(4)), valid[1]])        // wrong magic
        try raw.send(valid)
        let rawMessage = try Self.receive(from: nil, on: router, others: &others)
        #expect(rawMessage == .goodbye(reason: "done"))
        #expect(router.droppedMalformed == 5)

        // An oversized frame makes libzmq drop that connection before buffering it; a raw TCP
        // client that does not speak ZMTP at all is dropped in the handshake.
        let oversized = try ZMQSocket(context: context, type: .dealer)
        try oversized.connect(router.endpoint)
        try oversized.send([MessageCodec.header(type: 11, bodyLength: 8192), [UInt8](repeating: 0x41, count: 8192)])
        try Self.sendRawTCPGarbage(to: router.endpoint)

        // The good worker is still served, in both directions.
        try good.send(.heartbeat(policyVersion: 3))
        #expect(try Self.receive(from: goodPeer, on: router, others: &others) == .heartbeat(policyVersion: 3))
        #expect(try router.send(.heartbeat(policyVersion: 4), to: goodPeer))
        #expect(try good.receive(timeoutMs: Self.patience) == .heartbeat(policyVersion: 4))
        #expect(others.isEmpty, "unexpected messages: \(others)")
    }

    /// Connects a plain TCP socket to a `tcp://127.0.0.1:PORT` endpoint and writes non-ZMTP bytes.
    static func sendRawTCPGarbage(to endpoint: String) throws {
        let port = try #require(UInt16(endpoint.split(separator: ":").last ?? ""))
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(connected == 0)
        let garbage = [UInt8](repeating: 0xFF, count: 10) + Array("GET / HTTP/1.0\r\n\r\n".utf8)
        _ = garbage.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    @Test func curveRouterAdmitsOnlyAuthorizedKeys() throws {
        try #require(ZMQContext.has("curve"))
        let context = try ZMQContext()
        let server = try CurveKeyPair.generate(), authorized = try CurveKeyPair.generate(), stranger = try CurveKeyPair.generate()
        let authenticator = try ZAPAuthenticator(context: context, authorizedKeys: [authorized.publicKey])
        try authenticator.start()
        defer { authenticator.stop() }
        let codec = MessageCodec()
        let router = try RouterChannel(context: context, bind: "tcp://127.0.0.1:*", codec: codec, security: .curveServer(secretKey: server.secretKey))

        // The stranger connects first and is denied (its HELLO can never be delivered).
        let intruder = try DealerChannel(context: context, connect: router.endpoint, codec: codec,
                                         security: .curveClient(serverKey: server.publicKey, keys: stranger))
        try intruder.send(Self.hello("intruder"))
        let deadline = SystemClock().now() + Double(Self.patience) / 1000
        while authenticator.statistics.denied == 0 && SystemClock().now() < deadline { usleep(2000) }
        #expect(authenticator.statistics.denied >= 1)

        let worker = try DealerChannel(context: context, connect: router.endpoint, codec: codec,
                                       security: .curveClient(serverKey: server.publicKey, keys: authorized))
        try worker.send(Self.hello("worker"))
        let (peer, hello) = try #require(try router.receive(timeoutMs: Self.patience))
        #expect(hello == Self.hello("worker"))
        #expect(try router.send(.refuse(reason: "just testing"), to: peer))
        #expect(try worker.receive(timeoutMs: Self.patience) == .refuse(reason: "just testing"))
        #expect(authenticator.statistics.admitted == 1)
        #expect(try router.receive(timeoutMs: 0) == nil)
    }

    @Test func zapHandlerDeniesOtherMechanismsAndMalformedRequests() throws {
        let context = try ZMQContext()
        let key = try CurveKeyPair.generate()
        let authenticator = try ZAPAuthenticator(context: context, authorizedKeys: [key.publicKey])
        let ok = authenticator.decide([Array("1.0".utf8), [7], Array("cerm".utf8), Array("127.0.0.1".utf8), [], Array("CURVE".utf8),
                                       try #require(CurveKeyPair.decode(key.publicKey))])
        #expect(ok[2] == Array("200".utf8) && ok[1] == [7] && ok[4] == Array(key.publicKey.utf8))
        let plain = authenticator.decide([Array("1.0".utf8), [8], [], [], [], Array("PLAIN".utf8), Array("u".utf8), Array("p".utf8)])
        #expect(plain[2] == Array("400".utf8) && plain[3] == Array("mechanism PLAIN not allowed".utf8))
        let null = authenticator.decide([Array("1.0".utf8), [9], [], [], [], Array("NULL".utf8)])
        #expect(null[2] == Array("400".utf8))
        #expect(authenticator.decide([Array("2.0".utf8), [1]])[2] == Array("500".utf8))
        #expect(authenticator.statistics == (admitted: 1, denied: 2))
        #expect(throws: CermError.self) { try ZAPAuthenticator(context: context, authorizedKeys: ["short"]) }
    }
}

/// Payloads for the transport tests.
enum ProtocolSamplesForTransport {
    static let task = TaskMessage(
        taskID: 0, step: 1, policyVersion: 1, runSeed: 99,
        parameters: RolloutParameters(nc: 1, ne: 1, criteriaMaxTokens: 8, evaluationMaxTokens: 8, temperature: 1, topP: 1),
        pairs: [TaskPair(pairID: 42, query: "2+2?", responses: ["4", "5"])])

    static func trajectory(pair: UInt64) -> Trajectory {
        Trajectory(id: TrajectoryID(pairID: pair, stage: .criteria, criteriaIndex: 0, responseIndex: 0, sampleIndex: 0),
                   promptTokenCount: 5, tokens: [1, 2, 263], behaviourLogprobs: [-0.1, -0.2, -0.3],
                   referenceLogprobs: [-0.2, -0.2, -0.2], finishReason: .eos, text: "1. correct")
    }
}
