import Foundation
import Shared

/// Files of a run directory that a new line of training abandons, moved (never deleted) into a
/// subdirectory `superseded-<UTC time>/` of the run directory (docs/CHECKPOINT.md,
/// "Retention and resume").
///
/// Why: resume takes the newest `step_<N>.h5` of the run directory. A run that starts from step
/// `N` — resumed from an older checkpoint, or fresh (`N` = 0) in a directory that already holds
/// checkpoints — would otherwise leave the abandoned run's later `step_<M>.h5` files next to its
/// own, and the next `--resume` would continue the abandoned run instead of this one. The
/// subdirectory's name does not match the `step_<N>.h5` pattern and retention only looks at the
/// run directory's own files, so nothing in it is ever resumed from or deleted.
public struct SupersededFiles: Sendable, Equatable {
    /// The subdirectory the files were moved into (`<runDir>/superseded-<UTC time>`).
    public var destination: String
    /// The file names moved (as they were in the run directory, now under `destination`):
    /// checkpoints by step, then `metrics.jsonl` when it moved.
    public var names: [String]

    /// Name prefix of the subdirectories.
    public static let directoryPrefix = "superseded-"

    /// Moves the files a run starting at step `startStep` supersedes out of `runDirectory`:
    /// every `step_<M>.h5` with `M > startStep` (valid or not: none is read). For a fresh run
    /// (`fresh`, `startStep` 0) also a non-empty `metrics.jsonl`, whose steps would otherwise
    /// run 1…45 and then 1, 2 again. Returns nil when there is nothing to move. `now` names the
    /// subdirectory (`superseded-20261202T104500Z`, with `-2`, `-3`… when that exists).
    /// Throws a `CermError.io` naming the file that could not be moved; files moved before it
    /// stay in the subdirectory.
    public static func moveAside(in runDirectory: String, startStep: Int, fresh: Bool,
                                 now: Date = Date()) throws -> SupersededFiles? {
        var names = CheckpointFormat.checkpointFiles(in: runDirectory).filter { $0.step > startStep }
            .map { ($0.path as NSString).lastPathComponent }
        let metrics = (runDirectory as NSString).appendingPathComponent("metrics.jsonl")
        if fresh, let size = (try? FileManager.default.attributesOfItem(atPath: metrics))?[.size] as? NSNumber, size.intValue > 0 {
            names.append("metrics.jsonl")
        }
        return try moveAside(names: names, in: runDirectory, now: now)
    }

    /// Moves the files `names` of `directory` (those that exist) into a new subdirectory
    /// `superseded-<UTC time>/` of it, as above. Returns nil when none exists.
    public static func moveAside(names: [String], in directory: String, now: Date = Date()) throws -> SupersededFiles? {
        let names = names.filter { FileManager.default.fileExists(atPath: (directory as NSString).appendingPathComponent($0)) }
        guard !names.isEmpty else { return nil }
        let destination = try createDestination(in: directory, now: now)
        for name in names {
            let from = (directory as NSString).appendingPathComponent(name)
            let to = (destination as NSString).appendingPathComponent(name)
            // rename(2): same file system, atomic, and the file keeps its identity (no copy).
            guard rename(from, to) == 0 else {
                throw CermError.io(path: from, reason: "cannot move it to \(destination): \(String(cString: strerror(errno)))")
            }
        }
        try? fsyncFile(destination)
        try? fsyncFile(directory)
        return SupersededFiles(destination: destination, names: names)
    }

    private static func createDestination(in runDirectory: String, now: Date) throws -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        let base = (runDirectory as NSString).appendingPathComponent(directoryPrefix + formatter.string(from: now))
        var candidate = base
        var suffix = 2
        // mkdir(2) fails with EEXIST instead of reusing a directory: two runs never share one.
        while mkdir(candidate, 0o755) != 0 {
            guard errno == EEXIST else {
                throw CermError.io(path: candidate, reason: "cannot create directory: \(String(cString: strerror(errno)))")
            }
            candidate = "\(base)-\(suffix)"
            suffix += 1
        }
        return candidate
    }
}
