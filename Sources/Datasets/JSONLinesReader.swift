import Foundation
import Shared

/// Reads a file line by line in fixed-size chunks, so files far larger than memory stream
/// through. Lines end at `\n`; a trailing `\r` is dropped; a UTF-8 byte-order mark at the
/// start of the file is dropped.
public struct JSONLinesReader {
    private let handle: FileHandle
    private let path: String
    private var buffer: [UInt8] = []
    private var start = 0
    private var finished = false
    private var lineNumber = 0
    private static let chunkSize = 1 << 20

    /// Opens `path`; throws a ``DataError`` naming the file when it cannot be read.
    public init(path: String) throws(DataError) {
        if let problem = directoryInsteadOfFile(path) { throw DataError(file: path, line: nil, field: "", message: problem) }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw DataError(file: path, line: nil, field: "", message: "cannot open file for reading")
        }
        self.handle = handle
        self.path = path
    }

    /// The next line's 1-based number and bytes (without its terminator), or nil at the end.
    public mutating func next() throws(DataError) -> (number: Int, bytes: [UInt8])? {
        while true {
            if let newline = buffer[start...].firstIndex(of: 0x0A) {
                var line = Array(buffer[start..<newline])
                start = newline + 1
                return emit(&line)
            }
            if finished {
                guard start < buffer.count else { return nil }
                var line = Array(buffer[start...])
                start = buffer.count
                return emit(&line)
            }
            let chunk: Data?
            do {
                chunk = try handle.read(upToCount: Self.chunkSize)
            } catch {
                throw DataError(file: path, line: nil, field: "", message: "read failed (\(error.localizedDescription))")
            }
            buffer.removeFirst(start)
            start = 0
            if let chunk, !chunk.isEmpty { buffer.append(contentsOf: chunk) } else { finished = true }
        }
    }

    private mutating func emit(_ line: inout [UInt8]) -> (number: Int, bytes: [UInt8]) {
        lineNumber += 1
        if line.last == 0x0D { line.removeLast() }
        if lineNumber == 1, line.starts(with: [0xEF, 0xBB, 0xBF]) { line.removeFirst(3) }
        return (lineNumber, line)
    }
}

/// The 1-based offset of the first byte that is not part of a valid UTF-8 sequence, or nil.
public func firstInvalidUTF8Offset(_ bytes: [UInt8]) -> Int? {
    var i = 0
    while i < bytes.count {
        let b = bytes[i]
        let length: Int
        var lowerSecond: UInt8 = 0x80, upperSecond: UInt8 = 0xBF
        switch b {
        case 0x00...0x7F: i += 1; continue
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; lowerSecond = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; upperSecond = 0x9F
        case 0xF0: length = 4; lowerSecond = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; upperSecond = 0x8F
        default: return i + 1
        }
        guard i + length <= bytes.count else { return i + 1 }
        guard (lowerSecond...upperSecond).contains(bytes[i + 1]) else { return i + 1 }
        for k in 2..<length where !(0x80...0xBF).contains(bytes[i + k]) { return i + 1 }
        i += length
    }
    return nil
}
