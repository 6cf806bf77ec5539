import Foundation
import Shared
import TOMLKit

// The one configuration of a cerm run. Each section mirrors a table of `cluster.toml`, where
// every key is documented with its meaning and the reason for its default. The defaults here
// are the embedded default run's (a small model trained on 2 cores), so a missing key means the
// same thing as the repository's `cluster.toml`; the CE-RM paper's values for a 4B model are
// named in the comments there.

/// `[run]`: identity, seed, length and checkpoint cadence of a run.
public struct RunConfig: ConfigSection {
    public static let sectionName = "run"
    public var name = "default"
    public var seed: UInt64 = 1234
    public var checkpointDir = "Checkpoints"
    public var steps = 40
    public var saveEvery = 10
    public var keepLast = 3
    public init() {}
    public mutating func visit<V: ConfigVisitor>(_ v: inout V) throws {
        try v.string("name", &name, nonEmpty: true)
        try v.uint64("seed", &seed)
        try v.string("checkpoint_dir", &checkpointDir, nonEmpty: true)
        try v.int("steps", &steps, 0...10_000_000)
        try v.int("save_every", &saveEvery, 1...10_000_000)
        try v.int("keep_last", &keepLast, 1...1_000_000)
    }
    /// `Checkpoints/<run>`: checkpoints, `train.log` and `metrics.jsonl` of this run.
    public var runDirectory: String { (checkpointDir as NSString).appendingPathComponent(name) }
}

/// When a step's rollouts are sampled, and with which policy version (docs/PROTOCOL.md, "Modes").
public enum RolloutMode: String, CaseIterable, Sendable {
    /// Step k samples with the version after step k − 1, while the learner waits: bitwise
    /// reproducible.
    case sync
    /// Step k + 1 samples during step k's update with whichever version is newest when its tasks
    /// go out, results up to `max_staleness` versions old accepted: not bitwise reproducible.
    case async
    /// Step k samples with exactly the version after step k − 1 − `max_staleness` (≥ 1), waiting
    /// for it when it is not yet published: rollouts overlap updates as in async, and the run is
    /// bitwise reproducible as in sync.
    case fixedLag = "fixed-lag"
}

/// `[cluster]`: where the coordinator listens, workers, liveness and security.
public struct ClusterConfig: ConfigSection {
    public static let sectionName = "cluster"
    public var endpoint = "tcp://127.0.0.1:5557"
    public var workers = 2
    public var workerThreads = 1
    public var pairsPerTask = 1
    public var heartbeatInterval = 1.0
    public var heartbeatTimeout = 10.0
    public var taskTimeout = 600.0
    public var mode = RolloutMode.sync
    public var maxStaleness = 1
    public var weightChunkBytes = 1 << 20
    public var maxMessageBytes = 64 << 20
    public var curveSecretKeyFile = ""
    public var authorizedKeysFile = ""
    public var workerSecretKeyFile = ""
    public var serverPublicKeyFile = ""
    public var allowInsecure = false
    public init() {}
    public mutating func visit<V: ConfigVisitor>(_ v: inout V) throws {
        try v.string("endpoint", &endpoint, nonEmpty: true)
        try v.int("workers", &workers, 0...1024)
        try v.int("worker_threads", &workerThreads, 1...256)
        try v.int("pairs_per_task", &pairsPerTask, 1...4096)
        try v.double("heartbeat_interval", &heartbeatInterval, 0.01...3600)
        try v.double("heartbeat_timeout", &heartbeatTimeout, 0.05...86400)
        try v.double("task_timeout", &taskTimeout, 0...86400)
        try v.choice("mode", &mode)
        try v.int("max_staleness", &maxStaleness, 0...1000)
        try v.int("weight_chunk_bytes", &weightChunkBytes, 1024...(256 << 20))
        try v.int("max_message_bytes", &maxMessageBytes, 4096...(1 << 31))
        try v.string("curve_secret_key_file", &curveSecretKeyFile, nonEmpty: false)
        try v.string("authorized_keys_file", &authorizedKeysFile, nonEmpty: false)
        try v.string("worker_secret_key_file", &workerSecretKeyFile, nonEmpty: false)
        try v.string("server_public_key_file", &serverPublicKeyFile, nonEmpty: false)
        try v.bool("allow_insecure", &allowInsecure)
    }
}

extension ClusterConfig {
    /// Bytes a WEIGHTS_CHUNK message adds to its data (docs/PROTOCOL.md): the 12-byte header,
    /// then version (8), chunk_index (4), chunk_count (4), total_bytes (8), checksum (8) and the
    /// data's length (4). `max_message_bytes` must leave room for a full chunk plus this, or no
    /// worker can ever receive the weights; the codec's tests check it against an encoded chunk.
    public static let weightsChunkOverhead = 12 + 36

