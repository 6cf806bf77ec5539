import Configuration
import Foundation
import Shared

/// How `cerm sft` made a weights file, stored in it (root attribute `provenance_json`,
/// docs/ENGINE_TRAINING.md, "SFT weights file") so that `cerm pipeline` reuses SFT weights only
/// when its config would train the same weights again.
///
/// Why not compare config keys alone: the data files are reused as they are on disk, and a
/// pretrained `model.source` can be replaced under the same name, so the record also holds the
/// checksums of what SFT actually consumed: its training sequences and its starting weights.
public struct SFTProvenance: Codable, Sendable, Equatable {
    /// `format` of the JSON object.
    public static let formatName = "cerm-sft-provenance"
    /// Bumped when a field's meaning changes; a record of another version is not compared.
    public static let currentVersion = 1

    public var format: String
    public var version: Int
    /// The effective config SFT ran with (``Config/renderTOML()``: every key, defaults filled).
    public var config: String
    /// ``sequencesChecksum(_:)`` of the sequences trained on, 16 lowercase hex digits. It
    /// follows the data, the teacher, the prompt format, the tokenizer and the chat template.
    public var sequencesFNV1a64: String
    /// ``ModelWeights/checksum`` of the weights SFT started from, 16 lowercase hex digits.
    public var initWeightsFNV1a64: String
    /// The trace file given with `--traces`; nil: the built-in teacher's traces of `data.train`.
    public var traces: String?
    /// Optimizer steps taken, and planned: fewer when `--max-minutes` stopped training early.
    public var steps: Int
    public var totalSteps: Int

    public init(config: Config, sequences: [SFTSequence], initWeightsChecksum: UInt64, traces: String?, steps: Int, totalSteps: Int) {
        self.format = Self.formatName
        self.version = Self.currentVersion
        self.config = config.renderTOML()
        self.sequencesFNV1a64 = CheckpointFormat.hex(Self.sequencesChecksum(sequences))
        self.initWeightsFNV1a64 = CheckpointFormat.hex(initWeightsChecksum)
        self.traces = traces
        self.steps = steps
        self.totalSteps = totalSteps
    }

    /// FNV-1a 64 over the sequences in order: for each, its token count, tokens, range count
    /// and ranges, as little-endian Int64s.
    public static func sequencesChecksum(_ sequences: [SFTSequence]) -> UInt64 {
        var stream = ChecksumStream()
        for sequence in sequences {
            stream.feed(int: Int64(sequence.tokens.count))
            sequence.tokens.forEach { stream.feed(int: Int64($0)) }
            stream.feed(int: Int64(sequence.scoredRanges.count))
            sequence.scoredRanges.forEach { stream.feed(int: Int64($0.lowerBound)); stream.feed(int: Int64($0.upperBound)) }
        }
        return stream.value
    }

    /// Where the traces came from, in words: `--traces FILE` or the built-in teacher's.
    public var traceSource: String { traces.map { "--traces \($0)" } ?? "the built-in teacher's traces" }

    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// The record in `json`; an error naming `path` when it is not one.
    public static func parse(_ json: String, path: String) throws -> SFTProvenance {
        let record: SFTProvenance
        do {
            record = try JSONDecoder().decode(SFTProvenance.self, from: Data(json.utf8))
        } catch {
            throw CermError.io(path: path, reason: "attribute provenance_json is not an SFT provenance record: \(error)")
        }
        guard record.format == formatName, record.version == currentVersion else {
            throw CermError.io(path: path, reason: "attribute provenance_json is \(record.format) version \(record.version); "
                               + "this build reads \(formatName) version \(currentVersion)")
        }
        return record
    }

    /// Why SFT with the recipe `wanted` would not train the weights this record describes, one
    /// phrase each with this record's value first (`sft.epochs = 2, now 3`; empty: the same
    /// recipe): the `[sft]` keys (but `sft.output`) and `run.seed` that differ, another trace
    /// source, other training sequences (naming the `data.*`, `rollout.format`, `model.*` and
    /// `run.seed` keys that differ, or else the trace file's content), other starting weights.
    /// `path` names this record's file in errors.
    public func differences(to wanted: SFTProvenance, path: String) -> [String] {
        let changes: [ConfigChange]
        do {
            let then = try Config.parse(config, file: "\(path) (provenance config)")
            changes = then.changes(to: try Config.parse(wanted.config, file: "the run's config"))
        } catch {
            return ["its recorded config does not parse with this build (\(error))"]
        }
        func described(_ change: ConfigChange) -> String { "\(change.key) = \(change.old), now \(change.new)" }
        var reasons = changes.filter { ($0.key.hasPrefix("sft.") && $0.key != "sft.output") || $0.key == "run.seed" }.map(described)
        if traces != wanted.traces { reasons.append("\(traceSource), now \(wanted.traceSource)") }
        if sequencesFNV1a64 != wanted.sequencesFNV1a64 {
            // The teacher draws its traces from run.seed.
            let inputs = changes.filter { change in
                ["data.", "rollout.format", "model.", "run.seed"].contains(where: change.key.hasPrefix) && change.key != "data.skip_bad"
            }
            let cause = inputs.isEmpty ? (wanted.traces ?? "data.train") + "'s content" : inputs.map(described).joined(separator: ", ")
            reasons.append("the training sequences (\(cause); checksum \(sequencesFNV1a64), now \(wanted.sequencesFNV1a64))")
        }
        if initWeightsFNV1a64 != wanted.initWeightsFNV1a64 {
            reasons.append("the starting weights (checksum \(initWeightsFNV1a64), now \(wanted.initWeightsFNV1a64))")
        }
        return reasons
    }
}
