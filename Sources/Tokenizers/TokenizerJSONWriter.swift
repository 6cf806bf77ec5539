import Shared

extension BPETokenizer {
    /// The tokenizer as a Hugging Face `tokenizer.json` that `tokenizers` (and cerm's reader)
    /// load to the same ids: model BPE with the vocabulary (in id order) and merges (in rank
    /// order, as `["a", "b"]` pairs), added tokens with their flags, normalizer NFC or null, the
    /// pre-tokenizer as ByteLevel or a Sequence of Split/Digits ending in ByteLevel, decoder
    /// ByteLevel, post-processor null (``encode(_:parseSpecial:)`` adds no BOS/EOS either).
    /// Special-token names (BOS, EOS, …) are not part of it: `tokenizer_config.json` holds them.
    public func tokenizerJSON() -> String {
        let quote = JSONWriter.quote
        func flag(_ value: Bool) -> String { value ? "true" : "false" }
        let added = addedTokens.map { token in
            "    {\"id\": \(token.id), \"content\": \(quote(token.content)), \"single_word\": false, \"lstrip\": \(flag(token.lstrip)), "
                + "\"rstrip\": \(flag(token.rstrip)), \"normalized\": \(flag(token.normalized)), \"special\": \(flag(token.special))}"
        }
        let byteLevel = "{\"type\": \"ByteLevel\", \"add_prefix_space\": \(flag(preTokenizer.addPrefixSpace)), \"trim_offsets\": true, "
            + "\"use_regex\": \(flag(preTokenizer.byteLevelRegex))}"
        let preTokenizerJSON: String
        if preTokenizer.splits.isEmpty {
            preTokenizerJSON = byteLevel
        } else {
            let steps = preTokenizer.splits.map { split -> String in
                if let regex = split.regex {
                    return "{\"type\": \"Split\", \"pattern\": {\"Regex\": \(quote(regex))}, \"behavior\": \"Isolated\", \"invert\": false}"
                }
                return "{\"type\": \"Digits\", \"individual_digits\": \(flag(split == .digits(individual: true)))}"
            }
            preTokenizerJSON = "{\"type\": \"Sequence\", \"pretokenizers\": [" + (steps + [byteLevel]).joined(separator: ", ") + "]}"
        }
        let unknownName = modelUnknownID.flatMap { id in vocabulary.first { $0.value == id }?.key }
        let vocabularyLines = vocabulary.sorted { $0.value < $1.value || ($0.value == $1.value && $0.key < $1.key) }
            .map { "      \(quote($0.key)): \($0.value)" }
        let mergeLines = mergePairs.map { "      [\(quote($0.0)), \(quote($0.1))]" }
        let model = [
            "\"type\": \"BPE\"", "\"dropout\": null", "\"unk_token\": \(unknownName.map(quote) ?? "null")",
            "\"continuing_subword_prefix\": null", "\"end_of_word_suffix\": null", "\"fuse_unk\": false", "\"byte_fallback\": false",
            "\"ignore_merges\": \(flag(ignoreMerges))",
            "\"vocab\": {\n" + vocabularyLines.joined(separator: ",\n") + "\n    }",
            "\"merges\": [\n" + mergeLines.joined(separator: ",\n") + "\n    ]",
        ]
        let members = [
            "\"version\": \"1.0\"", "\"truncation\": null", "\"padding\": null",
            "\"added_tokens\": [\n" + added.joined(separator: ",\n") + "\n  ]",
            "\"normalizer\": " + (normalizesNFC ? "{\"type\": \"NFC\"}" : "null"),
            "\"pre_tokenizer\": " + preTokenizerJSON,
            "\"post_processor\": null",
            "\"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}",
            "\"model\": {\n    " + model.joined(separator: ",\n    ") + "\n  }",
        ]
        return "{\n  " + members.joined(separator: ",\n  ") + "\n}\n"
    }

}

extension SplitPattern {
    /// The regex of a Split step, nil for Digits.
    var regex: String? {
        switch self {
        case .gpt2: Self.gpt2Regex
        case .llama3: Self.llama3Regex
        case .qwen2: Self.qwen2Regex
        case .digits: nil
        }
    }
}
