import Configuration
import Engine

// The engine knows neither TOML nor the run's config: these extensions build its types from a
// run's `[model]` and `[run]` sections and name its fields by their `[model]` keys.

extension TransformerConfig {
    /// The architecture named by a `[model]` config section.
    public init(_ section: ModelSection) {
        self.init(family: section.family, hiddenSize: section.hiddenSize, layers: section.layers,
                  heads: section.heads, kvHeads: section.kvHeads, headDim: section.effectiveHeadDim,
                  ffnSize: section.ffnSize, vocabSize: section.vocabSize, maxSeqLen: section.maxSeqLen,
                  ropeTheta: section.ropeTheta, rmsNormEps: section.rmsNormEps, qkNorm: section.qkNorm,
                  qkvBias: section.qkvBias, tieEmbeddings: section.tieEmbeddings)
    }

    /// Each field as its `[model]` key (`model.layers`) and value, in the section's order;
    /// `model.head_dim` is the effective per-head dimension.
    public var keyedValues: [(key: String, value: String)] {
        [("family", family.rawValue), ("hidden_size", "\(hiddenSize)"), ("layers", "\(layers)"), ("heads", "\(heads)"),
         ("kv_heads", "\(kvHeads)"), ("head_dim", "\(headDim)"), ("ffn_size", "\(ffnSize)"), ("vocab_size", "\(vocabSize)"),
         ("max_seq_len", "\(maxSeqLen)"), ("rope_theta", "\(ropeTheta)"), ("rms_norm_eps", "\(rmsNormEps)"),
         ("qk_norm", "\(qkNorm)"), ("qkv_bias", "\(qkvBias)"), ("tie_embeddings", "\(tieEmbeddings)")]
            .map { ("model.\($0.0)", $0.1) }
    }

    /// The fields whose values differ from `other`'s (`old`: this one's, `new`: `other`'s).
    public func changes(to other: TransformerConfig) -> [ConfigChange] {
        zip(keyedValues, other.keyedValues).compactMap { mine, theirs in
            mine.value == theirs.value ? nil : ConfigChange(key: mine.key, old: mine.value, new: theirs.value)
        }
    }
}

extension ModelSection {
    /// The `[model]` section naming `config` (the inverse of ``TransformerConfig/init(_:)``;
    /// `head_dim` is written out, `init_std` keeps its default).
    public init(_ config: TransformerConfig) {
        self.init()
        family = config.family
        hiddenSize = config.hiddenSize
        layers = config.layers
        heads = config.heads
        kvHeads = config.kvHeads
        headDim = config.headDim
        ffnSize = config.ffnSize
        vocabSize = config.vocabSize
        maxSeqLen = config.maxSeqLen
        ropeTheta = config.ropeTheta
        rmsNormEps = config.rmsNormEps
        qkNorm = config.qkNorm
        qkvBias = config.qkvBias
        tieEmbeddings = config.tieEmbeddings
    }
}

extension ModelWeights {
    /// A run's freshly initialised model: the `[model]` architecture drawn with `model.init_std`
    /// from `run.seed`. SFT starts from it, RL without `--init` too, and `cerm eval --random`
    /// judges with it.
    public init(initialFor config: Config) {
        self.init(config: TransformerConfig(config.model), seed: config.run.seed, initStd: Float(config.model.initStd))
    }
}
