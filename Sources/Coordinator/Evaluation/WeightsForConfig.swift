import Configuration
import Engine
import EngineConfiguration
import Method
import Shared

extension WeightsFile {
    /// `weights` (loaded from `path`) when they were built for `config`'s `[model]`; otherwise an
    /// error naming the file, each differing key with both values, and `configPath`. A judge
    /// evaluated or a pair set curated with another architecture than the run's would measure a
    /// model the run never trains.
    /// `model.max_seq_len` is the run's context, not a property of the weights: weights with a
    /// longer context (a pretrained model's own) are taken with the config's.
    public static func requireModel(of config: Config, configPath: String, weights: ModelWeights, path: String) throws -> ModelWeights {
        let wanted = TransformerConfig(config.model)
        var found = weights.config
        if found.maxSeqLen >= wanted.maxSeqLen { found.maxSeqLen = wanted.maxSeqLen }
        let differences = found.changes(to: wanted)
        guard differences.isEmpty else {
            throw CermError.invalid("\(path): the weights were built for another [model] than \(configPath)'s "
                                    + "(\(differences.mismatches(labelled: "weights"))); give weights of this [model], or the config they were trained with")
        }
        return found == weights.config ? weights : try ModelWeights(config: found, values: weights.values)
    }

    /// The weights at `path` as a judge: with a config (`run`: the config, its path and its
    /// resolved model), checked to be its `[model]` with its tokenizer
    /// (``requireModel(of:configPath:weights:path:)``, ``RunModel/checkTokenizer(_:of:)``);
    /// without one, judged as stored. Prompts are rendered through the weights' own tokenizer
    /// and template (cerm's byte conversation when they have none).
    public static func loadJudge(path: String, run: (config: Config, path: String, model: RunModel)?,
                                 probe: (any CheckpointProbe)?) throws -> (weights: ModelWeights, chat: any ChatCodec, kind: Kind) {
        let (stored, kind, tokenizer) = try load(path: path, probe: probe)
        var weights = stored
        if let run {
            weights = try requireModel(of: run.config, configPath: run.path, weights: weights, path: path)
            try run.model.checkTokenizer(tokenizer, of: path)
        }
        let model = try RunModel(architecture: weights.config, tokenizer: tokenizer, source: path)
        return (weights, model.chat, kind)
    }
}
