import Configuration
import Engine
import Method
import ModelFormats
import Shared
import Tokenizers

/// The run's model as `[model]` names it, resolved once where a command loads its config:
/// cerm's own architecture with the byte tokenizer, or a pretrained model (`model.source`, a
/// GGUF file or Hugging Face directory) whose own config gives the architecture and whose
/// tokenizer and chat template render every prompt of the run: rollouts, SFT traces,
/// evaluation. Only the source's header and tokenizer are read here; its weights when a run
/// starts from them (``initialWeights(config:)``).
public struct RunModel: Sendable {
    /// The architecture, as `config.model` holds it after ``resolve(_:)``.
    public let architecture: TransformerConfig
    /// The pretrained model's tokenizer and template; nil for cerm's byte tokenizer.
    public let tokenizer: StoredTokenizer?
    /// How conversation turns become tokens.
    public let chat: any ChatCodec
    /// `model.source`; nil for cerm's own model.
    public let source: String?

    /// cerm's own model: `[model]`'s architecture and the byte tokenizer.
    public init(ownModel section: ModelSection) { self.init(architecture: TransformerConfig(section)) }

    /// cerm's own model of architecture `architecture`, with the byte tokenizer.
    public init(architecture: TransformerConfig) {
        self.architecture = architecture
        tokenizer = nil
        chat = ByteChat()
        source = nil
    }

    /// A model with the tokenizer stored in its weights file or checkpoint (nil: the byte
    /// tokenizer). `source` names the file in errors.
    public init(architecture: TransformerConfig, tokenizer: StoredTokenizer?, source: String) throws {
        self.architecture = architecture
        self.tokenizer = tokenizer
        chat = try tokenizer.map { TemplateChat(try $0.chatEncoder(source: source)) } ?? ByteChat()
        self.source = tokenizer == nil ? nil : source
    }

    /// Resolves `config.model`. With `model.source` set it reads the model's architecture and
    /// tokenizer, refuses an architecture key the config file sets to another value (naming
    /// the file, line, key and both values) and writes the model's architecture into
    /// `config.model`, so that every `TransformerConfig(config.model)` of the run is the
    /// model's. `model.max_seq_len` is the run's context, not the model's: a value the file
    /// sets is kept (up to the model's context), otherwise the model's context is used.
    public static func resolve(_ config: inout Config) throws -> RunModel {
        let section = config.model
        guard section.isPretrained else { return RunModel(ownModel: section) }
        let path = section.source
        let declared = section.declaredKeys
        var model: TransformerConfig
        let stored: StoredTokenizer
        do {
            model = try ModelImport.config(path: path)
            stored = try ModelImport.tokenizerMaterial(path: path).storedTokenizer(chatTemplate: section.chatTemplate.rawValue, source: path)
        } catch {
            // Named by the key that led here: the file's own error says what is wrong with it.
            throw declared.error("model.source", "\(error)")
        }
        if declared.contains("max_seq_len") {
            guard section.maxSeqLen <= model.maxSeqLen else {
                throw declared.error("model.max_seq_len", "\(section.maxSeqLen) exceeds the context of \(path) (\(model.maxSeqLen) positions)")
            }
            model.maxSeqLen = section.maxSeqLen
        }
        let stated = TransformerConfig(section)
        for change in stated.changes(to: model) where declared.contains(String(change.key.dropFirst("model.".count))) {
            throw declared.error(change.key, "\(change.old) (config) ≠ \(change.new) (\(path)); the model's own config gives [model]: "
                                 + "remove the key or make it agree")
        }
        config.model.setArchitecture(model)
        return try RunModel(architecture: model, tokenizer: stored, source: path)
    }

    /// The run's prompt format `name` (`rollout.format`), rendered through this model's chat.
    public func promptFormat(_ name: PromptFormatName) -> any PromptFormat { makePromptFormat(name, chat: chat) }

    /// The weights a run starts from when none are given: the pretrained source's (its context
    /// set to the run's `model.max_seq_len`), or cerm's own model initialised from `run.seed`.
    public func initialWeights(config: Config) throws -> ModelWeights {
        guard let source else { return ModelWeights(initialFor: config) }
        let imported = try ModelImport.load(path: source).weights
        return try ModelWeights(config: architecture, values: imported.values)
    }

