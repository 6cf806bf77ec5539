import Engine
import Shared

/// One supervised training sequence: a prompt the model reads as context and the target turn
/// (output tokens ending in `⟨eos⟩`) it learns to produce.
public struct SFTSequence: Sendable, Hashable {
    /// Prompt tokens followed by target tokens.
    public var tokens: [TokenID]
    /// Number of leading prompt tokens (context only, never scored).
    public var promptLength: Int

    public init(tokens: [TokenID], promptLength: Int) {
        self.tokens = tokens
        self.promptLength = promptLength
    }

    public init(prompt: [TokenID], target: [TokenID]) {
        self.init(tokens: prompt + target, promptLength: prompt.count)
    }

    /// Number of scored (target) tokens.
    public var targetCount: Int { max(0, tokens.count - promptLength) }
}

/// Turns teacher traces into SFT sequences and batches.
public enum SFTSequenceBuilder {
    /// The two turns of every trace in the format's conversation: the criteria turn
    /// (criteria prompt → criteria output + `⟨eos⟩`) and the evaluation turn (evaluation
    /// prompt, which contains the criteria turn, → evaluation output + `⟨eos⟩`).
    ///
    /// Identical sequences are kept once, in order of first appearance: the criteria turn
    /// depends on the query alone, so both responses of a pair (and every Best-of-N response)
    /// would otherwise train it two or more times per epoch.
    public static func sequences(for traces: [SFTTrace], format: any PromptFormat) -> [SFTSequence] {
        var seen = Set<SFTSequence>()
        var out: [SFTSequence] = []
        func add(_ sequence: SFTSequence) {
            if seen.insert(sequence).inserted { out.append(sequence) }
        }
        for trace in traces {
            let criteriaPrompt = format.criteriaPrompt(query: trace.query)
            let criteriaOutput = format.outputTokens(text: trace.criteria)
            add(SFTSequence(prompt: criteriaPrompt, target: criteriaOutput))
            let evaluationPrompt = format.evaluationPrompt(criteriaPrompt: criteriaPrompt, criteriaOutput: criteriaOutput,
                                                           response: trace.response)
            add(SFTSequence(prompt: evaluationPrompt, target: format.outputTokens(text: trace.evaluation)))
        }
        return out
    }

    /// A next-token batch of `sequences`: position `t` reads `tokens[0...t]` and is scored on
    /// `tokens[t + 1]` only when that token is part of the target (targets are −1 over the
    /// prompt), so the loss never trains the model to write prompts.
    public static func batch(_ sequences: [SFTSequence]) -> TokenBatch {
        TokenBatch(sequences: sequences.map(\.tokens), scoredFrom: sequences.map { max(1, $0.promptLength) })
    }
}
