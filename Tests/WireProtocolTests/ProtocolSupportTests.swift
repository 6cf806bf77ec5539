@testable import Configuration
import Foundation
@testable import Runtime
@testable import Shared
import TestSupport
import Testing
@testable import WireProtocol

@Suite struct KeyFileTests {
    @Test func keygenFilesRoundTripWithSecretMode0600() throws {
        let dir = try makeTemporaryDirectory("keys")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let keys = try CurveKeyFiles.generate()
        let paths = try CurveKeyFiles.write(name: "worker-1", keys: keys, directory: dir)
        #expect(paths.secret == dir + "/worker-1.key")
        let attributes = try FileManager.default.attributesOfItem(atPath: paths.secret)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect(try CurveKeyFiles.loadKeyPair(path: paths.secret) == keys)
        #expect(try CurveKeyFiles.loadPublicKey(path: paths.public) == keys.publicKey)
        #expect(try CurveKeyFiles.loadPublicKey(path: paths.secret) == keys.publicKey)
        // The .pub file is a valid authorized-keys file on its own.
        #expect(try CurveKeyFiles.loadAuthorizedKeys(path: paths.public) == [keys.publicKey])
        #expect(throws: KeyFileError(file: paths.secret, line: nil, message: "already exists (use --force to replace it)")) {
            try CurveKeyFiles.write(name: "worker-1", keys: keys, directory: dir)
        }
        let replacement = try CurveKeyFiles.generate()
        try CurveKeyFiles.write(name: "worker-1", keys: replacement, directory: dir, overwrite: true)
        #expect(try CurveKeyFiles.loadKeyPair(path: paths.secret) == replacement)
    }

    @Test func keyPairFileErrorsNameFileAndLine() throws {
        let keys = try CurveKeyPair.generate()
        let other = try CurveKeyPair.generate()
        #expect(throws: KeyFileError(file: "a.key", line: 2, message: "public-key does not belong to the secret-key (expected \(keys.publicKey))")) {
            try CurveKeyFiles.parseKeyPair("secret-key = \(keys.secretKey)\npublic-key = \(other.publicKey)\n", file: "a.key")
        }
        #expect(throws: KeyFileError(file: "a.key", line: 3, message: "secret-key is not a 40-character Z85 key")) {
            try CurveKeyFiles.parseKeyPair("# c\n\nsecret-key = short\n", file: "a.key")
        }
        #expect(throws: KeyFileError(file: "a.key", line: nil, message: "no secret-key line")) {
            try CurveKeyFiles.parseKeyPair("public-key = \(keys.publicKey)\n", file: "a.key")
        }
        #expect(throws: KeyFileError(file: "a.key", line: 1, message: "unknown entry `key`")) {
            try CurveKeyFiles.parseKeyPair("key = \(keys.secretKey)\n", file: "a.key")
        }
        #expect(throws: KeyFileError(file: "missing.key", line: nil, message: "cannot read file")) {
            try CurveKeyFiles.loadKeyPair(path: "missing.key")
        }
    }

    @Test func authorizedKeysParsing() throws {
        let a = try CurveKeyPair.generate().publicKey
        let b = try CurveKeyPair.generate().publicKey
        #expect(!CurveKeyPair.isValidKey("#" + String(a.dropFirst()))) // so '#' lines are always comments
        let text = "# workers\n\n  \(a)   # worker-1\r\n\(b)\r\n#\(a)\n"
        #expect(try CurveKeyFiles.parseAuthorizedKeys(text, file: "auth") == [a, b])
        #expect(throws: KeyFileError(file: "auth", line: 3, message: "expected a 40-character Z85 public key, found `x`")) {
            try CurveKeyFiles.parseAuthorizedKeys("\(a)\r\n\r\nx\n", file: "auth")
        }
        #expect(throws: KeyFileError(file: "auth", line: 2, message: "expected a 40-character Z85 public key, found `not-a-key`")) {
            try CurveKeyFiles.parseAuthorizedKeys("\(a)\nnot-a-key\n", file: "auth")
        }
        #expect(throws: KeyFileError(file: "auth", line: 1, message: "expected a 40-character Z85 public key, found `\(a)`")) {
            try CurveKeyFiles.parseAuthorizedKeys("\(a) trailing words\n", file: "auth")
        }
    }

    /// The mistakes users make with key files are named as such: a NAME.pub given as the secret
    /// key, an authorized-keys file without keys, a secret key others may read.
    @Test func keyFileMistakesAreNamed() throws {
        let dir = try makeTemporaryDirectory("key-mistakes")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let paths = try CurveKeyFiles.write(name: "worker-a", keys: try CurveKeyFiles.generate(), directory: dir)
        var cluster = ClusterConfig()
        cluster.workerSecretKeyFile = paths.public
        cluster.serverPublicKeyFile = paths.public
        #expect(throws: KeyFileError(file: paths.public, line: 2, message: "this is a public key (a NAME.pub file); a secret key file is the NAME.key that `cerm keygen` wrote beside it",
                                     configKey: "cluster.worker_secret_key_file")) {
            try CurveKeyFiles.workerKeys(of: cluster)
        }

        let empty = dir + "/authorized_workers"
        try "# workers\n\n".write(toFile: empty, atomically: true, encoding: .utf8)
        var coordinator = ClusterConfig()
        coordinator.curveSecretKeyFile = paths.secret
        coordinator.authorizedKeysFile = empty
        #expect(throws: KeyFileError(file: empty, line: nil, message: "holds no public key, so no worker could be admitted (add each worker's NAME.pub, one key per line)",
                                     configKey: "cluster.authorized_keys_file")) {
            try CurveKeyFiles.coordinatorKeys(of: coordinator)
        }

        #expect(CurveKeyFiles.exposureWarnings(of: coordinator).isEmpty)
        #expect(chmod(paths.secret, 0o644) == 0)
        #expect(CurveKeyFiles.exposureWarnings(of: coordinator) == [
            "cluster.curve_secret_key_file: \(paths.secret) is readable by group or others (mode 644); anyone who reads it can pose as this host: chmod 600 \(paths.secret)",
        ])
    }

    @Test func insecureBindOnlyOnLocalEndpoints() throws {
        for local in ["tcp://127.0.0.1:5557", "tcp://127.1.2.3:*", "tcp://localhost:5557", "tcp://[::1]:5557", "ipc:///tmp/x", "inproc://a"] {
            #expect(EndpointSecurity.isLocal(local), "\(local)")
            try EndpointSecurity.checkInsecureBind(local, allowInsecure: false)
        }
        for remote in ["tcp://0.0.0.0:5557", "tcp://*:5557", "tcp://10.0.0.1:5557", "tcp://eth0:5557", "tcp://[::]:5557",
                       "tcp://127.0.0.1.example.com:1", "tcp://128.0.0.1:1", "udp://127.0.0.1:1", "tcp://1270.0.0.1:1"] {
            #expect(!EndpointSecurity.isLocal(remote), "\(remote)")
            #expect(throws: CermError.self) { try EndpointSecurity.checkInsecureBind(remote, allowInsecure: false) }
            try EndpointSecurity.checkInsecureBind(remote, allowInsecure: true)
        }
    }
}

