/// Counter-based random numbers: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy
/// as 1, 2, 3", SC'11), the generator of Random123, cuRAND and JAX.
///
/// A counter-based generator has no state: the output is a pure function of a key and a counter.
/// Generation uses the sequence's seed as the key and the generated-token index as the counter, so
/// the random number that decides token `i` of a sequence depends only on `(seed, i)` — never on
/// which other sequences share the batch, on thread count, or on how many draws happened before.
public enum CounterRNG {
    /// The four 32-bit words of Philox4x32-10 for a 128-bit `counter` and 64-bit `key`.
    ///
    /// Matches the Random123 known-answer tests (e.g. counter 0, key 0 →
    /// `6627e8d5 e169c58d bc57ac4c 9b00dbd8`).
    @inlinable
    public static func philox4x32(counter: (UInt32, UInt32, UInt32, UInt32), key: (UInt32, UInt32))
        -> (UInt32, UInt32, UInt32, UInt32)
    {
        let multiplier0: UInt64 = 0xD251_1F53
        let multiplier1: UInt64 = 0xCD9E_8D57
        let weyl0: UInt32 = 0x9E37_79B9
        let weyl1: UInt32 = 0xBB67_AE85
        var (c0, c1, c2, c3) = counter
        var (k0, k1) = key
        for round in 0..<10 {
            if round > 0 {
                k0 &+= weyl0
                k1 &+= weyl1
            }
            let product0 = multiplier0 &* UInt64(c0)
            let product1 = multiplier1 &* UInt64(c2)
            let hi0 = UInt32(truncatingIfNeeded: product0 >> 32), lo0 = UInt32(truncatingIfNeeded: product0)
            let hi1 = UInt32(truncatingIfNeeded: product1 >> 32), lo1 = UInt32(truncatingIfNeeded: product1)
            (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
        }
        return (c0, c1, c2, c3)
    }

    /// The uniform number in `[0, 1)` for draw `index` of the stream `seed`.
    ///
    /// Definition (part of the reproducibility contract; changing it changes every rollout):
    /// `(w0, w1, _, _) = Philox4x32-10(counter: (lo32(index), hi32(index), 0, 0),
    /// key: (lo32(seed), hi32(seed)))`, then `u = ((w0 << 32 | w1) >> 11) · 2⁻⁵³`
    /// (53 random bits, so `u` is exactly representable and never 1).
    @inlinable
    public static func uniform(seed: UInt64, index: UInt64) -> Double {
        let words = philox4x32(
            counter: (UInt32(truncatingIfNeeded: index), UInt32(truncatingIfNeeded: index >> 32), 0, 0),
            key: (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32)))
        let bits = (UInt64(words.0) << 32 | UInt64(words.1)) >> 11
        return Double(bits) * 0x1p-53
    }
}
