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

/// `seconds` as `1h02m`, `3m05s` or `42s`.
func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let s = Int(seconds.rounded())
    if s >= 3600 { return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) }
    if s >= 60 { return String(format: "%dm%02ds", s / 60, s % 60) }
    return "\(s)s"
}