@Suite struct LivenessTests {
    @Test func peerLivenessExpiresAfterTimeoutAndAsksForHeartbeats() {
        let clock = ManualClock(start: 100)
        var peer = PeerLiveness(interval: 1, timeout: 3, now: clock.now())
        #expect(!peer.isHeartbeatDue(at: clock.now()))
        clock.advance(by: 1)
        #expect(peer.isHeartbeatDue(at: clock.now()))
        peer.sent(at: clock.now())
        #expect(!peer.isHeartbeatDue(at: clock.now()))
        clock.advance(by: 2)
        #expect(!peer.isExpired(at: clock.now())) // silent for exactly 3 s: not yet beyond the timeout
        clock.advance(by: 0.5)
        #expect(peer.isExpired(at: clock.now()))
        peer.heard(at: clock.now())
        #expect(!peer.isExpired(at: clock.now()))
        clock.advance(by: -10) // a manual clock never goes back
        #expect(clock.now() == 103.5)
    }

    @Test func backoffDoublesUpToTheCapAndResets() {
        var backoff = ReconnectBackoff(initial: 0.5, maximum: 3)
        #expect((0..<5).map { _ in backoff.nextDelay() } == [0.5, 1, 2, 3, 3])
        backoff.reset()
        #expect(backoff.nextDelay() == 0.5)
        var spread = ReconnectBackoff(initial: 1, maximum: 8, spread: 0.5)
        #expect(spread.nextDelay() == 1.125)
    }