    /// Throws unless `stored`, the tokenizer carried by the weights file or checkpoint `file`
    /// (nil: cerm's byte tokenizer), is this model's: weights trained with one tokenizer read
    /// prompts of another as noise.
    public func checkTokenizer(_ stored: StoredTokenizer?, of file: String) throws {
        guard stored != tokenizer else { return }
        let theirs = stored.map { "the tokenizer \($0.description)" } ?? "cerm's byte tokenizer"
        let remedy = source == nil ? "set model.source to the pretrained model these weights come from"
            : "use weights trained from model.source, or set model.source to the model these weights come from"
        throw CermError.invalid("\(file) carries \(theirs), but the run's model is \(description): \(remedy)")
    }

    /// Identity of the architecture and the tokenizer, for comparing two models at a glance
    /// (FNV-1a-64 of the architecture's JSON and the tokenizer's canonical bytes; the byte
    /// tokenizer contributes nothing). Workers no longer send it: they take the coordinator's
    /// model (``wireDescription``).
    public var fingerprint: UInt64 {
        var bytes = Array(architecture.jsonString().utf8)
        if let tokenizer { bytes += tokenizer.canonicalBytes }
        return Checksum.fnv1a64(bytes)
    }

    /// What a coordinator serves its workers as ``WeightsVersion/model`` (docs/PROTOCOL.md, "The
    /// run's model"), so a worker needs neither the source file nor its tokenizer: the magic
    /// `CERMMOD1`, then three length-prefixed fields (u64 little-endian length, then bytes): the
    /// architecture's JSON, the source as named in `model.source` (empty for cerm's own model),
    /// and the tokenizer's ``StoredTokenizer/canonicalBytes`` (empty for the byte tokenizer).
    public var wireDescription: [UInt8] {
        var bytes = Self.descriptionMagic
        LittleEndianFields.append(lengthPrefixed: Array(architecture.jsonString().utf8), to: &bytes)
        LittleEndianFields.append(lengthPrefixed: Array((source ?? "").utf8), to: &bytes)
        LittleEndianFields.append(lengthPrefixed: tokenizer?.canonicalBytes ?? [], to: &bytes)
        return bytes
    }

    private static let descriptionMagic = Array("CERMMOD1".utf8)

    /// The model a coordinator described in ``wireDescription``. Anything malformed (magic,
    /// a field's length, the architecture's JSON, the tokenizer's bytes) is an error that says
    /// which part.
    public init(wireDescription bytes: [UInt8]) throws {
        func fail(_ reason: String) -> CermError { .invalid("the coordinator's model description (\(bytes.count) bytes): \(reason)") }
        guard bytes.starts(with: Self.descriptionMagic) else { throw fail("does not start with CERMMOD1") }
        var reader = LittleEndianFields.Reader(bytes, offset: Self.descriptionMagic.count)
        func field(_ name: String) throws -> [UInt8] {
            let start = reader.offset
            do { return try reader.lengthPrefixed() } catch {
                switch error {
                case .endsEarly: throw fail("\(name): ends at byte \(start)")
                case let .lengthPastEnd(length): throw fail("\(name): length \(length) runs past the end")
                }
            }
        }
        let json = try field("architecture"), source = try field("source"), tokenizer = try field("tokenizer")
        guard reader.isAtEnd else { throw fail("\(bytes.count - reader.offset) bytes after the tokenizer") }
        let architecture: TransformerConfig
        do {
            architecture = try TransformerConfig.fromJSON(String(decoding: json, as: UTF8.self))
            try architecture.validate()
        } catch {
            throw fail("architecture: \(error)")
        }
        let stored: StoredTokenizer?
        do { stored = tokenizer.isEmpty ? nil : try StoredTokenizer(canonicalBytes: tokenizer) } catch { throw fail("\(error)") }
        let name = String(decoding: source, as: UTF8.self)
        guard let stored else {
            guard name.isEmpty else { throw fail("source \(name) without a tokenizer") }
            self = RunModel(architecture: architecture)
            return
        }
        try self.init(architecture: architecture, tokenizer: stored, source: name)
    }

    /// One line for logs: the source and its template, or cerm's own model.
    public var description: String {
        guard let source, let tokenizer else { return "cerm's own model with the byte tokenizer" }
        return "\(source) (\(architecture.family.rawValue), \(tokenizer.chatTemplate) template, vocabulary \(architecture.vocabSize))"
    }
}

extension ModelSection {
    /// Sets the architecture keys to `model`'s (``RunModel/resolve(_:)``), keeping the source,
    /// the template setting, `init_std` and where the keys came from.
    mutating func setArchitecture(_ model: TransformerConfig) {
        var resolved = ModelSection(model)
        resolved.source = source
        resolved.chatTemplate = chatTemplate
        resolved.initStd = initStd
        resolved.declaredKeys = declaredKeys
        self = resolved
    }
}
