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
