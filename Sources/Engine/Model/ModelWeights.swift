import Foundation
import Shared

/// All parameters of a transformer in one flat float32 buffer laid out by ``ParameterLayout``.
///
/// A value type: assigning it copies (lazily, copy-on-write), so `let snapshot = weights`
/// freezes a version that later optimizer steps do not change. `==` is bit-exact (it compares
/// the float bytes, so `-0 ≠ +0` and identical NaNs are equal).
///
/// Named access uses Hugging Face names (`model.layers.0.mlp.up_proj.weight`, shapes `[out, in]`
/// for linear weights); hot loops use ``values`` through `withUnsafeBufferPointer` and
/// ``ParameterSpec/offset``.
public struct ModelWeights: Sendable {
    public let config: TransformerConfig
    public let layout: ParameterLayout
    /// The flat buffer, `layout.totalCount` floats, tensors at their ``ParameterSpec/offset``.
    public var values: [Float]

    /// All-zero weights.
    public init(config: TransformerConfig) {
        self.config = config
        self.layout = ParameterLayout(config)
        self.values = [Float](repeating: 0, count: layout.totalCount)
    }

    /// Wraps an existing flat buffer; throws if its size does not match the layout.
    public init(config: TransformerConfig, values: [Float]) throws {
        let layout = ParameterLayout(config)
        guard values.count == layout.totalCount else {
            throw CermError.invalid("ModelWeights: \(values.count) values, the layout of this config needs \(layout.totalCount)")
        }
        self.config = config
        self.layout = layout
        self.values = values
    }

    /// Deterministic random initialisation: every matrix (2-D tensor, including the embedding
    /// and an untied LM head) ~ Normal(0, `initStd`), norm weights = 1, biases = 0.
    ///
    /// The normal draws are counter-based, so they do not depend on iteration order or
    /// threads: element `i` of the flat buffer uses SplitMix64 of `seed` at counters `2i` and
    /// `2i+1` as two uniforms `u1 ∈ (0, 1]`, `u2 ∈ [0, 1)` and takes Box–Muller's
    /// `sqrt(−2 ln u1)·cos(2π u2)`, computed in Double and rounded to Float. Results are the same
    /// on every platform whose libm rounds `log`/`cos` the same (glibc and Darwin agree to far
    /// below Float precision).
    public init(config: TransformerConfig, seed: UInt64, initStd: Float) {
        self.init(config: config)
        let std = Double(initStd)
        values.withUnsafeMutableBufferPointer { buf in
            for spec in layout.specs {
                let isNorm = spec.name.hasSuffix("norm.weight")
                let isBias = spec.name.hasSuffix(".bias")
                for i in spec.range {
                    if isNorm {
                        buf[i] = 1
                    } else if isBias {
                        buf[i] = 0
                    } else {
                        buf[i] = Float(std * ParameterInitNoise.standardNormal(seed: seed, index: UInt64(i)))
                    }
                }
            }
        }
    }

    /// The spec of tensor `name`, or an error naming it.
    public func spec(_ name: String) throws -> ParameterSpec {
        guard let spec = layout.spec(name) else {
            throw CermError.invalid("ModelWeights: no parameter named \(name) in a \(config.family) model with this config")
        }
        return spec
    }

    /// A copy of tensor `name` (row-major, HF shape `spec.shape`).
    public func tensor(_ name: String) throws -> [Float] {
        let s = try spec(name)
        return Array(values[s.range])
    }

    /// Replaces tensor `name`; `newValues` must have the tensor's element count.
    public mutating func setTensor(_ name: String, _ newValues: [Float]) throws {
        let s = try spec(name)
        guard newValues.count == s.count else {
            throw CermError.invalid("ModelWeights: \(name) has \(s.count) elements, got \(newValues.count)")
        }
        values.replaceSubrange(s.range, with: newValues)
    }

    /// FNV-1a 64 over the float bytes of the flat buffer (see ``Checksum/fnv1a64(_:seed:)``).
    public var checksum: UInt64 {
        values.withUnsafeBufferPointer { Checksum.fnv1a64($0) }
    }
}

extension ModelWeights: Equatable {
    /// Bit-exact equality of config and every float's bytes.
    public static func == (lhs: ModelWeights, rhs: ModelWeights) -> Bool {
        guard lhs.config == rhs.config, lhs.values.count == rhs.values.count else { return false }
        return lhs.values.withUnsafeBytes { a in
            rhs.values.withUnsafeBytes { b in
                a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0
            }
        }
    }
}

