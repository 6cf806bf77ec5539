import ArgumentParser
import Foundation
import WireProtocol

/// `cerm keygen NAME`: makes a CURVE key pair for a coordinator or a worker.
struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Generate a CURVE key pair: NAME.key (secret, mode 0600) and NAME.pub.",
        discussion: """
            Give the coordinator's NAME.key to cluster.curve_secret_key_file and its NAME.pub to the \
            workers' cluster.server_public_key_file. Give each worker its own NAME.key \
            (cluster.worker_secret_key_file) and append its NAME.pub to the coordinator's \
            cluster.authorized_keys_file (`cat NAME.pub >> authorized_keys`).
            """)

    @Argument(help: "Base name of the key files.")
    var name: String

    @Option(name: .long, help: "Directory to write the key files into.")
    var dir: String = "."

    @Flag(name: .long, help: "Replace existing key files.")
    var force = false

    func validate() throws {
        guard !name.isEmpty, !name.contains("/") else { throw ValidationError("NAME must be a plain file name, got \"\(name)\"") }
    }

    func run() throws {
        guard ZMQContext.has("curve") else {
            FileHandle.standardError.write(Data("error: libzmq was built without CURVE support\n".utf8))
            throw ExitCode(1)
        }
        do {
            let keys = try CurveKeyFiles.generate()
            let paths = try CurveKeyFiles.write(name: name, keys: keys, directory: dir, overwrite: force)
            print("wrote \(paths.secret) (secret, mode 0600) and \(paths.public)")
            print("public key: \(keys.publicKey)")
        } catch let error as KeyFileError {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