    /// Why `endpoint` is not an address the coordinator can bind and workers can connect to,
    /// or nil when it is: `tcp://HOST:PORT` (HOST a name, an IPv4 address, `[IPv6]` or `*`;
    /// PORT 1–65535, or `*` for a port the system picks), `ipc://PATH` or `inproc://NAME`.
    /// Checked with the config so that a typo is reported with its file and line instead of
    /// surfacing as a bind or security error when the coordinator starts.
    public static func endpointProblem(_ endpoint: String) -> String? {
        let expected = "expected tcp://HOST:PORT, ipc://PATH or inproc://NAME, got \(JSONWriter.quote(endpoint))"
        for scheme in ["ipc://", "inproc://"] where endpoint.hasPrefix(scheme) {
            return endpoint.count > scheme.count ? nil : expected
        }
        guard endpoint.hasPrefix("tcp://") else { return expected }
        let address = endpoint.dropFirst("tcp://".count)
        let host: Substring
        let port: Substring
        if address.hasPrefix("[") {
            // IPv6 literal: the colons inside the brackets are not the port separator.
            guard let close = address.firstIndex(of: "]"), address[address.index(after: close)...].hasPrefix(":") else {
                return "missing port in \(JSONWriter.quote(endpoint)) (expected tcp://[ADDRESS]:PORT)"
            }
            host = address[address.index(after: address.startIndex)..<close]
            port = address[address.index(close, offsetBy: 2)...]
        } else {
            guard let colon = address.lastIndex(of: ":") else {
                return "missing port in \(JSONWriter.quote(endpoint)) (expected tcp://HOST:PORT)"
            }
            host = address[..<colon]
            port = address[address.index(after: colon)...]
            if host.contains(":") { return "an IPv6 host must be in brackets, got \(JSONWriter.quote(endpoint)) (expected tcp://[ADDRESS]:PORT)" }
        }
        if host.isEmpty { return "missing host in \(JSONWriter.quote(endpoint)) (expected tcp://HOST:PORT)" }
        if host.contains(where: { $0.isWhitespace || $0 == "/" }) {
            return "invalid host \(JSONWriter.quote(String(host))) in \(JSONWriter.quote(endpoint))"
        }
        if port == "*" { return nil }
        guard !port.isEmpty, port.allSatisfy(\.isASCII), port.allSatisfy(\.isNumber), let number = Int(port), (1...65535).contains(number) else {
            return "port must be 1...65535 or *, got \(JSONWriter.quote(String(port))) in \(JSONWriter.quote(endpoint))"
        }
        return nil
    }
}

/// How a pretrained model's prompts are rendered (`model.chat_template`): detected from the
/// model's own template text, or a named one.
public enum ChatTemplateSetting: String, CaseIterable, Sendable { case auto, chatml, llama3, none }

/// `[model]`: the transformer's architecture (Llama / Qwen2 / Qwen3 family), cerm's own model
/// initialised from `run.seed`, or a pretrained model (`source`) whose own config gives the
/// architecture (EngineConfiguration's `RunModel` resolves it).
public struct ModelSection: ConfigSection {
    public static let sectionName = "model"
    /// A GGUF file or Hugging Face model directory; empty: cerm's own model with the byte tokenizer.
    public var source = ""
    public var chatTemplate = ChatTemplateSetting.auto
    public var family = ModelFamily.qwen3
    public var hiddenSize = 128
    public var layers = 4
    public var heads = 4
    public var kvHeads = 2
    public var headDim = 0
    public var ffnSize = 384
    public var vocabSize = 264
    public var maxSeqLen = 512
    public var ropeTheta = 10000.0
    public var rmsNormEps = 1e-6
    public var qkNorm = true
    public var qkvBias = false
    public var tieEmbeddings = true
    public var initStd = 0.02
    /// The keys the config file sets (empty for a config built in code): with a `source`, an
    /// architecture key the file sets must agree with the model's. Where a value came from is
    /// not part of the configuration's value, so it is left out of `==`.
    public var declaredKeys = DeclaredKeys()
    public init() {}
    public mutating func visit<V: ConfigVisitor>(_ v: inout V) throws {
        try v.string("source", &source, nonEmpty: false)
        try v.choice("chat_template", &chatTemplate)
        try v.choice("family", &family)
        try v.int("hidden_size", &hiddenSize, 1...65536)
        try v.int("layers", &layers, 1...512)
        try v.int("heads", &heads, 1...1024)
        try v.int("kv_heads", &kvHeads, 1...1024)
        try v.int("head_dim", &headDim, 0...4096)
        try v.int("ffn_size", &ffnSize, 1...1_000_000)
        try v.int("vocab_size", &vocabSize, 1...10_000_000)
        try v.int("max_seq_len", &maxSeqLen, 8...1_000_000)
        try v.double("rope_theta", &ropeTheta, 1...1e12)
        try v.double("rms_norm_eps", &rmsNormEps, 1e-12...1e-1)
        try v.bool("qk_norm", &qkNorm)
        try v.bool("qkv_bias", &qkvBias)
        try v.bool("tie_embeddings", &tieEmbeddings)
        try v.double("init_std", &initStd, 1e-6...1)
    }
    /// Per-head dimension: `head_dim`, or `hidden_size / heads` when it is 0.
    public var effectiveHeadDim: Int { headDim > 0 ? headDim : hiddenSize / heads }

