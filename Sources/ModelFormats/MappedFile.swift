import Foundation
import Shared
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory map of a whole file: the bytes of a multi-gigabyte checkpoint are paged in
/// on demand and never copied into the heap.
///
/// Immutable after `init`; the map lives until the last reference goes away.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    /// The file's bytes (empty for an empty file).
    public let bytes: UnsafeRawBufferPointer

    /// Maps `path`; errors name it (missing, a directory, unreadable).
    public init(path: String) throws {
        self.path = path
        if let reason = directoryInsteadOfFile(path) { throw CermError.io(path: path, reason: reason) }
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else {
            throw CermError.io(path: path, reason: "cannot open (\(String(cString: strerror(errno))))")
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw CermError.io(path: path, reason: "cannot stat (\(String(cString: strerror(errno))))")
        }
        let size = Int(status.st_size)
        guard size > 0 else {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, descriptor, 0), base != MAP_FAILED else {
            throw CermError.io(path: path, reason: "cannot map \(size) bytes (\(String(cString: strerror(errno))))")
        }
        bytes = UnsafeRawBufferPointer(start: base, count: size)
    }

    /// Drops the pages of `range` from the resident set once they have been converted: the map
    /// is private and read-only, so a page touched again is simply read from the file again.
    /// Keeps an import's peak memory near the float32 model instead of model + file.
    func releasePages(_ range: Range<Int>) {
        guard let base = bytes.baseAddress, !range.isEmpty else { return }
        let page = max(1, Int(sysconf(Int32(_SC_PAGESIZE))))
        let start = range.lowerBound / page * page
        let end = min(range.upperBound, bytes.count)
        guard start < end else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
    }

    deinit {
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
    }
}

/// A cursor over little-endian bytes whose every read is checked against the end, so a file
/// value can never move it outside the buffer. Errors name `path`, what was being read and the
/// offset.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    let path: String
    private(set) var offset: Int

    init(_ bytes: UnsafeRawBufferPointer, path: String, offset: Int = 0) {
        self.bytes = bytes
        self.path = path
        self.offset = offset
    }

    var remaining: Int { bytes.count - offset }

    /// The error for `count` bytes of `what` that the file does not have.
    func truncated(_ what: String, needs count: Int) -> CermError {
        CermError.io(path: path, reason: "truncated: \(what) at offset \(offset) needs \(count) bytes, \(remaining) left")
    }

    /// Skips past `count` bytes of `what` and returns their start offset.
    mutating func take(_ count: Int, _ what: String) throws -> Int {
        guard count >= 0, count <= remaining else { throw truncated(what, needs: count) }
        let start = offset
        offset += count
        return start
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: String) throws -> T {
        let start = try take(MemoryLayout<T>.size, what)
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: start, as: T.self))
    }

    mutating func readFloat(_ what: String) throws -> Float { Float(bitPattern: try read(UInt32.self, what)) }
    mutating func readDouble(_ what: String) throws -> Double { Double(bitPattern: try read(UInt64.self, what)) }

    /// `count` raw bytes (a string's or a header's), checked before anything is allocated.
    mutating func readBytes(_ count: Int, _ what: String) throws -> UnsafeRawBufferPointer {
        let start = try take(count, what)
        return UnsafeRawBufferPointer(rebasing: bytes[start..<(start + count)])
    }
}

/// UTF-8 text or an error naming `what` in `path` (JSON headers, GGUF strings, config files).
func decodeUTF8(_ raw: some Collection<UInt8>, path: String, what: String) throws -> String {
    guard let text = String(validating: raw, as: UTF8.self) else {
        throw CermError.io(path: path, reason: "\(what) is not valid UTF-8")
    }
    return text
}
