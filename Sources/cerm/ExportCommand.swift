import ArgumentParser
import Coordinator
import Foundation
import Shared

/// `cerm export FILE --out DIR`: model tensors as safetensors plus a Hugging Face config.json.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export a checkpoint's model as model.safetensors (float32) and config.json.")

    @Argument(help: "The checkpoint file (step_<N>.h5).")
    var file: String

    @Option(name: .long, help: "Output directory (created when missing).")
    var out: String

    func run() throws {
        do {
            let state = try CheckpointReader.load(path: file)
            let written = try HuggingFaceExport.export(state, to: out, source: file)
            print("exported step \(state.step) (\(state.tensors.count) tensors) from \(file)")
            written.forEach { print("  \($0)") }
        } catch {
            throw exitWithError(error)
        }
    }
}
