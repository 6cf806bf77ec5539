import Foundation
import Shared

/// A token matched in the text before pre-tokenization (tokenizer.json's `added_tokens`, GGUF's
/// control and user-defined tokens).
public struct AddedToken: Sendable, Equatable {
    public var id: TokenID
    public var content: String
    /// Special tokens are skipped by `decode(skipSpecial: true)` and left as text by `encode(parseSpecial: false)`.
    public var special: Bool
    /// Whitespace to the left (`lstrip`) or right (`rstrip`) of a match is part of the token.
    public var lstrip: Bool
    public var rstrip: Bool
    /// Matched in the normalized text, after the tokens that are not (`tokenizers`' second pass).
    public var normalized: Bool

    public init(id: TokenID, content: String, special: Bool, lstrip: Bool = false, rstrip: Bool = false, normalized: Bool = false) {
        self.id = id
        self.content = content
        self.special = special
        self.lstrip = lstrip
        self.rstrip = rstrip
        self.normalized = normalized
    }
}

/// Byte-level BPE as Hugging Face `tokenizers` computes it:
///
///     text → added tokens matched (longest first, leftmost) → NFC if asked → pre-tokenizer pieces
///          → each piece's UTF-8 bytes → byte symbols merged by lowest merge rank, leftmost first
///
/// With `ignoreMerges` (Llama 3) a piece that is itself in the vocabulary is one token. `encode` adds
/// no BOS/EOS (as `add_special_tokens=False`); prompts put them in through the chat template.
public struct BPETokenizer: Sendable {
    public let preTokenizer: PreTokenizer
    public let ignoreMerges: Bool
    /// Unicode NFC before pre-tokenization (Qwen2's normalizer).
    public let normalizesNFC: Bool
    public let bosID: TokenID?
    public let eosID: TokenID?
    public let padID: TokenID?
    public let unkID: TokenID?
    public let addedTokens: [AddedToken]

    /// Token spelling (byte alphabet for the model vocabulary, content for added tokens) by id.
    private let tokens: [String?]
    private let ids: [String: TokenID]
    /// The bytes each id decodes to (an added token's content as is, a vocabulary token from its byte spelling).
    private let decodedBytes: [[UInt8]]
    private let specialIDs: Set<TokenID>
    /// Id of each single-byte symbol (-1 when the vocabulary lacks it).
    private let byteIDs: [TokenID]
    /// Vocabulary by the raw bytes a token stands for, for `ignoreMerges`.
    private let idsOfBytes: [[UInt8]: TokenID]
    /// Merge of the pair `left << 32 | right` to `rank << 32 | merged id`.
    private let merges: [UInt64: UInt64]
    /// The model's vocabulary (byte-alphabet spellings) and merges in rank order, as given: what
    /// ``tokenizerJSON()`` writes back.
    let vocabulary: [String: TokenID]
    let mergePairs: [(String, String)]
    /// The model's unknown token, used for a byte the vocabulary lacks (none: the byte is dropped, as `tokenizers` does).
    let modelUnknownID: TokenID?
    private let addedMatcher: AddedTokenMatcher
    private let cache = WordCache()

