import Foundation
import Logging
import Shared

/// A swift-log handler that writes one line per message to stderr and, for runs, appends the same
/// line to a log file (`Checkpoints/<run>/train.log`), flushing each line so `tail -f` sees it.
public struct CermLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    private let label: String
    private let sink: LogSink

    public init(label: String, sink: LogSink = .shared) {
        self.label = label
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let meta = merged.isEmpty ? "" : " " + merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        sink.write("\(LogSink.timestamp()) \(event.level.shortName) [\(label)] \(event.message)\(meta)")
    }
}

extension Logger.Level {
    var shortName: String {
        switch self {
        case .trace: "TRACE"
        case .debug: "DEBUG"
        case .info: "INFO "
        case .notice: "NOTE "
        case .warning: "WARN "
        case .error: "ERROR"
        case .critical: "CRIT "
        }
    }
}

/// Where log lines go: stderr always, plus an optional append-only file.
///
/// Thread-safe; one process-wide instance (`shared`) is what the handler uses by default.
public final class LogSink: @unchecked Sendable {
    /// The process-wide sink.
    public static let shared = LogSink()

    private let lock = NSLock()
    private var file: FileHandle?
    private var filePath: String?

    public init() {}

    /// Starts appending every line to `path` (creating it and its directory when missing).
    public func attachFile(_ path: String) throws {
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw CermError.io(path: path, reason: "cannot create log file")
            }
        }
        let handle = try FileHandle(forWritingTo: url)
        try handle.seekToEnd()
        lock.lock(); defer { lock.unlock() }
        try? file?.close()
        file = handle
        filePath = path
    }

    /// Stops writing to the file, if any.
    public func detachFile() {
        lock.lock(); defer { lock.unlock() }
        try? file?.close()
        file = nil
        filePath = nil
    }

    /// Writes one line (a newline is appended) to stderr and the attached file.
    public func write(_ line: String) {
        let data = Data((line + "\n").utf8)
        lock.lock(); defer { lock.unlock() }
        FileHandle.standardError.write(data)
        if let file { try? file.write(contentsOf: data) }
    }

    static func timestamp() -> String {
        var tv = timeval()
        gettimeofday(&tv, nil)
        var t = time_t(tv.tv_sec)
        var parts = tm()
        gmtime_r(&t, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                      Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
                      Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(tv.tv_usec / 1000))
    }
}

/// Process-wide logging bootstrap; safe to call more than once (only the first call counts, as
/// swift-log allows a single bootstrap per process).
public enum CermLogging {
    private static let once: Void = {
        LoggingSystem.bootstrap { label in CermLogHandler(label: label) }
    }()

    /// Installs ``CermLogHandler`` as the swift-log backend.
    public static func bootstrap() { _ = once }
}
