/// SplitMix64: a tiny, fast, seedable generator whose output is fixed by this file alone.
///
/// Data generation and teacher mistakes must be reproducible across Swift versions and
/// platforms, so nothing here goes through the standard library's `random(in:using:)`, whose
/// mapping from raw bits to ranges is not part of any stability promise.
public struct SplitMix64: Sendable, Equatable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// Derives an independent stream from a seed and a list of labels (e.g. run seed, pair
    /// hash, response index), so that each trace's randomness does not depend on how many
    /// other traces were generated before it.
    public init(seed: UInt64, streams: UInt64...) {
        var mixed = SplitMix64.mix(seed)
        for s in streams { mixed = SplitMix64.mix(mixed ^ SplitMix64.mix(s &+ 0x9E37_79B9_7F4A_7C15)) }
        state = mixed
    }

    /// The finaliser of SplitMix64, also usable as a 64-bit hash mixer.
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The next 64 raw bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return SplitMix64.mix(state)
    }

    /// A uniform integer in `0..<bound` (`bound` > 0), by multiply-shift on the high bits;
    /// the bias is below 2⁻³² for the small bounds used here.
    public mutating func below(_ bound: Int) -> Int {
        precondition(bound > 0, "SplitMix64.below needs a positive bound")
        let product = next().multipliedFullWidth(by: UInt64(bound))
        return Int(product.high)
    }

    /// A uniform integer in `range`.
    public mutating func int(in range: ClosedRange<Int>) -> Int {
        range.lowerBound + below(range.upperBound - range.lowerBound + 1)
    }

    /// A uniform double in `[0, 1)` from the top 53 bits.
    public mutating func unit() -> Double {
        Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// True with probability `p` (clamped to 0…1).
    public mutating func chance(_ p: Double) -> Bool { unit() < p }

    /// A uniformly chosen element of a non-empty array.
    public mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }

    /// A Fisher–Yates shuffle of `items`.
    public mutating func shuffled<T>(_ items: [T]) -> [T] {
        var out = items
        if out.count < 2 { return out }
        for i in stride(from: out.count - 1, to: 0, by: -1) {
            let j = below(i + 1)
            out.swapAt(i, j)
        }
        return out
    }
}

/// A stable 64-bit hash of a string (FNV-1a over its UTF-8 bytes); Swift's `hashValue` is
/// randomised per process and cannot seed anything reproducible.
public func stableHash(_ text: String) -> UInt64 { Checksum.fnv1a64(Array(text.utf8)) }
