import ArgumentParser
import Coordinator
import Engine
import Foundation
import ModelFormats
import Shared

/// `cerm import SRC --out model.h5`: a pretrained model (GGUF file or Hugging Face directory)
/// as a cerm weights file, dequantized to float32.
struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import a pretrained model (a GGUF file or a Hugging Face model directory) as a cerm weights file (float32).",
        discussion: """
        Reads llama (also Mistral), qwen2 and qwen3 models: GGUF v2/v3 with tensors F32, F16, BF16, Q8_0, \
        Q4_0, Q4_1, Q4_K, Q5_K, Q6_K, or a directory with config.json and model.safetensors (or shards \
        with model.safetensors.index.json) in F32, F16 or BF16. The model's tokenizer and chat template \
        are stored with the weights (`cerm generate`, `cerm tokenize` and `cerm export` use them). See docs/MODELS.md.
        """)

    @Argument(help: "The GGUF file or Hugging Face model directory.")
    var source: String

    @Option(name: .long, help: "The weights file to write (HDF5, as `cerm sft` writes; replaced atomically).")
    var out: String

    @Option(name: .long, help: "The chat template to store: auto (detected from the model's template), chatml, llama3 or none.")
    var chatTemplate = "auto"

    @Flag(help: "Store the weights alone: the file then counts as using cerm's byte tokenizer (for models whose tokenizer cerm cannot read).")
    var withoutTokenizer = false

    func run() throws {
        do {
            let model = try ModelImport.load(path: source)
            var tokenizer: StoredTokenizer?
            if !withoutTokenizer {
                do { tokenizer = try model.tokenizer.storedTokenizer(chatTemplate: chatTemplate, source: source) } catch let CermError.io(path, reason) {
                    throw CermError.io(path: path, reason: reason + " (--without-tokenizer imports the weights alone)")
                }
            }
            try WeightsFile.saveAtomically(model.weights, tokenizer: tokenizer, to: out)
            var lines = ["imported \(model.source): \(model.weights.layout.specs.count) tensors, \(model.weights.values.count) parameters"]
            lines += model.config.keyedValues.map { "  \($0.key) = \($0.value)" }
            lines.append("  tokenizer: \(tokenizer?.description ?? "none stored (--without-tokenizer)")")
            lines.append("wrote \(out)")
            FileHandle.standardError.write(Data((lines.joined(separator: "\n") + "\n").utf8))
        } catch {
            throw exitWithError(error)
        }
    }
}
