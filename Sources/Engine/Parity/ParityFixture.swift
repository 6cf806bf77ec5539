import Foundation
import Shared

/// Reference numbers of a pretrained model computed by Hugging Face transformers, for
/// `cerm check-parity` (written by `scripts/reference_smollm2.py`, which documents the layout):
///
///     reference.json   index: model, vocabulary sample, per prompt its tokens, greedy tokens,
///                      greedy top-2 margins and the offset of its rows
///     logits.f32       little-endian float32, one row per prompt position:
///                      [max|logit|, top-k logits (descending), logits at the vocabulary sample]
///     top_ids.i32      little-endian int32, one row per prompt position: the top-k ids
///
/// A full-vocabulary dump would be ~1 GB, so each position keeps the entries that show a wrong
/// forward: the largest logits, the scale, and a fixed random sample of the rest.
public struct ParityFixture: Sendable {
    public static let indexFile = "reference.json"
    public static let logitsFile = "logits.f32"
    public static let topIDsFile = "top_ids.i32"

    public struct Prompt: Sendable, Decodable {
        /// The chat-templated prompt's token ids.
        public let tokens: [TokenID]
        /// Index of the prompt's first row in ``ParityFixture/logitRows``.
        public let rowOffset: Int
        /// The reference's greedy continuation (end-of-sequence stopping disabled).
        public let greedyTokens: [TokenID]
        /// Index in ``greedyTokens`` of the first end-of-turn token, if any.
        public let greedyFirstEndOfTurn: Int?
        /// Per greedy step, the reference's largest logit minus its second largest.
        public let greedyMargins: [Float]
    }

    /// The reference entries at one prompt position.
    public struct Row: Sendable {
        /// Max |logit| over the whole vocabulary.
        public let maxAbsoluteLogit: Float
        /// The top-k ids by logit, descending (the first is the argmax).
        public let topIDs: ArraySlice<Int32>
        public let topLogits: ArraySlice<Float>
        /// Logits at ``ParityFixture/vocabSample``.
        public let sampleLogits: ArraySlice<Float>
    }

    struct Model: Decodable {
        let file: String
        let vocabSize: Int
    }

    struct Index: Decodable {
        let generator: String
        let model: Model
        let topK: Int
        let vocabSample: [Int]
        let greedyTokens: Int
        let rows: Int
        let prompts: [Prompt]
    }

    /// The file name of the model the numbers belong to (its sha256 is in the index, for people).
    public let modelFile: String
    public let vocabSize: Int
    public let topK: Int
    public let vocabSample: [Int]
    /// Length of every greedy continuation.
    public let greedyTokens: Int
    public let prompts: [Prompt]
    let logitRows: [Float]
    let topIDRows: [Int32]

    var floatsPerRow: Int { 1 + topK + vocabSample.count }

