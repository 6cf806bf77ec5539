import Shared

/// Preallocated keys and values of the attention layers for a fixed set of sequences.
///
/// Layout: one contiguous allocation, `[sequence][layer][K|V][capacity · kvDim]`. Per sequence and
/// layer, keys are stored TRANSPOSED as `[kvDim, capacity]` (column `t` = cache position `t`, so
/// attention scores of consecutive positions are vertical SIMD multiply-adds) and values
/// row-major as `[capacity, kvDim]`. Keys are stored after QK-norm and RoPE, as attention uses them. Slots are written
/// by the generator only; the class is `@unchecked Sendable` because it is immutable once a
/// ``SharedPrefix`` owns it.
public final class KVCache: @unchecked Sendable {
    /// Number of sequence slots.
    public let sequences: Int
    /// Transformer layers.
    public let layers: Int
    /// Width of one key (or value) row: `kvHeads · headDim`.
    public let kvDim: Int
    /// Positions each slot can hold.
    public let capacity: Int
    private let storage: UnsafeMutablePointer<Float>
    private let matrixStride: Int
    private let sequenceStride: Int

    /// A zero-filled cache of `sequences` slots of `capacity` positions each.
    public init(sequences: Int, layers: Int, kvDim: Int, capacity: Int) {
        self.sequences = max(0, sequences)
        self.layers = layers
        self.kvDim = kvDim
        self.capacity = max(0, capacity)
        matrixStride = self.capacity * kvDim
        sequenceStride = 2 * layers * matrixStride
        let total = max(1, self.sequences * sequenceStride)
        storage = .allocate(capacity: total)
        storage.initialize(repeating: 0, count: total)
    }

    /// A cache shaped for `config`.
    public convenience init(config: TransformerConfig, sequences: Int, capacity: Int) {
        self.init(sequences: sequences, layers: config.layers, kvDim: config.kvDim, capacity: capacity)
    }

    deinit { storage.deallocate() }

    /// Keys of `layer` for slot `sequence`: `[kvDim, capacity]` (transposed), row-major.
    @inline(__always)
    public func keys(layer: Int, sequence: Int) -> UnsafeMutablePointer<Float> {
        storage + sequence * sequenceStride + (2 * layer) * matrixStride
    }

    /// Values of `layer` for slot `sequence`: `[capacity, kvDim]`, row-major.
    @inline(__always)
    public func values(layer: Int, sequence: Int) -> UnsafeMutablePointer<Float> {
        storage + sequence * sequenceStride + (2 * layer + 1) * matrixStride
    }

    /// Total bytes held.
    public var byteCount: Int { sequences * sequenceStride * MemoryLayout<Float>.stride }
}

/// The keys and values of a prompt prefix, computed once by ``Generator/prefill(prefix:)`` and
/// shared read-only by every sequence continued from it with
/// ``Generator/generate(continuing:requests:)`` or ``Generator/score(_:continuing:)``.
///
/// Continuing sequences attend to this cache in place (no copy); their own positions start at
/// ``length``. A prefix is valid only for the generator (and weights) that computed it.
public final class SharedPrefix: Sendable {
    /// The prefix tokens.
    public let tokens: [TokenID]
    /// Number of prefix positions (`tokens.count`).
    public var length: Int { tokens.count }
    /// The prefix's keys and values (one slot).
    public let cache: KVCache
    /// Logits at the last prefix position, used when a continuing request has an empty prompt.
    public let lastLogits: [Float]
    let ownerIdentity: ObjectIdentifier
    let parametersVersion: Int

    init(tokens: [TokenID], cache: KVCache, lastLogits: [Float], owner: ObjectIdentifier, parametersVersion: Int) {
        self.tokens = tokens
        self.cache = cache
        self.lastLogits = lastLogits
        self.ownerIdentity = owner
        self.parametersVersion = parametersVersion
    }
}
