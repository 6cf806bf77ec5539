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

extension String {
    /// The UTF-8 text of a C character buffer up to its first NUL (all of it when there is none).
    init(nulTerminated buffer: [CChar]) {
        self = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
