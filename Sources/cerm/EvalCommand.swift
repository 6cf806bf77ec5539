import ArgumentParser
import Configuration
import Coordinator
import Datasets
import Engine
import EngineConfiguration
import Foundation
import Method
import Runtime
import Shared

extension CriteriaMode: ExpressibleByArgument {}

/// `cerm eval`: held-out pairwise and Best-of-N accuracy of a judge (a trained model, a random
/// model or the programmatic teacher) through the same two-stage scoring path.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Held-out pairwise and Best-of-N accuracy of a model (SFT weights or RL checkpoint), a random model or the teacher.",
        discussion: """
        Pointwise CE-RM evaluation: per query K criteria sets (greedy when K = 1, sampled at \
        temperature 1 when K > 1), every response evaluated under each; a response's score is \
        the mean of its valid overall scores. A response without a valid score loses to one \
        with a score; two without tie. With --teacher, items whose query the programmatic \
        teacher does not know (any query not from the synthetic task) are skipped and counted \
        as "unsupported queries (skipped)", as `cerm data teacher` does. Without --data, when \
        none of the config's data files (data.train, data.eval, data.best_of_n) exists, the \
        synthetic task (data.synth_train, data.synth_eval, data.synth_seed) is written into \
        data.dir first, as `cerm sft` does, and each file written is logged to stderr as \
        "generated PATH"; when only some exist it stops naming the missing ones, since an \
        existing data file is never overwritten.
        """)

    @Option(help: "Weights: an SFT weights file (sft.output) or an RL checkpoint (step_<N>.h5).")
    var checkpoint: String?
    @Flag(help: "Evaluate the config's model untrained: a random init of [model] (seed run.seed), or model.source as it is (zero-shot).")
    var random = false
    @Flag(help: "Evaluate the programmatic teacher (data.teacher_error_rate, seed run.seed).")
    var teacher = false
    @Option(help: "Pairs and/or Best-of-N items (default: data.eval of the config, generated into data.dir when no data file exists).")
    var data: String?
    @Option(help: "An additional Best-of-N file (default: data.best_of_n when --data is not given; '' for none).")
    var bon: String?
    @Flag(help: "Evaluate the validation pairs (data.validation) instead of the held-out files: the split for choosing settings.")
    var validation = false
    @Option(help: "The run configuration (defaults when omitted).")
    var config: String?
    @Option(help: "Criteria samples per query (default eval.k).")
    var k: Int?
    @Option(help: "unified, per-response or response-conditioned (default eval.criteria).")
    var criteria: CriteriaMode?
    @Option(help: "Decoding temperature, 0 = greedy (default eval.temperature).")
    var temperature: Double?
    @Option(help: "Evaluate only the first N items of each file.")
    var limit: Int?
    @Option(help: "Evaluation threads (one generator each).")
    var threads: Int = min(2, ProcessInfo.processInfo.activeProcessorCount)
    @Flag(help: "Print one JSON object with all numbers instead of the table.")
    var json = false
    @Option(help: "Print the generated criteria and evaluations of the first N items to stderr.")
    var show: Int = 0

    func validate() throws {
        let sources = [checkpoint != nil, random, teacher].filter { $0 }.count
        guard sources == 1 else { throw ValidationError("give exactly one of --checkpoint FILE, --random, --teacher") }
        if let k, k < 1 { throw ValidationError("--k must be ≥ 1") }
        if let limit, limit < 1 { throw ValidationError("--limit must be ≥ 1") }
        if let temperature, !(temperature >= 0 && temperature.isFinite) { throw ValidationError("--temperature must be ≥ 0") }
        if validation && data != nil { throw ValidationError("give --validation or --data, not both") }
        guard threads >= 1 else { throw ValidationError("--threads must be ≥ 1") }
    }

    func run() throws {
        do {
            var cfg = try config.map { try Config.load(path: $0) } ?? Config()
            let runModel = try RunModel.resolve(&cfg)
            var evalConfig = cfg.eval
            if let k { evalConfig.k = k }
            if let criteria { evalConfig.criteria = criteria }
            if let temperature { evalConfig.temperature = temperature }
            let judge: JudgeSource
            let label: String
            if let checkpoint {
                // Without --config the weights are judged as stored; with one, they must be its [model].
                let (weights, chat, kind) = try WeightsFile.loadJudge(path: checkpoint, run: config.map { (cfg, $0, runModel) },
                                                                      probe: ChildProcessCheckpointProbe())
                judge = .model(weights, chat: chat)
                label = "\(checkpoint) (\(kind.rawValue))"
            } else if random {
                judge = .model(try runModel.initialWeights(config: cfg), chat: runModel.chat)
                label = runModel.source.map { "\($0) (zero-shot)" } ?? "random model (seed \(cfg.run.seed))"
            } else {
                judge = .teacher(SFTData.teacher(cfg))
                label = "teacher (error rate \(cfg.data.teacherErrorRate), seed \(cfg.run.seed))"
            }
            if validation && cfg.data.validation.isEmpty {
                throw CermError.invalid("\(config ?? "the default config"): data.validation is empty: there is no validation split "
                    + "(set data.validation, e.g. to \"\((cfg.data.dir as NSString).appendingPathComponent("validation.jsonl"))\", to have one generated)")
            }
            var files: [String] = [data ?? (validation ? cfg.data.validation : cfg.data.eval)]
            let bonFile = bon ?? (data == nil && !validation ? cfg.data.bestOfN : "")
            if !bonFile.isEmpty, !files.contains(bonFile) { files.append(bonFile) }
            if data == nil {
                // Writing into the user's data directory must not go unnoticed.
                for path in try SFTData.ensureSynthetic(cfg.data) {
                    FileHandle.standardError.write(Data("generated \(path)\n".utf8))
                }
            }
            let report = try runEvaluation(judge: judge, files: files, config: cfg, eval: evalConfig, limit: limit,
                                           threads: threads, quiet: false, show: show)
            if json {
                print(JSONWriter.object([("judge", JSONWriter.quote(label)), ("files", JSONWriter.stringArray(files)),
                                         ("k", String(evalConfig.k)), ("criteria", JSONWriter.quote(evalConfig.criteria.rawValue)),
                                         ("temperature", String(evalConfig.temperature))] + report.jsonMembers))
            } else {
                print(report.table(title: "\(label) on \(files.joined(separator: " + ")) (k \(evalConfig.k), \(evalConfig.criteria.rawValue) criteria, temperature \(evalConfig.temperature))"))
            }
        } catch let error as ExitCode {
            throw error
        } catch {
            throw exitWithError(error)
        }
    }
}

