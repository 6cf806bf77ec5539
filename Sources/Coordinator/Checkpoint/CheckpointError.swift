import Foundation

/// Why a checkpoint could not be written or loaded; always names the file.
public struct CheckpointError: Error, Equatable, CustomStringConvertible {
    /// The checkpoint file (or, for a failed write, the name it was going to get).
    public let path: String
    public let reason: Reason

    public init(path: String, reason: Reason) {
        self.path = path
        self.reason = reason
    }

    public enum Reason: Equatable, Sendable, CustomStringConvertible {
        /// No file at the path.
        case notFound
        /// The file has no HDF5 signature (empty, or some other kind of file).
        case notHDF5(String)
        /// The file is shorter than HDF5's own record of its end: a write that did not finish.
        case truncated(String)
        /// HDF5 could not open or read the file for another reason.
        case unreadable(String)
        /// A valid HDF5 file that is not a cerm checkpoint (`format` attribute missing or other).
        case wrongFormat(String)
        /// An SFT weights file (`ModelWeights.save`), the other kind of file cerm writes.
        case sftWeightsFile
        /// A cerm checkpoint of a format version this build does not read.
        case unsupportedVersion(Int64)
        /// A required dataset or attribute is absent (its path in the file).
        case missing(String)
        /// An object is present but its content is invalid (wrong shape, bad UTF-8 or JSON ...).
        case malformed(String)
        /// The stored checksum differs from the one computed over the loaded content.
        case checksumMismatch(stored: UInt64, computed: UInt64)
        /// The state to write is inconsistent (a tensor's shape and value count disagree ...).
        case invalidState(String)
        /// Writing failed; previous checkpoints are untouched.
        case writeFailed(String)
        /// A child process reading the file first (``CheckpointProbe``) died by this crash
        /// signal inside libhdf5, which does not validate all it reads: the file is corrupt.
        case crashesReader(signal: Int32)
        /// A child process reading the file first was still reading after this many seconds
        /// (``ChildProcessCheckpointProbe/timeLimit``): libhdf5 loops on some corrupt files.
        case readerTimedOut(seconds: Double)
        /// The probe's child could not parse the file and said why (``ProbeReport``): this
        /// reason's text, and the whole message the in-process read would have given.
        case reported(reason: String, message: String)

        public var description: String {
            switch self {
            case .notFound: return "no such file"
            case let .notHDF5(detail): return "not an HDF5 file (\(detail))"
            case let .truncated(detail): return "truncated file (\(detail))"
            case let .unreadable(detail): return "unreadable: \(detail)"
            case let .wrongFormat(detail): return "not a cerm checkpoint (\(detail))"
            case .sftWeightsFile: return "an SFT weights file, not a run checkpoint (SFT weights go to --init or `cerm eval --checkpoint`)"
            case let .unsupportedVersion(v):
                return "unsupported format version \(v) (this build reads versions \(CheckpointFormat.readableVersions.lowerBound) to \(CheckpointFormat.readableVersions.upperBound))"
            case let .missing(what): return "missing \(what)"
            case let .malformed(detail): return "malformed: \(detail)"
            case let .checksumMismatch(stored, computed):
                return "checksum mismatch (stored \(CheckpointFormat.hex(stored)), computed \(CheckpointFormat.hex(computed)))"
            case let .invalidState(detail): return "invalid training state: \(detail)"
            case let .writeFailed(detail): return "write failed: \(detail)"
            case let .crashesReader(signal):
                return "reading it crashed libhdf5 (\(ChildProcessCheckpointProbe.signalName(signal)) in a child process that read it first); the file is corrupt"
            case let .reported(reason, _): return reason
            case let .readerTimedOut(seconds):
                return "a child process reading it first had not finished after \(Int(seconds.rounded())) s (libhdf5 loops on some corrupt files); the file is treated as corrupt"
            }
        }
    }

    public var description: String {
        // "checkpoint FILE: an SFT weights file" would call the file a checkpoint.
        if reason == .sftWeightsFile { return "\(path) is \(reason)" }
        // The probe runs before the file's kind is known: it may hold SFT weights.
        switch reason {
        case .crashesReader, .readerTimedOut: return "\(path): \(reason)"
        case let .reported(_, message): return message
        default: break
        }
        return "checkpoint \(path): \(reason)"
    }
}

/// Why `--resume` found nothing to continue from; names the path and, when it is the run
/// directory `--resume` defaults to, says to start without `--resume`.
public struct ResumeError: Error, Equatable, CustomStringConvertible {
    public enum Reason: Equatable, Sendable {
        /// Nothing exists at the path.
        case doesNotExist
        /// A directory without any `step_<N>.h5` file.
        case noCheckpointFiles
        /// A directory whose every `step_<N>.h5` failed to load (newest first).
        case noValidCheckpoint(skipped: [CheckpointError])
    }

    /// The checkpoint file or directory `--resume` was to use.
    public let path: String
    /// True when `path` is the run directory (`--resume` without a path), false for a path the
    /// user named.
    public let isRunDirectory: Bool
    public let reason: Reason

    public init(path: String, isRunDirectory: Bool, reason: Reason) {
        self.path = path
        self.isRunDirectory = isRunDirectory
        self.reason = reason
    }

    public var description: String {
        let place = isRunDirectory ? "run directory \(path)" : path
        // A run that never wrote a checkpoint is one to start, not to resume.
        let hint = isRunDirectory ? " (start without --resume)" : ""
        switch reason {
        case .doesNotExist:
            return "no checkpoint to resume: \(place) does not exist\(hint)"
        case .noCheckpointFiles:
            return "no checkpoint to resume: \(place) has no step_<N>.h5 files\(hint)"
        case let .noValidCheckpoint(skipped):
            let files = skipped.map { "\(($0.path as NSString).lastPathComponent): \($0.reason)" }.joined(separator: "; ")
            return "no checkpoint to resume: every step_<N>.h5 file of \(place) failed to load: \(files)"
        }
    }
}