    /// From plain data: `vocabulary` maps GPT-2 byte-alphabet spellings to ids, `merges` are the
    /// ranked pairs (rank = position). `source` names where the data came from in errors.
    public init(vocabulary: [String: TokenID], merges: [(String, String)], addedTokens: [AddedToken],
                preTokenizer: PreTokenizer, ignoreMerges: Bool = false, normalizesNFC: Bool = false,
                bosID: TokenID? = nil, eosID: TokenID? = nil, padID: TokenID? = nil, unkID: TokenID? = nil,
                modelUnknownID: TokenID? = nil, source: String) throws {
        // Ids are dense in real vocabularies; bounding them keeps a corrupt id from sizing the tables.
        let idLimit = vocabulary.count + addedTokens.count
        var size = 0
        for (token, id) in vocabulary {
            guard id >= 0, Int(id) < idLimit else {
                throw CermError.io(path: source, reason: "token \"\(token)\" has id \(id), outside 0..<\(idLimit) (the number of tokens)")
            }
            size = max(size, Int(id) + 1)
        }
        for token in addedTokens {
            guard token.id >= 0, Int(token.id) < idLimit else {
                throw CermError.io(path: source, reason: "added token \"\(token.content)\" has id \(token.id), outside 0..<\(idLimit) (the number of tokens)")
            }
            size = max(size, Int(token.id) + 1)
        }
        var tokens = [String?](repeating: nil, count: size)
        var ids = vocabulary
        for (token, id) in vocabulary { tokens[Int(id)] = token }
        for token in addedTokens {
            tokens[Int(token.id)] = token.content
            ids[token.content] = token.id
        }
        for (name, id) in [("bos", bosID), ("eos", eosID), ("pad", padID), ("unk", unkID), ("model unk_token", modelUnknownID)] {
            if let id, !(0..<TokenID(size)).contains(id) {
                throw CermError.io(path: source, reason: "\(name) id \(id) is outside the vocabulary of \(size)")
            }
        }

        var mergeTable: [UInt64: UInt64] = [:]
        mergeTable.reserveCapacity(merges.count)
        for (rank, (left, right)) in merges.enumerated() {
            guard let leftID = vocabulary[left], let rightID = vocabulary[right], let mergedID = vocabulary[left + right] else {
                throw CermError.io(path: source, reason: "merge \(rank) \"\(left) \(right)\" uses a token that is not in the vocabulary")
            }
            let key = UInt64(UInt32(leftID)) << 32 | UInt64(UInt32(rightID))
            // A pair listed twice takes its later rank: tokenizers collects the merges into a map.
            mergeTable[key] = UInt64(rank) << 32 | UInt64(UInt32(mergedID))
        }

        var idsOfBytes: [[UInt8]: TokenID] = [:]
        if ignoreMerges {
            for (token, id) in vocabulary { if let bytes = ByteLevel.bytes(ofSpelling: token) { idsOfBytes[bytes] = id } }
        }
        let added = Set(addedTokens.map(\.id))
        self.decodedBytes = tokens.enumerated().map { id, token in
            guard let token else { return [] }
            if added.contains(TokenID(id)) { return Array(token.utf8) }
            return ByteLevel.bytes(ofSpelling: token) ?? Array(token.utf8)
        }
        self.tokens = tokens
        self.ids = ids
        self.byteIDs = ByteLevel.characterOfByte.map { vocabulary[String($0)] ?? -1 }
        self.idsOfBytes = idsOfBytes
        self.merges = mergeTable
        self.vocabulary = vocabulary
        self.mergePairs = merges
        self.specialIDs = Set(addedTokens.filter(\.special).map(\.id))
        self.addedTokens = addedTokens
        self.addedMatcher = AddedTokenMatcher(addedTokens)
        self.preTokenizer = preTokenizer
        self.ignoreMerges = ignoreMerges
        self.normalizesNFC = normalizesNFC
        self.bosID = bosID
        self.eosID = eosID
        self.padID = padID
        self.unkID = unkID
        self.modelUnknownID = modelUnknownID
    }

    /// Number of ids (one past the largest).
    public var vocabularySize: Int { tokens.count }

    /// The id of a token spelled as the vocabulary spells it (byte alphabet) or of an added token's content.
    public func id(of token: String) -> TokenID? { ids[token] }

    /// The spelling of an id, or nil for an id outside the vocabulary.
    public func token(of id: TokenID) -> String? {
        guard id >= 0, Int(id) < tokens.count else { return nil }
        return tokens[Int(id)]
    }

    public func isSpecial(_ id: TokenID) -> Bool { specialIDs.contains(id) }

