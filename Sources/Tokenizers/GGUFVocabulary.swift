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
