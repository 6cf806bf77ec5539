import ArgumentParser
import Coordinator
import Foundation
import Shared

/// `cerm export FILE --out DIR`: model tensors as safetensors plus a Hugging Face config.json.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export a checkpoint's model as model.safetensors (float32) and a Hugging Face config.json.")

    @Argument(help: "The checkpoint file (step_<N>.h5).")
    var file: String

    @Option(name: .long, help: "Output directory (created when missing).")
    var out: String

    func run() throws {
        do {
            let state = try CheckpointReader.load(path: file)
            let weights = try WeightsFile.policyWeights(of: state, path: file)
            let written = try HuggingFaceExport.export(weights, to: out, source: file, metadata: [
                "cerm_step": "\(state.step)", "cerm_policy_version": "\(state.policyVersion)"])
            // The count of what model.safetensors holds: the policy, not the reference.* tensors.
            print("exported step \(state.step) (\(weights.layout.specs.count) tensors) from \(file)")
            written.forEach { print("  \($0)") }
        } catch {
            throw exitWithError(error)
        }
    }
}
