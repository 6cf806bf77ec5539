import Foundation

/// A progress line on stderr: rewritten in place (`\r`) on a terminal, otherwise printed as a
/// new line at most every `interval` seconds (so logs stay readable).
final class ProgressLine {
    private let isTerminal = isatty(STDERR_FILENO) == 1
    private let interval: TimeInterval
    private var lastPrint = Date.distantPast
    private var lastWidth = 0

    init(interval: TimeInterval = 10) {
        self.interval = interval
    }

    /// Shows `text`; `force` prints it even within the interval (e.g. the final state).
    func update(_ text: String, force: Bool = false) {
        let now = Date()
        if isTerminal {
            guard force || now.timeIntervalSince(lastPrint) >= 0.2 else { return }
            let padding = String(repeating: " ", count: max(0, lastWidth - text.count))
            FileHandle.standardError.write(Data(("\r" + text + padding).utf8))
            lastWidth = text.count
        } else {
            guard force || now.timeIntervalSince(lastPrint) >= interval else { return }
            FileHandle.standardError.write(Data((text + "\n").utf8))
        }
        lastPrint = now
    }

    /// Ends the in-place line (terminal only) so following output starts on a fresh line.
    func finish() {
        if isTerminal, lastWidth > 0 { FileHandle.standardError.write(Data("\n".utf8)) }
        lastWidth = 0
    }
}

