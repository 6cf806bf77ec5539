import ArgumentParser
import Coordinator
import Engine
import Foundation
import ModelFormats
import Shared

/// `cerm export FILE --out DIR`: model tensors as safetensors plus a Hugging Face config.json,
/// from an RL checkpoint (its policy) or an SFT weights file; `--gguf FILE` a GGUF file instead.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export a checkpoint's or SFT weights file's model as model.safetensors (float32) and a Hugging Face config.json.",
        discussion: """
        A model with a stored tokenizer (`cerm import`) also gets tokenizer.json, tokenizer_config.json (its chat \
        template) and generation_config.json. --gguf writes one GGUF v3 file (F32, or F16 matrices with --f16) with \
        the tokenizer and chat template, for llama.cpp; it needs a stored tokenizer.
        """)

    @Argument(help: "The checkpoint file (step_<N>.h5) or SFT weights file (sft.output).")
    var file: String

    @Option(name: .long, help: "Output directory (created when missing).")
    var out: String?

    @Option(name: .long, help: "Write a GGUF file instead of a Hugging Face directory.")
    var gguf: String?

    @Flag(name: .long, help: "With --gguf: store matrices as F16 (norms stay F32).")
    var f16 = false

    func validate() throws {
        guard (out == nil) != (gguf == nil) else { throw ValidationError("give exactly one of --out DIR and --gguf FILE") }
        if f16 && gguf == nil { throw ValidationError("--f16 applies to --gguf") }
    }

    func run() throws {
        do {
            // Read by a child first: a file that crashes libhdf5 becomes an error naming it.
            let model = try WeightsFile.loadTrained(path: file, probe: ChildProcessCheckpointProbe())
            let (weights, tokenizer) = (model.weights, model.tokenizer)
            let what = model.checkpoint.map { "step \($0.step)" } ?? "SFT weights"
            let metadata = model.checkpoint.map { ["cerm_step": "\($0.step)", "cerm_policy_version": "\($0.policyVersion)"] } ?? [:]
            let written: [String]
            if let gguf {
                guard let tokenizer else {
                    throw CermError.io(path: file, reason: "has cerm's byte tokenizer, which GGUF cannot express; --gguf exports models imported with their tokenizer")
                }
                try createParentDirectory(of: gguf)
                try GGUFExport.write(weights, tokenizer: tokenizer, f16: f16, to: gguf, source: file)
                written = [gguf]
            } else {
                written = try HuggingFaceExport.export(weights, tokenizer: tokenizer, to: out ?? "", source: file, metadata: metadata)
            }
            // The count of what the file holds: the policy, not the reference.* tensors.
            print("exported \(what) (\(weights.layout.specs.count) tensors) from \(file)")
            written.forEach { print("  \($0)") }
        } catch {
            throw exitWithError(error)
        }
    }
}