    /// Whether the model is a pretrained one (`source` set) rather than cerm's own.
    public var isPretrained: Bool { !source.isEmpty }
}

/// The keys of a section its config file sets, with the file and their lines for errors; equal
/// to any other such set (see ``ModelSection/declaredKeys``).
public struct DeclaredKeys: Sendable, Equatable {
    /// The config file (empty for a config built in code).
    public var file = ""
    /// Key (without the section) → its 1-based line, when known.
    public var lines: [String: Int?] = [:]
    public init() {}
    init(file: String, section: String, keys: [String], locator: TOMLLineLocator) {
        self.file = file
        for key in keys { lines[key] = locator.line(of: "\(section).\(key)") }
    }
    public func contains(_ key: String) -> Bool { lines[key] != nil }
    /// An error at `key` of the section (dotted `key` given in full, e.g. `model.layers`).
    public func error(_ dottedKey: String, _ message: String) -> ConfigError {
        let key = dottedKey.split(separator: ".", maxSplits: 1).last.map(String.init) ?? dottedKey
        return ConfigError(file: file.isEmpty ? "<config>" : file, line: lines[key] ?? nil, key: dottedKey, message: message)
    }
    public static func == (_: DeclaredKeys, _: DeclaredKeys) -> Bool { true }
}

/// Prompt format the model reads and writes.
public enum PromptFormatName: String, CaseIterable, Sendable { case compact, cerm }

/// `[rollout]`: the two-stage rollout and its sampling.
public struct RolloutConfig: ConfigSection {
    public static let sectionName = "rollout"
    public var format = PromptFormatName.compact
    public var nc = 4
    public var ne = 4
    public var criteriaMaxTokens = 96
    public var evaluationMaxTokens = 192
    public var temperature = 1.0
    public var topP = 1.0
    public init() {}
    public mutating func visit<V: ConfigVisitor>(_ v: inout V) throws {
        try v.choice("format", &format)
        try v.int("nc", &nc, 1...256)
        try v.int("ne", &ne, 1...256)
        try v.int("criteria_max_tokens", &criteriaMaxTokens, 1...65536)
        try v.int("evaluation_max_tokens", &evaluationMaxTokens, 1...65536)
        try v.double("temperature", &temperature, 0...10)
        try v.double("top_p", &topP, 0.000001...1)
    }
}

/// Reward methods of the seed papers.
public enum RewardMode: String, CaseIterable, Sendable { case cerm, par, pairwise }
/// How evaluation trajectories are grouped for advantage normalisation.
public enum EvaluationGrouping: String, CaseIterable, Sendable {
    /// All nc·ne evaluations of one (pair, response) form a group.
    case pairResponse = "pair-response"
    /// The ne evaluations of one (pair, criteria set, response) form a group.
    case pairCriteriaResponse = "pair-criteria-response"
}
/// PaTaRM's margin function f.
public enum ParMarginFunction: String, CaseIterable, Sendable { case constant, graded }

/// `[reward]`: how trajectories are rewarded and grouped.
public struct RewardConfig: ConfigSection {
    public static let sectionName = "reward"
    public var mode = RewardMode.cerm
    public var evaluationGroups = EvaluationGrouping.pairResponse
    public var parF = ParMarginFunction.graded
    public var skipUniformGroups = false
    public init() {}
    public mutating func visit<V: ConfigVisitor>(_ v: inout V) throws {
        try v.choice("mode", &mode)
        try v.choice("evaluation_groups", &evaluationGroups)
        try v.choice("par_f", &parF)
        try v.bool("skip_uniform_groups", &skipUniformGroups)
    }
}

/// KL estimators between policy and reference, per token.
public enum KLEstimator: String, CaseIterable, Sendable { case k1, k2, k3 }
/// How per-token losses are averaged.
public enum LossAggregation: String, CaseIterable, Sendable {
    case tokenMean = "token-mean"
    case seqMeanTokenMean = "seq-mean-token-mean"
}

