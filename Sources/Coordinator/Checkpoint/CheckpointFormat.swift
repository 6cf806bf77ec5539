import Foundation
import Shared

/// The on-disk layout of a cerm checkpoint (`docs/CHECKPOINT.md` is the normative description;
/// keep the two in step).
public enum CheckpointFormat {
    /// Value of the root attribute `format`.
    public static let name = "cerm-checkpoint"
    /// The versions this build reads (a version 1 file has cerm's byte tokenizer). Version 2
    /// added the optional group `tokenizer/` (a pretrained model's tokenizer and chat template);
    /// version 3 the `previous.<k>.` policy tensors of fixed-lag runs.
    public static let readableVersions: ClosedRange<Int64> = 1...3

    /// Value of the root attribute `format_version` a checkpoint of `state` is written with: 3 when it holds previous policies
    /// (fixed-lag), else 2, so that builds reading version 2 still read every other run's files.
    public static func version(of state: TrainingState) -> Int64 {
        state.tensors.contains { $0.name.hasPrefix(TrainingState.previousPolicyPrefix) } ? 3 : 2
    }
    /// Value of the root attribute `checksum_algorithm`.
    public static let checksumAlgorithm = "fnv1a64-canonical-v1"

    /// Tensor groups, in checksum order, with the dataset listing their names in state order.
    static let modelGroup = "model", adamMGroup = "optim/m", adamVGroup = "optim/v"
    static func namesDataset(forGroup group: String) -> String {
        "meta/" + group.replacingOccurrences(of: "/", with: "_") + "_names"
    }
    static let rngDataset = "state/rng"
    static let configDataset = "meta/config_toml"
    static let modelConfigDataset = "meta/model_config_json"
    static let tokenizerDataset = "meta/tokenizer"
    static let extraDataset = "meta/extra_json"

    /// `step_<N>.h5`, the name of the checkpoint of step `step`.
    public static func fileName(step: Int) -> String { "step_\(step).h5" }
    /// `.step_<N>.h5.tmp`, the name a checkpoint is written under before its rename.
    public static func temporaryFileName(step: Int) -> String { ".\(fileName(step: step)).tmp" }

    /// The step of a checkpoint file name (`step_12.h5` → 12), nil for any other name.
    public static func step(ofFileName name: String) -> Int? {
        guard name.hasPrefix("step_"), name.hasSuffix(".h5") else { return nil }
        let digits = name.dropFirst("step_".count).dropLast(".h5".count)
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(digits)
    }

    /// A checksum as 16 lowercase hex digits, as `cerm inspect` and the logs print it.
    public static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// Whether `name` is a temporary file a checkpoint write left behind.
    static func isTemporaryFileName(_ name: String) -> Bool {
        name.hasPrefix(".step_") && name.hasSuffix(".h5.tmp")
    }

    /// The checkpoint files of `directory`, oldest step first. A missing directory has none.
    public static func checkpointFiles(in directory: String) -> [(step: Int, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { name in
            step(ofFileName: name).map { ($0, (directory as NSString).appendingPathComponent(name)) }
        }.sorted { $0.step < $1.step }
    }

    /// The checkpoint checksum: FNV-1a-64 over the canonical byte stream of the state (see
    /// docs/CHECKPOINT.md, "Checksum"). `extraJSON` is the stored encoding of `state.extra`;
    /// `formatVersion` the file's (version 1 has no tokenizer part; nil: ``version(of:)``).
    public static func checksum(of state: TrainingState, extraJSON: [UInt8], formatVersion: Int64? = nil) -> UInt64 {
        let formatVersion = formatVersion ?? version(of: state)
        var stream = ChecksumStream()
        stream.feed(string: Array(name.utf8))
        stream.feed(int: formatVersion)
        stream.feed(int: Int64(state.step))
        stream.feed(uint: state.policyVersion)
        stream.feed(int: Int64(state.adamStep))
        stream.feed(int: Int64(state.dataCursor.epoch))
        stream.feed(int: Int64(state.dataCursor.position))
        stream.feed(uint: state.dataCursor.permutationSeed)
        stream.feed(uint: UInt64(state.rngState.count))
        for word in state.rngState { stream.feed(uint: word) }
        for (group, tensors) in [(modelGroup, state.tensors), (adamMGroup, state.adamM), (adamVGroup, state.adamV)] {
            stream.feed(string: Array(group.utf8))
            stream.feed(uint: UInt64(tensors.count))
            for tensor in tensors {
                stream.feed(string: Array(tensor.name.utf8))
                stream.feed(uint: UInt64(tensor.shape.count))
                for dim in tensor.shape { stream.feed(uint: UInt64(dim)) }
                tensor.withUnsafeValues { stream.feed(floats: $0) }
            }
        }
        stream.feed(string: Array(state.configText.utf8))
        stream.feed(string: Array(state.modelConfigJSON.utf8))
        stream.feed(string: Array(state.tokenizerDescription.utf8))
        stream.feed(string: extraJSON)
        if formatVersion >= 2 {
            if let tokenizer = state.tokenizer {
                stream.feed(uint: 1)
                tokenizer.canonicalBytes.withUnsafeBytes { stream.feed(bytes: $0) }
            } else {
                stream.feed(uint: 0)
            }
        }
        return stream.value
    }

    /// The stored form of `TrainingState.extra`: a JSON object with keys in UTF-8 byte order.
    static func encodeExtra(_ extra: [String: String]) -> [UInt8] {
        let entries = extra.map { (Array($0.key.utf8), $0.key, $0.value) }
            .sorted { $0.0.lexicographicallyPrecedes($1.0) }
        return Array(("{" + entries.map { jsonString($0.1) + ":" + jsonString($0.2) }.joined(separator: ",") + "}").utf8)
    }

    /// A JSON array of strings (the stored tensor name lists).
    static func encodeNames(_ names: [String]) -> [UInt8] {
        Array(("[" + names.map(jsonString).joined(separator: ",") + "]").utf8)
    }

    /// `s` as a JSON string literal (``JSONWriter/quote(_:)``); non-ASCII stays raw UTF-8.
    public static func jsonString(_ s: String) -> String { JSONWriter.quote(s) }
}

/// Incremental FNV-1a-64 with the checksum's integer and string encodings (little-endian u64,
/// length-prefixed bytes).
struct ChecksumStream {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func feed(bytes: UnsafeRawBufferPointer) { value = Checksum.fnv1a64(bytes, seed: value) }

    mutating func feed(uint: UInt64) {
        withUnsafeBytes(of: uint.littleEndian) { feed(bytes: $0) }
    }

    mutating func feed(int: Int64) { feed(uint: UInt64(bitPattern: int)) }

    mutating func feed(string bytes: [UInt8]) {
        feed(uint: UInt64(bytes.count))
        bytes.withUnsafeBytes { feed(bytes: $0) }
    }

    /// Raw float32 bytes; in memory these are little-endian on every platform cerm builds for.
    mutating func feed(floats: UnsafeBufferPointer<Float>) {
        feed(uint: UInt64(floats.count) * 4)
        feed(bytes: UnsafeRawBufferPointer(floats))
    }
}
