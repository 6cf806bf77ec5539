import Foundation
import Logging
@testable import Runtime
import TestSupport
import Testing

@Suite struct LoggingTests {
    @Test func handlerAppendsLinesToTheAttachedFile() throws {
        let path = temporaryPath("logs/train.log")
        try? FileManager.default.removeItem(atPath: path)
        let sink = LogSink()
        try sink.attachFile(path)
        var logger = Logger(label: "test") { label in CermLogHandler(label: label, sink: sink) }
        logger.logLevel = .info
        logger.info("step 1", metadata: ["loss": "0.5"])
        logger.debug("hidden")
        logger.warning("worker w1 died")
        sink.detachFile()
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines[0].hasSuffix("INFO  [test] step 1 loss=0.5"))
        #expect(lines[1].hasSuffix("WARN  [test] worker w1 died"))
        // Appends, never truncates, so a resumed run continues the same log.
        try sink.attachFile(path)
        sink.write("resumed")
        sink.detachFile()
        #expect(try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").count == 3)
    }
}