    /// The token ids of `text`. With `parseSpecial` false, special tokens in the text are encoded as
    /// plain text (`tokenizers`' `encode_special_tokens`); non-special added tokens still match.
    public func encode(_ text: String, parseSpecial: Bool = true) -> [TokenID] {
        var output: [TokenID] = []
        output.reserveCapacity(text.utf8.count / 3)
        var scanned = ScannedText()
        var pieces: [Range<Int>] = [], next: [Range<Int>] = []
        let bytes = Array(text.utf8)
        addedMatcher.split(bytes, parseSpecial: parseSpecial, normalizedPass: false) { segment in
            switch segment {
            case let .added(id): output.append(id)
            case let .text(range):
                let plain = normalizesNFC
                    ? Array(String(decoding: bytes[range], as: UTF8.self).precomposedStringWithCanonicalMapping.utf8)
                    : Array(bytes[range])
                addedMatcher.split(plain, parseSpecial: parseSpecial, normalizedPass: true) { inner in
                    switch inner {
                    case let .added(id): output.append(id)
                    case let .text(innerRange): encodeText(plain[innerRange], &scanned, &pieces, &next, &output)
                    }
                }
            }
        }
        return output
    }

    /// Text between added tokens: pre-tokenizer pieces, each byte-level BPE'd.
    private func encodeText(_ utf8: ArraySlice<UInt8>, _ scanned: inout ScannedText, _ pieces: inout [Range<Int>],
                            _ next: inout [Range<Int>], _ output: inout [TokenID]) {
        guard !utf8.isEmpty else { return }
        scanned.load(utf8)
        pieces.removeAll(keepingCapacity: true)
        pieces.append(0..<scanned.scalars.count)
        for split in preTokenizer.splits {
            next.removeAll(keepingCapacity: true)
            for piece in pieces { split.split(scanned, piece, into: &next) }
            swap(&pieces, &next)
        }
        if preTokenizer.addPrefixSpace {
            // Each piece gets its own space, then its own GPT-2 split: rescan it as a new text.
            var pieceText = ScannedText(), inner: [Range<Int>] = []
            for piece in pieces {
                var pieceBytes = Array(scanned.bytes[scanned.offsets[piece.lowerBound]..<scanned.offsets[piece.upperBound]])
                if pieceBytes.first != 0x20 { pieceBytes.insert(0x20, at: 0) }
                pieceText.load(pieceBytes)
                inner.removeAll(keepingCapacity: true)
                if preTokenizer.byteLevelRegex {
                    SplitPattern.gpt2.split(pieceText, 0..<pieceText.scalars.count, into: &inner)
                } else {
                    inner.append(0..<pieceText.scalars.count)
                }
                for word in inner { encodeWord(pieceText.bytes[pieceText.offsets[word.lowerBound]..<pieceText.offsets[word.upperBound]], &output) }
            }
            return
        }
        if preTokenizer.byteLevelRegex {
            next.removeAll(keepingCapacity: true)
            for piece in pieces { SplitPattern.gpt2.split(scanned, piece, into: &next) }
            swap(&pieces, &next)
        }
        for piece in pieces { encodeWord(scanned.bytes[scanned.offsets[piece.lowerBound]..<scanned.offsets[piece.upperBound]], &output) }
    }

    /// One pre-tokenized word: its bytes as symbols, merged pair by pair, lowest rank (then leftmost) first.
    private func encodeWord(_ word: ArraySlice<UInt8>, _ output: inout [TokenID]) {
        if word.count == 1 {
            appendByteSymbol(word[word.startIndex], &output)
            return
        }
        let key = Array(word)
        if let cached = cache.lookup(key) {
            output.append(contentsOf: cached)
            return
        }
        if ignoreMerges, let whole = idsOfBytes[key] {
            output.append(whole)
            cache.store(key, [whole])
            return
        }
        var symbols: [TokenID] = []
        symbols.reserveCapacity(word.count)
        for byte in word { appendByteSymbol(byte, &symbols) }
        mergePairs(&symbols)
        output.append(contentsOf: symbols)
        cache.store(key, symbols)
    }

