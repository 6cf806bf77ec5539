@testable import Configuration
import Foundation
@testable import Shared
import Testing

/// The repository's cluster.toml, found relative to this file.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

@Suite struct ConfigTests {
    @Test func repositoryConfigLoadsAndEqualsTheBuiltInDefaults() throws {
        let config = try Config.load(path: repositoryRoot.appendingPathComponent("cluster.toml").path)
        #expect(config == Config())
    }

    /// The configs under configs/ load (their model files are not read here: `RunModel` does
    /// that where a command starts) and each names a pretrained model.
    @Test func theRepositorysPretrainedConfigsLoad() throws {
        let directory = repositoryRoot.appendingPathComponent("configs")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".toml") }.sorted()
        #expect(files == ["qwen3-0.6b-cluster.toml", "smollm2-135m.toml"])
        for file in files {
            let config = try Config.load(path: directory.appendingPathComponent(file).path)
            #expect(config.model.isPretrained, "\(file) names no model.source")
            #expect(config.rollout.format == .cerm, "\(file) does not use CE-RM's own format")
        }
    }

    @Test func everyKeyIsDocumentedInTheRepositoryConfig() throws {
        let text = try String(contentsOfFile: repositoryRoot.appendingPathComponent("cluster.toml").path, encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var section = ""
        var documented: Set<String> = []
        var present: Set<String> = []
        for (i, line) in lines.enumerated() {
            if line.hasPrefix("[") { section = String(line.dropFirst().dropLast()); continue }
            guard let eq = line.firstIndex(of: "="), !line.hasPrefix("#") else { continue }
            let key = "\(section).\(line[..<eq].trimmingCharacters(in: .whitespaces))"
            present.insert(key)
            // A key is documented when a comment block precedes it (possibly shared with the
            // keys right above it, as for related pairs like nc/ne).
            var j = i - 1
            while j >= 0, !lines[j].hasPrefix("#"), lines[j].contains("=") { j -= 1 }
            if j >= 0, lines[j].hasPrefix("#") { documented.insert(key) }
        }
        for key in Config.allKeys() {
            #expect(present.contains(key), "\(key) missing from cluster.toml")
            #expect(documented.contains(key), "\(key) has no comment in cluster.toml")
        }
    }

    @Test func changesListEachDifferingKeyWithBothRenderedValues() {
        var new = Config()
        new.grpo.learningRate = 1e-4
        new.data.train = "other = train.jsonl"
        new.cluster.mode = .async
        #expect(Config().changes(to: Config()) == [])
        #expect(Config().changes(to: new) == [
            ConfigChange(key: "cluster.mode", old: "\"sync\"", new: "\"async\""),
            ConfigChange(key: "grpo.learning_rate", old: "5e-05", new: "0.0001"),
            ConfigChange(key: "data.train", old: "\"data/synth/train.jsonl\"", new: "\"other = train.jsonl\""),
        ])
    }

    @Test func renderedConfigParsesBackToTheSameConfig() throws {
        var config = Config()
        config.run.name = "quote\"and\\slash"
        config.grpo.learningRate = 2e-6
        config.rollout.nc = 1
        config.reward.evaluationGroups = .pairCriteriaResponse
        config.cluster.curveSecretKeyFile = "keys/c.key"
        config.cluster.authorizedKeysFile = "keys/authorized"
        let parsed = try Config.parse(config.renderTOML())
        #expect(parsed == config)
        #expect(parsed.hash == config.hash)
        #expect(Config().hash != config.hash)
    }

    @Test func hashCoversWhatWorkersSampleWithOnly() {
        let base = Config()
        var other = base
        other.run.steps = 3
        other.run.checkpointDir = "/elsewhere"
        other.grpo.learningRate = 1
        other.cluster.workers = 7
        other.cluster.taskTimeout = 5 // scheduler-only: a worker samples the same either way
        #expect(other.hash == base.hash, "run length, paths, learner and cluster settings do not change what a worker samples")
        for change in [{ (c: inout Config) in c.model.layers = 2 }, { $0.rollout.temperature = 0.5 }, { $0.reward.mode = .par }] {
            var changed = base
            change(&changed)
            #expect(changed.hash != base.hash)
        }
    }

    @Test func missingSectionsTakeDefaults() throws {
        let config = try Config.parse("[rollout]\nnc = 2\n")
        #expect(config.rollout.nc == 2)
        #expect(config.rollout.ne == RolloutConfig().ne)
        #expect(config.grpo == GRPOConfig())
    }

    @Test(arguments: [
        ("[grpo]\nclip_low = 1.5\n", "cfg.toml:2: grpo.clip_low: must be in 0.0...1.0, got 1.5"),
        ("[grpo]\n\nclipp = 1\n", "cfg.toml:3: grpo.clipp: unknown key"),
        ("[rollout]\nnc = \"four\"\n", "cfg.toml:2: rollout.nc: expected an integer, found string"),
        ("[reward]\nmode = \"best\"\n", "cfg.toml:2: reward.mode: unknown value \"best\", expected one of \"cerm\", \"par\", \"pairwise\""),
        ("[modle]\nlayers = 2\n", "cfg.toml:1: modle: unknown section"),
        ("seed = 3\n", "cfg.toml:1: seed: unknown key at top level (keys belong in a [section])"),
        ("[model]\nheads = 4\nkv_heads = 3\n", "cfg.toml:3: model.kv_heads: must divide model.heads (4), got 3"),
        ("[cluster]\nheartbeat_interval = 5.0\nheartbeat_timeout = 2.0\n", "cfg.toml:3: cluster.heartbeat_timeout: must exceed cluster.heartbeat_interval (5.0), got 2.0"),
        ("[cluster]\ntask_timeout = -1\n", "cfg.toml:2: cluster.task_timeout: must be in 0.0...86400.0, got -1.0"),
        ("[run]\nname = \"\"\n", "cfg.toml:2: run.name: must not be empty"),
        ("[run]\nseed = -1\n", "cfg.toml:2: run.seed: must be a non-negative integer, got -1"),
        ("[run]\nname = \"a/b\"\n", "cfg.toml:2: run.name: must be one directory name (no \"/\", not \".\" or \"..\"), got \"a/b\""),
        ("[run]\nname = \"..\"\n", "cfg.toml:2: run.name: must be one directory name (no \"/\", not \".\" or \"..\"), got \"..\""),
        ("[run]\n\nname = \"wa\\u0000x\"\n", "cfg.toml:3: a NUL character (\\u0000) cannot be part of a config value"),
        ("[curation]\nmax_accuracy = 0.3\nmin_accuracy = 0.5\n", "cfg.toml:3: curation.min_accuracy: cannot exceed curation.max_accuracy (0.3), got 0.5"),
        ("[model]\nlayers = 2\nvocab_size = 100\n",
         "cfg.toml:3: model.vocab_size: must be at least 264 (the byte tokenizer's 256 bytes and 8 special tokens), got 100"),
        ("[model]\nvocab_size = 263\n",
         "cfg.toml:2: model.vocab_size: must be at least 264 (the byte tokenizer's 256 bytes and 8 special tokens), got 263"),
        // Refused here, not after `cerm sft` has loaded its data and built the model.
        ("[sft]\nbatch_size = 16\nepochs = 0\n", "cfg.toml:3: sft.epochs: must be in 1...10000, got 0"),
        ("[sft]\nbatch_size = 0\n", "cfg.toml:2: sft.batch_size: must be in 1...1000000, got 0"),
        // A weight chunk must fit in a message, or the run waits for ever on the weights.
        ("[cluster]\nworkers = 1\nmax_message_bytes = 65536\n",
         "cfg.toml:3: cluster.max_message_bytes: must be at least cluster.weight_chunk_bytes (1048576) + 48 (the WEIGHTS_CHUNK "
            + "header and fields) = 1048624, or no worker can receive the weights; got 65536"),
        ("[cluster]\nweight_chunk_bytes = 67108864\n",
         "cfg.toml:2: cluster.weight_chunk_bytes: plus 48 (the WEIGHTS_CHUNK header and fields) must not exceed "
            + "cluster.max_message_bytes (67108864), or no worker can receive the weights; got 67108864"),
        // The coordinator's refusal to bind the network in plain text, reported with the config.
        ("[cluster]\nworkers = 1\nendpoint = \"tcp://0.0.0.0:5599\"\n",
         "cfg.toml:3: cluster.endpoint: \"tcp://0.0.0.0:5599\" is not a loopback, ipc or inproc endpoint and no CURVE key file is "
            + "set: set cluster.curve_secret_key_file and cluster.authorized_keys_file (coordinator) or "
            + "cluster.worker_secret_key_file and cluster.server_public_key_file (workers) (see `cerm keygen`), use a loopback "
            + "address, or set cluster.allow_insecure = true"),
        // Half a worker key pair: it used to connect in plain text without a word.
        ("[cluster]\nserver_public_key_file = \"c.pub\"\n",
         "cfg.toml: cluster.worker_secret_key_file: worker_secret_key_file and server_public_key_file are set together or not at all"),
        ("[cluster]\nworker_secret_key_file = \"w.key\"\n",
         "cfg.toml: cluster.server_public_key_file: worker_secret_key_file and server_public_key_file are set together or not at all"),
        // CRLF line endings keep their line numbers ("\r\n" is one Swift Character, not "\n").
        ("[grpo]\r\nclip_low = 1.5\r\n", "cfg.toml:2: grpo.clip_low: must be in 0.0...1.0, got 1.5"),
        ("[run]\r\n\r\nname = \"wa\\u0000x\"\r\n", "cfg.toml:3: a NUL character (\\u0000) cannot be part of a config value"),
    ])
    func badValuesNameFileLineAndKey(text: String, message: String) {
        do {
            _ = try Config.parse(text, file: "cfg.toml")
            Issue.record("expected an error for \(text)")
        } catch let error as ConfigError {
            #expect(error.description == message)
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    /// The smallest vocabulary the byte tokenizer fits in is accepted; one id less is refused
    /// (above), so the bound is the tokenizer's size exactly.
    @Test func vocabularyMustHoldEveryTokenizerID() throws {
        #expect(ByteTokenizer.vocabularySize == 264)
        #expect(try Config.parse("[model]\nvocab_size = 264\n").model.vocabSize == 264)
    }

    @Test(arguments: [
        ("foo", #"expected tcp://HOST:PORT, ipc://PATH or inproc://NAME, got "foo""#),
        ("http://127.0.0.1:5557", #"expected tcp://HOST:PORT, ipc://PATH or inproc://NAME, got "http://127.0.0.1:5557""#),
        ("ipc://", #"expected tcp://HOST:PORT, ipc://PATH or inproc://NAME, got "ipc://""#),
        ("inproc://", #"expected tcp://HOST:PORT, ipc://PATH or inproc://NAME, got "inproc://""#),
        ("tcp://127.0.0.1", #"missing port in "tcp://127.0.0.1" (expected tcp://HOST:PORT)"#),
        ("tcp://:5557", #"missing host in "tcp://:5557" (expected tcp://HOST:PORT)"#),
        ("tcp://127.0.0.1:0", #"port must be 1...65535 or *, got "0" in "tcp://127.0.0.1:0""#),
        ("tcp://127.0.0.1:65536", #"port must be 1...65535 or *, got "65536" in "tcp://127.0.0.1:65536""#),
        ("tcp://127.0.0.1:", #"port must be 1...65535 or *, got "" in "tcp://127.0.0.1:""#),
        ("tcp://127.0.0.1:+80", #"port must be 1...65535 or *, got "+80" in "tcp://127.0.0.1:+80""#),
        ("tcp://::1:5557", #"an IPv6 host must be in brackets, got "tcp://::1:5557" (expected tcp://[ADDRESS]:PORT)"#),
        ("tcp://[::1]", #"missing port in "tcp://[::1]" (expected tcp://[ADDRESS]:PORT)"#),
        ("tcp://[]:5557", #"missing host in "tcp://[]:5557" (expected tcp://HOST:PORT)"#),
        ("tcp://my host:5557", #"invalid host "my host" in "tcp://my host:5557""#),
    ])
    func malformedEndpointsNameFileLineAndKey(endpoint: String, problem: String) {
        do {
            _ = try Config.parse("[cluster]\nworkers = 1\nendpoint = \(JSONWriter.quote(endpoint))\n", file: "cfg.toml")
            Issue.record("expected an error for \(endpoint)")
        } catch let error as ConfigError {
            #expect(error.description == "cfg.toml:3: cluster.endpoint: " + problem)
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test(arguments: ["tcp://127.0.0.1:5557", "tcp://*:5557", "tcp://0.0.0.0:*", "tcp://[::1]:1", "tcp://[fe80::1]:65535",
                      "tcp://node-7.cluster:5557", "tcp://eth0:5557", "ipc:///tmp/cerm.sock", "inproc://coordinator"])
    func wellFormedEndpointsAreAccepted(endpoint: String) throws {
        #expect(ClusterConfig.endpointProblem(endpoint) == nil)
        // allow_insecure: the non-loopback ones need keys otherwise (below).
        #expect(try Config.parse("[cluster]\nendpoint = \(JSONWriter.quote(endpoint))\nallow_insecure = true\n").cluster.endpoint == endpoint)
    }

    /// A network endpoint needs CURVE keys or allow_insecure; either side's key files will do,
    /// since a config shared by the coordinator and its workers may set only one side's (and
    /// each command checks the files it reads when it starts).
    @Test(arguments: ["allow_insecure = true", "curve_secret_key_file = \"c.key\"\nauthorized_keys_file = \"workers\"",
                      "worker_secret_key_file = \"w.key\"\nserver_public_key_file = \"c.pub\""])
    func networkEndpointWithKeysOrAllowInsecureIsAccepted(setting: String) throws {
        #expect(try Config.parse("[cluster]\nendpoint = \"tcp://0.0.0.0:5599\"\n\(setting)\n").cluster.endpoint == "tcp://0.0.0.0:5599")
    }

    /// The smallest message limit a full weight chunk fits in is accepted.
    @Test func messageLimitOfExactlyOneChunkIsAccepted() throws {
        let config = try Config.parse("[cluster]\nweight_chunk_bytes = 4096\nmax_message_bytes = \(4096 + 48)\n")
        #expect(config.cluster.maxMessageBytes == 4144)
    }

    @Test func syntaxErrorsCarryTheLine() {
        do {
            _ = try Config.parse("[run]\nname = \"x\"\nsteps = = 3\n", file: "cfg.toml")
            Issue.record("expected a syntax error")
        } catch let error as ConfigError {
            #expect(error.line == 3)
            #expect(error.description.hasPrefix("cfg.toml:3: TOML syntax error"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    /// A Latin-1 file (`é` as the single byte 0xE9) is refused naming the line of the first bad byte.
    @Test func nonUTF8FileNamesTheLine() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cerm-latin1-\(getpid()).toml").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data("[run]\nseed = 3\n".utf8 + [UInt8(ascii: "#"), 0xE9, UInt8(ascii: "\n")]).write(to: URL(fileURLWithPath: path))
        #expect(throws: ConfigError(file: path, line: 3, key: "", message: "not UTF-8 text (TOML files are UTF-8)")) {
            try Config.load(path: path)
        }
    }

    /// A directory given as the config is named as such, not as Foundation's "NSCocoaErrorDomain error 256".
    @Test func directoryIsNotAFile() {
        let directory = NSTemporaryDirectory()
        #expect(throws: ConfigError(file: directory, line: nil, key: "", message: "is a directory, not a file")) {
            try Config.load(path: directory)
        }
    }

    @Test func unreadableFileIsNamed() {
        #expect(throws: ConfigError.self) { try Config.load(path: "/nonexistent/cluster.toml") }
        do { _ = try Config.load(path: "/nonexistent/cluster.toml") } catch let error as ConfigError {
            #expect(error.file == "/nonexistent/cluster.toml")
        } catch { Issue.record("unexpected \(error)") }
    }
}
