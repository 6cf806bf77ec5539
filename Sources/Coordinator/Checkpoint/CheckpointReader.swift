import Foundation
import Logging
import Shared

/// A checkpoint read from disk with what was learned while reading it.
public struct LoadedCheckpoint: Sendable {
    public var path: String
    public var state: TrainingState
    public var formatVersion: Int64
    /// The root attribute `checksum`.
    public var storedChecksum: UInt64
    /// The checksum recomputed over the loaded content.
    public var computedChecksum: UInt64
    public var checksumMatches: Bool { storedChecksum == computedChecksum }
}

/// Loads and verifies checkpoints, and finds the one to resume from.
public enum CheckpointReader {
    /// Loads `path` and verifies format, version and checksum; any failure is a
    /// ``CheckpointError`` naming the file and the reason.
    public static func load(path: String) throws -> TrainingState {
        let loaded = try read(path: path)
        guard loaded.checksumMatches else {
            throw CheckpointError(path: path, reason: .checksumMismatch(stored: loaded.storedChecksum, computed: loaded.computedChecksum))
        }
        return loaded.state
    }

    /// Reads `path` completely and recomputes its checksum without judging it (for `cerm
    /// inspect`); structural problems still throw.
    public static func read(path: String) throws -> LoadedCheckpoint {
        func fail(_ reason: CheckpointError.Reason) -> CheckpointError { CheckpointError(path: path, reason: reason) }
        let file = try open(path)
        defer { try? file.close() }
        let root = file.root
        guard root.hasAttribute("format") else {
            // The other file kind cerm writes: say so rather than which attribute is missing.
            throw fail(root.hasAttribute(CermFileKind.sftWeightsAttribute) ? .sftWeightsFile : .wrongFormat("no 'format' attribute on /"))
        }
        let format: String
        do { format = try root.stringAttribute("format") } catch { throw fail(.wrongFormat("'format' attribute is not a string")) }
        guard format == CheckpointFormat.name else { throw fail(.wrongFormat("format is \(CheckpointFormat.jsonString(format))")) }
        let version = try int64Attribute(root, "format_version", path)
        guard CheckpointFormat.readableVersions.contains(version) else { throw fail(.unsupportedVersion(version)) }

        let step = try int64Attribute(root, "step", path)
        let policyVersion = try uint64Attribute(root, "policy_version", path)
        let adamStep = try int64Attribute(root, "adam_step", path)
        let cursor = DataCursor(epoch: try intValue(int64Attribute(root, "data_epoch", path), "data_epoch", path),
                                position: try intValue(int64Attribute(root, "data_position", path), "data_position", path),
                                permutationSeed: try uint64Attribute(root, "data_permutation_seed", path))
        let storedChecksum = try uint64Attribute(root, "checksum", path)

        let tensors = try readTensors(root, group: CheckpointFormat.modelGroup, path)
        let adamM = try readTensors(root, group: CheckpointFormat.adamMGroup, path)
        let adamV = try readTensors(root, group: CheckpointFormat.adamVGroup, path)
        let rng: [UInt64] = try dataset(root, CheckpointFormat.rngDataset, path, oneDimensional: true)
        let configText = try text(root, CheckpointFormat.configDataset, path)
        let modelConfigJSON = try text(root, CheckpointFormat.modelConfigDataset, path)
        let tokenizer = try text(root, CheckpointFormat.tokenizerDataset, path)
        let extraBytes: [UInt8] = try dataset(root, CheckpointFormat.extraDataset, path, oneDimensional: true)
        let storedTokenizer: StoredTokenizer?
        do { storedTokenizer = version >= 2 ? try StoredTokenizer.read(from: root) : nil } catch let CermError.io(_, reason) {
            throw fail(.malformed(reason))
        }
        let extra: [String: String]
        do {
            extra = try JSONDecoder().decode([String: String].self, from: Data(extraBytes))
        } catch {
            throw fail(.malformed("/\(CheckpointFormat.extraDataset) is not a JSON object of strings"))
        }

        let state = TrainingState(
            step: try intValue(step, "step", path), policyVersion: policyVersion, tensors: tensors, adamM: adamM,
            adamV: adamV, adamStep: try intValue(adamStep, "adam_step", path), dataCursor: cursor, rngState: rng,
            configText: configText, modelConfigJSON: modelConfigJSON, tokenizerDescription: tokenizer,
            tokenizer: storedTokenizer, extra: extra)
        let computed = CheckpointFormat.checksum(of: state, extraJSON: extraBytes, formatVersion: version)
        return LoadedCheckpoint(path: path, state: state, formatVersion: version,
                                storedChecksum: storedChecksum, computedChecksum: computed)
    }

