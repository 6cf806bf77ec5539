import Configuration
import Engine
import EngineConfiguration
import Shared

extension WeightsFile {
    /// `weights` (loaded from `path`) when they were built for `config`'s `[model]`; otherwise an
    /// error naming the file, each differing key with both values, and `configPath`. A judge
    /// evaluated or a pair set curated with another architecture than the run's would measure a
    /// model the run never trains.
    public static func requireModel(of config: Config, configPath: String, weights: ModelWeights, path: String) throws -> ModelWeights {
        let differences = weights.config.changes(to: TransformerConfig(config.model))
        guard differences.isEmpty else {
            throw CermError.invalid("\(path): the weights were built for another [model] than \(configPath)'s "
                                    + "(\(differences.mismatches(labelled: "weights"))); give weights of this [model], or the config they were trained with")
        }
        return weights
    }
}
