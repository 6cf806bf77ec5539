import Foundation
@testable import Runtime
import Shared
import TestSupport
import Testing

/// One owner per run directory: a second holder is refused with the first one named, and the
/// lock goes when its holder does, however it ends.
@Suite struct DirectoryLockTests {
    @Test func aSecondHolderIsRefusedNamingTheFirstAndReleasingLetsItIn() throws {
        let directory = try makeTemporaryDirectory("lock")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let run = (directory as NSString).appendingPathComponent("run")
        let first = try DirectoryLock(directory: run, name: "coordinator.lock", role: "cerm coordinator")
        let record = try String(contentsOfFile: first.path, encoding: .utf8).trimmingCharacters(in: .newlines)
        #expect(record.hasPrefix("cerm coordinator, pid \(getpid()) on host \(kernelHostName() ?? "unknown"), since 20"))
        // flock locks belong to an open file: a second open, even in this process, is refused.
        #expect(throws: CermError.invalid("\(run) is in use by \(record) (lock \(first.path)): wait for it to end or stop it; "
                                          + "two processes writing one directory would mix their files")) {
            _ = try DirectoryLock(directory: run, name: "coordinator.lock", role: "cerm coordinator")
        }
        // Another lock name in the same directory is another owner (a pipeline and its coordinator).
        _ = try DirectoryLock(directory: run, name: "pipeline.lock", role: "cerm pipeline")
        first.release()
        let second = try DirectoryLock(directory: run, name: "coordinator.lock", role: "cerm coordinator")
        second.release()
    }

    /// A holder killed with SIGKILL leaves its lock file behind but not its lock.
    @Test func aKilledHoldersLockIsGone() throws {
        let directory = try makeTemporaryDirectory("lock-kill")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = (directory as NSString).appendingPathComponent("coordinator.lock")
        #expect(FileManager.default.createFile(atPath: path, contents: Data("cerm coordinator, pid 1 on host elsewhere, since then\n".utf8)))
        // util-linux flock(1) takes the same flock(2) lock; --no-fork makes `sleep` the holder.
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
        holder.arguments = ["--exclusive", "--no-fork", path, "sleep", "60"]
        try holder.run()
        defer { if holder.isRunning { kill(holder.processIdentifier, SIGKILL) } }
        // Wait until it holds the lock (flock(1) -n fails while it does), without taking it ourselves.
        var held = false
        for _ in 0..<250 where !held {
            let probe = Process()
            probe.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
            probe.arguments = ["--nonblock", path, "true"]
            try probe.run()
            probe.waitUntilExit()
            held = probe.terminationStatus != 0
            if !held { usleep(20_000) }
        }
        #expect(held)
        #expect(throws: CermError.invalid("\(directory) is in use by cerm coordinator, pid 1 on host elsewhere, since then (lock \(path)): "
                                          + "wait for it to end or stop it; two processes writing one directory would mix their files")) {
            _ = try DirectoryLock(directory: directory, name: "coordinator.lock", role: "test")
        }
        kill(holder.processIdentifier, SIGKILL)
        holder.waitUntilExit()
        let lock = try DirectoryLock(directory: directory, name: "coordinator.lock", role: "test")
        lock.release()
    }
}
