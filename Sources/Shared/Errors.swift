import Foundation

/// Errors shared across modules that name the file, key or peer at fault.
public enum CermError: Error, Equatable, CustomStringConvertible {
    /// A file could not be read or written.
    case io(path: String, reason: String)
    /// Invalid input that is not tied to a more specific error type.
    case invalid(String)

    public var description: String {
        switch self {
        case let .io(path, reason): return "\(path): \(reason)"
        case let .invalid(message): return message
        }
    }
}

/// The message for a file read when `path` is a directory, or nil. Foundation's own error for
/// reading a directory is the opaque "The operation could not be completed (NSCocoaErrorDomain
/// error 256.)", and opening one for reading succeeds on Linux.
public func directoryInsteadOfFile(_ path: String) -> String? {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else { return nil }
    return "is a directory, not a file"
}