/// Gradients (∂L/∂θ) in the same flat layout as ``ModelWeights``.
///
/// ``Transformer/backward(dLogprobs:into:)`` *adds* into it, so several micro-batches can be
/// accumulated before one optimizer step; call ``zero()`` to start afresh.
public struct ModelGradients: Sendable, Equatable {
    public let layout: ParameterLayout
    public var values: [Float]

    /// Zero gradients for `config`.
    public init(config: TransformerConfig) {
        self.layout = ParameterLayout(config)
        self.values = [Float](repeating: 0, count: layout.totalCount)
    }

    /// Sets every gradient to 0 (keeps the allocation).
    public mutating func zero() {
        values.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    }

    /// A copy of the gradient of tensor `name`.
    public func tensor(_ name: String) throws -> [Float] {
        guard let s = layout.spec(name) else { throw CermError.invalid("ModelGradients: no parameter named \(name)") }
        return Array(values[s.range])
    }

    /// Adds `other` element-wise (e.g. the gradients of another data shard). Throws if it was
    /// made for a different layout.
    public mutating func add(_ other: ModelGradients) throws {
        guard other.layout == layout else {
            throw CermError.invalid("ModelGradients.add: the gradients were made for a different model config")
        }
        try add(values: other.values)
    }

    /// Adds a gradient in this layout given as its flat values (one a worker computed). Throws
    /// if the count differs.
    public mutating func add(values other: [Float]) throws {
        guard other.count == values.count else {
            throw CermError.invalid("ModelGradients.add: \(other.count) values, the model has \(values.count)")
        }
        values.withUnsafeMutableBufferPointer { sum in
            other.withUnsafeBufferPointer { part in
                for i in 0..<sum.count { sum[i] += part[i] }
            }
        }
    }

    /// Makes this buffer the start of a sum of gradients, in place: each value becomes
    /// `+0 + value`, exactly what ``add(_:)`` of it into a zeroed buffer gives (only -0 changes,
    /// to +0). The first data shard's buffer can then sum the shards bit for bit as a zeroed
    /// buffer of the parameters' size did, without that buffer.
    public mutating func beginSum() {
        values.withUnsafeMutableBufferPointer { g in
            for i in 0..<g.count { g[i] = 0 + g[i] }
        }
    }

    /// Multiplies every gradient by `factor`.
    public mutating func scale(by factor: Float) {
        values.withUnsafeMutableBufferPointer { g in
            for i in 0..<g.count { g[i] *= factor }
        }
    }

    /// Global L2 norm, accumulated in Double in buffer order (deterministic).
    public var l2Norm: Double {
        values.withUnsafeBufferPointer { g in
            var s = 0.0
            for x in g { s += Double(x) * Double(x) }
            return s.squareRoot()
        }
    }

    /// Global gradient-norm clipping: if the L2 norm exceeds `maxNorm`, scales all gradients by
    /// `maxNorm / norm`. Returns the norm *before* clipping. A `maxNorm ≤ 0` disables clipping.
    /// A non-finite norm is returned as is and the gradients are left unchanged (the caller
    /// should skip the step).
    @discardableResult
    public mutating func clipGlobalNorm(maxNorm: Double) -> Double {
        let norm = l2Norm
        if maxNorm > 0, norm.isFinite, norm > maxNorm {
            scale(by: Float(maxNorm / norm))
        }
        return norm
    }
}

/// Counter-based standard normals for parameter initialisation (SplitMix64 + Box–Muller).
enum ParameterInitNoise {
    /// SplitMix64's output function applied to `seed + (counter + 1)·golden`: a stateless hash,
    /// so draw `i` does not depend on draws before it.
    @inline(__always)
    static func splitMix64(seed: UInt64, counter: UInt64) -> UInt64 {
        var z = seed &+ (counter &+ 1) &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Standard normal number `index` of the stream `seed`.
    static func standardNormal(seed: UInt64, index: UInt64) -> Double {
        let scale = 1.0 / 9_007_199_254_740_992.0  // 2^-53
        let u1 = (Double(splitMix64(seed: seed, counter: 2 &* index) >> 11) + 1) * scale  // (0, 1]
        let u2 = Double(splitMix64(seed: seed, counter: 2 &* index &+ 1) >> 11) * scale  // [0, 1)
        return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2)
    }
}
