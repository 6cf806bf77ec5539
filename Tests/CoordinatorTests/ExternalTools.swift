import Foundation
import Runtime
import TestSupport
import Testing

/// Real third-party checkers the monitoring tests hand their files to (a Prometheus parser,
/// Python's HTML parser, headless Chromium), found on this machine or absent.
enum ExternalTools {
    /// The repository's root (this file is `Tests/CoordinatorTests/ExternalTools.swift`).
    static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `executable` (a path, or a name looked up on PATH) with `arguments`; stdout and
    /// stderr go through files, so a chatty child never blocks on a full pipe.
    static func run(_ executable: String, _ arguments: [String], timeout: TimeInterval = 120) throws -> Output {
        let directory = NSTemporaryDirectory() + "cerm-tool-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let out = directory + "/stdout", err = directory + "/stderr"
        for path in [out, err] { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        let process = Process()
        if executable.contains("/") {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [executable] + arguments
        }
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
            throw TimedOut(command: ([executable] + arguments).joined(separator: " "), seconds: timeout)
        }
        return Output(status: process.terminationStatus,
                      stdout: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
                      stderr: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "")
    }

    struct TimedOut: Error, CustomStringConvertible {
        var command: String
        var seconds: TimeInterval
        var description: String { "`\(command)` did not finish within \(Int(seconds)) s" }
    }

    /// Whether `executable` exists (a path, or a name on PATH).
    static func exists(_ executable: String) -> Bool {
        if executable.contains("/") { return FileManager.default.isExecutableFile(atPath: executable) }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(executable)") }
    }

    /// A Python that can `import module`: `$CERM_REFERENCE_PYTHON`, then the repository's
    /// `.venv-ref/bin/python`, then `python3` on PATH; nil when none can.
    static func python(importing module: String) -> String? {
        let candidates = [ProcessInfo.processInfo.environment["CERM_REFERENCE_PYTHON"],
                          repositoryRoot + "/.venv-ref/bin/python", "python3"].compactMap { $0 }
        return candidates.first { candidate in
            exists(candidate) && (try? run(candidate, ["-c", "import \(module)"], timeout: 60))?.status == 0
        }
    }

    /// Headless Chromium: `$CERM_CHROMIUM`, else `chromium` or `chromium-browser` on PATH.
    static func chromium() -> String? {
        let candidates = [ProcessInfo.processInfo.environment["CERM_CHROMIUM"], "chromium", "chromium-browser"].compactMap { $0 }
        return candidates.first(where: exists)
    }

    /// Reports the running test as skipped with `reason` (a checker this machine lacks): it
    /// neither passes silently nor fails for want of an optional tool.
    static func skip(_ reason: String) throws -> Never {
        try Test.cancel(Comment(rawValue: reason))
    }
}
