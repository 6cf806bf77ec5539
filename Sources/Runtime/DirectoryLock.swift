import Foundation
import Shared
#if canImport(Glibc)
import Glibc
#endif

/// One owner for a directory cerm writes (a run directory, an SFT output's directory) for the
/// life of a process: `flock(LOCK_EX | LOCK_NB)` on a lock file in it, which records the
/// holder's pid, host and role. The kernel releases the lock when the process ends, however it
/// ends (`kill -9` included), so a stale lock file never blocks anyone. A second process is
/// refused before it moves, writes or loads anything, with the holder named.
public final class DirectoryLock: @unchecked Sendable {
    /// The lock file.
    public let path: String
    private var descriptor: Int32

    /// Takes the lock `name` (e.g. `coordinator.lock`) in `directory`, creating both as
    /// needed; `role` says in the holder's record what holds it (`cerm coordinator`). Throws
    /// naming the holder (pid, host, role, since when) when another process holds it.
    public init(directory: String, name: String, role: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        path = (directory as NSString).appendingPathComponent(name)
        descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw CermError.io(path: path, reason: "cannot open the lock file (\(String(cString: strerror(errno))))")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let reason = errno == EWOULDBLOCK ? nil : String(cString: strerror(errno))
            let holder = Self.holder(descriptor)
            close(descriptor)
            if let reason { throw CermError.io(path: path, reason: "cannot lock (\(reason))") }
            throw CermError.invalid("\(directory) is in use by \(holder.isEmpty ? "another process" : holder) (lock \(path)): "
                                    + "wait for it to end or stop it; two processes writing one directory would mix their files")
        }
        // The record is for the refusal message only; the lock is what counts.
        let record = "\(role), pid \(getpid()) on host \(kernelHostName() ?? "unknown"), since \(ISO8601DateFormatter().string(from: Date()))\n"
        _ = ftruncate(descriptor, 0)
        _ = record.withCString { pwrite(descriptor, $0, strlen($0), 0) }
    }

    deinit { release() }

    /// Releases the lock now (it is released at exit anyway).
    public func release() {
        guard descriptor >= 0 else { return }
        _ = flock(descriptor, LOCK_UN)
        close(descriptor)
        descriptor = -1
    }

    /// The holder's record from the lock file, without its newline; empty when unreadable.
    private static func holder(_ descriptor: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 512)
        let count = pread(descriptor, &buffer, buffer.count, 0)
        guard count > 0 else { return "" }
        return String(decoding: buffer[..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
