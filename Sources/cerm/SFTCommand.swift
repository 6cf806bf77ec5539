import ArgumentParser
import Configuration
import Coordinator
import Engine
import EngineConfiguration
import Foundation
import Method
import Runtime
import Shared

/// `cerm sft`: cold-start supervised fine-tuning of a fresh model on the teacher's traces,
/// then held-out evaluation, then the weights at `sft.output`.
struct SFTCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sft",
        abstract: "Cold-start SFT of a fresh model on the teacher's criteria and evaluation traces for data.train.",
        discussion: """
        Generates the synthetic task into data.dir when none of its data files (data.train, \
        data.eval, data.best_of_n) exists; an existing data file is never overwritten. Each trace gives \
        its evaluation turn as a sequence (the whole conversation) scoring the criteria and \
        the evaluation (sft.criteria_turn = "in-evaluation"), or with "separate" the \
        criteria turn as a sequence of its own, kept once per query; the loss is the mean \
        negative log-probability of the target tokens. Ends with a held-out \
        evaluation on data.eval and data.best_of_n and writes the weights (atomically) to \
        sft.output or --out; the training curve goes to <that path without .h5>.metrics.jsonl, \
        one JSON line per step. Ctrl-C (or SIGTERM) stops training before the next step and \
        writes the weights so far to <that path without .h5>.partial.h5, never to sft.output \
        (which `cerm pipeline` would reuse as finished); SFT starts from scratch when run again. \
        Exit status 130 then.
        """)

    @Option(help: "The run configuration.")
    var config: String
    @Option(help: "Where to write the weights (default sft.output).")
    var out: String?
    @Option(name: .customLong("max-minutes"), help: "Wall-time cap for training; stops early, still evaluates and saves.")
    var maxMinutes: Double?
    @Option(help: "Training threads: the batch's data shards run in parallel, the rest go to BLAS. The weights do not depend on it.")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount
    @Flag(help: "Skip the held-out evaluation at the end.")
    var skipEval = false
    @Option(help: "Train on this SFT trace file (docs/DATA.md, \"SFT traces\": your own teacher's criteria and evaluations) instead of the built-in teacher's traces of data.train.")
    var traces: String?

    func validate() throws {
        if let maxMinutes, !(maxMinutes > 0 && maxMinutes.isFinite) { throw ValidationError("--max-minutes must be > 0") }
        guard threads >= 1 else { throw ValidationError("--threads must be ≥ 1") }
    }

    func run() throws {
        let stop = StopSignal.install()
        do {
            try runSFT(stop: stop)
        } catch let error as ExitCode {
            throw error
        } catch {
            throw exitWithError(error)
        }
    }

    private func log(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    /// Where weights of an SFT run stopped by a signal go: beside `output`, never `output`
    /// itself, which `cerm pipeline` reuses as a finished stage.
    static func partialPath(forWeights output: String) -> String {
        (output as NSString).deletingPathExtension + ".partial.h5"
    }

    private func runSFT(stop: StopSignal) throws {
        let start = Date()
        var cfg = try Config.load(path: config)
        let runModel = try RunModel.resolve(&cfg)
        let output = out ?? cfg.sft.output
        // One SFT per output: two would overwrite each other's weights and training curve.
        let outputDirectory = (output as NSString).deletingLastPathComponent
        let lock = try DirectoryLock(directory: outputDirectory.isEmpty ? "." : outputDirectory,
                                     name: ".\((output as NSString).lastPathComponent).lock", role: "cerm sft writing \(output)")
        defer { lock.release() }
        for path in try SFTData.ensureSynthetic(cfg.data) { log("generated \(path)") }

        let format = runModel.promptFormat(cfg.rollout.format)
        let (sequences, traceCount, unsupported) = try SFTData.sequences(cfg, format: format, tracesPath: traces, log: log)
        let modelConfig = TransformerConfig(cfg.model)
        try modelConfig.validate()
        // Cold start from the pretrained model (model.source), or cerm's own model initialised from run.seed.
        log("SFT starts from \(runModel.description)")
        let weights = try runModel.initialWeights(config: cfg)
        let options = SFTOptions(sft: cfg.sft, seed: cfg.run.seed, maxSeconds: maxMinutes.map { $0 * 60 }, threads: threads)
        let targetTokens = sequences.reduce(0) { $0 + $1.targetCount }
        let allTokens = sequences.reduce(0) { $0 + $1.tokens.count }
        log("SFT: \(traceCount) traces (\(unsupported) unsupported) -> \(sequences.count) distinct sequences, \(allTokens) tokens (\(targetTokens) target) per epoch; \(weights.values.count) parameters")
        log("     lr \(cfg.sft.learningRate) (\(cfg.sft.schedule.rawValue), warmup \(cfg.sft.warmupSteps)), batch \(cfg.sft.batchSize), \(cfg.sft.epochs) epochs = \(SFTTrainer.totalSteps(sequenceCount: sequences.count, batchSize: cfg.sft.batchSize, epochs: cfg.sft.epochs)) steps, \(threads) threads over \(options.shards) data shards, OpenBLAS \(BLAS.coreName) kernels")

        let concurrentShards = min(threads, options.shards)
        BLAS.setThreads(max(1, threads / concurrentShards))
        let trainer = try SFTTrainer(weights: weights, options: options)
        let metrics = try SFTMetricsFile(path: SFTMetricsFile.path(forWeights: output))
        log("training curve: \(metrics.path) (one JSON line per step)")
        var metricsError: (any Error)?
        let line = ProgressLine()
        let result = try trainer.train(sequences, stop: stop) { p in
            // A full disk must not cost the run: keep training, report once.
            if metricsError == nil {
                do { try metrics.record(p) } catch {
                    metricsError = error
                    log("warning: \(error); training continues without the curve")
                }
            }
            line.update(String(format: "epoch %d/%d  step %d/%d  loss %.4f (ema)  lr %.2e  %.0f tok/s  elapsed %@  ETA %@",
                               p.epoch, p.epochs, p.step, p.totalSteps, p.lossEMA, Double(p.learningRate), p.tokensPerSecond,
                               formatDuration(p.elapsedSeconds), formatDuration(p.etaSeconds)),
                        force: p.step == p.totalSteps)
        }
        line.finish()
        metrics.close()
        let epochLosses = result.epochLosses.map { String(format: "%.4f", $0) }.joined(separator: ", ")
        let ending = result.stopSignal.map { "stopped by \(ChildProcessCheckpointProbe.signalName($0))" }
            ?? (result.stoppedEarly ? "stopped early by --max-minutes" : "done")
        log(String(format: "SFT %@ after %d/%d steps in %@ (%.0f tokens/s); first batch loss %.4f, final loss EMA %.4f; epoch mean losses [%@]%@",
                   ending, result.steps, result.totalSteps,
                   formatDuration(result.elapsedSeconds), Double(result.tokens) / max(result.elapsedSeconds, 1e-9),
                   result.firstLoss ?? .nan, result.finalLossEMA ?? .nan, epochLosses,
                   result.skippedSteps > 0 ? "; \(result.skippedSteps) steps skipped (non-finite gradient)" : ""))

        if result.stopSignal != nil {
            let partial = Self.partialPath(forWeights: output)
            try WeightsFile.saveAtomically(result.weights, tokenizer: runModel.tokenizer, to: partial)
            log("wrote the weights after \(result.steps) of \(result.totalSteps) steps to \(partial) (checksum "
                + "\(String(result.weights.checksum, radix: 16))), not to \(output): SFT starts from scratch when run again")
            throw ExitCode(130)
        }
        // Recorded so that `cerm pipeline` reuses these weights only for a run that would train them again.
        let provenance = SFTProvenance(config: cfg, sequences: sequences, initWeightsChecksum: weights.checksum, traces: traces,
                                       steps: result.steps, totalSteps: result.totalSteps)
        try WeightsFile.saveAtomically(result.weights, tokenizer: runModel.tokenizer, provenance: provenance, to: output)
        log("wrote \(output) (checksum \(String(result.weights.checksum, radix: 16)))")

        if !skipEval {
            let files = [cfg.data.eval, cfg.data.bestOfN].filter { !$0.isEmpty }
            let report = try runEvaluation(judge: .model(result.weights, chat: runModel.chat), files: files, config: cfg, eval: cfg.eval,
                                           limit: nil, threads: min(2, ProcessInfo.processInfo.activeProcessorCount), quiet: false)
            print(report.table(title: "SFT model on \(files.joined(separator: " + ")) (k \(cfg.eval.k), \(cfg.eval.criteria.rawValue) criteria)"))
        }
        print(String(format: "SFT wall time %@ (training %@)%@", formatDuration(Date().timeIntervalSince(start)),
                     formatDuration(result.elapsedSeconds), result.stoppedEarly ? ", training stopped early by --max-minutes" : ""))
    }
}
