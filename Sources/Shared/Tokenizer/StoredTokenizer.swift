/// A pretrained model's tokenizer and chat template as weights files and checkpoints store them
/// (docs/CHECKPOINT.md, "Tokenizer"): Hugging Face `tokenizer.json` bytes, the special-token
/// names `tokenizer_config.json` would give, and the chat template cerm renders. Opaque here, so
/// the engine and the checkpoint code can carry it without the Tokenizers module, which turns it
/// into a `ChatEncoder`. Absent (nil where it is carried): cerm's byte tokenizer.
public struct StoredTokenizer: Sendable, Equatable {
    /// The tokenizer as a Hugging Face `tokenizer.json` (UTF-8 JSON).
    public var tokenizerJSON: [UInt8]
    /// `bos_token`, `eos_token`, `pad_token`, `unk_token`: token contents, nil when the model has none.
    public var bosToken: String?
    public var eosToken: String?
    public var padToken: String?
    public var unkToken: String?
    /// The template cerm renders: `chatml`, `llama3` or `none` (`model.chat_template`'s names).
    public var chatTemplate: String
    /// ChatML's default system message, when the model's template writes one.
    public var chatTemplateSystem: String?
    /// The model's own Jinja template, given back on export; nil when it had none.
    public var chatTemplateJinja: String?

    public init(tokenizerJSON: [UInt8], bosToken: String?, eosToken: String?, padToken: String?, unkToken: String?,
                chatTemplate: String, chatTemplateSystem: String?, chatTemplateJinja: String?) {
        self.tokenizerJSON = tokenizerJSON
        self.bosToken = bosToken
        self.eosToken = eosToken
        self.padToken = padToken
        self.unkToken = unkToken
        self.chatTemplate = chatTemplate
        self.chatTemplateSystem = chatTemplateSystem
        self.chatTemplateJinja = chatTemplateJinja
    }

    /// Name of the HDF5 group holding it, in weights files and checkpoints alike.
    public static let hdf5Group = "tokenizer"
    private static let tokenizerJSONDataset = "tokenizer_json"
    private static let systemDataset = "chat_template_system"
    private static let jinjaDataset = "chat_template_jinja"
    private static let tokenAttributes = ["bos_token", "eos_token", "pad_token", "unk_token"]

    private var tokenNames: [String?] { [bosToken, eosToken, padToken, unkToken] }

    /// One line for `cerm inspect` and a checkpoint's tokenizer description.
    public var description: String {
        let names = zip(Self.tokenAttributes, tokenNames).compactMap { key, name in name.map { "\(key) \(JSONWriter.quote($0))" } }
        return "tokenizer.json (\(tokenizerJSON.count) bytes); chat template \(chatTemplate)"
            + (chatTemplateSystem == nil ? "" : " with a default system message")
            + (chatTemplateJinja == nil ? "" : ", Jinja text kept")
            + (names.isEmpty ? "" : "; " + names.joined(separator: ", "))
    }

    /// Writes the group `tokenizer/` under `parent`: uint8 datasets `tokenizer_json`,
    /// `chat_template_system` and `chat_template_jinja` (the last two when present), string
    /// attributes `chat_template` and the token names that are set.
    public func write(to parent: HDF5Group) throws {
        let group = try parent.group(Self.hdf5Group, create: true)
        try group.write(Self.tokenizerJSONDataset, tokenizerJSON, shape: [tokenizerJSON.count])
        try group.setAttribute("chat_template", chatTemplate)
        for (key, name) in zip(Self.tokenAttributes, tokenNames) {
            if let name { try group.setAttribute(key, name) }
        }
        if let chatTemplateSystem { try group.writeText(Self.systemDataset, chatTemplateSystem) }
        if let chatTemplateJinja { try group.writeText(Self.jinjaDataset, chatTemplateJinja) }
    }

