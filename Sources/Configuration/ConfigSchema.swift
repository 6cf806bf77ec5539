import Foundation
import Shared
import TOMLKit

/// A configuration error that names the file, the key and, where known, the line at fault.
public struct ConfigError: Error, Equatable, CustomStringConvertible {
    /// The config file (or `<string>` for text parsed from memory).
    public let file: String
    /// 1-based line, when it is known.
    public let line: Int?
    /// Dotted key (`grpo.clip_low`) or section (`grpo`); empty for whole-file syntax errors.
    public let key: String
    public let message: String

    public init(file: String, line: Int?, key: String, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    public var description: String {
        let place = line.map { "\(file):\($0)" } ?? file
        return key.isEmpty ? "\(place): \(message)" : "\(place): \(key): \(message)"
    }
}

/// Walks the keys of one config section. The same walk decodes a section from TOML
/// (``TOMLDecodingVisitor``) and renders it back (``TOMLRenderingVisitor``), so every key is
/// declared exactly once, with its type and its allowed range.
public protocol ConfigVisitor {
    mutating func int(_ key: String, _ value: inout Int, _ range: ClosedRange<Int>) throws
    mutating func uint64(_ key: String, _ value: inout UInt64) throws
    mutating func double(_ key: String, _ value: inout Double, _ range: ClosedRange<Double>) throws
    mutating func bool(_ key: String, _ value: inout Bool) throws
    mutating func string(_ key: String, _ value: inout String, nonEmpty: Bool) throws
    mutating func strings(_ key: String, _ value: inout [String]) throws
    mutating func choice<E: RawRepresentable & CaseIterable>(_ key: String, _ value: inout E) throws where E.RawValue == String
}

/// One `[section]` of `cluster.toml`.
public protocol ConfigSection: Sendable, Equatable {
    /// The TOML table name.
    static var sectionName: String { get }
    init()
    /// Visits every key of the section in file order.
    mutating func visit<V: ConfigVisitor>(_ visitor: inout V) throws
}

/// Finds the line of a `[section]` header or `key =` inside a section, for error messages.
/// TOMLKit gives lines for syntax errors only; this fills the gap for semantic ones.
struct TOMLLineLocator {
    private var lines: [String: Int] = [:]

    init(text: String) {
        var section = ""
        for (index, raw) in text.tomlLines.enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("[") && !line.hasPrefix("[[") {
                if let end = line.firstIndex(of: "]") {
                    section = String(line[line.index(after: line.startIndex)..<end]).trimmingCharacters(in: .whitespaces)
                    if lines[section] == nil { lines[section] = index + 1 }
                }
                continue
            }
            guard let eq = line.firstIndex(of: "="), !line.hasPrefix("#") else { continue }
            var key = line[..<eq].trimmingCharacters(in: .whitespaces)
            if key.hasPrefix("\""), key.hasSuffix("\""), key.count >= 2 { key = String(key.dropFirst().dropLast()) }
            let dotted = section.isEmpty ? key : "\(section).\(key)"
            if lines[dotted] == nil { lines[dotted] = index + 1 }
        }
    }

    func line(of dottedKey: String) -> Int? { lines[dottedKey] }
}

extension String {
    /// The lines of TOML text, split at LF and CRLF (TOML's two newlines). Not
    /// `split(separator: "\n")`: Swift reads "\r\n" as one Character, which is not "\n", so a
    /// CRLF file would be one line and its errors would lose their line numbers.
    var tomlLines: [Substring] {
        split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
    }
}

/// Decodes a section from a TOML table, checking types and ranges, and remembers which keys
/// it saw so that unknown keys can be reported.
struct TOMLDecodingVisitor: ConfigVisitor {
    let file: String
    let section: String
    let table: TOMLTable?
    let locator: TOMLLineLocator
    var seen: Set<String> = []

    func error(_ key: String, _ message: String) -> ConfigError {
        let dotted = "\(section).\(key)"
        return ConfigError(file: file, line: locator.line(of: dotted), key: dotted, message: message)
    }

    private mutating func raw(_ key: String) -> TOMLValueConvertible? {
        seen.insert(key)
        return table?[key]
    }

    private func typeName(_ v: TOMLValueConvertible) -> String { v.tomlValue.type.rawValue }

    mutating func int(_ key: String, _ value: inout Int, _ range: ClosedRange<Int>) throws {
        guard let v = raw(key) else { return }
        guard let i = v.int else { throw error(key, "expected an integer, found \(typeName(v))") }
        guard range.contains(i) else { throw error(key, "must be in \(range.lowerBound)...\(range.upperBound), got \(i)") }
        value = i
    }

