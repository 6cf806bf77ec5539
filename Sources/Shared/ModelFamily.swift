/// Transformer family; decides the Hugging Face architecture `cerm export` writes.
public enum ModelFamily: String, CaseIterable, Sendable, Codable { case llama, qwen2, qwen3 }
