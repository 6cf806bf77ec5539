import ArgumentParser
import Coordinator
import Foundation
import Shared

/// `cerm tokenize --model SRC TEXT`: the ids of TEXT on one line, or with `--decode` the text of ids.
struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Print the token ids of TEXT (one line, separated by spaces), or with --decode the text of ids.",
        discussion: """
        SRC is a GGUF file, a Hugging Face model directory, a cerm weights file or RL checkpoint (its stored tokenizer, \
        or cerm's byte tokenizer), or a tokenizer.json (or a directory holding one). Special tokens in TEXT \
        (<|im_start|>…) are parsed as such unless --split-special.
        """)

    @Option(help: "The model or tokenizer: a GGUF file, a Hugging Face model directory, a cerm weights file or checkpoint, or a tokenizer.json.")
    var model: String

    @Flag(help: "Read ids (as arguments, or one argument of space-separated ids) and print their text.")
    var decode = false

    @Flag(help: "Encode special tokens in TEXT as plain text.")
    var splitSpecial = false

    @Flag(help: "With --decode, leave special tokens out.")
    var skipSpecial = false

    @Argument(help: "The text, or with --decode the ids.")
    var text: [String]

    func run() throws {
        let tokenizer: ModelSource
        do {
            tokenizer = try ModelSource.open(model, chatTemplate: "auto", loadWeights: false)
        } catch {
            throw exitWithError(error)
        }
        if decode {
            var ids: [TokenID] = []
            for word in text.joined(separator: " ").split(whereSeparator: \.isWhitespace) {
                guard let id = TokenID(word), id >= 0, Int(id) < tokenizer.vocabularySize else {
                    throw ValidationError("--decode: \"\(word)\" is not a token id of \(model) (0..<\(tokenizer.vocabularySize))")
                }
                ids.append(id)
            }
            print(tokenizer.decode(ids, skipSpecial: skipSpecial))
        } else {
            let ids = tokenizer.encode(text.joined(separator: " "), parseSpecial: !splitSpecial)
            print(ids.map(String.init).joined(separator: " "))
        }
    }
}