    mutating func uint64(_ key: String, _ value: inout UInt64) throws {
        guard let v = raw(key) else { return }
        guard let i = v.int else { throw error(key, "expected an integer, found \(typeName(v))") }
        guard i >= 0 else { throw error(key, "must be a non-negative integer, got \(i)") }
        value = UInt64(i)
    }

    mutating func double(_ key: String, _ value: inout Double, _ range: ClosedRange<Double>) throws {
        guard let v = raw(key) else { return }
        let d: Double
        if let x = v.double { d = x } else if let i = v.int { d = Double(i) } else {
            throw error(key, "expected a number, found \(typeName(v))")
        }
        guard d.isFinite, range.contains(d) else { throw error(key, "must be in \(range.lowerBound)...\(range.upperBound), got \(d)") }
        value = d
    }

    mutating func bool(_ key: String, _ value: inout Bool) throws {
        guard let v = raw(key) else { return }
        guard let b = v.bool else { throw error(key, "expected true or false, found \(typeName(v))") }
        value = b
    }

    mutating func string(_ key: String, _ value: inout String, nonEmpty: Bool) throws {
        guard let v = raw(key) else { return }
        guard let s = v.string else { throw error(key, "expected a string, found \(typeName(v))") }
        if nonEmpty && s.isEmpty { throw error(key, "must not be empty") }
        value = s
    }

    mutating func strings(_ key: String, _ value: inout [String]) throws {
        guard let v = raw(key) else { return }
        guard let array = v.array else { throw error(key, "expected an array of strings, found \(typeName(v))") }
        var out: [String] = []
        for (i, element) in array.enumerated() {
            guard let s = element.string else { throw error(key, "element \(i) is not a string") }
            out.append(s)
        }
        value = out
    }

    mutating func choice<E: RawRepresentable & CaseIterable>(_ key: String, _ value: inout E) throws where E.RawValue == String {
        guard let v = raw(key) else { return }
        guard let s = v.string else { throw error(key, "expected a string, found \(typeName(v))") }
        guard let e = E(rawValue: s) else {
            let options = E.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            throw error(key, "unknown value \"\(s)\", expected one of \(options)")
        }
        value = e
    }
}

/// Renders a section back to TOML, one `key = value` line per key.
struct TOMLRenderingVisitor: ConfigVisitor {
    var lines: [String] = []

    /// TOML basic strings take the same escapes as JSON strings.
    static func quote(_ s: String) -> String { JSONWriter.quote(s) }

    static func number(_ d: Double) -> String {
        if d == d.rounded(), abs(d) < 1e15 { return String(format1: d) }
        return "\(d)"
    }

    mutating func int(_ key: String, _ value: inout Int, _ range: ClosedRange<Int>) { lines.append("\(key) = \(value)") }
    mutating func uint64(_ key: String, _ value: inout UInt64) { lines.append("\(key) = \(value)") }
    mutating func double(_ key: String, _ value: inout Double, _ range: ClosedRange<Double>) { lines.append("\(key) = \(Self.number(value))") }
    mutating func bool(_ key: String, _ value: inout Bool) { lines.append("\(key) = \(value)") }
    mutating func string(_ key: String, _ value: inout String, nonEmpty: Bool) { lines.append("\(key) = \(Self.quote(value))") }
    mutating func strings(_ key: String, _ value: inout [String]) {
        lines.append("\(key) = [" + value.map(Self.quote).joined(separator: ", ") + "]")
    }
    mutating func choice<E: RawRepresentable & CaseIterable>(_ key: String, _ value: inout E) where E.RawValue == String {
        lines.append("\(key) = \(Self.quote(value.rawValue))")
    }
}

extension String {
    /// Integral doubles render with one decimal (`10000.0`) so they stay TOML floats.
    init(format1 d: Double) { self = "\(Int64(d)).0" }
}

/// Lists the keys of a section in order (for documentation checks).
struct KeyListingVisitor: ConfigVisitor {
    var keys: [String] = []
    mutating func int(_ key: String, _ value: inout Int, _ range: ClosedRange<Int>) { keys.append(key) }
    mutating func uint64(_ key: String, _ value: inout UInt64) { keys.append(key) }
    mutating func double(_ key: String, _ value: inout Double, _ range: ClosedRange<Double>) { keys.append(key) }
    mutating func bool(_ key: String, _ value: inout Bool) { keys.append(key) }
    mutating func string(_ key: String, _ value: inout String, nonEmpty: Bool) { keys.append(key) }
    mutating func strings(_ key: String, _ value: inout [String]) { keys.append(key) }
    mutating func choice<E: RawRepresentable & CaseIterable>(_ key: String, _ value: inout E) where E.RawValue == String { keys.append(key) }
}
