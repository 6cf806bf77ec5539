import Foundation
import Shared

extension SFTProgress: Encodable {
    enum CodingKeys: String, CodingKey {
        case step, epoch, epochs, loss
        case lossEMA = "loss_ema"
        case learningRate = "learning_rate"
        case tokensPerSecond = "tokens_per_second"
        case elapsedSeconds = "elapsed_s"
        case totalSteps = "total_steps"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(step, forKey: .step)
        try container.encode(totalSteps, forKey: .totalSteps)
        try container.encode(epoch, forKey: .epoch)
        try container.encode(epochs, forKey: .epochs)
        try container.encode(loss, forKey: .loss)
        try container.encode(lossEMA, forKey: .lossEMA)
        // The Float's shortest decimal (2e-4, not 0.00020000037329737097).
        try container.encode(Double("\(learningRate)") ?? Double(learningRate), forKey: .learningRate)
        try container.encode(tokensPerSecond, forKey: .tokensPerSecond)
        try container.encode(elapsedSeconds, forKey: .elapsedSeconds)
    }

    /// The compact `*.metrics.jsonl` encoding: sorted keys, one line, no trailing newline;
    /// non-finite losses as the strings `"nan"`, `"inf"`, `"-inf"` (as in `metrics.jsonl`).
    public func jsonLine() throws -> String {
        try StepMetrics.jsonLine(of: self)
    }
}

/// The SFT training curve next to the weights: one JSON object per optimizer step in
/// `<sft.output without extension>.metrics.jsonl`, written and flushed per line, so a cold
/// start can be watched (`tail -f`) and compared after the fact, like an RL run's `metrics.jsonl`.
public final class SFTMetricsFile {
    public let path: String
    private var handle: FileHandle?

    /// `Checkpoints/sft/model.h5` → `Checkpoints/sft/model.metrics.jsonl`.
    public static func path(forWeights weightsPath: String) -> String {
        (weightsPath as NSString).deletingPathExtension + ".metrics.jsonl"
    }

    /// Creates (or empties: SFT always trains from scratch, so an old curve would mislead) the
    /// file, and its directory when missing.
    public init(path: String) throws {
        self.path = path
        try createParentDirectory(of: path)
        guard FileManager.default.createFile(atPath: path, contents: nil),
              let handle = FileHandle(forWritingAtPath: path) else {
            throw CermError.io(path: path, reason: "cannot create the SFT metrics file")
        }
        self.handle = handle
    }

    /// Appends one step's line.
    public func record(_ progress: SFTProgress) throws {
        guard let handle else { throw CermError.io(path: path, reason: "SFT metrics file is closed") }
        let line = try progress.jsonLine() + "\n"
        do { try handle.write(contentsOf: Data(line.utf8)) } catch {
            throw CermError.io(path: path, reason: "append failed: \(error.localizedDescription)")
        }
    }

    /// Closes the file; later `record` calls throw.
    public func close() {
        try? handle?.close()
        handle = nil
    }

    deinit { try? handle?.close() }
}
