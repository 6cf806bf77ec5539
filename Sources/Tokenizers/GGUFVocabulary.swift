import Shared

extension BPETokenizer {
    /// llama.cpp's token types (`tokenizer.ggml.token_type`).
    public enum GGUFTokenType: Int32 {
        case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    /// The pre-tokenizer llama.cpp (src/llama-vocab.cpp) uses for a `tokenizer.ggml.pre` name, and
    /// whether it keeps a word that is itself a token whole (`tokenizer_ignore_merges`).
    public static func ggufPreTokenizer(named pre: String) -> (PreTokenizer, ignoreMerges: Bool)? {
        switch pre {
        case "llama3", "llama-v3", "llama-bpe", "falcon3":
            return (.llama3, true)
        case "dbrx", "smaug-bpe":
            return (.llama3, false)
        case "qwen2", "stablelm2", "deepseek-r1-qwen", "megrez":
            return (.qwen2, false)
        case "gpt2", "gpt-2", "phi-2", "mpt", "olmo", "jais":
            return (.gpt2, false)
        case "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b":
            return (.individualDigitsThenGPT2, false)
        default:
            return nil
        }
    }

    /// From GGUF metadata (`tokenizer.ggml.model = "gpt2"`) given as plain arrays: `tokens` in the
    /// byte alphabet, `merges` as `"a b"`, `tokenTypes` (control tokens become special added tokens,
    /// user-defined ones plain added tokens, as transformers' GGUF loader does), `pre` mapped to its
    /// regexes as llama.cpp maps it, unless `preTokenizer` is given. (transformers' GGUF loader
    /// reads `smollm` as plain GPT-2, without llama.cpp's digit split: pass `.gpt2` to match it.)
    /// `source` names the file in errors.
    public init(ggufTokens tokens: [String], merges: [String], tokenTypes: [Int32], pre: String,
                bosID: TokenID?, eosID: TokenID?, padID: TokenID?, unkID: TokenID?,
                preTokenizer: PreTokenizer? = nil, source: String) throws {
        guard let (named, ignoreMerges) = Self.ggufPreTokenizer(named: pre) else {
            throw CermError.io(path: source, reason: "tokenizer.ggml.pre: \"\(pre)\" is not a supported pre-tokenizer (llama-bpe, qwen2, gpt2, smollm, …)")
        }
        let preTokenizer = preTokenizer ?? named
        guard tokenTypes.isEmpty || tokenTypes.count == tokens.count else {
            throw CermError.io(path: source, reason: "tokenizer.ggml.token_type: \(tokenTypes.count) entries for \(tokens.count) tokens")
        }
        var vocabulary: [String: TokenID] = [:]
        vocabulary.reserveCapacity(tokens.count)
        var addedTokens: [AddedToken] = []
        for (index, token) in tokens.enumerated() {
            let id = TokenID(index)
            // A token outside the byte alphabet is stored as its text; respell its UTF-8 bytes.
            let spelled = ByteLevel.bytes(ofSpelling: token) != nil ? token : ByteLevel.spelling(of: token.utf8)
            if vocabulary[spelled] == nil { vocabulary[spelled] = id }
            let type = tokenTypes.isEmpty ? GGUFTokenType.normal.rawValue : tokenTypes[index]
            if type == GGUFTokenType.control.rawValue && spelled == token && !token.isEmpty {
                addedTokens.append(AddedToken(id: id, content: token, special: true))
            } else if type == GGUFTokenType.userDefined.rawValue && !token.isEmpty {
                addedTokens.append(AddedToken(id: id, content: token, special: false))
            }
        }
        var pairs: [(String, String)] = []
        pairs.reserveCapacity(merges.count)
        for (index, merge) in merges.enumerated() {
            let parts = merge.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                throw CermError.io(path: source, reason: "tokenizer.ggml.merges[\(index)]: \"\(merge)\" is not two tokens separated by one space")
            }
            pairs.append((String(parts[0]), String(parts[1])))
        }
        try self.init(vocabulary: vocabulary, merges: pairs, addedTokens: addedTokens, preTokenizer: preTokenizer,
                      ignoreMerges: ignoreMerges, bosID: bosID, eosID: eosID, padID: padID, unkID: unkID, source: source)
    }
}

extension BPETokenizer {
    /// The tokenizer as `tokenizer.ggml.*` metadata (the inverse of
    /// ``init(ggufTokens:merges:tokenTypes:pre:bosID:eosID:padID:unkID:source:)``): `count` tokens
    /// by id (ids the tokenizer lacks as `[PAD<id>]`, type unused, as llama.cpp's converter pads a
    /// model's embedding rows), special added tokens as control, other added tokens as
    /// user-defined, merges as `"a b"`, and the `tokenizer.ggml.pre` name llama.cpp maps to this
    /// pre-tokenizer; nil when none does.
    public func ggufVocabulary(count: Int) -> (tokens: [String], tokenTypes: [Int32], merges: [String], pre: String?) {
        var tokens = (0..<count).map { "[PAD\($0)]" }
        var types = [Int32](repeating: GGUFTokenType.unused.rawValue, count: count)
        for (spelling, id) in vocabulary where Int(id) < count {
            tokens[Int(id)] = spelling
            types[Int(id)] = GGUFTokenType.normal.rawValue
        }
        for token in addedTokens where Int(token.id) < count {
            tokens[Int(token.id)] = token.content
            types[Int(token.id)] = (token.special ? GGUFTokenType.control : GGUFTokenType.userDefined).rawValue
        }
        let pre: String? = switch (preTokenizer, ignoreMerges) {
        case (.llama3, true): "llama-bpe"
        case (.llama3, false): "dbrx"
        case (.qwen2, false): "qwen2"
        case (.gpt2, false): "gpt2"
        case (.individualDigitsThenGPT2, false): "smollm"
        default: nil
        }
        return (tokens, types, mergePairs.map { "\($0.0) \($0.1)" }, pre)
    }
}
