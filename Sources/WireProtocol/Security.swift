import Configuration
import CZeroMQ
import Foundation
import Shared
#if canImport(Glibc)
import Glibc
#endif

/// A problem with a key file or authorized-keys file, naming the file and, where known, the line
/// and the config key that named the file.
public struct KeyFileError: Error, Equatable, CustomStringConvertible {
    public let file: String
    public let line: Int?
    public let message: String
    /// The config key the file came from (`cluster.curve_secret_key_file`), when known.
    public let configKey: String?

    public init(file: String, line: Int?, message: String, configKey: String? = nil) {
        self.file = file
        self.line = line
        self.message = message
        self.configKey = configKey
    }

    public var description: String {
        let place = "\(line.map { "\(file):\($0)" } ?? file): \(message)"
        return configKey.map { "\($0): \(place)" } ?? place
    }

    /// Runs `body` (which reads the file of config key `configKey`); a ``KeyFileError`` it
    /// throws is rethrown naming the key, so the user knows which setting to fix.
    public static func naming<T>(_ configKey: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as KeyFileError {
            throw KeyFileError(file: error.file, line: error.line, message: error.message, configKey: configKey)
        }
    }
}

/// CURVE key files (docs/PROTOCOL.md, section 6).
public enum CurveKeyFiles {
    /// Text of a `NAME.key` file: both keys, `public-key = …` / `secret-key = …`.
    public static func secretFileText(name: String, keys: CurveKeyPair) -> String {
        """
        # cerm CURVE key pair "\(name)" (secret: keep it private, mode 0600)
        public-key = \(keys.publicKey)
        secret-key = \(keys.secretKey)

        """
    }

    /// Text of a `NAME.pub` file: a comment and the bare key, so that
    /// `cat NAME.pub >> authorized_keys` authorizes it.
    public static func publicFileText(name: String, publicKey: String) -> String {
        "# cerm CURVE public key \"\(name)\"\n\(publicKey)\n"
    }

    /// Generates a key pair. (A Z85 key never starts with `#`: its first 5-character group
    /// would exceed 2^32, so key lines can never be mistaken for comments.)
    public static func generate() throws -> CurveKeyPair { try CurveKeyPair.generate() }

    /// Writes `DIR/NAME.key` (mode 0600, created exclusively unless `overwrite`) and
    /// `DIR/NAME.pub`; returns the two paths.
    @discardableResult
    public static func write(name: String, keys: CurveKeyPair, directory: String, overwrite: Bool = false) throws -> (secret: String, public: String) {
        let base = (directory as NSString).appendingPathComponent(name)
        let secretPath = base + ".key", publicPath = base + ".pub"
        try writeFile(secretPath, secretFileText(name: name, keys: keys), mode: 0o600, overwrite: overwrite)
        try writeFile(publicPath, publicFileText(name: name, publicKey: keys.publicKey), mode: 0o644, overwrite: overwrite)
        return (secretPath, publicPath)
    }

