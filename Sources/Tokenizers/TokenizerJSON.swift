import Foundation
import Shared

extension BPETokenizer {
    /// Reads a Hugging Face `tokenizer.json` with a byte-level BPE model, and the special-token
    /// names (`bos_token`, `eos_token`, `pad_token`, `unk_token`) of a `tokenizer_config.json` next to
    /// it when there is one. Anything this tokenizer does not reproduce is an error naming the key.
    public init(tokenizerJSON path: String) throws {
        let configPath = URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent("tokenizer_config.json").path
        var names: [String: String] = [:]
        if FileManager.default.fileExists(atPath: configPath) {
            names = try Self.specialTokenNames(inConfig: Self.readJSONObject(configPath), path: configPath)
        }
        try self.init(root: Self.readJSONObject(path), specialTokenNames: names, path: path, namesPath: configPath)
    }

    /// From the bytes of a `tokenizer.json` (as weights files store them) and the special-token
    /// names by `tokenizer_config.json` key (`bos_token`, …). `source` names them in errors.
    public init(tokenizerJSONBytes bytes: [UInt8], specialTokenNames: [String: String], source: String) throws {
        try self.init(root: Self.parseJSONObject(Data(bytes), path: source), specialTokenNames: specialTokenNames,
                      path: source, namesPath: source)
    }

    /// The special-token names of a `tokenizer_config.json` object (`bos_token`, `eos_token`,
    /// `pad_token`, `unk_token`; a string or an object with `content`), by key.
    static func specialTokenNames(inConfig config: [String: Any], path: String) throws -> [String: String] {
        let configJSON = JSONReader(path: path)
        var names: [String: String] = [:]
        for key in specialTokenKeys {
            guard let value = config[key], !(value is NSNull) else { continue }
            guard let name = value as? String ?? (value as? [String: Any])?["content"] as? String else {
                throw configJSON.error(key, "neither a string nor an object with content")
            }
            names[key] = name
        }
        return names
    }

    static let specialTokenKeys = ["bos_token", "eos_token", "pad_token", "unk_token"]

    private init(root: [String: Any], specialTokenNames: [String: String], path: String, namesPath: String) throws {
        let json = JSONReader(path: path)

        guard let model = root["model"] as? [String: Any] else { throw json.error("model", "missing or not an object") }
        if let type = model["type"] { guard type as? String == "BPE" else { throw json.error("model.type", "\(type) is not supported (only BPE)") } }
        if let dropout = model["dropout"], !(dropout is NSNull) { throw json.error("model.dropout", "BPE dropout is not supported") }
        if try json.bool(model, "byte_fallback", at: "model.byte_fallback") == true {
            throw json.error("model.byte_fallback", "byte fallback is not supported (byte-level BPE needs none)")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let value = model[key], !(value is NSNull), value as? String != "" {
                throw json.error("model.\(key)", "\(value) is not supported")
            }
        }
        guard let vocabularyObject = model["vocab"] as? [String: Any] else { throw json.error("model.vocab", "missing or not an object") }
        var vocabulary: [String: TokenID] = [:]
        vocabulary.reserveCapacity(vocabularyObject.count)
        for (token, value) in vocabularyObject {
            guard let id = value as? Int, let tokenID = TokenID(exactly: id) else { throw json.error("model.vocab", "\"\(token)\" has id \(value), not an integer") }
            vocabulary[token] = tokenID
        }
        guard let mergesArray = model["merges"] as? [Any] else { throw json.error("model.merges", "missing or not an array") }
        var merges: [(String, String)] = []
        merges.reserveCapacity(mergesArray.count)
        for (index, entry) in mergesArray.enumerated() {
            if let text = entry as? String {
                let parts = text.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw json.error("model.merges[\(index)]", "\"\(text)\" is not two tokens separated by one space") }
                merges.append((String(parts[0]), String(parts[1])))
            } else if let pair = entry as? [String], pair.count == 2 {
                merges.append((pair[0], pair[1]))
            } else {
                throw json.error("model.merges[\(index)]", "neither \"a b\" nor [\"a\", \"b\"]")
            }
        }
        let ignoreMerges = try json.bool(model, "ignore_merges", at: "model.ignore_merges") ?? false
        var modelUnknownID: TokenID?
        if let unknown = model["unk_token"], !(unknown is NSNull) {
            guard let name = unknown as? String, let id = vocabulary[name] else { throw json.error("model.unk_token", "\(unknown) is not a token of the vocabulary") }
            modelUnknownID = id
        }