/// `[grpo]`: the RL update.
public struct GRPOConfig: ConfigSection {
    public static let sectionName = "grpo"
    public var learningRate = 5e-5
    public var pairsPerBatch = 8
    public var miniBatches = 4
    public var clipLow = 0.2
    public var clipHigh = 0.2
    public var klCoef = 1e-3
    public var klEstimator = KLEstimator.k3
    public var aggregation = LossAggregation.tokenMean
    public var scaleByStd = true
    public var advantageEps = 1e-6
    public var dropZeroStdGroups = false
    public var maxGradNorm = 1.0
    public var weightDecay = 0.0
    public var adamBeta1 = 0.9
    public var adamBeta2 = 0.999
    public var adamEps = 1e-8
    public var warmupSteps = 0
    /// Each mini-batch's data shards are computed by the workers (GRADIENT_TASK,
    /// docs/PROTOCOL.md) and summed by the coordinator in shard order: the same weights, bit for
    /// bit, as the coordinator's own update, which stays the default.
    public var distributedUpdate = false
    /// Data shards each mini-batch is split into: the shards' gradients are summed in shard
    /// order, so this count, not the thread or worker count, fixes the update's bits. The
    /// coordinator computes its shards on this many model replicas (one gradient buffer each);
    /// a distributed update hands each shard to a worker, so at most this many workers train at once.
    public var gradientShards = 2
    public init() {}
    public mutating func visit<V: ConfigVisitor>(_ v: inout V) throws {
        try v.double("learning_rate", &learningRate, 0...1)
        try v.int("pairs_per_batch", &pairsPerBatch, 1...1_000_000)
        try v.int("mini_batches", &miniBatches, 1...4096)
        try v.double("clip_low", &clipLow, 0...1)
        try v.double("clip_high", &clipHigh, 0...10)
        try v.double("kl_coef", &klCoef, 0...100)
        try v.choice("kl_estimator", &klEstimator)
        try v.choice("aggregation", &aggregation)
        try v.bool("scale_by_std", &scaleByStd)
        try v.double("advantage_eps", &advantageEps, 0...1)
        try v.bool("drop_zero_std_groups", &dropZeroStdGroups)
        try v.double("max_grad_norm", &maxGradNorm, 0...1e6)
        try v.double("weight_decay", &weightDecay, 0...10)
        try v.double("adam_beta1", &adamBeta1, 0...0.999999)
        try v.double("adam_beta2", &adamBeta2, 0...0.99999999)
        try v.double("adam_eps", &adamEps, 1e-20...1)
        try v.int("warmup_steps", &warmupSteps, 0...10_000_000)
        try v.bool("distributed_update", &distributedUpdate)
        try v.int("gradient_shards", &gradientShards, 1...256)
    }
}

/// Learning-rate schedules.
public enum LRSchedule: String, CaseIterable, Sendable {
    case constant
    case warmupCosine = "warmup-cosine"
}

/// How cold-start SFT trains the criteria turn of a trace.
public enum CriteriaTurnTraining: String, CaseIterable, Sendable {
    /// As a sequence of its own (criteria prompt → criteria), once per distinct query.
    case separate
    /// As the scored criteria part of every evaluation sequence, which contains the criteria
    /// turn as its prefix: the same conditional, no separate sequence to pay for, and the
    /// criteria trained once per response instead of once per query.
    case inEvaluation = "in-evaluation"
}

/// `[sft]`: cold-start supervised fine-tuning on teacher traces.
public struct SFTConfig: ConfigSection {
    public static let sectionName = "sft"
    public var learningRate = 2e-3
    public var batchSize = 16
    public var epochs = 2
    public var schedule = LRSchedule.warmupCosine
    public var warmupSteps = 30
    public var weightDecay = 0.01
    public var maxGradNorm = 1.0
    public var criteriaTurn = CriteriaTurnTraining.inEvaluation
    public var output = "Checkpoints/sft/model.h5"
    public init() {}
    public mutating func visit<V: ConfigVisitor>(_ v: inout V) throws {
        try v.double("learning_rate", &learningRate, 0...1)
        try v.int("batch_size", &batchSize, 1...1_000_000)
        try v.int("epochs", &epochs, 1...10_000)
        try v.choice("schedule", &schedule)
        try v.int("warmup_steps", &warmupSteps, 0...10_000_000)
        try v.double("weight_decay", &weightDecay, 0...10)
        try v.double("max_grad_norm", &maxGradNorm, 0...1e6)
        try v.choice("criteria_turn", &criteriaTurn)
        try v.string("output", &output, nonEmpty: true)
    }
}

