/// The transformer engine (Llama / Qwen2 / Qwen3 family, float32 on OpenBLAS).
///
/// Training path (docs/ENGINE_TRAINING.md): ``ModelWeights`` (flat parameters by HF name,
/// seeded init, HDF5 save/load), ``Transformer`` (batched forward with per-token log-probs and
/// entropies, backward to ``ModelGradients``), ``AdamW`` and ``LearningRateSchedule``,
/// ``EngineBenchmark``. Generation path: `Generator`, `KVCache`, `TokenSampler`.
import Foundation
