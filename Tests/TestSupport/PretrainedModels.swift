import Foundation
import XCTest

/// SmolLM2-135M-Instruct as `make fetch-model` caches it (`.cache/models/`, git-ignored, never
/// committed). `make test` fetches it first; where that was impossible the tests that need it
/// are skipped, saying why.
public enum SmolLM2Model {
    /// The repository's root directory.
    public static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    public static let ggufPath = repositoryRoot + "/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    /// The default system message of SmolLM2's ChatML template.
    public static let defaultSystemPrompt = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

    /// The GGUF's path, or a skip that says how to get it.
    public static func requireGGUF() throws -> String {
        guard FileManager.default.fileExists(atPath: ggufPath) else {
            throw XCTSkip("\(ggufPath) is absent (make fetch-model downloads it; it failed or was not run)")
        }
        return ggufPath
    }
}