        var normalizesNFC = false
        if let normalizer = root["normalizer"], !(normalizer is NSNull) {
            guard let object = normalizer as? [String: Any], object["type"] as? String == "NFC" else {
                throw json.error("normalizer", "only null or NFC is supported, not \(Self.describe(normalizer))")
            }
            normalizesNFC = true
        }
        guard let decoder = root["decoder"] as? [String: Any], decoder["type"] as? String == "ByteLevel" else {
            throw json.error("decoder", "only the ByteLevel decoder is supported, not \(Self.describe(root["decoder"] ?? NSNull()))")
        }
        let preTokenizer = try Self.preTokenizer(root["pre_tokenizer"], json)

        var addedTokens: [AddedToken] = []
        for (index, entry) in (root["added_tokens"] as? [Any] ?? []).enumerated() {
            let key = "added_tokens[\(index)]"
            guard let object = entry as? [String: Any], let id = object["id"] as? Int, let tokenID = TokenID(exactly: id),
                  let content = object["content"] as? String, !content.isEmpty else {
                throw json.error(key, "needs an integer id and a non-empty content")
            }
            if try json.bool(object, "single_word", at: "\(key).single_word") == true {
                throw json.error("\(key).single_word", "single_word added tokens are not supported")
            }
            // Content that is already a vocabulary token keeps that token's id, as tokenizers assigns it.
            addedTokens.append(AddedToken(
                id: vocabulary[content] ?? tokenID, content: content, special: try json.bool(object, "special", at: "\(key).special") ?? false,
                lstrip: try json.bool(object, "lstrip", at: "\(key).lstrip") ?? false,
                rstrip: try json.bool(object, "rstrip", at: "\(key).rstrip") ?? false,
                normalized: try json.bool(object, "normalized", at: "\(key).normalized") ?? false))
        }

        // Special-token names (from tokenizer_config.json), resolved against the vocabulary.
        var specialIDs: [String: TokenID] = [:]
        var known = vocabulary
        for token in addedTokens { known[token.content] = token.id }
        for key in Self.specialTokenKeys {
            guard let name = specialTokenNames[key] else { continue }
            guard let id = known[name] else { throw JSONReader(path: namesPath).error(key, "\"\(name)\" is not a token of \(path)") }
            specialIDs[key] = id
        }

