import Shared

/// A float32 tensor with its Hugging Face name (`model.layers.0.self_attn.q_proj.weight`) and
/// row-major shape. An empty shape is a scalar (one value); a zero dimension makes it empty.
///
/// Its values are an array of its own, or a range of a flat buffer it shares with other tensors
/// (``init(name:shape:sharing:range:)``): a learner's checkpoint state then points into the
/// learner's parameters and AdamW moments instead of copying them (at 135M parameters the copy
/// was 2 GiB on top of training). Copy-on-write keeps the value semantics either way.
public struct NamedTensor: Sendable {
    public var name: String
    public var shape: [Int]
    private var storage: [Float]
    private var range: Range<Int>

    public init(name: String, shape: [Int], values: [Float]) {
        self.name = name
        self.shape = shape
        self.storage = values
        self.range = values.indices
    }

    /// The tensor at `range` of `buffer`, sharing the buffer's storage instead of copying it.
    public init(name: String, shape: [Int], sharing buffer: [Float], range: Range<Int>) {
        precondition(range.lowerBound >= 0 && range.upperBound <= buffer.count, "NamedTensor: range \(range) outside a buffer of \(buffer.count)")
        self.name = name
        self.shape = shape
        self.storage = buffer
        self.range = range
    }

    /// The values; a copy when the tensor shares a larger buffer (use ``withUnsafeValues(_:)``
    /// to read them in place).
    public var values: [Float] {
        get { range == storage.indices ? storage : Array(storage[range]) }
        set {
            storage = newValue
            range = newValue.indices
        }
    }

    /// Number of values.
    public var count: Int { range.count }

    /// Calls `body` with the values where they are stored, without copying them.
    public func withUnsafeValues<Result>(_ body: (UnsafeBufferPointer<Float>) throws -> Result) rethrows -> Result {
        try storage.withUnsafeBufferPointer { try body(UnsafeBufferPointer(rebasing: $0[range])) }
    }

    /// Whether `other` has the same name, shape and bit-identical values. Unlike `==`, NaN equals
    /// a NaN of the same bit pattern and -0 differs from +0, which is what exact resume needs.
    public func isBitIdentical(to other: NamedTensor) -> Bool {
        name == other.name && shape == other.shape && count == other.count
            && withUnsafeValues { a in other.withUnsafeValues { b in zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern } } }
    }
}

extension NamedTensor: Equatable {
    /// Name, shape and values (IEEE `==`: NaN ≠ NaN, -0 = +0), wherever the values are stored.
    public static func == (lhs: NamedTensor, rhs: NamedTensor) -> Bool {
        lhs.name == rhs.name && lhs.shape == rhs.shape && lhs.count == rhs.count
            && lhs.withUnsafeValues { a in rhs.withUnsafeValues { b in a.elementsEqual(b) } }
    }
}

/// Where the learner is in its data: the epoch, the position inside that epoch's permutation,
/// and the seed the permutation was drawn from.
public struct DataCursor: Sendable, Equatable, Codable {
    public var epoch: Int
    public var position: Int
    public var permutationSeed: UInt64

    public init(epoch: Int = 0, position: Int = 0, permutationSeed: UInt64 = 0) {
        self.epoch = epoch
        self.position = position
        self.permutationSeed = permutationSeed
    }
}

/// Everything a run needs to continue exactly where it stopped. Model-agnostic: parameters and
/// AdamW moments are lists of named tensors, configs are stored as the text they were given in.
///
/// `==` compares floats with IEEE semantics (NaN ≠ NaN); use ``isBitIdentical(to:)`` to compare
/// checkpoints.
public struct TrainingState: Sendable, Equatable {
    /// Optimizer steps taken so far (the `N` of `step_N.h5`).
    public var step: Int
    /// Version of the policy weights; workers sample with the version a task names.
    public var policyVersion: UInt64
    /// Model parameters by Hugging Face name, in the engine's order (kept on round trip).
    public var tensors: [NamedTensor]
    /// AdamW first moments, by the name of the parameter they belong to.
    public var adamM: [NamedTensor]
    /// AdamW second moments, by the name of the parameter they belong to.
    public var adamV: [NamedTensor]
    /// AdamW's step counter (bias correction).
    public var adamStep: Int
    public var dataCursor: DataCursor
    /// Opaque generator state words, restored as given.
    public var rngState: [UInt64]
    /// The full effective config (`Config.renderTOML()`).
    public var configText: String
    /// The model config as a JSON object with the engine's keys (`TransformerConfig.jsonString()`:
    /// `family`, `hidden_size`, `heads`, …; `cerm export` maps them to Hugging Face's).
    public var modelConfigJSON: String
    public var tokenizerDescription: String
    /// A pretrained model's tokenizer and chat template (format version 2, group `tokenizer/`);
    /// nil for cerm's byte tokenizer.
    public var tokenizer: StoredTokenizer?
    /// Free-form metadata (run name, git revision, ...).
    public var extra: [String: String]

    public init(step: Int, policyVersion: UInt64, tensors: [NamedTensor], adamM: [NamedTensor] = [],
                adamV: [NamedTensor] = [], adamStep: Int = 0, dataCursor: DataCursor = DataCursor(),
                rngState: [UInt64] = [], configText: String = "", modelConfigJSON: String = "{}",
                tokenizerDescription: String = "", tokenizer: StoredTokenizer? = nil, extra: [String: String] = [:]) {
        self.step = step
        self.policyVersion = policyVersion
        self.tensors = tensors
        self.adamM = adamM
        self.adamV = adamV
        self.adamStep = adamStep
        self.dataCursor = dataCursor
        self.rngState = rngState
        self.configText = configText
        self.modelConfigJSON = modelConfigJSON
        self.tokenizerDescription = tokenizerDescription
        self.tokenizer = tokenizer
        self.extra = extra
    }

    /// Equality with bit-exact float comparison (see ``NamedTensor/isBitIdentical(to:)``).
    public func isBitIdentical(to other: TrainingState) -> Bool {
        func same(_ a: [NamedTensor], _ b: [NamedTensor]) -> Bool {
            a.count == b.count && zip(a, b).allSatisfy { $0.isBitIdentical(to: $1) }
        }
        // Swift's String `==` is canonical equivalence; a checkpoint must keep the exact bytes.
        func bytes(_ a: String, _ b: String) -> Bool { a.utf8.elementsEqual(b.utf8) }
        func sortedExtra(_ e: [String: String]) -> [([UInt8], [UInt8])] {
            e.map { (Array($0.key.utf8), Array($0.value.utf8)) }.sorted { $0.0.lexicographicallyPrecedes($1.0) }
        }
        let extraA = sortedExtra(extra), extraB = sortedExtra(other.extra)
        return step == other.step && policyVersion == other.policyVersion && adamStep == other.adamStep
            && dataCursor == other.dataCursor && rngState == other.rngState
            && bytes(configText, other.configText) && bytes(modelConfigJSON, other.modelConfigJSON)
            && bytes(tokenizerDescription, other.tokenizerDescription) && tokenizer?.canonicalBytes == other.tokenizer?.canonicalBytes
            && extraA.count == extraB.count && zip(extraA, extraB).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
            && same(tensors, other.tensors) && same(adamM, other.adamM) && same(adamV, other.adamV)
    }
}
