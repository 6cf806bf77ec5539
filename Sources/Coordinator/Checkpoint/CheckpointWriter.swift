import Configuration
import Foundation
import Logging
import Shared

/// Points in a checkpoint write at which a test hook may inject a failure.
public enum CheckpointWriteStage: Sendable, Equatable {
    /// The temporary file exists and holds every dataset, not yet flushed or closed.
    case datasetsWritten
    /// The temporary file is closed and fsynced; the rename is next.
    case beforeRename
}

/// What a successful write did.
public struct CheckpointWriteResult: Sendable, Equatable {
    /// The checkpoint's final path (`<dir>/step_<N>.h5`).
    public var path: String
    public var bytes: Int
    public var checksum: UInt64
    /// Wall time of the write, including retention.
    public var seconds: Double
    /// Older checkpoints and stale temporary files this write deleted.
    public var deleted: [String]
}

/// Writes checkpoints atomically into one run directory and keeps the newest `keepLast` valid
/// ones.
///
/// A checkpoint is written as `.step_<N>.h5.tmp` in the same directory, flushed, closed,
/// fsynced and renamed to `step_<N>.h5` (then the directory is fsynced), so a crash leaves either
/// the complete file or no file under the real name. One writer per run directory.
public final class CheckpointWriter: @unchecked Sendable {
    /// The run directory (`Checkpoints/<run>`).
    public let directory: String
    /// How many valid checkpoints to keep (`run.keep_last`).
    public let keepLast: Int
    private let logger: Logger
    private let faultHook: (@Sendable (CheckpointWriteStage) throws -> Void)?
    private let lock = NSLock()
    /// Files written by this writer, by identity: the only ones retention counts as valid.
    private var knownValid: [String: FileIdentity] = [:]

    /// - Parameters:
    ///   - faultHook: called at each ``CheckpointWriteStage``; an error it throws aborts the
    ///     write as a real failure would (for tests).
    public init(directory: String, keepLast: Int, logger: Logger = Logger(label: "checkpoint"),
                faultHook: (@Sendable (CheckpointWriteStage) throws -> Void)? = nil) {
        self.directory = directory
        self.keepLast = max(1, keepLast)
        self.logger = logger
        self.faultHook = faultHook
    }

    /// A writer for `config.run.runDirectory` keeping `config.run.keepLast` checkpoints.
    public convenience init(config: Config, logger: Logger = Logger(label: "checkpoint")) {
        self.init(directory: config.run.runDirectory, keepLast: config.run.keepLast, logger: logger)
    }