    /// The newest valid checkpoint of `runDir`, or nil when it has none. Each newer file that
    /// fails to load is passed to `onSkip` (and logged) before the next older one is tried.
    /// With a `probe`, each file is first read by it (``probeFirst(path:with:)``), so a
    /// file that crashes libhdf5 is skipped instead of crashing this process. Throws only
    /// ``CheckpointReadInterrupted``: a stop request ends the search.
    public static func findResumeCheckpoint(
        runDir: String, probe: (any CheckpointProbe)? = nil, logger: Logger = Logger(label: "checkpoint"),
        onSkip: (CheckpointError) -> Void = { _ in }
    ) throws(CheckpointReadInterrupted) -> LoadedCheckpoint? {
        for candidate in CheckpointFormat.checkpointFiles(in: runDir).reversed() {
            do {
                return try loadVerified(path: candidate.path, probe: probe)
            } catch let interrupted as CheckpointReadInterrupted {
                throw interrupted
            } catch {
                let reported = error as? CheckpointError
                    ?? CheckpointError(path: candidate.path, reason: .unreadable("\(error)"))
                logger.warning("skipping corrupt checkpoint", metadata: [
                    "file": "\((candidate.path as NSString).lastPathComponent)", "reason": "\(reported.reason)",
                ])
                onSkip(reported)
            }
        }
        return nil
    }

    /// `--resume PATH`: a checkpoint file is loaded and must be valid (no fallback); a directory
    /// is searched with ``findResumeCheckpoint(runDir:probe:logger:onSkip:)`` and must hold a
    /// valid one. Nothing to resume from (no such path, no checkpoint files, none valid) is a
    /// ``ResumeError``; `isRunDirectory` says `path` is the run directory `--resume` defaults to.
    /// `probe` reads each file first, as in ``findResumeCheckpoint(runDir:probe:logger:onSkip:)``.
    public static func resume(from path: String, isRunDirectory: Bool = false, probe: (any CheckpointProbe)? = nil,
                              logger: Logger = Logger(label: "checkpoint"),
                              onSkip: (CheckpointError) -> Void = { _ in }) throws -> LoadedCheckpoint {
        func nothing(_ reason: ResumeError.Reason) -> ResumeError {
            ResumeError(path: path, isRunDirectory: isRunDirectory, reason: reason)
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw nothing(.doesNotExist) }
        if isDirectory.boolValue {
            guard !CheckpointFormat.checkpointFiles(in: path).isEmpty else { throw nothing(.noCheckpointFiles) }
            var skipped: [CheckpointError] = []
            guard let found = try findResumeCheckpoint(runDir: path, probe: probe, logger: logger,
                                                   onSkip: { skipped.append($0); onSkip($0) }) else {
                throw nothing(.noValidCheckpoint(skipped: skipped))
            }
            return found
        }
        return try loadVerified(path: path, probe: probe)
    }

    /// Has `probe` read `path` first and throws ``CheckpointError/Reason/crashesReader(signal:)``
    /// when that crashed, ``CheckpointError/Reason/readerTimedOut(seconds:)`` when it did not
    /// end in time, the child's own error when the file does not parse, so that this process
    /// never parses a file libhdf5 rejects, and ``CheckpointReadInterrupted`` when the
    /// caller's stop signal cut the probe short; otherwise returns, and the caller reads the
    /// file itself (after an unreported failure, or when no probe ran: none given, or
    /// ``CheckpointProbeResult/unavailable(_:)``, which the probe logs).
    public static func probeFirst(path: String, with probe: (any CheckpointProbe)?) throws {
        guard let probe else { return }
        switch probe.probe(path: path) {
        case let .crashed(signal): throw CheckpointError(path: path, reason: .crashesReader(signal: signal))
        case let .timedOut(seconds): throw CheckpointError(path: path, reason: .readerTimedOut(seconds: seconds))
        case let .interrupted(signal): throw CheckpointReadInterrupted(path: path, signal: signal)
        case let .fails(_, report?):
            guard let reason = report.checkpointReason else { throw ProbeReportedError(description: report.description) }
            throw CheckpointError(path: path, reason: .reported(reason: reason, message: report.description))
        case .loads, .fails(_, nil), .unavailable: return
        }
    }

    /// ``probeFirst(path:with:)``, then ``read(path:)`` with the checksum verified.
    private static func loadVerified(path: String, probe: (any CheckpointProbe)?) throws -> LoadedCheckpoint {
        try probeFirst(path: path, with: probe)
        let loaded = try read(path: path)
        guard loaded.checksumMatches else {
            throw CheckpointError(path: path, reason: .checksumMismatch(stored: loaded.storedChecksum, computed: loaded.computedChecksum))
        }
        return loaded
    }

    // MARK: Reading pieces

