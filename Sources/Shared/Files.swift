import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Writing a file so that readers and crashes never see it half-written.
public enum AtomicFile {
    /// Writes `path` through `.<name>.tmp` in the same directory, fsyncs and renames.
    public static func write(_ path: String, _ body: (FileHandle) throws -> Void) throws {
        let directory = (path as NSString).deletingLastPathComponent
        let tmp = (directory as NSString).appendingPathComponent("." + (path as NSString).lastPathComponent + ".tmp")
        guard FileManager.default.createFile(atPath: tmp, contents: nil), let handle = FileHandle(forWritingAtPath: tmp) else {
            throw CermError.io(path: tmp, reason: "cannot create")
        }
        do {
            try body(handle)
            try handle.synchronize()
            try handle.close()
            guard rename(tmp, path) == 0 else { throw CermError.io(path: path, reason: "rename: \(String(cString: strerror(errno)))") }
        } catch {
            try? handle.close()
            try? FileManager.default.removeItem(atPath: tmp)
            if let error = error as? CermError { throw error }
            throw CermError.io(path: path, reason: "write failed: \(error.localizedDescription)")
        }
    }
}

/// Creates the directory `path` goes into when missing, and returns it ("" for a bare name);
/// the error names the directory.
@discardableResult
public func createParentDirectory(of path: String) throws -> String {
    let directory = (path as NSString).deletingLastPathComponent
    guard !directory.isEmpty else { return directory }
    do {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    } catch {
        throw CermError.io(path: directory, reason: "cannot create directory (\(error.localizedDescription))")
    }
    return directory
}