    /// Writes `state` as `step_<state.step>.h5` (replacing a file of that step), then applies
    /// retention. On failure no file exists under the real name except a previous one, and the
    /// error is a ``CheckpointError`` naming that path.
    @discardableResult
    public func write(_ state: TrainingState) throws -> CheckpointWriteResult {
        lock.lock(); defer { lock.unlock() }
        let started = ContinuousClock.now
        let finalPath = path(CheckpointFormat.fileName(step: state.step))
        try Self.validate(state, path: finalPath)
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw CheckpointError(path: finalPath, reason: .writeFailed("cannot create directory \(directory): \(error.localizedDescription)"))
        }
        var deleted = removeStaleTemporaryFiles()
        let tmpPath = path(CheckpointFormat.temporaryFileName(step: state.step))
        let extraJSON = CheckpointFormat.encodeExtra(state.extra)
        let checksum = CheckpointFormat.checksum(of: state, extraJSON: extraJSON)
        var file: HDF5File?
        do {
            let opened = try HDF5File(path: tmpPath, mode: .truncate)
            file = opened
            try Self.store(state, extraJSON: extraJSON, checksum: checksum, in: opened.root)
            try faultHook?(.datasetsWritten)
            try opened.flush()
            try opened.close()
            try fsyncFile(tmpPath)
            try faultHook?(.beforeRename)
            guard rename(tmpPath, finalPath) == 0 else {
                throw CermError.io(path: finalPath, reason: "rename from \(tmpPath): \(String(cString: strerror(errno)))")
            }
            try? fsyncFile(directory)
        } catch {
            file?.abandon()
            try? FileManager.default.removeItem(atPath: tmpPath)
            logger.error("checkpoint write failed, previous checkpoints kept", metadata: ["path": "\(finalPath)", "error": "\(error)"])
            if let error = error as? CheckpointError { throw error }
            throw CheckpointError(path: finalPath, reason: .writeFailed("\(error)"))
        }
        if let identity = FileIdentity(path: finalPath) { knownValid[finalPath] = identity }
        deleted += applyRetention(newestStep: state.step)
        let bytes = FileIdentity(path: finalPath)?.size ?? 0
        let elapsed = started.duration(to: .now)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        logger.info("checkpoint saved", metadata: [
            "path": "\(finalPath)", "bytes": "\(bytes)", "checksum": "\(CheckpointFormat.hex(checksum))",
            "seconds": "\(String(format: "%.2f", seconds))",
        ])
        return CheckpointWriteResult(path: finalPath, bytes: bytes, checksum: checksum, seconds: seconds, deleted: deleted)
    }

    /// Whether step `step` gets a checkpoint: every `run.save_every` steps and at the last step.
    public static func isSaveDue(step: Int, run: RunConfig) -> Bool {
        step > 0 && (step % run.saveEvery == 0 || step == run.steps)
    }

    private func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }

    static func validate(_ state: TrainingState, path: String) throws {
        func fail(_ detail: String) -> CheckpointError { CheckpointError(path: path, reason: .invalidState(detail)) }
        guard state.step >= 0 else { throw fail("step \(state.step) is negative") }
        guard state.adamStep >= 0 else { throw fail("adam step \(state.adamStep) is negative") }
        for (group, tensors) in [("model", state.tensors), ("optim/m", state.adamM), ("optim/v", state.adamV)] {
            var seen = Set<String>()
            for tensor in tensors {
                let where_ = "\(group)/\(tensor.name)"
                guard !tensor.name.isEmpty, tensor.name != ".", !tensor.name.contains("/"), !tensor.name.utf8.contains(0) else {
                    throw fail("tensor name \(CheckpointFormat.jsonString(tensor.name)) in \(group) is not a valid HDF5 link name")
                }
                guard seen.insert(tensor.name).inserted else { throw fail("duplicate tensor \(where_)") }
                guard tensor.shape.allSatisfy({ $0 >= 0 }) else { throw fail("tensor \(where_) has negative dimension in \(tensor.shape)") }
                var count = 1
                for dim in tensor.shape {
                    let (product, overflow) = count.multipliedReportingOverflow(by: dim)
                    guard !overflow else { throw fail("tensor \(where_) has shape \(tensor.shape), too many values") }
                    count = product
                }
                guard count == tensor.count else {
                    throw fail("tensor \(where_) has shape \(tensor.shape) (\(count) values) but \(tensor.count) values")
                }
            }
        }
    }

    static func store(_ state: TrainingState, extraJSON: [UInt8], checksum: UInt64, in root: HDF5Group) throws {
        try root.setAttribute("format", CheckpointFormat.name)
        try root.setAttribute("format_version", CheckpointFormat.version(of: state))
        try root.setAttribute("step", Int64(state.step))
        try root.setAttribute("policy_version", state.policyVersion)
        try root.setAttribute("adam_step", Int64(state.adamStep))
        try root.setAttribute("data_epoch", Int64(state.dataCursor.epoch))
        try root.setAttribute("data_position", Int64(state.dataCursor.position))
        try root.setAttribute("data_permutation_seed", state.dataCursor.permutationSeed)
        try root.setAttribute("checksum_algorithm", CheckpointFormat.checksumAlgorithm)
        try root.setAttribute("checksum", checksum)
        // Parents first: asking HDF5 whether "a/b" exists while "a" does not is an HDF5 error.
        for group in ["model", "optim", "optim/m", "optim/v", "meta", "state"] { _ = try root.group(group, create: true) }
        for (groupName, tensors) in [(CheckpointFormat.modelGroup, state.tensors),
                                     (CheckpointFormat.adamMGroup, state.adamM),
                                     (CheckpointFormat.adamVGroup, state.adamV)] {
            let group = try root.group(groupName, create: true)
            for tensor in tensors {
                try tensor.withUnsafeValues { try group.write(tensor.name, values: $0, shape: tensor.shape) }
            }
            let names = CheckpointFormat.encodeNames(tensors.map(\.name))
            try root.write(CheckpointFormat.namesDataset(forGroup: groupName), names, shape: [names.count])
        }
        try root.write(CheckpointFormat.rngDataset, state.rngState, shape: [state.rngState.count])
        try root.writeText(CheckpointFormat.configDataset, state.configText)
        try root.writeText(CheckpointFormat.modelConfigDataset, state.modelConfigJSON)
        try root.writeText(CheckpointFormat.tokenizerDataset, state.tokenizerDescription)
        try root.write(CheckpointFormat.extraDataset, extraJSON, shape: [extraJSON.count])
        try state.tokenizer?.write(to: root)
    }

    private func removeStaleTemporaryFiles() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var removed: [String] = []
        for name in names where CheckpointFormat.isTemporaryFileName(name) {
            let stale = path(name)
            if (try? FileManager.default.removeItem(atPath: stale)) != nil {
                logger.warning("removed stale temporary checkpoint", metadata: ["path": "\(stale)"])
                removed.append(stale)
            }
        }
        return removed
    }

    /// Keeps the `keepLast` newest valid checkpoints up to `newestStep` and deletes every
    /// checkpoint older than the oldest kept one. Files of later steps are not touched: the
    /// coordinator moves those aside before training (``SupersededFiles``), and retention never
    /// looks into the `superseded-*` subdirectories.
    private func applyRetention(newestStep: Int) -> [String] {
        let candidates = CheckpointFormat.checkpointFiles(in: directory).filter { $0.step <= newestStep }.reversed()
        var validKept = 0
        var deleted: [String] = []
        for candidate in candidates {
            if validKept >= keepLast {
                if (try? FileManager.default.removeItem(atPath: candidate.path)) != nil {
                    knownValid[candidate.path] = nil
                    deleted.append(candidate.path)
                } else {
                    logger.warning("cannot delete old checkpoint", metadata: ["path": "\(candidate.path)"])
                }
                continue
            }
            if isValid(candidate.path) { validKept += 1 }
        }
        if !deleted.isEmpty {
            logger.info("deleted old checkpoints", metadata: ["keep_last": "\(keepLast)", "deleted": "\(deleted.map { ($0 as NSString).lastPathComponent })"])
        }
        return deleted
    }

    /// Whether `path` counts towards `keep_last`: only files this writer wrote, unchanged since
    /// (same size, modification time and inode). A file of an earlier run is never parsed here:
    /// a corrupt HDF5 file can crash libhdf5 1.10 itself (docs/CHECKPOINT.md, "Known
    /// limitations"), and retention must not take a running coordinator down. Such files are
    /// kept until `keep_last` newer files of this writer exist, then deleted unread.
    private func isValid(_ path: String) -> Bool {
        guard let identity = FileIdentity(path: path), knownValid[path] == identity else {
            logger.debug("checkpoint not written by this run does not count towards keep_last", metadata: ["path": "\(path)"])
            return false
        }
        return true
    }
}

/// Size, modification time and inode of a file: changes when the file is replaced or modified.
struct FileIdentity: Equatable {
    var size: Int
    var modified: Date
    var inode: UInt64

    init?(path: String) {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
              let size = attributes[.size] as? NSNumber,
              let modified = attributes[.modificationDate] as? Date else { return nil }
        self.size = size.intValue
        self.modified = modified
        self.inode = (attributes[.systemFileNumber] as? NSNumber)?.uint64Value ?? 0
    }
}

/// Opens `path` and fsyncs it (works for directories too, to persist a rename).
func fsyncFile(_ path: String) throws {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw CermError.io(path: path, reason: "open for fsync: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    guard fsync(fd) == 0 else { throw CermError.io(path: path, reason: "fsync: \(String(cString: strerror(errno)))") }
}