    private static let hdf5Signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]

    /// Opens `path` read-only, telling a missing, empty, foreign, truncated or unreadable file
    /// apart (each a ``CheckpointError``).
    static func open(_ path: String) throws -> HDF5File {
        func fail(_ reason: CheckpointError.Reason) -> CheckpointError { CheckpointError(path: path, reason: reason) }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw fail(.notFound) }
        guard !isDirectory.boolValue else { throw fail(.notHDF5("a directory")) }
        // Before any open(): opening a FIFO blocks until a writer appears, a device may never answer.
        guard isRegularFile(path) else { throw fail(.notHDF5("not a regular file")) }
        guard let handle = FileHandle(forReadingAtPath: path) else { throw fail(.unreadable("cannot open for reading")) }
        let head = (try? handle.read(upToCount: hdf5Signature.count)) ?? nil
        try? handle.close()
        let headBytes = head.map { Array($0) } ?? []
        if headBytes.isEmpty { throw fail(.notHDF5("empty file")) }
        // A file cut inside its first bytes still starts with a prefix of the signature.
        if headBytes.count < hdf5Signature.count, hdf5Signature.starts(with: headBytes) {
            throw fail(.truncated("only \(headBytes.count) bytes"))
        }
        guard headBytes == hdf5Signature else { throw fail(.notHDF5("no HDF5 signature")) }
        do {
            return try HDF5File(path: path, mode: .readOnly)
        } catch let error as HDF5Error {
            let size = FileIdentity(path: path)?.size ?? 0
            if error.stack.localizedCaseInsensitiveContains("truncated") || error.stack.localizedCaseInsensitiveContains("eof") {
                throw fail(.truncated("file has \(size) bytes; HDF5: \(error.stack)"))
            }
            throw fail(.unreadable(error.stack))
        }
    }

    /// Whether `path` (following symbolic links) is a regular file, checked without opening it.
    static func isRegularFile(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }

    private static func int64Attribute(_ root: HDF5Group, _ name: String, _ path: String) throws -> Int64 {
        try scalarAttribute(root, name, path, as: Int64.self)
    }

    private static func uint64Attribute(_ root: HDF5Group, _ name: String, _ path: String) throws -> UInt64 {
        try scalarAttribute(root, name, path, as: UInt64.self)
    }

    private static func scalarAttribute<T: HDF5Scalar>(_ root: HDF5Group, _ name: String, _ path: String, as: T.Type) throws -> T {
        guard root.hasAttribute(name) else { throw CheckpointError(path: path, reason: .missing("attribute /@\(name)")) }
        let values: [T]
        do { values = try root.attribute(name) } catch {
            throw CheckpointError(path: path, reason: .malformed("attribute /@\(name): \(error)"))
        }
        guard values.count == 1 else {
            throw CheckpointError(path: path, reason: .malformed("attribute /@\(name) has \(values.count) values, expected 1"))
        }
        return values[0]
    }

    private static func intValue(_ value: Int64, _ name: String, _ path: String) throws -> Int {
        guard value >= 0 else { throw CheckpointError(path: path, reason: .malformed("attribute /@\(name) is negative (\(value))")) }
        return Int(value)
    }

    private static func dataset<T: HDF5Scalar>(_ root: HDF5Group, _ name: String, _ path: String,
                                               oneDimensional: Bool) throws -> [T] {
        guard root.contains(name) else { throw CheckpointError(path: path, reason: .missing("dataset /\(name)")) }
        do {
            let (values, shape) = try root.read(name, as: T.self)
            if oneDimensional, shape.count != 1 {
                throw CheckpointError(path: path, reason: .malformed("dataset /\(name) has shape \(shape), expected 1-D"))
            }
            return values
        } catch let error as CheckpointError {
            throw error
        } catch {
            throw CheckpointError(path: path, reason: .unreadable("dataset /\(name): \(error)"))
        }
    }

    private static func text(_ root: HDF5Group, _ name: String, _ path: String) throws -> String {
        let bytes: [UInt8] = try dataset(root, name, path, oneDimensional: true)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw CheckpointError(path: path, reason: .malformed("dataset /\(name) is not valid UTF-8"))
        }
        return text
    }

    private static func readTensors(_ root: HDF5Group, group groupName: String, _ path: String) throws -> [NamedTensor] {
        let namesDataset = CheckpointFormat.namesDataset(forGroup: groupName)
        let namesBytes: [UInt8] = try dataset(root, namesDataset, path, oneDimensional: true)
        let names: [String]
        do { names = try JSONDecoder().decode([String].self, from: Data(namesBytes)) } catch {
            throw CheckpointError(path: path, reason: .malformed("/\(namesDataset) is not a JSON array of strings"))
        }
        guard root.contains(groupName) else { throw CheckpointError(path: path, reason: .missing("group /\(groupName)")) }
        let group: HDF5Group
        do { group = try root.group(groupName) } catch {
            throw CheckpointError(path: path, reason: .unreadable("group /\(groupName): \(error)"))
        }
        let stored: [String]
        do { stored = try group.names() } catch {
            throw CheckpointError(path: path, reason: .unreadable("listing /\(groupName): \(error)"))
        }
        let listed = Set(names)
        guard listed.count == names.count else {
            throw CheckpointError(path: path, reason: .malformed("/\(namesDataset) lists a name twice"))
        }
        if let unlisted = stored.first(where: { !listed.contains($0) }) {
            throw CheckpointError(path: path, reason: .malformed("dataset /\(groupName)/\(unlisted) is not listed in /\(namesDataset)"))
        }
        return try names.map { name in
            let full = "\(groupName)/\(name)"
            guard group.contains(name) else { throw CheckpointError(path: path, reason: .missing("dataset /\(full)")) }
            do {
                let (values, shape) = try group.read(name, as: Float.self)
                return NamedTensor(name: name, shape: shape, values: values)
            } catch {
                throw CheckpointError(path: path, reason: .unreadable("dataset /\(full): \(error)"))
            }
        }
    }
}
