@testable import Shared
import Testing

@Suite struct ChecksumTests {
    /// Reference values from the `xxhash` Python package (`xxh64_intdigest(data, seed=0)`),
    /// covering every tail path: bytes, a 4-byte word, 8-byte words and the 32-byte lanes.
    @Test func xxh64MatchesTheReferenceImplementation() {
        let cases: [([UInt8], UInt64)] = [
            ([], 0xef46_db37_51d8_e999),
            (Array("a".utf8), 0xd24e_c4f1_a98c_6e5b),
            (Array("abc".utf8), 0x44bc_2cf5_ad77_0999),
            (Array(0..<7), 0x14cc_643f_630c_72d2),
            (Array(0..<31), 0xc346_d2b5_9b4d_8ee1),
            (Array(0..<32), 0xcbf5_9c51_16ff_32b4),
            (Array(0..<100), 0x6ac1_e580_3216_6597),
            ((0..<1000).map { UInt8($0 * 7 % 256) }, 0x2527_5608_a9cf_c168),
        ]
        for (bytes, expected) in cases {
            #expect(Checksum.xxh64(bytes) == expected, "\(bytes.count) bytes")
        }
    }

    @Test func xxh64ReadsUnalignedBytes() {
        let bytes = (0..<1001).map { UInt8($0 * 7 % 256) }
        let shifted = bytes.withUnsafeBytes { Checksum.xxh64(UnsafeRawBufferPointer(rebasing: $0[1...])) }
        #expect(shifted == Checksum.xxh64(Array(bytes[1...])))
    }
}