    @Test func systemClockIsMonotonic() {
        let clock = SystemClock()
        let a = clock.now(), b = clock.now()
        #expect(b >= a)
    }
}

@Suite struct WeightsTransferTests {
    /// A chunk encoded once for many sends has the bytes the codec gives the same chunk, an
    /// empty one included, and its checksum is XXH64 of its data.
    @Test func publishedChunksAreTheCodecsBytes() throws {
        let blob = (0..<2500).map { UInt8(truncatingIfNeeded: $0 &* 11) }
        let codec = MessageCodec()
        for (bytes, chunkBytes) in [(blob, 1024), (blob, 2500), ([UInt8](), 64)] {
            let published = PublishedWeights(version: 9, bytes: bytes, chunkBytes: chunkBytes)
            var publisher = WeightsPublisher(retain: 1)
            publisher.publish(published)
            #expect(published.chunkCount == max(1, (bytes.count + chunkBytes - 1) / chunkBytes))
            for index in 0..<published.chunkCount {
                guard case let .chunk(encoded, replyIndex, count) = publisher.reply(version: 9, chunkIndex: UInt32(index)) else {
                    Issue.record("chunk \(index) of \(bytes.count) bytes is not served"); return
                }
                let data = bytes[min(bytes.count, index * chunkBytes)..<min(bytes.count, (index + 1) * chunkBytes)]
                let expected = WeightsChunk(version: 9, chunkIndex: UInt32(index), chunkCount: UInt32(published.chunkCount),
                                            totalBytes: UInt64(bytes.count), data: data)
                #expect(replyIndex == UInt32(index) && count == UInt32(published.chunkCount))
                #expect(encoded.frameBytes == (try codec.encode(.weightsChunk(expected))))
            }
        }
    }

    @Test func chunksReassembleThroughTheCodec() throws {
        let blob = (0..<2500).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        var publisher = WeightsPublisher(retain: 2)
        publisher.publish(PublishedWeights(version: 1, bytes: blob, chunkBytes: 1024))
        #expect(publisher.chunkCount(version: 1) == 3)
        let codec = MessageCodec()
        var assembler = WeightsAssembler(version: 1)
        var result: [UInt8]?
        var requests = 0
        while let index = assembler.nextMissingChunk {
            requests += 1
            guard case let .weightsChunk(chunk) = try publisher.reply(version: 1, chunkIndex: index).decoded(codec) else {
                Issue.record("expected a chunk"); return
            }
            #expect(chunk.data.count == (index == 2 ? 452 : 1024))
            result = try assembler.add(chunk)
        }
        #expect(requests == 3)
        #expect(result == blob)
    }

    @Test func assemblerRequestsTwoChunksAheadAndPlacesThemInAnyOrder() throws {
        let blob = (0..<2500).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        var publisher = WeightsPublisher(retain: 2)
        publisher.publish(PublishedWeights(version: 3, bytes: blob, chunkBytes: 1024))
        func chunk(_ index: UInt32) throws -> WeightsChunk {
            guard case let .weightsChunk(chunk) = try publisher.reply(version: 3, chunkIndex: index).decoded() else { throw CermError.invalid("no chunk \(index)") }
            #expect(chunk.checksum == Checksum.xxh64(Array(chunk.data)))
            return chunk
        }
        var assembler = WeightsAssembler(version: 3)
        // Chunk 0 alone until the count is known, then up to two in flight.
        #expect(assembler.takeRequests() == [0])
        #expect(assembler.takeRequests() == [])
        // The last chunk first: its size says nothing of the others', so it waits.
        #expect(try assembler.add(try chunk(2)) == nil)
        #expect(assembler.takeRequests() == [1])
        #expect(try assembler.add(try chunk(1)) == nil)
        #expect(assembler.takeRequests() == [])
        #expect(try assembler.add(try chunk(0)) == blob)
    }

