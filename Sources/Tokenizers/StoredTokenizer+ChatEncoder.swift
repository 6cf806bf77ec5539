import Shared

extension StoredTokenizer {
    /// The stored form of a model's tokenizer and template; `jinja` is the model's own template
    /// text, kept for export.
    public init(_ encoder: ChatEncoder, jinja: String?) {
        let tokenizer = encoder.tokenizer
        var system: String?
        if case let .chatml(defaultSystemPrompt) = encoder.template { system = defaultSystemPrompt }
        self.init(tokenizerJSON: Array(tokenizer.tokenizerJSON().utf8), bosToken: tokenizer.bosID.flatMap(tokenizer.token(of:)),
                  eosToken: tokenizer.eosID.flatMap(tokenizer.token(of:)), padToken: tokenizer.padID.flatMap(tokenizer.token(of:)),
                  unkToken: tokenizer.unkID.flatMap(tokenizer.token(of:)), chatTemplate: encoder.template.name,
                  chatTemplateSystem: system, chatTemplateJinja: jinja)
    }

    /// The tokenizer and template it stores; `source` (the weights file) names it in errors.
    public func chatEncoder(source: String) throws -> ChatEncoder {
        var names: [String: String] = [:]
        for (key, name) in zip(BPETokenizer.specialTokenKeys, [bosToken, eosToken, padToken, unkToken]) { names[key] = name }
        let tokenizer = try BPETokenizer(tokenizerJSONBytes: tokenizerJSON, specialTokenNames: names, source: "\(source) (stored tokenizer.json)")
        // "auto" is resolved when a model is imported; a stored template names one.
        var template: ChatTemplate
        do {
            guard let named = try ChatTemplate.named(chatTemplate) else { throw CermError.invalid("chat_template \"auto\" is not a stored template") }
            template = named
        } catch let CermError.invalid(message) {
            throw CermError.io(path: source, reason: "stored tokenizer: \(message)")
        }
        if case .chatml = template { template = .chatml(defaultSystemPrompt: chatTemplateSystem) }
        do { return try ChatEncoder(tokenizer: tokenizer, template: template) } catch let CermError.invalid(message) {
            throw CermError.io(path: source, reason: "stored tokenizer: \(message)")
        }
    }
}
