import Foundation
import Runtime
import Testing
@testable import WireProtocol

@Suite struct ZeroMQTests {
    /// A ROUTER bound to `inproc://name` and a DEALER with routing id `dealerID` connected to it
    /// (each socket keeps the context alive).
    static func inprocPair(_ name: String, dealerID: String) throws -> (router: ZMQSocket, dealer: ZMQSocket) {
        let context = try ZMQContext()
        let router = try ZMQSocket(context: context, type: .router)
        try router.bind("inproc://\(name)")
        let dealer = try ZMQSocket(context: context, type: .dealer)
        try dealer.setRoutingID(Array(dealerID.utf8))
        try dealer.connect("inproc://\(name)")
        return (router, dealer)
    }

    @Test func routerDealerRoundTripOverInproc() throws {
        let (router, dealer) = try Self.inprocPair("cerm-test-roundtrip", dealerID: "worker-1")
        try roundTrip(router: router, dealer: dealer, expectedID: Array("worker-1".utf8))
    }

    /// A shared frame goes out without a copy and is released once libzmq is done with it: not
    /// leaked, not released twice, the same bytes on arrival.
    @Test func aSharedFrameArrivesIntactAndIsReleasedAfterSending() throws {
        let (router, dealer) = try Self.inprocPair("cerm-test-shared-frame", dealerID: "w")
        try dealer.send([Array("hi".utf8)])
        _ = try #require(try router.receive(timeoutMs: 5000))
        let payload = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 29) }
        weak var released: SharedFrame?
        do {
            let frame = SharedFrame(count: payload.count) { out in payload.withUnsafeBytes { out.copyMemory(from: $0) } }
            released = frame
            for _ in 0..<3 { #expect(try router.send([.copied(Array("w".utf8)), .copied([1]), .shared(frame)], dontWait: true)) }
        }
        for _ in 0..<3 { #expect(try dealer.receive(timeoutMs: 5000) == [[1], payload]) }
        #expect(released == nil)
    }

    @Test func routerDealerRoundTripOverTCPLoopback() throws {
        let context = try ZMQContext()
        let router = try ZMQSocket(context: context, type: .router)
        try router.bind("tcp://127.0.0.1:*")
        let endpoint = try router.lastEndpoint
        #expect(endpoint.hasPrefix("tcp://127.0.0.1:"))
        let dealer = try ZMQSocket(context: context, type: .dealer)
        try dealer.setRoutingID(Array("w2".utf8))
        try dealer.connect(endpoint)
        try roundTrip(router: router, dealer: dealer, expectedID: Array("w2".utf8))
    }

    /// A receive blocked with no timeout returns nil once another thread signals its wakeup (the
    /// learner thread posting work to the coordinator's socket thread); a wakeup signalled
    /// before the call ends it at once; a message waiting comes first; each return leaves the
    /// wakeup drained.
    @Test func aSignalledWakeupEndsABlockedReceive() throws {
        let context = try ZMQContext()
        let router = try ZMQSocket(context: context, type: .router)
        try router.bind("inproc://cerm-test-wakeup")
        let wakeup = Wakeup()
        #expect(wakeup.descriptor >= 0)
        let signaller = Thread {
            Thread.sleep(forTimeInterval: 0.05)
            wakeup.signal()
        }
        signaller.start()
        #expect(try router.receive(timeoutMs: -1, wakeup: wakeup) == nil)
        #expect(try ZMQPoll.wait([router], wakeup: wakeup, timeoutMs: 0).woken == false)

        wakeup.signal()
        wakeup.signal()
        #expect(try router.receive(timeoutMs: -1, wakeup: wakeup) == nil)
        #expect(try ZMQPoll.wait([router], wakeup: wakeup, timeoutMs: 0).woken == false)

        let dealer = try ZMQSocket(context: context, type: .dealer)
        try dealer.setRoutingID(Array("w".utf8))
        try dealer.connect("inproc://cerm-test-wakeup")
        try dealer.send([Array("ready".utf8)])
        #expect(try ZMQPoll.wait([router], timeoutMs: 5000) == [true])
        wakeup.signal()
        #expect(try router.receive(timeoutMs: -1, wakeup: wakeup) == [Array("w".utf8), Array("ready".utf8)])
        #expect(try ZMQPoll.wait([router], wakeup: wakeup, timeoutMs: 0).woken == false)
    }

    func roundTrip(router: ZMQSocket, dealer: ZMQSocket, expectedID: [UInt8]) throws {
        let big = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try dealer.send([Array("hello".utf8), [], big])
        let received = try #require(try router.receive(timeoutMs: 5000))
        #expect(received.count == 4)
        #expect(received[0] == expectedID)
        #expect(received[1] == Array("hello".utf8))
        #expect(received[2] == [])
        #expect(received[3] == big)
        try router.send([expectedID, Array("welcome".utf8)])
        let reply = try #require(try dealer.receive(timeoutMs: 5000))
        #expect(reply == [Array("welcome".utf8)])
    }

    @Test func pollTimesOutWithNothingToRead() throws {
        let context = try ZMQContext()
        let socket = try ZMQSocket(context: context, type: .dealer)
        try socket.bind("inproc://cerm-test-idle")
        #expect(try ZMQPoll.wait([socket], timeoutMs: 10) == [false])
        #expect(try socket.receive(dontWait: true) == nil)
    }

    @Test func bindErrorCarriesLibzmqMessageAndEndpoint() throws {
        let context = try ZMQContext()
        let socket = try ZMQSocket(context: context, type: .router)
        do {
            try socket.bind("nonsense://x")
            Issue.record("bind should fail")
        } catch let error as ZMQError {
            #expect(error.description == "zmq: bind nonsense://x: Protocol not supported")
        }
    }

    @Test func oversizedMessagesAreRefusedByMaxMessageSize() throws {
        let context = try ZMQContext()
        let router = try ZMQSocket(context: context, type: .router)
        try router.setMaxMessageSize(1024)
        try router.bind("tcp://127.0.0.1:*")
        let endpoint = try router.lastEndpoint
        let big = try ZMQSocket(context: context, type: .dealer)
        try big.connect(endpoint)
        try big.send([[UInt8](repeating: 7, count: 4096)])
        #expect(try router.receive(timeoutMs: 300) == nil)
        let small = try ZMQSocket(context: context, type: .dealer)
        try small.connect(endpoint)
        try small.send([[1, 2, 3]])
        let got = try #require(try router.receive(timeoutMs: 5000))
        #expect(got.last == [1, 2, 3])
    }

    @Test func curveKeysAreGeneratedAndDerivable() throws {
        #expect(ZMQContext.has("curve"))
        let pair = try CurveKeyPair.generate()
        #expect(pair.publicKey.utf8.count == 40 && pair.secretKey.utf8.count == 40)
        #expect(try CurveKeyPair.publicKey(ofSecret: pair.secretKey) == pair.publicKey)
        #expect(CurveKeyPair.isValidKey(pair.publicKey))
        #expect(!CurveKeyPair.isValidKey("short"))
        let bytes = try #require(CurveKeyPair.decode(pair.secretKey))
        #expect(CurveKeyPair.encode(bytes) == pair.secretKey)
    }

    @Test func curveEncryptedRoundTrip() throws {
        let server = try CurveKeyPair.generate()
        let client = try CurveKeyPair.generate()
        let context = try ZMQContext()
        let router = try ZMQSocket(context: context, type: .router)
        try router.setCurveServer(secretKey: server.secretKey)
        try router.bind("tcp://127.0.0.1:*")
        let dealer = try ZMQSocket(context: context, type: .dealer)
        try dealer.setCurveClient(serverKey: server.publicKey, publicKey: client.publicKey, secretKey: client.secretKey)
        try dealer.connect(try router.lastEndpoint)
        try dealer.send([Array("secret".utf8)])
        let got = try #require(try router.receive(timeoutMs: 5000))
        #expect(got.last == Array("secret".utf8))
    }
}
