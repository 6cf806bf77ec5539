import Configuration
import Datasets
import Engine
import Method
import Shared

/// One supervised training sequence: tokens the model reads, some of which (the target turns:
/// output tokens ending in `⟨eos⟩`) it learns to produce; the rest is context, never scored.
public struct SFTSequence: Sendable, Hashable {
    /// The whole conversation: prompts and target turns.
    public var tokens: [TokenID]
    /// Index ranges of `tokens` that are scored, in order, not overlapping, none starting at 0
    /// (the first token has no prefix to predict it from).
    public var scoredRanges: [Range<Int>]

    public init(tokens: [TokenID], scoredRanges: [Range<Int>]) {
        self.tokens = tokens
        self.scoredRanges = scoredRanges
    }

    /// A prompt followed by one target turn.
    public init(prompt: [TokenID], target: [TokenID]) {
        self.init(tokens: prompt + target, scoredRanges: [prompt.count..<(prompt.count + target.count)])
    }

    /// Number of scored (target) tokens.
    public var targetCount: Int { scoredRanges.reduce(0) { $0 + $1.count } }
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
    ///
    /// With `criteria: .inEvaluation` there are no criteria sequences: each evaluation sequence
    /// also scores its criteria output (the tokens after the criteria prompt, `⟨eos⟩` included).
    public static func sequences(for traces: [SFTTrace], format: any PromptFormat,
                                 criteria: CriteriaTurnTraining = .separate) -> [SFTSequence] {
        var seen = Set<SFTSequence>()
        var out: [SFTSequence] = []
        func add(_ sequence: SFTSequence) {
            if seen.insert(sequence).inserted { out.append(sequence) }
        }
        for trace in traces {
            let criteriaPrompt = format.criteriaPrompt(query: trace.query)
            let criteriaOutput = format.outputTokens(text: trace.criteria)
            let evaluationPrompt = format.evaluationPrompt(criteriaPrompt: criteriaPrompt, criteriaOutput: criteriaOutput,
                                                           response: trace.response)
            var evaluation = SFTSequence(prompt: evaluationPrompt, target: format.outputTokens(text: trace.evaluation))
            switch criteria {
            case .separate:
                add(SFTSequence(prompt: criteriaPrompt, target: criteriaOutput))
            case .inEvaluation:
                evaluation.scoredRanges.insert(criteriaPrompt.count..<(criteriaPrompt.count + criteriaOutput.count), at: 0)
            }
            add(evaluation)
        }
        return out
    }

    /// A next-token batch of `sequences`: position `t` reads `tokens[0...t]` and is scored on
    /// `tokens[t + 1]` only when that token is in a scored range (targets are −1 elsewhere), so
    /// the loss never trains the model to write prompts.
    public static func batch(_ sequences: [SFTSequence]) -> TokenBatch {
        TokenBatch(sequences: sequences.map(\.tokens), scoredRanges: sequences.map(\.scoredRanges))
    }
}
