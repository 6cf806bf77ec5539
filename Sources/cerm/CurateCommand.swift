import ArgumentParser
import Configuration
import EngineConfiguration
import Coordinator
import Foundation
import Method
import Shared

/// `cerm curate`: CE-RM's data curation between SFT and RL: screen training pairs with sampled
/// judgments of the starting model and write the pairs it is uncertain about for RL.
struct CurateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "curate",
        abstract: "Keep the training pairs the SFT model is uncertain about (sampled accuracy ≤ curation.max_accuracy) for RL.",
        discussion: """
        Screens curation.candidates pairs of data.train (balanced across task types) with \
        curation.samples judgments each: a criteria set and an evaluation of both responses, \
        sampled at rollout.temperature. A pair's accuracy is its mean pairwise credit (1 right, \
        ½ tie, 0 wrong); pairs with min_accuracy ≤ accuracy ≤ max_accuracy are written to \
        curation.output (canonical JSON lines plus curation_accuracy), task types interleaved. \
        With curation.enabled the coordinator trains on that file. Sampling seeds derive from \
        run.seed and the pair's index, so the output does not depend on --threads.
        """)

    @Option(help: "The run configuration.")
    var config: String
    @Option(help: "The starting model's weights (default sft.output).")
    var weights: String?
    @Option(help: "Where to write the kept pairs (default curation.output).")
    var out: String?
    @Option(help: "Threads (one generator each).")
    var threads: Int = min(2, ProcessInfo.processInfo.activeProcessorCount)

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be ≥ 1") }
    }

    func run() throws {
        do {
            var cfg = try Config.load(path: config)
            let runModel = try RunModel.resolve(&cfg)
            try Self.curate(config: cfg, runModel: runModel, configPath: config, weightsPath: weights ?? cfg.sft.output, output: out ?? cfg.curation.output,
                            threads: threads) { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        } catch let error as ExitCode {
            throw error
        } catch {
            throw exitWithError(error)
        }
    }

    /// Screens, selects and writes the curated pairs (atomically); `log` gets the summary.
    /// Throws when no pair is kept: RL would have nothing to train on.
    static func curate(config cfg: Config, runModel: RunModel, configPath: String, weightsPath: String, output: String, threads: Int,
                       log: (String) -> Void) throws {
        let (weights, chat, _) = try WeightsFile.loadJudge(path: weightsPath, run: (cfg, configPath, runModel), probe: ChildProcessCheckpointProbe())
        let pairs = try Curation.trainPairs(config: cfg, log: log)
        let options = CurationOptions(config: cfg)
        let screening = min(options.candidates, pairs.count)
        log("curation: screening \(screening) of \(pairs.count) pairs of \(cfg.data.train) with \(options.samples) sampled judgments each (model \(weightsPath))")
        let rollout = cfg.rollout
        BLAS.setThreads(1)
        let line = ProgressLineBox(ProgressLine(), total: screening, quiet: false, label: ("curation", "pairs"))
        let result = try Curation.run(pairs: pairs, options: options, format: makePromptFormat(rollout.format, chat: chat), threads: threads,
                                      makeBackend: {
                                          try ModelJudge(weights: weights, criteriaMaxTokens: rollout.criteriaMaxTokens,
                                                         evaluationMaxTokens: rollout.evaluationMaxTokens, topP: Float(rollout.topP), chat: chat)
                                      }, progress: { done, _ in line.show(done) })
        line.finish()
        log(result.summary)
        guard !result.kept.isEmpty else {
            throw CermError.invalid("curation kept none of the \(result.screened.count) screened pairs (accuracy in \(options.minAccuracy)…\(options.maxAccuracy)); raise curation.max_accuracy or curation.candidates, or set curation.enabled = false")
        }
        try createParentDirectory(of: output)
        do {
            try result.jsonLines.write(toFile: output, atomically: true, encoding: .utf8)
        } catch {
            throw CermError.io(path: output, reason: "cannot write the curated pairs (\(error.localizedDescription))")
        }
        log("wrote \(result.kept.count) curated pairs to \(output)")
    }
}
