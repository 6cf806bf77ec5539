import ArgumentParser
import Coordinator
import Engine
import Foundation
import Shared

/// `cerm generate --model SRC --prompt TEXT`: the model's continuation of TEXT on stdout.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Print a model's continuation of a prompt (stdout: the generated text and a newline; stderr: progress).",
        discussion: """
        SRC is a GGUF file, a Hugging Face model directory, a cerm weights file (`cerm import`, `cerm sft`) or an RL \
        checkpoint. With --chat the prompt is one user turn rendered through the model's chat template (cerm's byte \
        format for models with the byte tokenizer) and generation stops at the template's end-of-turn tokens; \
        without it the prompt is encoded as it is (special-token names parsed) and generation stops at EOS. \
        Greedy at temperature 0. Runs on the engine's batch-invariant generator.
        """)

    @Option(help: "The model: a GGUF file, a Hugging Face model directory, a cerm weights file or an RL checkpoint.")
    var model: String

    @Option(help: "The prompt text.")
    var prompt: String

    @Flag(help: "Render the prompt as one user turn through the model's chat template.")
    var chat = false

    @Option(help: "With --chat: auto (the model's own or stored template), chatml, llama3 or none.")
    var chatTemplate = "auto"

    @Option(help: "Most tokens to generate (the stop token included).")
    var maxTokens = 64

    @Option(help: "Sampling temperature; 0 is greedy.")
    var temperature: Float = 0

    @Option(help: "Seed of the sampler (temperature > 0).")
    var seed: UInt64 = 0

    func validate() throws {
        guard maxTokens > 0 else { throw ValidationError("--max-tokens must be positive, not \(maxTokens)") }
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be 0 or positive, not \(temperature)") }
    }

    func run() throws {
        let started = ContinuousClock.now
        func seconds() -> String {
            let elapsed = started.duration(to: .now).components
            return String(format: "%.2f s", Double(elapsed.seconds) + Double(elapsed.attoseconds) * 1e-18)
        }
        func log(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }
        do {
            let source = try ModelSource.open(model, chatTemplate: chatTemplate, loadWeights: true)
            guard let weights = source.weights else { throw CermError.io(path: model, reason: "holds no model weights") }
            log("loaded \(source.description) (\(weights.values.count) parameters) in \(seconds())")
            let stopTokens: [TokenID]
            let promptTokens: [TokenID]
            if chat {
                let codec = try source.chat()
                promptTokens = codec.firstTurn(user: prompt)
                stopTokens = codec.stopTokens
            } else {
                promptTokens = source.encode(prompt, parseSpecial: true)
                stopTokens = source.eosID.map { [$0] } ?? []
            }
            guard !promptTokens.isEmpty else { throw ValidationError("--prompt: the prompt encodes to no tokens") }
            let room = weights.config.maxSeqLen - promptTokens.count
            guard room > 0 else {
                throw ValidationError("--prompt: \(promptTokens.count) tokens leave no room in the model's \(weights.config.maxSeqLen)-token context")
            }
            let generator = try Generator(config: weights.config, parameters: weights.values)
            generator.stopTokens = stopTokens
            let request = GenerationRequest(prompt: promptTokens, seed: seed, maxNewTokens: min(maxTokens, room), temperature: temperature)
            let result = try generator.generate(requests: [request])[0]
            var tokens = result.tokens
            if result.finishReason == .eos, let last = tokens.last, stopTokens.contains(last) { tokens.removeLast() }
            print(source.decode(tokens, skipSpecial: false))
            log("\(promptTokens.count) prompt tokens, \(result.tokens.count) generated (\(result.finishReason)) in \(seconds()) total")
        } catch let error as ValidationError {
            throw error
        } catch {
            throw exitWithError(error)
        }
    }
}
