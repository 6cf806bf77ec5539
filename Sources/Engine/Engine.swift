/// The transformer engine: see `Transformer`, `Tokenizer`, `AdamW`.