/// `[curation]`: CE-RM's data curation between SFT and RL (docs/METHOD.md, "Curation").
public struct CurationConfig: ConfigSection {
    public static let sectionName = "curation"
    public var enabled = false
    public var candidates = 800
    public var samples = 4
    public var maxAccuracy = 0.6
    public var minAccuracy = 0.0
    public var requireDisagreement = false
    public var output = "Checkpoints/sft/curated.jsonl"
    public init() {}
    public mutating func visit<V: ConfigVisitor>(_ v: inout V) throws {
        try v.bool("enabled", &enabled)
        try v.int("candidates", &candidates, 1...100_000_000)
        try v.int("samples", &samples, 1...64)
        try v.double("max_accuracy", &maxAccuracy, 0...1)
        try v.double("min_accuracy", &minAccuracy, 0...1)
        try v.bool("require_disagreement", &requireDisagreement)
        try v.string("output", &output, nonEmpty: true)
    }
}

/// Preference file formats the loaders read.
public enum DataFormat: String, CaseIterable, Sendable { case auto, canonical, skywork, rewardbench, bon }

/// `[data]`: where preference pairs come from.
public struct DataConfig: ConfigSection {
    public static let sectionName = "data"
    public var dir = "data/synth"
    public var train = "data/synth/train.jsonl"
    public var eval = "data/synth/eval.jsonl"
    public var bestOfN = "data/synth/bo4.jsonl"
    /// Pairs for choosing settings (`cerm eval --validation`); empty for none.
    public var validation = ""
    public var format = DataFormat.auto
    public var skipBad = false
    public var synthTrain = 16000
    public var synthEval = 200
    public var synthValidation = 200
    public var synthSeed: UInt64 = 7
    public var teacherErrorRate = 0.2
    public init() {}
    public mutating func visit<V: ConfigVisitor>(_ v: inout V) throws {
        try v.string("dir", &dir, nonEmpty: true)
        try v.string("train", &train, nonEmpty: true)
        try v.string("eval", &eval, nonEmpty: true)
        try v.string("best_of_n", &bestOfN, nonEmpty: false)
        try v.string("validation", &validation, nonEmpty: false)
        try v.choice("format", &format)
        try v.bool("skip_bad", &skipBad)
        try v.int("synth_train", &synthTrain, 0...100_000_000)
        try v.int("synth_eval", &synthEval, 0...100_000_000)
        try v.int("synth_validation", &synthValidation, 1...100_000_000)
        try v.uint64("synth_seed", &synthSeed)
        try v.double("teacher_error_rate", &teacherErrorRate, 0...1)
    }
}

/// Whether evaluation generates one criteria set per query or one per response.
public enum CriteriaMode: String, CaseIterable, Sendable {
    /// One criteria set per query, written before any response is seen; every response is
    /// evaluated under it (CE-RM's method).
    case unified
    /// One criteria set per response from the same query-only prompt: under greedy decoding it
    /// equals the unified set by construction, so it differs only when criteria are sampled.
    case perResponse = "per-response"
    /// One criteria set per response written with that response in view (the query and the
    /// response in the criteria prompt, as pointwise GRMs such as DeepSeek-GRM write their
    /// principles); the response is then evaluated under its own criteria. The alternative
    /// CE-RM argues against.
    case responseConditioned = "response-conditioned"
}

/// `[eval]`: how `cerm eval` scores responses.
public struct EvalConfig: ConfigSection {
    public static let sectionName = "eval"
    public var k = 1
    public var criteria = CriteriaMode.unified
    public var temperature = 0.0
    public init() {}
    public mutating func visit<V: ConfigVisitor>(_ v: inout V) throws {
        try v.int("k", &k, 1...64)
        try v.choice("criteria", &criteria)
        try v.double("temperature", &temperature, 0...10)
    }
}

/// The whole configuration of a run, as loaded from `cluster.toml`.
public struct Config: Sendable, Equatable {
    public var run = RunConfig()
    public var cluster = ClusterConfig()
    public var model = ModelSection()
    public var rollout = RolloutConfig()
    public var reward = RewardConfig()
    public var grpo = GRPOConfig()
    public var sft = SFTConfig()
    public var curation = CurationConfig()
    public var data = DataConfig()
    public var eval = EvalConfig()

    public init() {}

    /// Section names in file order.
    public static let sectionNames = ["run", "cluster", "model", "rollout", "reward", "grpo", "sft", "curation", "data", "eval"]

