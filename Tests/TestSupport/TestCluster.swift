import Foundation
import Shared

/// The `cerm` binary of this build and what the tests that run it as processes need: free
/// loopback ports, a tiny run's config and data, `cerm launch`, and the process tree under /proc.
public enum TestCluster {
    /// `.build/<triple>/debug/cerm`, found through the `.build/debug` link next to the package.
    public static var cermBinary: String? {
        let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for configuration in ["debug", "release"] {
            let path = package.appendingPathComponent(".build/\(configuration)/cerm").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    /// A TCP port nobody listens on right now (bound to port 0, then released).
    public static func freePort() throws -> Int {
        let (fd, port) = try loopbackSocket(listening: false)
        close(fd)
        return port
    }

    /// A TCP socket bound to a free loopback port (listening when asked), and the port; the
    /// caller closes it.
    public static func loopbackSocket(listening: Bool) throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw CermError.invalid("socket() failed: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw -> Bool in
                bind(fd, raw, length) == 0 && (!listening || listen(fd, 4) == 0) && getsockname(fd, raw, &length) == 0
            }
        }
        guard bound else {
            close(fd)
            throw CermError.invalid("bind/listen/getsockname failed: errno \(errno)")
        }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    /// The `[model]` section of the tests' tiny model (hidden 16, one layer), for config files.
    public static let tinyModelTOML = "[model]\nhidden_size = 16\nlayers = 1\nheads = 2\nkv_heads = 1\nffn_size = 32"

    /// A tiny run: 6 pairs, 4 per batch, so steps cross epoch boundaries (step 2 into epoch 1); a
    /// checkpoint every step. `CERM_KEEP_CHAOS=1` keeps the run directories and logs.
    public static func writeRun(directory: String, port: Int, steps: Int) throws -> String {
        let data = (directory as NSString).appendingPathComponent("pairs.jsonl")
        let lines = (0..<6).map { #"{"id":"p\#($0)","query":"q\#($0)","chosen":"good \#($0)","rejected":"bad"}"# }
        try (lines.joined(separator: "\n") + "\n").write(toFile: data, atomically: true, encoding: .utf8)
        let config = (directory as NSString).appendingPathComponent("cluster.toml")
        try """
            [run]
            name = "chaos"
            seed = 5
            checkpoint_dir = "\(directory)/Checkpoints"
            steps = \(steps)
            save_every = 1
            keep_last = 10
            [cluster]
            endpoint = "tcp://127.0.0.1:\(port)"
            workers = 2
            heartbeat_interval = 0.1
            heartbeat_timeout = 2.0
            \(Self.tinyModelTOML)
            max_seq_len = 128
            init_std = 0.5
            [rollout]
            nc = 2
            ne = 1
            criteria_max_tokens = 12
            evaluation_max_tokens = 8
            [grpo]
            pairs_per_batch = 4
            mini_batches = 2
            learning_rate = 0.01
            kl_coef = 0.05
            [curation]
            enabled = false
            [data]
            train = "\(data)"
            """.write(toFile: config, atomically: true, encoding: .utf8)
        return config
    }

    public static func launch(_ binary: String, config: String, extra: [String] = [], log: String) throws -> Process {
        try start(binary, ["launch", "--config", config] + extra, log: log)
    }

    /// Starts `executable` with `arguments` (in `directory` when given), its stdout and stderr
    /// into the new file `log`.
    public static func start(_ executable: String, _ arguments: [String], log: String, in directory: String? = nil) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

    /// Child process ids of `pid` (from `/proc/<pid>/task/<pid>/children`).
    public static func children(of pid: Int32) -> [Int32] {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8) else { return [] }
        return text.split(separator: " ").compactMap { Int32($0) }
    }

    public static func commandLine(_ pid: Int32) -> [String] {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return [] }
        return data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Whether `pid` still runs (a zombie counts as gone).
    public static func isAlive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(close, offsetBy: 2)...].prefix(1)
        return state != "Z" && state != "X"
    }

    public static func waitUntil(timeout: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return condition()
    }
}
