@testable import Shared
import Testing

@Suite struct ByteTokenizerTests {
    let tokenizer = ByteTokenizer()

    @Test func roundTripsEveryByteString() {
        var state: UInt64 = 42
        for length in [0, 1, 7, 255, 1000] {
            let bytes: [UInt8] = (0..<length).map { _ in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return UInt8(truncatingIfNeeded: state >> 33)
            }
            #expect(tokenizer.decodeBytes(tokenizer.encode(bytes: bytes)) == bytes)
        }
        let all = (0...255).map { UInt8($0) }
        #expect(tokenizer.decodeBytes(tokenizer.encode(bytes: all)) == all)
    }

    @Test func specialsHaveFixedIdsAndNames() {
        #expect(ByteTokenizer.vocabularySize == 264)
        #expect(ByteTokenizer.Special.eos.rawValue == 258)
        let tokens: [TokenID] = [ByteTokenizer.Special.bos.rawValue] + tokenizer.encode("héllo") + [ByteTokenizer.Special.eos.rawValue]
        #expect(tokenizer.decode(tokens) == "héllo")
        #expect(tokenizer.decode(tokens, showSpecials: true) == "<|bos|>héllo<|eos|>")
        #expect(tokenizer.decodeBytes(tokens) == Array("héllo".utf8))
    }

    @Test func validityCoversVocabularyOnly() {
        #expect(tokenizer.isValid(0) && tokenizer.isValid(263))
        #expect(!tokenizer.isValid(264) && !tokenizer.isValid(-1))
    }
}