    /// Merges adjacent symbols, lowest merge rank first and leftmost among equal ranks, as
    /// `tokenizers`' Word::merge_all: a min-heap of `rank << 32 | position` over a linked list, so a
    /// word of n bytes costs n log n (a long run without spaces must not take quadratic time).
    private func mergePairs(_ symbols: inout [TokenID]) {
        let count = symbols.count
        guard count > 1 else { return }
        var next = Array(1...count), previous = Array(-1..<(count - 1))
        var alive = [Bool](repeating: true, count: count)
        var heap = MinHeap()
        func push(_ left: Int) {
            let right = next[left]
            if right < count, let merge = merges[pairKey(symbols[left], symbols[right])] { heap.push(merge & 0xFFFF_FFFF_0000_0000 | UInt64(left)) }
        }
        for position in 0..<(count - 1) { push(position) }
        while let top = heap.pop() {
            let position = Int(top & 0xFFFF_FFFF), right = alive[position] ? next[position] : count
            // Stale entries: the symbol or its right neighbour has merged since (ranks are unique per pair).
            guard right < count, let merge = merges[pairKey(symbols[position], symbols[right])], merge >> 32 == top >> 32 else { continue }
            symbols[position] = TokenID(truncatingIfNeeded: merge & 0xFFFF_FFFF)
            alive[right] = false
            next[position] = next[right]
            if next[right] < count { previous[next[right]] = position }
            if previous[position] >= 0 { push(previous[position]) }
            push(position)
        }
        var merged: [TokenID] = []
        var position = 0
        while position < count {
            merged.append(symbols[position])
            position = next[position]
        }
        symbols = merged
    }

    private func appendByteSymbol(_ byte: UInt8, _ output: inout [TokenID]) {
        let id = byteIDs[Int(byte)]
        if id >= 0 {
            output.append(id)
        } else if let modelUnknownID {
            output.append(modelUnknownID)
        }
    }

    private func pairKey(_ left: TokenID, _ right: TokenID) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    /// The text of `ids`: their bytes concatenated, invalid UTF-8 replaced by U+FFFD. Ids outside the
    /// vocabulary are skipped, as `tokenizers` does.
    public func decode(_ ids: [TokenID], skipSpecial: Bool = false) -> String {
        String(decoding: decodeBytes(ids, skipSpecial: skipSpecial), as: UTF8.self)
    }

    /// The bytes of `ids` concatenated (``decode(_:skipSpecial:)`` before UTF-8 decoding).
    public func decodeBytes(_ ids: [TokenID], skipSpecial: Bool = false) -> [UInt8] {
        var bytes: [UInt8] = []
        for id in ids where id >= 0 && Int(id) < decodedBytes.count {
            if skipSpecial && specialIDs.contains(id) { continue }
            bytes.append(contentsOf: decodedBytes[Int(id)])
        }
        return bytes
    }
}

/// A binary min-heap of merge candidates.
private struct MinHeap {
    private var items: [UInt64] = []

    mutating func push(_ item: UInt64) {
        items.append(item)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child] < items[parent] else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> UInt64? {
        guard let last = items.popLast() else { return nil }
        guard !items.isEmpty else { return last }
        let top = items[0]
        items[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < items.count && items[left] < items[smallest] { smallest = left }
            if right < items.count && items[right] < items[smallest] { smallest = right }
            guard smallest != parent else { break }
            items.swapAt(parent, smallest)
            parent = smallest
        }
        return top
    }
}

/// Words already merged, keyed by their bytes. Bounded like `tokenizers`' cache: once full, new
/// words are merged every time rather than evicting.
private final class WordCache: @unchecked Sendable {
    private static let capacity = 10_000
    private var words: [[UInt8]: [TokenID]] = [:]
    private let lock = NSLock()

    func lookup(_ word: [UInt8]) -> [TokenID]? {
        lock.lock()
        defer { lock.unlock() }
        return words[word]
    }

    func store(_ word: [UInt8], _ ids: [TokenID]) {
        lock.lock()
        defer { lock.unlock() }
        if words.count < Self.capacity { words[word] = ids }
    }
}