    @Test func assemblerRejectsAChunkOfAnotherSize() throws {
        var assembler = WeightsAssembler(version: 2)
        #expect(try assembler.add(WeightsChunk(version: 2, chunkIndex: 0, chunkCount: 3, totalBytes: 6, data: [1, 2])) == nil)
        #expect(throws: ProtocolError.invalidValue(field: "WEIGHTS_CHUNK.data", reason: "chunk 1 has 3 bytes, the chunks before the last 2")) {
            try assembler.add(WeightsChunk(version: 2, chunkIndex: 1, chunkCount: 3, totalBytes: 6, data: [3, 4, 5]))
        }
        // Started over: the version assembles from consistent chunks.
        #expect(assembler.nextMissingChunk == 0)
        #expect(try assembler.add(WeightsChunk(version: 2, chunkIndex: 2, chunkCount: 3, totalBytes: 6, data: [5, 6])) == nil)
        #expect(try assembler.add(WeightsChunk(version: 2, chunkIndex: 0, chunkCount: 3, totalBytes: 6, data: [1, 2])) == nil)
        #expect(try assembler.add(WeightsChunk(version: 2, chunkIndex: 1, chunkCount: 3, totalBytes: 6, data: [3, 4])) == [1, 2, 3, 4, 5, 6])
    }

    @Test func theNextVersionIsAssembledIntoTheBufferOfTheOneBefore() throws {
        let first = (0..<2500).map { UInt8(truncatingIfNeeded: $0 &* 7) }, second = first.map { $0 ^ 0x5A }
        var publisher = WeightsPublisher(retain: 2)
        publisher.publish(PublishedWeights(version: 1, bytes: first, chunkBytes: 1024))
        publisher.publish(PublishedWeights(version: 2, bytes: second, chunkBytes: 1024))
        func assemble(_ version: UInt64, reusing spare: consuming [UInt8]) throws -> [UInt8]? {
            var assembler = WeightsAssembler(version: version, reusing: consume spare)
            var result: [UInt8]?
            while let index = assembler.nextMissingChunk {
                guard case let .weightsChunk(chunk) = try publisher.reply(version: version, chunkIndex: index).decoded() else { return nil }
                result = try assembler.add(chunk)
            }
            return result
        }
        let loaded = try #require(try assemble(1, reusing: []))
        let storage = loaded.withUnsafeBytes { $0.baseAddress }
        let next = try #require(try assemble(2, reusing: consume loaded))
        #expect(next == second)
        // In place: the same storage, every byte overwritten (no copy of the spare was made).
        #expect(next.withUnsafeBytes { $0.baseAddress } == storage)
        // A spare of another size is not used, and does not spoil the result.
        let other = try #require(try assemble(1, reusing: [UInt8](repeating: 9, count: 100)))
        #expect(other == first)
    }

    @Test func oldVersionsBecomeUnavailable() throws {
        var publisher = WeightsPublisher(retain: 2)
        for v: UInt64 in 1...3 { publisher.publish(PublishedWeights(version: v, bytes: [UInt8(v)], chunkBytes: 4)) }
        #expect(try publisher.reply(version: 1, chunkIndex: 0).decoded() == .weightsUnavailable(version: 1, latestVersion: 3))
        #expect(try publisher.reply(version: 3, chunkIndex: 1).decoded() == .weightsUnavailable(version: 3, latestVersion: 3))
        #expect(try publisher.reply(version: 2, chunkIndex: 0).decoded() == .weightsChunk(WeightsChunk(version: 2, chunkIndex: 0, chunkCount: 1, totalBytes: 1, data: [2])))
    }

    @Test func assemblerRejectsInconsistentChunks() throws {
        var assembler = WeightsAssembler(version: 2)
        #expect(try assembler.add(WeightsChunk(version: 2, chunkIndex: 0, chunkCount: 2, totalBytes: 5, data: [1, 2])) == nil)
        #expect(throws: ProtocolError.invalidValue(field: "WEIGHTS_CHUNK.chunk_count", reason: "changed from 2 to 3")) {
            try assembler.add(WeightsChunk(version: 2, chunkIndex: 1, chunkCount: 3, totalBytes: 5, data: [3]))
        }
        #expect(throws: ProtocolError.invalidValue(field: "WEIGHTS_CHUNK.version", reason: "expected 2, got 1")) {
            try assembler.add(WeightsChunk(version: 1, chunkIndex: 1, chunkCount: 2, totalBytes: 5, data: [3]))
        }
        #expect(throws: ProtocolError.invalidValue(field: "WEIGHTS_CHUNK.total_bytes", reason: "chunks add up to 3 bytes, declared 5")) {
            try assembler.add(WeightsChunk(version: 2, chunkIndex: 1, chunkCount: 2, totalBytes: 5, data: [3]))
        }
    }
}