    /// The tokenizer stored under `parent`, nil when it has no `tokenizer` group. A group that
    /// lacks `tokenizer_json` or `chat_template`, or holds the wrong types, is an error naming the
    /// file and the key.
    public static func read(from parent: HDF5Group) throws -> StoredTokenizer? {
        guard parent.contains(hdf5Group) else { return nil }
        let path = parent.file.path
        let group = try parent.group(hdf5Group)
        func key(_ name: String) -> String { group.child(name) }
        func text(_ name: String) throws -> String? {
            guard group.contains(name) else { return nil }
            do { return try group.readText(name) } catch {
                throw CermError.io(path: path, reason: "\(key(name)) is not UTF-8 text: \(error)")
            }
        }
        func attribute(_ name: String) throws -> String? {
            guard group.hasAttribute(name) else { return nil }
            do { return try group.stringAttribute(name) } catch {
                throw CermError.io(path: path, reason: "attribute \(key("@" + name)) is not a string: \(error)")
            }
        }
        guard group.contains(tokenizerJSONDataset) else {
            throw CermError.io(path: path, reason: "missing dataset \(key(tokenizerJSONDataset))")
        }
        let json: [UInt8]
        do { json = try group.read(tokenizerJSONDataset, as: UInt8.self).values } catch {
            throw CermError.io(path: path, reason: "dataset \(key(tokenizerJSONDataset)) is not uint8 bytes: \(error)")
        }
        guard let template = try attribute("chat_template") else {
            throw CermError.io(path: path, reason: "missing attribute \(key("@chat_template"))")
        }
        let names = try tokenAttributes.map(attribute)
        return StoredTokenizer(tokenizerJSON: json, bosToken: names[0], eosToken: names[1], padToken: names[2], unkToken: names[3],
                               chatTemplate: template, chatTemplateSystem: try text(systemDataset),
                               chatTemplateJinja: try text(jinjaDataset))
    }

    /// Its content as one byte stream for checksums: each field in declaration order, a text as
    /// `u64(1) u64(length) bytes`, an absent one as `u64(0)` (docs/CHECKPOINT.md, "Checksum").
    public var canonicalBytes: [UInt8] {
        var bytes: [UInt8] = []
        func field(_ value: [UInt8]?) {
            guard let value else { return LittleEndianFields.append(u64: 0, to: &bytes) }
            LittleEndianFields.append(u64: 1, to: &bytes)
            LittleEndianFields.append(lengthPrefixed: value, to: &bytes)
        }
        field(tokenizerJSON)
        for name in tokenNames { field(name.map { Array($0.utf8) }) }
        field(Array(chatTemplate.utf8))
        field(chatTemplateSystem.map { Array($0.utf8) })
        field(chatTemplateJinja.map { Array($0.utf8) })
        return bytes
    }

    /// Reads ``canonicalBytes`` back (the form a coordinator sends workers, docs/PROTOCOL.md,
    /// "The run's model"). Bytes that end early, run on, hold a field flag other than 0 or 1,
    /// lack a required field or hold text that is not UTF-8 are an error naming the field and
    /// its offset.
    public init(canonicalBytes bytes: [UInt8]) throws {
        var reader = LittleEndianFields.Reader(bytes)
        func field(_ name: String) throws -> [UInt8]? {
            let start = reader.offset
            func fail(_ reason: String) -> CermError { .invalid("stored tokenizer, field \(name) at byte \(start): \(reason)") }
            do {
                switch try reader.u64() {
                case 0: return nil
                case 1: return try reader.lengthPrefixed()
                case let flag: throw fail("presence flag \(flag), expected 0 or 1")
                }
            } catch LittleEndianFields.Reader.Fault.endsEarly {
                throw fail("ends after \(bytes.count) bytes")
            } catch let LittleEndianFields.Reader.Fault.lengthPastEnd(length) {
                throw fail("length \(length) runs past the end (\(bytes.count) bytes)")
            }
        }
        func text(_ name: String) throws -> String? {
            let start = reader.offset
            guard let raw = try field(name) else { return nil }
            guard let text = String(validating: raw, as: UTF8.self) else {
                throw CermError.invalid("stored tokenizer, field \(name) at byte \(start): not UTF-8 text")
            }
            return text
        }
        func required<T>(_ value: T?, _ name: String, at start: Int) throws -> T {
            guard let value else { throw CermError.invalid("stored tokenizer, field \(name) at byte \(start): absent, but required") }
            return value
        }
        let json = try required(try field("tokenizer_json"), "tokenizer_json", at: 0)
        let names = try Self.tokenAttributes.map(text)
        let templateStart = reader.offset
        let template = try required(try text("chat_template"), "chat_template", at: templateStart)
        self.init(tokenizerJSON: json, bosToken: names[0], eosToken: names[1], padToken: names[2], unkToken: names[3],
                  chatTemplate: template, chatTemplateSystem: try text("chat_template_system"),
                  chatTemplateJinja: try text("chat_template_jinja"))
        guard reader.isAtEnd else {
            throw CermError.invalid("stored tokenizer: \(bytes.count - reader.offset) bytes after its last field, from byte \(reader.offset)")
        }
    }
}
