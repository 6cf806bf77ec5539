#if canImport(Glibc)
import Glibc
#endif

/// The kernel's host name (no DNS lookup, unlike `ProcessInfo.hostName`); nil when unavailable.
public func kernelHostName() -> String? {
    var buffer = [CChar](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count - 1) == 0 else { return nil }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
