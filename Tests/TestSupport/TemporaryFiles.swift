// Helpers the test targets share: temporary files, the `cerm` binary, free ports, tiny runs.
import Foundation

/// `name` inside this test process's own temporary directory (created on first use).
public func temporaryPath(_ name: String) -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cerm-tests-\(getpid())")
    try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent(name).path
}

/// A fresh empty directory under the system temporary directory.
public func makeTemporaryDirectory(_ label: String) throws -> String {
    let path = (NSTemporaryDirectory() as NSString).appendingPathComponent("cerm-\(label)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
