/// GPT-2's byte-to-unicode alphabet: every byte is spelled as one printable character, so a
/// vocabulary of byte strings can be stored as text. Printable Latin-1 bytes (`!`…`~`, `¡`…`¬`,
/// `®`…`ÿ`) stand for themselves; the other 68 bytes take U+0100, U+0101, … in byte order
/// (space is `Ġ` U+0120, newline `Ċ` U+010A).
enum ByteLevel {
    /// The character spelling each byte, indexed by the byte.
    static let characterOfByte: [Character] = {
        var spelling = [Character](repeating: " ", count: 256)
        var next: UInt32 = 256
        for byte in 0..<256 {
            let printable = (33...126).contains(byte) || (161...172).contains(byte) || (174...255).contains(byte)
            if printable {
                spelling[byte] = Character(Unicode.Scalar(UInt8(byte)))
            } else {
                spelling[byte] = Character(Unicode.Scalar(next)!)
                next += 1
            }
        }
        return spelling
    }()

    /// The byte each alphabet character stands for.
    static let byteOfCharacter: [Character: UInt8] = {
        var bytes: [Character: UInt8] = [:]
        for (byte, character) in characterOfByte.enumerated() { bytes[character] = UInt8(byte) }
        return bytes
    }()

    /// The bytes a token spelled in the alphabet stands for, or nil when a character is outside it.
    static func bytes(ofSpelling token: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(token.utf8.count)
        for character in token {
            guard let byte = byteOfCharacter[character] else { return nil }
            bytes.append(byte)
        }
        return bytes
    }

    /// The alphabet spelling of raw bytes.
    static func spelling(of bytes: some Sequence<UInt8>) -> String {
        String(bytes.map { characterOfByte[Int($0)] })
    }
}
