import Foundation
import TestSupport
import Testing

/// `cerm tokenize` as a user runs it: ids on one line, text back with --decode, errors naming the path.
@Suite struct TokenizeCommandTests {
    static let qwen2 = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("TokenizersTests/Fixtures/qwen2.tokenizer.json").path

    @Test func idsOnOneLineAndBack() throws {
        let dir = try makeTemporaryDirectory("cli-tokenize")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        guard let encoded = try CommandLineTests.cerm(["tokenize", "--model", Self.qwen2, "<|im_start|>user\nhi<|im_end|>"], in: dir) else { return }
        #expect(encoded.status == 0)
        #expect(encoded.stdout == "1 87 85 269 201 434 2\n")
        #expect(encoded.stderr == "")
        let split = try #require(try CommandLineTests.cerm(["tokenize", "--model", Self.qwen2, "--split-special", "<|im_start|>user"], in: dir))
        #expect(split.stdout == "266 283 348 275 87 85 269\n")
        let decoded = try #require(try CommandLineTests.cerm(["tokenize", "--model", Self.qwen2, "--decode", "1 87 85 269", "201", "434", "2"], in: dir))
        #expect(decoded.status == 0)
        #expect(decoded.stdout == "<|im_start|>user\nhi<|im_end|>\n")
        let skipped = try #require(try CommandLineTests.cerm(["tokenize", "--model", Self.qwen2, "--decode", "--skip-special", "1 87 85 269 2"], in: dir))
        #expect(skipped.stdout == "user\n")
    }

    @Test func errorsNameThePath() throws {
        let dir = try makeTemporaryDirectory("cli-tokenize-errors")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        guard let missing = try CommandLineTests.cerm(["tokenize", "--model", "/nonexistent/tok", "x"], in: dir) else { return }
        #expect(missing.status == 2)
        #expect(missing.stdout == "")
        #expect(missing.stderr == "error: /nonexistent/tok: does not exist (expected a GGUF file, a Hugging Face model directory, a cerm weights file or checkpoint, or a tokenizer.json)\n")
        let empty = try #require(try CommandLineTests.cerm(["tokenize", "--model", dir, "x"], in: dir))
        #expect(empty.status == 2)
        #expect(empty.stderr == "error: \(dir): the directory holds no tokenizer.json\n")
        let badID = try #require(try CommandLineTests.cerm(["tokenize", "--model", Self.qwen2, "--decode", "1 x"], in: dir))
        #expect(badID.status != 0)
        #expect(badID.stderr.contains("--decode: \"x\" is not a token id of \(Self.qwen2) (0..<1500)"))
    }
}
