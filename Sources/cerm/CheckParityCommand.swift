import ArgumentParser
import Engine
import Foundation
import ModelFormats
import Shared

/// `cerm check-parity --model GGUF --fixture DIR` (hidden; run by `make test-pretrained`): loads a
/// pretrained model as `cerm import` does (``ModelImport``) and holds cerm's float32 forward and
/// greedy generation to the numbers transformers computed for it (`scripts/reference_smollm2.py`,
/// issue 23 point 5):
///
/// - logits: the training forward (``Transformer``) over each whole prompt, max |Δ| over the
///   stored entries at most ``ParityComparison/relativeTolerance`` × max |logit|, every prompt;
/// - greedy: the batch-invariant inference path (``Generator``, temperature 0, no end-of-sequence
///   stopping, as the reference) gives the reference's tokens on at least 90% of the prompts
///   (18 of 20): float32 rounding may flip a near-tie, which the margins printed show.
///
/// Prints one line per prompt and closes with exactly `parity: N passed, M failed`, counting one
/// check per prompt's logits and one for the greedy share; exits 1 exactly when a check failed.
struct CheckParityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-parity",
        abstract: "Compare a pretrained model's logits and greedy continuations with transformers' (make test-pretrained).",
        shouldDisplay: false)

    /// Share of prompts whose greedy continuation must be identical (18 of 20).
    static let requiredGreedyShare = 0.9

    @Option(help: "The model the fixture was made from (a GGUF file or a Hugging Face directory).")
    var model: String

    @Option(help: "The directory with reference.json, logits.f32 and top_ids.i32.")
    var fixture: String

    func run() throws {
        let started = Date()
        let reference = try ParityFixture(directory: fixture)
        let weights = try ModelImport.load(path: model).weights
        let config = weights.config
        guard config.vocabSize == reference.vocabSize else {
            throw CermError.invalid("check-parity: \(model) has a vocabulary of \(config.vocabSize), the fixture \(fixture) is for \(reference.modelFile) with \(reference.vocabSize)")
        }
        progress(String(format: "loaded %@ (%d parameters) in %.1f s", model, weights.values.count, Date().timeIntervalSince(started)))

        let forwardStarted = Date()
        let transformer = try Transformer(weights: weights)
        let logitAgreements = try reference.prompts.indices.map { number in
            let tokens = reference.prompts[number].tokens
            let batch = TokenBatch(inputs: [tokens], targets: [[TokenID](repeating: -1, count: tokens.count)])
            guard let logits = try transformer.forward(batch, returnLogits: true).logits?.first else {
                throw CermError.invalid("check-parity: the forward returned no logits for prompt \(number)")
            }
            return try ParityComparison.logits(logits, prompt: number, fixture: reference)
        }
        progress(String(format: "forward of %d prompts in %.1f s", reference.prompts.count, Date().timeIntervalSince(forwardStarted)))

        let greedyStarted = Date()
        let generator = try Generator(config: config, parameters: weights.values)
        // The reference generates all its tokens past end-of-turn and EOS: no id stops this one.
        generator.stopTokens = []
        let continuations = try generator.generate(requests: reference.prompts.map {
            GenerationRequest(prompt: $0.tokens, seed: 0, maxNewTokens: reference.greedyTokens, temperature: 0)
        })
        let greedyAgreements = continuations.indices.map {
            ParityComparison.greedy(continuations[$0].tokens, prompt: $0, fixture: reference)
        }
        progress(String(format: "greedy %d tokens for %d prompts in %.1f s", reference.greedyTokens,
                        reference.prompts.count, Date().timeIntervalSince(greedyStarted)))

        let tolerance = ParityComparison.relativeTolerance
        for (number, (logits, greedy)) in zip(logitAgreements, greedyAgreements).enumerated() {
            let logitsOK = logits.isWithin(tolerance)
            let greedyText: String
            if let step = greedy.firstDivergence {
                let margin = greedy.referenceMarginAtDivergence.map { String(format: ", reference top-2 margin %.5f", $0) } ?? ""
                let endOfTurn = reference.prompts[number].greedyFirstEndOfTurn.map { ", reference end of turn at step \($0)" } ?? ""
                greedyText = "greedy differs from step \(step)\(margin)\(endOfTurn)"
            } else {
                greedyText = "greedy \(reference.greedyTokens)/\(reference.greedyTokens) identical"
            }
            print(String(format: "prompt %2d: %3d tokens, max|Δ|/max|logit| %.2e (position %d, %@)%@, argmax %d/%d, %@: %@",
                         number, logits.positions, logits.maxRelativeDifference, logits.worstPosition, logits.worstEntry,
                         logitsOK ? "" : String(format: " > %.0e", tolerance),
                         logits.positions - logits.argmaxDisagreements, logits.positions, greedyText,
                         logitsOK ? "ok" : "FAILED"))
        }
        let count = reference.prompts.count
        let logitsWithin = logitAgreements.filter { $0.isWithin(tolerance) }.count
        let greedyIdentical = greedyAgreements.filter(\.isIdentical).count
        let greedyRequired = Int((Self.requiredGreedyShare * Double(count)).rounded(.up))
        let worst = logitAgreements.map(\.maxRelativeDifference).max() ?? 0
        print(String(format: "logits within %.0e × max|logit| on %d/%d prompts (worst %.2e); greedy identical on %d/%d (%d needed)",
                     tolerance, logitsWithin, count, worst, greedyIdentical, count, greedyRequired))
        let failed = (count - logitsWithin) + (greedyIdentical >= greedyRequired ? 0 : 1)
        print("parity: \(count + 1 - failed) passed, \(failed) failed")
        progress(String(format: "done in %.1f s", Date().timeIntervalSince(started)))
        if failed > 0 { throw ExitCode(1) }
    }

    private func progress(_ line: String) {
        FileHandle.standardError.write(Data("check-parity: \(line)\n".utf8))
    }
}
