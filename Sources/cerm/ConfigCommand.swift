import ArgumentParser
import Configuration
import EngineConfiguration
import Foundation

/// `cerm config check FILE`: validates a config and prints the effective configuration.
struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Work with cluster.toml configuration files.",
        subcommands: [Check.self, Keys.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a config file and print the effective configuration (defaults filled in).",
            discussion: "With model.source set, the model's header and tokenizer are read and its architecture is printed in [model].")

        @Argument(help: "The config file to check.")
        var file: String = "cluster.toml"

        func run() throws {
            let (config, runModel) = try loadRunConfigOrExit(file)
            print("# effective configuration of \(file) (hash \(String(config.hash, radix: 16)); model: \(runModel.description))")
            print(config.renderTOML(), terminator: "")
        }
    }

    struct Keys: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List every config key.")
        func run() { Config.allKeys().forEach { print($0) } }
    }
}

/// Loads a config, printing its error (file, line, key) and exiting with status 2 when invalid.
func loadConfigOrExit(_ path: String) throws -> Config {
    do {
        return try Config.load(path: path)
    } catch let error as ConfigError {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode(2)
    }
}

/// Loads a config and resolves its `[model]` (``RunModel/resolve(_:)``): a config error, or a
/// `model.source` that cannot be read, is printed and exits with status 2.
func loadRunConfigOrExit(_ path: String) throws -> (Config, RunModel) {
    var config = try loadConfigOrExit(path)
    do {
        let runModel = try RunModel.resolve(&config)
        return (config, runModel)
    } catch {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode(2)
    }
}
