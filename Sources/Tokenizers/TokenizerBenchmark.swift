import Foundation
import Shared

/// Encoding speed on one thread: the texts encoded over and over until `minimumSeconds` have
/// passed. The first pass starts with an empty word cache; the figure is over all passes.
public enum TokenizerBenchmark {
    public struct Result: Sendable {
        public var bytes: Int
        public var tokens: Int
        public var seconds: Double
        public var passes: Int
        /// First pass alone (cold word cache).
        public var firstPassSeconds: Double

        public var megabytesPerSecond: Double { Double(bytes) / seconds / 1e6 }
        public var firstPassMegabytesPerSecond: Double { Double(bytes / passes) / firstPassSeconds / 1e6 }

        public var summary: String {
            String(format: "%.2f MB/s (%d passes, %.1f MB, %d tokens in %.2f s; first pass %.2f MB/s)",
                   megabytesPerSecond, passes, Double(bytes) / 1e6, tokens, seconds, firstPassMegabytesPerSecond)
        }
    }

    /// A corpus: JSON lines of strings (`.jsonl`) or plain text, one text per line.
    /// (JSONDecoder, because JSONSerialization drops a raw U+FEFF inside a string.)
    public static func texts(fromFile path: String) throws -> [String] {
        guard FileManager.default.fileExists(atPath: path) else { throw CermError.io(path: path, reason: "no such file") }
        if let reason = directoryInsteadOfFile(path) { throw CermError.io(path: path, reason: reason) }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw CermError.io(path: path, reason: "cannot read as UTF-8 text")
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast(text.hasSuffix("\n") ? 1 : 0)
        guard path.hasSuffix(".jsonl") else { return lines.map(String.init) }
        return try lines.enumerated().map { index, line in
            do {
                return try JSONDecoder().decode(String.self, from: Data(line.utf8))
            } catch {
                throw CermError.io(path: path, reason: "line \(index + 1) is not a JSON string")
            }
        }
    }

    public static func run(_ tokenizer: BPETokenizer, texts: [String], minimumSeconds: Double = 3) -> Result {
        let passBytes = texts.reduce(0) { $0 + $1.utf8.count }
        var result = Result(bytes: 0, tokens: 0, seconds: 0, passes: 0, firstPassSeconds: 0)
        let start = DispatchTime.now().uptimeNanoseconds
        repeat {
            for text in texts { result.tokens += tokenizer.encode(text).count }
            result.passes += 1
            result.bytes += passBytes
            result.seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            if result.passes == 1 { result.firstPassSeconds = result.seconds }
        } while result.seconds < minimumSeconds
        return result
    }
}