    private static func writeFile(_ path: String, _ text: String, mode: mode_t, overwrite: Bool) throws {
        if overwrite { unlink(path) }
        // Created with its final mode so the secret is never readable by others, not even briefly.
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode)
        guard fd >= 0 else {
            let reason = errno == EEXIST ? "already exists (use --force to replace it)" : String(cString: strerror(errno))
            throw KeyFileError(file: path, line: nil, message: reason)
        }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw KeyFileError(file: path, line: nil, message: "write failed: \(String(cString: strerror(errno)))") }
            written += n
        }
        _ = fchmod(fd, mode)
    }

    private static func read(_ path: String) throws -> String {
        if let problem = directoryInsteadOfFile(path) { throw KeyFileError(file: path, line: nil, message: problem) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw KeyFileError(file: path, line: nil, message: "cannot read file")
        }
        guard let text = String(validating: data, as: UTF8.self) else {
            throw KeyFileError(file: path, line: nil, message: "not UTF-8 text")
        }
        return text
    }

    /// Loads a `NAME.key` file; the public key must be the one the secret key derives.
    public static func loadKeyPair(path: String) throws -> CurveKeyPair {
        try parseKeyPair(read(path), file: path)
    }

    /// Parses the text of a `NAME.key` file (`file` names it in errors).
    public static func parseKeyPair(_ text: String, file: String) throws -> CurveKeyPair {
        var publicKey: (String, Int)?, secretKey: (String, Int)?
        for (index, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            // A bare key is what `cerm keygen` writes to NAME.pub: the wrong file of the pair.
            if CurveKeyPair.isValidKey(String(line.prefix(while: { !$0.isWhitespace }))) {
                throw KeyFileError(file: file, line: index + 1,
                                   message: "this is a public key (a NAME.pub file); a secret key file is the NAME.key that `cerm keygen` wrote beside it")
            }
            guard let eq = line.firstIndex(of: "=") else {
                throw KeyFileError(file: file, line: index + 1, message: "expected `public-key = KEY` or `secret-key = KEY`")
            }
            let name = line[..<eq].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            guard CurveKeyPair.isValidKey(value) else {
                throw KeyFileError(file: file, line: index + 1, message: "\(name) is not a 40-character Z85 key")
            }
            switch name {
            case "public-key": publicKey = (value, index + 1)
            case "secret-key": secretKey = (value, index + 1)
            default: throw KeyFileError(file: file, line: index + 1, message: "unknown entry `\(name)`")
            }
        }
        guard let (secret, _) = secretKey else { throw KeyFileError(file: file, line: nil, message: "no secret-key line") }
        let derived = try CurveKeyPair.publicKey(ofSecret: secret)
        if let (declared, line) = publicKey, declared != derived {
            throw KeyFileError(file: file, line: line, message: "public-key does not belong to the secret-key (expected \(derived))")
        }
        return CurveKeyPair(publicKey: derived, secretKey: secret)
    }

    /// Loads a public key: a `NAME.pub` file (one bare key) or a `NAME.key` file.
    public static func loadPublicKey(path: String) throws -> String {
        let text = try read(path)
        if text.contains("secret-key") { return try parseKeyPair(text, file: path).publicKey }
        let keys = try parseAuthorizedKeys(text, file: path)
        guard keys.count == 1 else {
            throw KeyFileError(file: path, line: nil, message: "expected exactly one public key, found \(keys.count)")
        }
        return keys[0]
    }

    /// The coordinator's CURVE material as `[cluster]` names it: its key pair
    /// (`curve_secret_key_file`) and the worker keys it admits (`authorized_keys_file`); nil when
    /// no secret key file is set. Errors name the config key, the file and the line at fault.
    public static func coordinatorKeys(of cluster: ClusterConfig) throws -> (keys: CurveKeyPair, authorized: [String])? {
        guard !cluster.curveSecretKeyFile.isEmpty else { return nil }
        guard !cluster.authorizedKeysFile.isEmpty else {
            throw CermError.invalid("cluster.curve_secret_key_file is set but cluster.authorized_keys_file is empty: no worker could be admitted")
        }
        return (try load("cluster.curve_secret_key_file", cluster.curveSecretKeyFile, loadKeyPair),
                try load("cluster.authorized_keys_file", cluster.authorizedKeysFile, loadAuthorizedKeys))
    }

    /// A worker's CURVE material as `[cluster]` names it: the coordinator's public key
    /// (`server_public_key_file`) and its own key pair (`worker_secret_key_file`); nil when no
    /// worker key file is set. Errors name the config key, the file and the line at fault.
    public static func workerKeys(of cluster: ClusterConfig) throws -> (serverKey: String, keys: CurveKeyPair)? {
        guard !cluster.workerSecretKeyFile.isEmpty else { return nil }
        guard !cluster.serverPublicKeyFile.isEmpty else {
            throw CermError.invalid("cluster.worker_secret_key_file is set but cluster.server_public_key_file is empty")
        }
        return (try load("cluster.server_public_key_file", cluster.serverPublicKeyFile, loadPublicKey),
                try load("cluster.worker_secret_key_file", cluster.workerSecretKeyFile, loadKeyPair))
    }

    /// The file `path` named by config key `configKey`, read by `loader`; its errors name the key.
    private static func load<T>(_ configKey: String, _ path: String, _ loader: (_ path: String) throws -> T) throws -> T {
        try KeyFileError.naming(configKey) { try loader(path) }
    }

    /// Loads an authorized-keys file: one Z85 public key per line, at least one (a file without
    /// keys would admit no worker, and the run would wait for ever).
    public static func loadAuthorizedKeys(path: String) throws -> [String] {
        let keys = try parseAuthorizedKeys(read(path), file: path)
        guard !keys.isEmpty else {
            throw KeyFileError(file: path, line: nil, message: "holds no public key, so no worker could be admitted (add each worker's NAME.pub, one key per line)")
        }
        return keys
    }

    /// A warning for each secret key file `[cluster]` names that group or others may read
    /// (`cerm keygen` writes them 0600; a copy often loses that).
    public static func exposureWarnings(of cluster: ClusterConfig) -> [String] {
        [("cluster.curve_secret_key_file", cluster.curveSecretKeyFile), ("cluster.worker_secret_key_file", cluster.workerSecretKeyFile)]
            .compactMap { key, path in
                var info = stat()
                guard !path.isEmpty, stat(path, &info) == 0, info.st_mode & 0o077 != 0 else { return nil }
                let mode = String(info.st_mode & 0o777, radix: 8)
                return "\(key): \(path) is readable by group or others (mode \(mode)); anyone who reads it can pose as this host: chmod 600 \(path)"
            }
    }

    /// Parses authorized-keys text: one key per line, optionally followed by whitespace and a
    /// `#` comment; blank lines and lines starting with `#` are comments.
    public static func parseAuthorizedKeys(_ text: String, file: String) throws -> [String] {
        var keys: [String] = []
        for (index, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let token = String(line.prefix(while: { !$0.isWhitespace }))
            let rest = line.dropFirst(token.count).trimmingCharacters(in: .whitespaces)
            if CurveKeyPair.isValidKey(token) && (rest.isEmpty || rest.hasPrefix("#")) {
                keys.append(token)
                continue
            }
            throw KeyFileError(file: file, line: index + 1, message: "expected a 40-character Z85 public key, found `\(token)`")
        }
        return keys
    }
}