        try self.init(vocabulary: vocabulary, merges: merges, addedTokens: addedTokens, preTokenizer: preTokenizer,
                      ignoreMerges: ignoreMerges, normalizesNFC: normalizesNFC,
                      bosID: specialIDs["bos_token"], eosID: specialIDs["eos_token"], padID: specialIDs["pad_token"],
                      unkID: specialIDs["unk_token"] ?? modelUnknownID, modelUnknownID: modelUnknownID, source: path)
    }

    private static func readJSONObject(_ path: String) throws -> [String: Any] {
        if let reason = directoryInsteadOfFile(path) { throw CermError.io(path: path, reason: reason) }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw CermError.io(path: path, reason: "cannot read: \((error as NSError).localizedDescription)")
        }
        return try parseJSONObject(data, path: path)
    }

    private static func parseJSONObject(_ data: Data, path: String) throws -> [String: Any] {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw CermError.io(path: path, reason: "not valid JSON")
        }
        guard let root = object as? [String: Any] else { throw CermError.io(path: path, reason: "not a JSON object") }
        return root
    }

    /// ByteLevel alone, or a Sequence of Split (a known regex) / Digits ending in ByteLevel.
    private static func preTokenizer(_ value: Any?, _ json: JSONReader) throws -> PreTokenizer {
        guard let object = value as? [String: Any], let type = object["type"] as? String else {
            throw json.error("pre_tokenizer", "missing; byte-level BPE needs a ByteLevel pre-tokenizer")
        }
        if type == "ByteLevel" { return try byteLevel(object, splits: [], json, key: "pre_tokenizer") }
        guard type == "Sequence", let steps = object["pretokenizers"] as? [Any], !steps.isEmpty else {
            throw json.error("pre_tokenizer.type", "\(type) is not supported (ByteLevel, or a Sequence of Split/Digits then ByteLevel)")
        }
        var splits: [SplitPattern] = []
        for (index, step) in steps.enumerated() {
            let key = "pre_tokenizer.pretokenizers[\(index)]"
            guard let step = step as? [String: Any], let stepType = step["type"] as? String else { throw json.error(key, "not an object with a type") }
            switch stepType {
            case "ByteLevel":
                guard index == steps.count - 1 else { throw json.error(key, "ByteLevel must be the last step") }
                return try byteLevel(step, splits: splits, json, key: key)
            case "Digits":
                splits.append(.digits(individual: try json.bool(step, "individual_digits", at: "\(key).individual_digits") ?? false))
            case "Split":
                guard let pattern = step["pattern"] as? [String: Any], let regex = pattern["Regex"] as? String else {
                    throw json.error("\(key).pattern", "only a Regex pattern is supported")
                }
                guard let split = SplitPattern.fromRegex(regex) else {
                    throw json.error("\(key).pattern.Regex", "\(regex) is not one of the implemented regexes (GPT-2, Llama 3, Qwen2)")
                }
                guard step["behavior"] as? String == "Isolated" else { throw json.error("\(key).behavior", "only Isolated is supported") }
                if try json.bool(step, "invert", at: "\(key).invert") == true { throw json.error("\(key).invert", "inverted splits are not supported") }
                splits.append(split)
            default:
                throw json.error("\(key).type", "\(stepType) is not supported (Split, Digits, ByteLevel)")
            }
        }
        throw json.error("pre_tokenizer.pretokenizers", "does not end with ByteLevel")
    }

    private static func byteLevel(_ object: [String: Any], splits: [SplitPattern], _ json: JSONReader, key: String) throws -> PreTokenizer {
        PreTokenizer(splits: splits, addPrefixSpace: try json.bool(object, "add_prefix_space", at: "\(key).add_prefix_space") ?? false,
                     byteLevelRegex: try json.bool(object, "use_regex", at: "\(key).use_regex") ?? true)
    }

    private static func describe(_ value: Any) -> String {
        if let object = value as? [String: Any], let type = object["type"] as? String { return type }
        return value is NSNull ? "null" : "\(value)"
    }
}

/// Error construction and typed reads for one JSON file.
private struct JSONReader {
    let path: String

    func error(_ key: String, _ reason: String) -> CermError {
        .io(path: path, reason: "\(key): \(reason)")
    }

    /// The boolean at `key`, nil when absent or null; another type is an error.
    func bool(_ object: [String: Any], _ key: String, at fullKey: String) throws -> Bool? {
        guard let value = object[key], !(value is NSNull) else { return nil }
        guard let flag = value as? Bool else { throw error(fullKey, "\(value) is not true or false") }
        return flag
    }
}

extension BPETokenizer {
    /// A `tokenizer.json` file, or a directory holding one (a Hugging Face model directory).
    public init(source path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw CermError.io(path: path, reason: "no such file or directory")
        }
        if isDirectory.boolValue {
            let file = URL(fileURLWithPath: path).appendingPathComponent("tokenizer.json").path
            guard FileManager.default.fileExists(atPath: file) else {
                throw CermError.io(path: path, reason: "the directory holds no tokenizer.json")
            }
            try self.init(tokenizerJSON: file)
        } else {
            try self.init(tokenizerJSON: path)
        }
    }
}