    /// Reads and checks the fixture in `directory`: sizes of the binary files against the index,
    /// contiguous prompt rows, ids inside the vocabulary. Errors name the file and the entry.
    public init(directory: String) throws {
        let indexPath = (directory as NSString).appendingPathComponent(Self.indexFile)
        let index: Index
        do {
            let decoder = JSONDecoder()
            decoder.keyDecodingStrategy = .convertFromSnakeCase
            index = try decoder.decode(Index.self, from: try Self.read(indexPath))
        } catch let error as CermError {
            throw error
        } catch {
            throw CermError.io(path: indexPath, reason: "not a parity fixture index: \(error)")
        }
        // Checked on locals: closures cannot capture self before every property is set.
        let vocabSize = index.model.vocabSize, topK = index.topK, greedyTokens = index.greedyTokens
        func invalid(_ reason: String) -> CermError { .io(path: indexPath, reason: reason) }
        guard (1...Int(Int32.max)).contains(vocabSize), (1...vocabSize).contains(topK), greedyTokens > 0 else {
            throw invalid("vocab_size \(vocabSize), top_k \(topK) and greedy_tokens \(greedyTokens) must be positive, top_k ≤ vocab_size < 2³¹")
        }
        if let id = index.vocabSample.first(where: { !(0..<vocabSize).contains($0) }) {
            throw invalid("vocab_sample id \(id) is outside 0..<\(vocabSize)")
        }
        var expectedOffset = 0
        for (number, prompt) in index.prompts.enumerated() {
            guard !prompt.tokens.isEmpty, prompt.rowOffset == expectedOffset else {
                throw invalid("prompt \(number): \(prompt.tokens.count) tokens at row_offset \(prompt.rowOffset), expected a non-empty prompt at row \(expectedOffset)")
            }
            if let token = (prompt.tokens + prompt.greedyTokens).first(where: { !(0..<TokenID(vocabSize)).contains($0) }) {
                throw invalid("prompt \(number): token \(token) is outside 0..<\(vocabSize)")
            }
            guard prompt.greedyTokens.count == greedyTokens, prompt.greedyMargins.count == greedyTokens else {
                throw invalid("prompt \(number): \(prompt.greedyTokens.count) greedy tokens and \(prompt.greedyMargins.count) margins, expected \(greedyTokens)")
            }
            expectedOffset += prompt.tokens.count
        }
        guard expectedOffset == index.rows else {
            throw invalid("the prompts have \(expectedOffset) positions, rows says \(index.rows)")
        }
        let floatsPerRow = 1 + topK + index.vocabSample.count
        let logitRows = try Self.readLittleEndian(Self.path(directory, Self.logitsFile), count: index.rows * floatsPerRow) {
            Float(bitPattern: UInt32(littleEndian: $0))
        }
        let topIDRows = try Self.readLittleEndian(Self.path(directory, Self.topIDsFile), count: index.rows * topK) {
            Int32(bitPattern: UInt32(littleEndian: $0))
        }
        if let id = topIDRows.first(where: { !(0..<Int32(vocabSize)).contains($0) }) {
            throw CermError.io(path: Self.path(directory, Self.topIDsFile), reason: "id \(id) is outside 0..<\(vocabSize)")
        }
        modelFile = index.model.file
        self.vocabSize = vocabSize
        self.topK = topK
        vocabSample = index.vocabSample
        self.greedyTokens = greedyTokens
        prompts = index.prompts
        self.logitRows = logitRows
        self.topIDRows = topIDRows
    }

    /// The reference entries of prompt `prompt` at `position`.
    public func row(prompt: Int, position: Int) -> Row {
        let row = prompts[prompt].rowOffset + position
        let floats = row * floatsPerRow
        return Row(maxAbsoluteLogit: logitRows[floats],
                   topIDs: topIDRows[(row * topK)..<((row + 1) * topK)],
                   topLogits: logitRows[(floats + 1)..<(floats + 1 + topK)],
                   sampleLogits: logitRows[(floats + 1 + topK)..<(floats + floatsPerRow)])
    }

    private static func path(_ directory: String, _ file: String) -> String {
        (directory as NSString).appendingPathComponent(file)
    }

    private static func read(_ path: String) throws -> Data {
        if let reason = directoryInsteadOfFile(path) { throw CermError.io(path: path, reason: reason) }
        do {
            return try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw CermError.io(path: path, reason: "cannot read: \(error.localizedDescription)")
        }
    }

    /// `count` 4-byte little-endian values of the file at `path` (which must hold exactly that many).
    private static func readLittleEndian<T>(_ path: String, count: Int, _ convert: (UInt32) -> T) throws -> [T] {
        let data = try read(path)
        guard data.count == count * 4 else {
            throw CermError.io(path: path, reason: "\(data.count) bytes, the index needs \(count) values of 4 bytes (\(count * 4))")
        }
        return data.withUnsafeBytes { bytes in
            (0..<count).map { convert(bytes.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self)) }
        }
    }
}