    /// Visits each section (decode, render and key listing share this one walk).
    mutating func visitSections(_ body: (String, inout any ConfigSectionBox) throws -> Void) rethrows {
        var boxes: [any ConfigSectionBox] = [
            SectionBox(run), SectionBox(cluster), SectionBox(model), SectionBox(rollout), SectionBox(reward),
            SectionBox(grpo), SectionBox(sft), SectionBox(curation), SectionBox(data), SectionBox(eval),
        ]
        for i in boxes.indices { try body(Self.sectionNames[i], &boxes[i]) }
        run = (boxes[0] as! SectionBox<RunConfig>).value
        cluster = (boxes[1] as! SectionBox<ClusterConfig>).value
        model = (boxes[2] as! SectionBox<ModelSection>).value
        rollout = (boxes[3] as! SectionBox<RolloutConfig>).value
        reward = (boxes[4] as! SectionBox<RewardConfig>).value
        grpo = (boxes[5] as! SectionBox<GRPOConfig>).value
        sft = (boxes[6] as! SectionBox<SFTConfig>).value
        curation = (boxes[7] as! SectionBox<CurationConfig>).value
        data = (boxes[8] as! SectionBox<DataConfig>).value
        eval = (boxes[9] as! SectionBox<EvalConfig>).value
    }

    /// Loads and validates a config file.
    public static func load(path: String) throws -> Config {
        let bytes: Data
        if let problem = directoryInsteadOfFile(path) { throw ConfigError(file: path, line: nil, key: "", message: problem) }
        do {
            bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ConfigError(file: path, line: nil, key: "", message: "cannot read file (\(error.localizedDescription))")
        }
        guard let text = String(data: bytes, encoding: .utf8) else {
            throw ConfigError(file: path, line: firstNonUTF8Line(bytes), key: "", message: "not UTF-8 text (TOML files are UTF-8)")
        }
        return try parse(text, file: path)
    }

    /// The 1-based line of the first byte sequence that is not valid UTF-8 (nil if all are).
    static func firstNonUTF8Line(_ bytes: Data) -> Int? {
        var line = 1
        var start = bytes.startIndex
        while start < bytes.endIndex {
            let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.endIndex
            if String(data: bytes[start..<end], encoding: .utf8) == nil { return line }
            line += 1
            start = end < bytes.endIndex ? bytes.index(after: end) : end
        }
        return nil
    }

