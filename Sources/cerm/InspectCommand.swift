import ArgumentParser
import Coordinator
import Foundation
import Shared

/// Prints an error and exits with status 2 (unreadable input), the convention of `cerm config`.
func exitWithError(_ error: Error) -> ExitCode {
    FileHandle.standardError.write(Data("error: \(error)\n".utf8))
    return ExitCode(2)
}

/// `cerm inspect FILE`: what a checkpoint or SFT weights file holds and whether its checksum
/// matches.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a checkpoint's format, step, tensors, checksum status and config (or an SFT weights file's tensors, checksum and model config).",
        discussion: "Exits with status 1 when the checksum does not match, 2 when the file cannot be read.")

    @Argument(help: "The checkpoint file (step_<N>.h5) or SFT weights file (sft.output).")
    var file: String

    @Flag(help: "Also list the AdamW moment tensors.")
    var optimizer = false

    @Flag(help: "Do not print the config text.")
    var noConfig = false

    @Flag(help: "Print only one line per stored value instead: the step, versions, data cursor and RNG state, then every tensor (policy, reference, AdamW moments) with its shape and the FNV-1a-64 of its float32 bits, so two checkpoints can be compared with diff (scripts/chaos.sh does).")
    var checksums = false

    func run() throws {
        let loaded: LoadedCheckpoint
        do {
            // Read by a child first: a file that crashes libhdf5 becomes an error naming it.
            try CheckpointReader.probeFirst(path: file, with: ChildProcessCheckpointProbe())
            if try CermFileKind.detect(path: file) == .sftWeights { return try inspectSFTWeights() }
            loaded = try CheckpointReader.read(path: file)
        } catch let error as ExitCode {
            throw error
        } catch {
            throw exitWithError(error)
        }
        let state = loaded.state
        if checksums {
            printChecksums(state)
            if !loaded.checksumMatches { throw ExitCode(1) }
            return
        }
        print("file             \(file) (\(fileSize) bytes)")
        print("format           \(CheckpointFormat.name) version \(loaded.formatVersion)")
        print("step             \(state.step)")
        print("policy version   \(state.policyVersion)")
        print("adam step        \(state.adamStep)")
        print("data cursor      epoch \(state.dataCursor.epoch), position \(state.dataCursor.position), permutation seed \(state.dataCursor.permutationSeed)")
        print("rng state        \(state.rngState.count) words")
        let stored = CheckpointFormat.hex(loaded.storedChecksum)
        print("checksum         \(stored) " + (loaded.checksumMatches ? "OK" : "MISMATCH (computed \(CheckpointFormat.hex(loaded.computedChecksum)))"))
        // The frozen RL reference model is stored beside the policy (docs/CHECKPOINT.md); listing
        // it apart keeps the policy's own tensor and value counts right.
        printTensors("model", state.policyTensors)
        let reference = state.tensors.filter { $0.name.hasPrefix(GRPOLearner.referencePrefix) }
        if !reference.isEmpty { printTensors("reference", reference) }
        // A fixed-lag run's earlier policies, named previous.<k>. (k versions back).
        for previous in try state.previousPolicyTensors() { printTensors("previous.\(previous.back)", previous.tensors) }
        if optimizer {
            printTensors("optim/m", state.adamM)
            printTensors("optim/v", state.adamV)
        } else {
            print("optimizer        \(state.adamM.count) first-moment, \(state.adamV.count) second-moment tensors (--optimizer lists them)")
        }
        print("tokenizer        \(state.tokenizer?.description ?? state.tokenizerDescription)")
        for (key, value) in state.extra.sorted(by: { $0.key < $1.key }) {
            print("extra            \(CheckpointFormat.jsonString(key)) = \(CheckpointFormat.jsonString(value))")
        }
        print("model config     \(state.modelConfigJSON)")
        if !noConfig {
            print("config:")
            print(state.configText, terminator: state.configText.hasSuffix("\n") ? "" : "\n")
        }
        if !loaded.checksumMatches { throw ExitCode(1) }
    }

    private var fileSize: Int { (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? NSNumber)?.intValue ?? 0 }

    /// An SFT weights file has no step, optimizer state or data cursor: its tensors, weights
    /// checksum (`weights_fnv1a64`), tokenizer, model config and how `cerm sft` made it
    /// (``SFTProvenance``: steps, traces, checksums, and its config unless --no-config).
    private func inspectSFTWeights() throws {
        let loaded = try LoadedSFTWeights.read(path: file)
        print("file             \(file) (\(fileSize) bytes)")
        print("format           SFT weights file (no step, optimizer state or data cursor)")
        let computed = CheckpointFormat.hex(loaded.computedChecksum)
        if let stored = loaded.storedChecksum {
            print("checksum         \(CheckpointFormat.hex(stored)) " + (loaded.checksumMatches ? "OK" : "MISMATCH (computed \(computed))"))
        } else {
            print("checksum         none stored (computed \(computed))")
        }
        let weights = loaded.weights
        printTensors("model", try weights.layout.tensors(of: weights.values).map { NamedTensor(name: $0.name, shape: $0.shape, values: $0.values) })
        print("tokenizer        \(loaded.storedTokenizer?.description ?? loaded.tokenizerDescription ?? "(none stored)")")
        print("model config     \(loaded.modelConfigJSON)")
        if let record = try loaded.provenance.map({ try SFTProvenance.parse($0, path: file) }) {
            print("provenance       cerm sft, \(record.steps) of \(record.totalSteps) steps on \(record.traceSource), "
                  + "sequences \(record.sequencesFNV1a64), starting weights \(record.initWeightsFNV1a64)")
            if !noConfig {
                print("config:")
                print(record.config, terminator: record.config.hasSuffix("\n") ? "" : "\n")
            }
        } else {
            print("provenance       none recorded (written before cerm sft recorded it, or by cerm import)")
        }
        if !loaded.checksumMatches { throw ExitCode(1) }
    }

    /// `key value` lines of everything a resume restores; tensors as `group/name [shape] hex`,
    /// the hash over the float32 bits (bit-exact: -0 and NaN payloads count).
    private func printChecksums(_ state: TrainingState) {
        print("step \(state.step)")
        print("policy_version \(state.policyVersion)")
        print("adam_step \(state.adamStep)")
        print("data_cursor epoch=\(state.dataCursor.epoch) position=\(state.dataCursor.position) permutation_seed=\(state.dataCursor.permutationSeed)")
        print("rng " + state.rngState.map { String($0, radix: 16) }.joined(separator: ","))
        func line(_ group: String, _ tensor: NamedTensor) -> String {
            let hash = tensor.values.withUnsafeBufferPointer { Checksum.fnv1a64($0) }
            return "\(group)/\(tensor.name) [" + tensor.shape.map(String.init).joined(separator: ",") + "] " + CheckpointFormat.hex(hash)
        }
        for tensor in state.tensors {
            let group = tensor.name.hasPrefix(GRPOLearner.referencePrefix) ? "reference"
                : tensor.name.hasPrefix(TrainingState.previousPolicyPrefix) ? "previous" : "model"
            print(line(group, tensor))
        }
        for tensor in state.adamM { print(line("optim/m", tensor)) }
        for tensor in state.adamV { print(line("optim/v", tensor)) }
    }

    private func printTensors(_ group: String, _ tensors: [NamedTensor]) {
        let total = tensors.reduce(0) { $0 + $1.values.count }
        let label = "\(group) tensors"
        print(label.padding(toLength: max(17, label.count + 1), withPad: " ", startingAt: 0) + "\(tensors.count) (\(total) values)")
        let width = min(64, tensors.map(\.name.count).max() ?? 0)
        for tensor in tensors {
            print("  " + tensor.name.padding(toLength: max(width, tensor.name.count), withPad: " ", startingAt: 0)
                + "  [" + tensor.shape.map(String.init).joined(separator: ", ") + "]")
        }
    }
}