/// A ZAP handler (RFC 27) that admits CURVE clients whose public key is listed and denies
/// everything else. It runs on its own thread with its own REP socket bound to
/// `inproc://zeromq.zap.01` in the given context; start it *before* binding the CURVE server
/// (libzmq admits every client while no handler is bound).
public final class ZAPAuthenticator: @unchecked Sendable {
    /// The inproc endpoint libzmq sends ZAP requests to.
    public static let endpoint = "inproc://zeromq.zap.01"

    private let context: ZMQContext
    private let allowed: Set<[UInt8]>
    private let lock = NSLock()
    private var stopping = false
    private var running = false
    private var admitted = 0
    private var denied = 0
    private let finished = DispatchSemaphore(value: 0)
    private let onDecision: @Sendable (_ publicKey: String, _ address: String, _ admitted: Bool) -> Void

    /// An authenticator admitting `authorizedKeys` (Z85). `onDecision` is called on the handler
    /// thread for every request (for logging).
    public init(context: ZMQContext, authorizedKeys: [String],
                onDecision: @escaping @Sendable (_ publicKey: String, _ address: String, _ admitted: Bool) -> Void = { _, _, _ in }) throws {
        var keys = Set<[UInt8]>()
        for key in authorizedKeys {
            guard let bytes = CurveKeyPair.decode(key) else { throw CermError.invalid("authorized key `\(key)` is not a 40-character Z85 key") }
            keys.insert(bytes)
        }
        self.context = context
        self.allowed = keys
        self.onDecision = onDecision
    }

    /// Counts of decisions made so far.
    public var statistics: (admitted: Int, denied: Int) {
        lock.lock(); defer { lock.unlock() }
        return (admitted, denied)
    }

    /// Binds the handler socket and starts the thread; returns once the socket is bound.
    public func start() throws {
        lock.lock()
        let alreadyRunning = running
        running = true
        lock.unlock()
        guard !alreadyRunning else { return }
        let bound = DispatchSemaphore(value: 0)
        let bindError = ErrorBox()
        let thread = Thread { [self] in
            defer { finished.signal() }
            let socket: ZMQSocket
            do {
                socket = try ZMQSocket(context: context, type: .rep)
                try socket.bind(Self.endpoint)
            } catch {
                bindError.error = error
                bound.signal()
                return
            }
            bound.signal()
            serve(socket)
            socket.close()
        }
        thread.name = "cerm-zap"
        thread.start()
        bound.wait()
        if let error = bindError.error {
            finished.wait()
            lock.lock(); running = false; lock.unlock()
            throw error
        }
    }

    /// Stops the handler thread and waits for it to close its socket (within ~50 ms). Call it
    /// before releasing the authenticator: the running thread keeps the object alive.
    public func stop() {
        lock.lock()
        let wasRunning = running && !stopping
        stopping = true
        lock.unlock()
        if wasRunning { finished.wait() }
    }

    deinit { stop() }

    private var shouldStop: Bool {
        lock.lock(); defer { lock.unlock() }
        return stopping
    }

    private func serve(_ socket: ZMQSocket) {
        while !shouldStop {
            let request: [[UInt8]]?
            do {
                request = try socket.receive(timeoutMs: 50)
            } catch {
                return // context terminated or socket gone: nothing left to authenticate
            }
            guard let request else { continue }
            let reply = decide(request)
            do { try socket.send(reply) } catch { return }
        }
    }

    /// The ZAP reply to a request: version, request id, status code, status text, user id, metadata.
    func decide(_ frames: [[UInt8]]) -> [[UInt8]] {
        // RFC 27: version, request id, domain, address, identity, mechanism, credentials...
        guard frames.count >= 6, frames[0] == Array("1.0".utf8) else {
            let requestID = frames.count > 1 ? frames[1] : []
            return [Array("1.0".utf8), requestID, Array("500".utf8), Array("malformed ZAP request".utf8), [], []]
        }
        let requestID = frames[1]
        let address = String(decoding: frames[3], as: UTF8.self)
        let mechanism = String(decoding: frames[5], as: UTF8.self)
        var key = ""
        var ok = false
        if mechanism == "CURVE", frames.count == 7, frames[6].count == 32 {
            key = CurveKeyPair.encode(frames[6])
            ok = allowed.contains(frames[6])
        }
        lock.lock()
        if ok { admitted += 1 } else { denied += 1 }
        lock.unlock()
        onDecision(key, address, ok)
        if ok { return [Array("1.0".utf8), requestID, Array("200".utf8), Array("OK".utf8), Array(key.utf8), []] }
        let text = mechanism == "CURVE" ? "public key not authorized" : "mechanism \(mechanism) not allowed"
        return [Array("1.0".utf8), requestID, Array("400".utf8), Array(text.utf8), [], []]
    }
}

/// Carries a thread's bind error back to the caller of `start()`; written before a semaphore
/// signal and read after the wait, which orders the accesses.
private final class ErrorBox: @unchecked Sendable {
    var error: Error?
}
