@testable import Shared
import Testing

/// A stored tokenizer's canonical bytes (the checksum stream, and what a coordinator sends its
/// workers) read back to the same tokenizer; damaged bytes are errors naming field and offset.
@Suite struct StoredTokenizerTests {
    static let small = StoredTokenizer(tokenizerJSON: Array("{}".utf8), bosToken: "<s>", eosToken: nil, padToken: nil, unkToken: nil,
                                       chatTemplate: "none", chatTemplateSystem: nil, chatTemplateJinja: nil)

    static func u64(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }

    @Test func theCanonicalBytesAreTheDocumentedStreamAndReadBack() throws {
        // tokenizer_json, bos, eos, pad, unk, chat_template, system, jinja: `1 length bytes` or `0`.
        let expected = Self.u64(1) + Self.u64(2) + Array("{}".utf8) + Self.u64(1) + Self.u64(3) + Array("<s>".utf8)
            + Self.u64(0) + Self.u64(0) + Self.u64(0) + Self.u64(1) + Self.u64(4) + Array("none".utf8) + Self.u64(0) + Self.u64(0)
        #expect(Self.small.canonicalBytes == expected)
        #expect(expected.count == 97)
        #expect(try StoredTokenizer(canonicalBytes: expected) == Self.small)

        let full = StoredTokenizer(tokenizerJSON: Array(#"{"model": {"type": "BPE"}}"#.utf8), bosToken: "<|im_start|>", eosToken: "<|im_end|>",
                                   padToken: "<pad>", unkToken: "<unk>", chatTemplate: "chatml", chatTemplateSystem: "Be brief.\n",
                                   chatTemplateJinja: "{% for m in messages %}{{ m.content }}{% endfor %} é 🙂")
        #expect(try StoredTokenizer(canonicalBytes: full.canonicalBytes) == full)
    }

    @Test func damagedBytesNameTheFieldAndOffset() {
        let bytes = Self.small.canonicalBytes
        #expect(throws: CermError.invalid("stored tokenizer, field chat_template_jinja at byte 89: ends after 96 bytes")) {
            try StoredTokenizer(canonicalBytes: Array(bytes.dropLast()))
        }
        #expect(throws: CermError.invalid("stored tokenizer, field tokenizer_json at byte 0: presence flag 2, expected 0 or 1")) {
            try StoredTokenizer(canonicalBytes: Self.u64(2) + bytes.dropFirst(8))
        }
        #expect(throws: CermError.invalid("stored tokenizer, field tokenizer_json at byte 0: length 1000 runs past the end (97 bytes)")) {
            try StoredTokenizer(canonicalBytes: Self.u64(1) + Self.u64(1000) + bytes.dropFirst(16))
        }
        #expect(throws: CermError.invalid("stored tokenizer, field tokenizer_json at byte 0: absent, but required")) {
            try StoredTokenizer(canonicalBytes: Self.u64(0))
        }
        var invalidUTF8 = bytes
        invalidUTF8[34] = 0xFF  // inside "<s>"
        #expect(throws: CermError.invalid("stored tokenizer, field bos_token at byte 18: not UTF-8 text")) {
            try StoredTokenizer(canonicalBytes: invalidUTF8)
        }
        #expect(throws: CermError.invalid("stored tokenizer: 1 bytes after its last field, from byte 97")) {
            try StoredTokenizer(canonicalBytes: bytes + [0])
        }
    }
}
