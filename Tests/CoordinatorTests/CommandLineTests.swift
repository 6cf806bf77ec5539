import Foundation
import Testing

/// The `cerm` executable as a user runs it: messages and files of single commands.
@Suite struct CommandLineTests {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var stderrLines: [String] { stderr.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) }
    }

    /// Runs `cerm ARGUMENTS` in `directory`; nil (with an issue recorded) without a built binary.
    static func cerm(_ arguments: [String], in directory: String) throws -> Result? {
        guard let binary = KillResumeTests.cermBinary else {
            Issue.record("no cerm binary under .build/{debug,release}: run `swift build --build-tests` first")
            return nil
        }
        let out = (directory as NSString).appendingPathComponent(".stdout"), err = (directory as NSString).appendingPathComponent(".stderr")
        for path in [out, err] { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        // Files, not pipes: a full pipe would block the child before it exits.
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
        try process.run()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: try String(contentsOfFile: out, encoding: .utf8),
                      stderr: try String(contentsOfFile: err, encoding: .utf8))
    }

    /// `text` with every run of whitespace as one space (help text is wrapped to the terminal).
    static func words(_ text: String) -> String {
        text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    static func directory(_ label: String, config: String = "") throws -> String {
        let dir = try makeTemporaryDirectory("cli-\(label)")
        try config.write(toFile: (dir as NSString).appendingPathComponent("c.toml"), atomically: true, encoding: .utf8)
        return dir
    }

    /// `cerm eval` without --data writes the synthetic task into data.dir when it is missing,
    /// and says so (it used to do it silently); a second run finds the files and says nothing.
    @Test func evalLogsTheSyntheticTaskItGenerates() throws {
        let dir = try Self.directory("eval-generates", config: "[data]\nsynth_train = 6\nsynth_eval = 3\n")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        guard let first = try Self.cerm(["eval", "--teacher", "--config", "c.toml", "--threads", "1"], in: dir) else { return }
        #expect(first.status == 0)
        let generated = first.stderrLines.filter { $0.hasPrefix("generated ") }
        #expect(generated == ["generated data/synth/train.jsonl", "generated data/synth/eval.jsonl", "generated data/synth/bo4.jsonl"])
        for file in ["train", "eval", "bo4"] {
            #expect(FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent("data/synth/\(file).jsonl")))
        }
        let second = try #require(try Self.cerm(["eval", "--teacher", "--config", "c.toml", "--threads", "1"], in: dir))
        #expect(second.status == 0)
        #expect(!second.stderr.contains("generated "))

        let help = try #require(try Self.cerm(["eval", "--help"], in: dir))
        #expect(Self.words(help.stdout).contains("is missing, the synthetic task (data.synth_train, data.synth_eval, data.synth_seed) is "
                                                 + "written into data.dir first, as `cerm sft` does, and each file written is logged to "
                                                 + "stderr as \"generated PATH\"."))
    }

    /// A bad `--kind-rate` names the option, lowercase `error:` like every other command's
    /// errors, and the usage-error status; it is refused before any data is read.
    @Test(arguments: ["teacher", "sft-traces"])
    func badKindRateNamesTheOption(subcommand: String) throws {
        let dir = try Self.directory("kind-rate")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var arguments = ["data", subcommand, "--data", "missing.jsonl", "--kind-rate", "count=0.5", "--kind-rate", "bogus=1"]
        if subcommand == "sft-traces" { arguments += ["--out", "traces.jsonl"] }
        guard let result = try Self.cerm(arguments, in: dir) else { return }
        #expect(result.status == 64)
        #expect(result.stderr == "error: --kind-rate \"bogus=1\": unknown kind bogus; "
                + "kinds: count case separator topic distinct arithmetic format transform length\n")
        #expect(result.stdout.isEmpty)
    }
}