    /// Parses and validates config text; `file` names it in errors.
    public static func parse(_ text: String, file: String = "<string>") throws -> Config {
        // TOMLKit hands strings over as C strings, so `"wa\u0000x"` would silently become `wa`.
        for (index, line) in text.tomlLines.enumerated()
        where line.contains("\\u0000") || line.contains("\\U00000000") || line.contains("\u{0}") {
            throw ConfigError(file: file, line: index + 1, key: "", message: "a NUL character (\\u0000) cannot be part of a config value")
        }
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigError(file: file, line: error.source.begin.line, key: "", message: "TOML syntax error: \(error.description)")
        }
        let locator = TOMLLineLocator(text: text)
        for key in table.keys where !sectionNames.contains(key) {
            let isTable = table[key]?.table != nil
            throw ConfigError(file: file, line: locator.line(of: key), key: key,
                              message: isTable ? "unknown section" : "unknown key at top level (keys belong in a [section])")
        }
        var config = Config()
        try config.visitSections { name, box in
            let sub: TOMLTable?
            if let value = table[name] {
                guard let t = value.table else {
                    throw ConfigError(file: file, line: locator.line(of: name), key: name, message: "expected a [\(name)] table")
                }
                sub = t
            } else {
                sub = nil
            }
            var decoder = TOMLDecodingVisitor(file: file, section: name, table: sub, locator: locator)
            try box.visit(&decoder)
            if let sub {
                for key in sub.keys.sorted() where !decoder.seen.contains(key) {
                    throw decoder.error(key, "unknown key")
                }
            }
        }
        config.model.declaredKeys = DeclaredKeys(file: file, section: "model", keys: (table["model"]?.table?.keys).map(Array.init) ?? [],
                                                 locator: locator)
        try config.validate(file: file, locator: locator)
        return config
    }

    /// Cross-key checks that a single key's range cannot express.
    func validate(file: String, locator: TOMLLineLocator) throws {
        func fail(_ key: String, _ message: String) -> ConfigError {
            ConfigError(file: file, line: locator.line(of: key), key: key, message: message)
        }
        if model.heads % model.kvHeads != 0 {
            throw fail("model.kv_heads", "must divide model.heads (\(model.heads)), got \(model.kvHeads)")
        }
        if model.headDim == 0 && model.hiddenSize % model.heads != 0 {
            throw fail("model.hidden_size", "must be a multiple of model.heads (\(model.heads)) when head_dim is 0, got \(model.hiddenSize)")
        }
        if model.effectiveHeadDim % 2 != 0 {
            throw fail("model.head_dim", "the head dimension must be even for RoPE, got \(model.effectiveHeadDim)")
        }
        // Every prompt carries special tokens (ids up to 263): a smaller embedding table passes
        // here but fails at the first SFT or RL sequence.
        if !model.isPretrained && model.vocabSize < ByteTokenizer.vocabularySize {
            throw fail("model.vocab_size", "must be at least \(ByteTokenizer.vocabularySize) (the byte tokenizer's 256 bytes and "
                       + "\(ByteTokenizer.Special.allCases.count) special tokens), got \(model.vocabSize)")
        }
        // The run's directory is `checkpoint_dir/name`: a name with a slash would write elsewhere.
        if run.name.contains("/") || run.name == "." || run.name == ".." {
            throw fail("run.name", "must be one directory name (no \"/\", not \".\" or \"..\"), got \(JSONWriter.quote(run.name))")
        }
        if let problem = ClusterConfig.endpointProblem(cluster.endpoint) {
            throw fail("cluster.endpoint", problem)
        }
        // The coordinator refuses to bind such an endpoint in plain text, and no worker can use
        // CURVE without keys: refused here so that every command (and `cerm config check`) says
        // so at once, not the coordinator after loading data and model. One side's key files
        // suffice, since a config shared by coordinator and workers may set only one side's;
        // each command checks its own side's files when it starts.
        let keyFiles = [cluster.curveSecretKeyFile, cluster.authorizedKeysFile, cluster.workerSecretKeyFile, cluster.serverPublicKeyFile]
        if !cluster.allowInsecure, !EndpointSecurity.isLocal(cluster.endpoint), keyFiles.allSatisfy(\.isEmpty) {
            throw fail("cluster.endpoint", "\(JSONWriter.quote(cluster.endpoint)) is not a loopback, ipc or inproc endpoint and no CURVE "
                       + "key file is set: set cluster.curve_secret_key_file and cluster.authorized_keys_file (coordinator) or "
                       + "cluster.worker_secret_key_file and cluster.server_public_key_file (workers) (see `cerm keygen`), "
                       + "use a loopback address, or set cluster.allow_insecure = true")
        }
        // Every weight chunk but the last is weight_chunk_bytes long: a smaller message limit
        // makes the coordinator unable to send the weights, and the run waits for ever.
        let chunkMessage = cluster.weightChunkBytes + ClusterConfig.weightsChunkOverhead
        if cluster.maxMessageBytes < chunkMessage {
            let overhead = "\(ClusterConfig.weightsChunkOverhead) (the WEIGHTS_CHUNK header and fields)"
            // Blame the key the file sets: max_message_bytes, unless only the chunk size is set.
            if locator.line(of: "cluster.max_message_bytes") == nil && locator.line(of: "cluster.weight_chunk_bytes") != nil {
                throw fail("cluster.weight_chunk_bytes", "plus \(overhead) must not exceed cluster.max_message_bytes "
                           + "(\(cluster.maxMessageBytes)), or no worker can receive the weights; got \(cluster.weightChunkBytes)")
            }
            throw fail("cluster.max_message_bytes", "must be at least cluster.weight_chunk_bytes (\(cluster.weightChunkBytes)) + \(overhead) "
                       + "= \(chunkMessage), or no worker can receive the weights; got \(cluster.maxMessageBytes)")
        }
        // Each version of the lag is one more copy of the weights in the learner, the
        // coordinator's weight store and every checkpoint.
        if cluster.mode == .fixedLag && !(1...16).contains(cluster.maxStaleness) {
            throw fail("cluster.max_staleness", "is the lag of cluster.mode = \"fixed-lag\" and must be 1 to 16, got \(cluster.maxStaleness)")
        }
        if cluster.heartbeatTimeout <= cluster.heartbeatInterval {
            throw fail("cluster.heartbeat_timeout", "must exceed cluster.heartbeat_interval (\(cluster.heartbeatInterval)), got \(cluster.heartbeatTimeout)")
        }
        if grpo.miniBatches > grpo.pairsPerBatch {
            throw fail("grpo.mini_batches", "cannot exceed grpo.pairs_per_batch (\(grpo.pairsPerBatch)), got \(grpo.miniBatches)")
        }
        if grpo.clipLow >= 1 {
            throw fail("grpo.clip_low", "must be below 1 (the ratio's lower bound is 1 - clip_low), got \(grpo.clipLow)")
        }
        if curation.minAccuracy > curation.maxAccuracy {
            throw fail("curation.min_accuracy", "cannot exceed curation.max_accuracy (\(curation.maxAccuracy)), got \(curation.minAccuracy)")
        }
        let keys = [cluster.curveSecretKeyFile, cluster.authorizedKeysFile]
        if keys.contains(where: { !$0.isEmpty }) && keys.contains(where: { $0.isEmpty }) {
            throw fail("cluster.authorized_keys_file", "curve_secret_key_file and authorized_keys_file are set together or not at all")
        }
        // Half a worker key pair would connect in plain text without a word.
        if cluster.workerSecretKeyFile.isEmpty != cluster.serverPublicKeyFile.isEmpty {
            throw fail(cluster.workerSecretKeyFile.isEmpty ? "cluster.worker_secret_key_file" : "cluster.server_public_key_file",
                       "worker_secret_key_file and server_public_key_file are set together or not at all")
        }
    }

    /// The pairs RL trains on: the curated file when `curation.enabled`, else `data.train`.
    public var rlTrainPath: String { curation.enabled ? curation.output : data.train }

    /// The effective configuration as TOML text: every key, defaults filled in. Parsing it
    /// gives back an equal `Config`.
    public func renderTOML() -> String {
        renderedSections().map { (["[\($0.name)]"] + $0.lines).joined(separator: "\n") }.joined(separator: "\n\n") + "\n"
    }

    /// Each section's name and `key = value` lines, in file order.
    private func renderedSections() -> [(name: String, lines: [String])] {
        var copy = self
        var sections: [(name: String, lines: [String])] = []
        copy.visitSections { name, box in
            var renderer = TOMLRenderingVisitor()
            try? box.visit(&renderer)
            sections.append((name, renderer.lines))
        }
        return sections
    }

    /// The keys whose effective values differ from `other`'s, in file order, with both values
    /// as `cerm config check` renders them (`5e-05`, `"data/x.jsonl"`).
    public func changes(to other: Config) -> [ConfigChange] {
        func values(_ config: Config) -> [(key: String, value: String)] {
            config.renderedSections().flatMap { section in
                section.lines.map { line in
                    // Rendered lines are `key = value`; keys contain no " = ".
                    let parts = line.split(separator: " = ", maxSplits: 1)
                    return ("\(section.name).\(parts[0])", String(parts[1]))
                }
            }
        }
        let theirs = Dictionary(values(other).map { ($0.key, $0.value) }, uniquingKeysWith: { first, _ in first })
        return values(self).compactMap { key, value in
            guard let new = theirs[key], new != value else { return nil }
            return ConfigChange(key: key, old: value, new: new)
        }
    }

    /// Every key as `section.key`, in file order.
    public static func allKeys() -> [String] {
        var config = Config()
        var keys: [String] = []
        config.visitSections { name, box in
            var lister = KeyListingVisitor()
            try? box.visit(&lister)
            keys.append(contentsOf: lister.keys.map { "\(name).\($0)" })
        }
        return keys
    }

    /// A stable 64-bit hash of what a worker's behaviour depends on: the `[model]`, `[rollout]`
    /// and `[reward]` sections (FNV-1a of their rendered TOML). Workers compare it with the
    /// coordinator's at handshake. Run length, paths, cluster and learner settings are left out
    /// on purpose: `--steps` on the coordinator or a worker's own checkpoint directory must not
    /// refuse an otherwise identical worker.
    public var hash: UInt64 {
        let text = renderedSections().filter { ["model", "rollout", "reward"].contains($0.name) }
            .map { section in
                // A pretrained model's architecture is the source's own: the coordinator sends it to
                // workers, which do not read the source, so only what names the model counts.
                let lines = section.name == "model" && model.isPretrained
                    ? section.lines.filter { $0.hasPrefix("source = ") || $0.hasPrefix("chat_template = ") } : section.lines
                return "[\(section.name)]\n" + lines.joined(separator: "\n") + "\n"
            }.joined()
        return Checksum.fnv1a64(Array(text.utf8))
    }
}

/// One key whose value differs between two configurations (``Config/changes(to:)``).
public struct ConfigChange: Sendable, Equatable {
    /// Dotted key, e.g. `grpo.learning_rate`.
    public var key: String
    /// The value in the first configuration, as rendered in TOML.
    public var old: String
    /// The value in the second one.
    public var new: String

    public init(key: String, old: String, new: String) {
        self.key = key
        self.old = old
        self.new = new
    }
}

extension Array where Element == ConfigChange {
    /// `model.layers: 4 (weights) ≠ 2 (config); …`: each change with its old value labelled
    /// `label` (where it came from) against the config's, for errors refusing an architecture.
    public func mismatches(labelled label: String) -> String {
        map { "\($0.key): \($0.old) (\(label)) ≠ \($0.new) (config)" }.joined(separator: "; ")
    }
}

/// Type-erased section so that one loop can walk sections of different types.
protocol ConfigSectionBox {
    mutating func visit<V: ConfigVisitor>(_ visitor: inout V) throws
}

struct SectionBox<S: ConfigSection>: ConfigSectionBox {
    var value: S
    init(_ value: S) { self.value = value }
    mutating func visit<V: ConfigVisitor>(_ visitor: inout V) throws { try value.visit(&visitor) }
}