/// The held-out evaluation (``HeldOutEvaluation``) with a progress line on stderr, and the
/// lines `data.skip_bad` skipped unless `reportSkipped` is false (a caller that evaluates the
/// same files again and reported them the first time); `show` items' transcripts go to stderr.
func runEvaluation(judge: JudgeSource, files: [String], config: Config, eval: EvalConfig, limit: Int?,
                   threads: Int, quiet: Bool, show: Int = 0, reportSkipped: Bool = true) throws -> EvaluationReport {
    let evaluation = try HeldOutEvaluation(judge: judge, files: files, config: config, limit: limit) { line in
        if reportSkipped { FileHandle.standardError.write(Data((line + "\n").utf8)) }
    }
    let line = ProgressLineBox(ProgressLine(), total: evaluation.items.count, quiet: quiet)
    let report = try evaluation.run(eval: eval, seed: config.run.seed, threads: threads, show: show,
                                    transcript: { FileHandle.standardError.write(Data($0.utf8)) }) { done in line.show(done) }
    line.finish()
    return report
}

/// Thread-safe progress reporting for the evaluation threads.
final class ProgressLineBox: @unchecked Sendable {
    private let lock = NSLock()
    private let line: ProgressLine
    private let total: Int
    private let quiet: Bool
    private let label: (work: String, unit: String)
    private let start = Date()

    /// `label` names the work and its unit, e.g. "eval … items" → `eval 10/400 items`.
    init(_ line: ProgressLine, total: Int, quiet: Bool, label: (String, String) = ("eval", "items")) {
        self.line = line
        self.total = total
        self.quiet = quiet
        self.label = label
    }

    func show(_ done: Int) {
        guard !quiet else { return }
        lock.lock()
        defer { lock.unlock() }
        let elapsed = Date().timeIntervalSince(start)
        let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : .infinity
        line.update("\(label.work) \(done)/\(total) \(label.unit), \(formatDuration(elapsed)) elapsed, ETA \(formatDuration(eta))", force: done == total)
    }

    func finish() {
        lock.lock()
        defer { lock.unlock() }
        line.finish()
    }
}
