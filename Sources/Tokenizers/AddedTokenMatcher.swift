import Shared

/// Finds added tokens in text as `tokenizers`' AddedVocabulary does: leftmost match first, the
/// longest at that position, in two passes (tokens with `normalized` false on the raw text, then
/// those with it true on each normalized remainder).
struct AddedTokenMatcher: Sendable {
    enum Segment {
        case added(TokenID)
        case text(Range<Int>)
    }

    /// A byte trie; node 0 is the root.
    private struct Trie: Sendable {
        var children: [[UInt8: Int32]] = [[:]]
        var tokenAt: [Int32] = [-1]
        var startsToken = [Bool](repeating: false, count: 256)

        mutating func insert(_ bytes: [UInt8], token: Int32) {
            guard let first = bytes.first else { return }
            startsToken[Int(first)] = true
            var node = 0
            for byte in bytes {
                if let child = children[node][byte] {
                    node = Int(child)
                } else {
                    children.append([:])
                    tokenAt.append(-1)
                    children[node][byte] = Int32(children.count - 1)
                    node = children.count - 1
                }
            }
            tokenAt[node] = token
        }

        /// The longest token starting at `start`: (token index, end) or nil.
        func longest(in bytes: [UInt8], at start: Int) -> (Int, Int)? {
            var node = 0, index = start, found: (Int, Int)?
            while index < bytes.count, let child = children[node][bytes[index]] {
                node = Int(child)
                index += 1
                if tokenAt[node] >= 0 { found = (Int(tokenAt[node]), index) }
            }
            return found
        }
    }

    private let tokens: [AddedToken]
    /// Indexed by `normalizedPass ? 2 : 0` + `parseSpecial ? 1 : 0`.
    private let tries: [Trie]

    init(_ tokens: [AddedToken]) {
        self.tokens = tokens
        var tries: [Trie] = []
        for normalizedPass in [false, true] {
            for parseSpecial in [false, true] {
                var trie = Trie()
                for (index, token) in tokens.enumerated() where token.normalized == normalizedPass && (parseSpecial || !token.special) {
                    trie.insert(Array(token.content.utf8), token: Int32(index))
                }
                tries.append(trie)
            }
        }
        self.tries = tries
    }

    /// Calls `body` with the added tokens and the text between them, in order.
    func split(_ bytes: [UInt8], parseSpecial: Bool, normalizedPass: Bool, _ body: (Segment) -> Void) {
        let trie = tries[(normalizedPass ? 2 : 0) + (parseSpecial ? 1 : 0)]
        var textStart = 0, index = 0
        while index < bytes.count {
            guard trie.startsToken[Int(bytes[index])], let (tokenIndex, matchEnd) = trie.longest(in: bytes, at: index) else {
                index += 1
                continue
            }
            let token = tokens[tokenIndex]
            var start = index, end = matchEnd
            if token.lstrip { start = Self.whitespaceStart(bytes, before: start, notBefore: textStart) }
            if token.rstrip { end = Self.whitespaceEnd(bytes, after: end) }
            if textStart < start { body(.text(textStart..<start)) }
            body(.added(token.id))
            textStart = end
            index = end
        }
        if textStart < bytes.count { body(.text(textStart..<bytes.count)) }
    }

    private static func whitespaceStart(_ bytes: [UInt8], before end: Int, notBefore floor: Int) -> Int {
        let text = String(decoding: bytes[floor..<end], as: UTF8.self)
        var start = end
        for scalar in text.unicodeScalars.reversed() {
            guard scalar.properties.isWhitespace else { break }
            start -= scalar.utf8.count
        }
        return start
    }

    private static func whitespaceEnd(_ bytes: [UInt8], after start: Int) -> Int {
        let text = String(decoding: bytes[start...], as: UTF8.self)
        var end = start
        for scalar in text.unicodeScalars {
            guard scalar.properties.isWhitespace else { break }
            end += scalar.utf8.count
        }
        return end
    }
}
