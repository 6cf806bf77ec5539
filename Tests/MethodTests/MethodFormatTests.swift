@testable import Method
@testable import Shared
import Testing

private let tokenizer = ByteTokenizer()
private let eos = ByteTokenizer.Special.eos.rawValue
private let bos = ByteTokenizer.Special.bos.rawValue
private let user = ByteTokenizer.Special.user.rawValue
private let assistant = ByteTokenizer.Special.assistant.rawValue

/// Output tokens of `text` as the sampler returns them: bytes then ⟨eos⟩.
private func generated(_ text: String) -> [TokenID] { tokenizer.encode(text) + [eos] }

@Suite struct CompactFormatTests {
    let format = CompactFormat()

    @Test func promptsMatchTheSpecificationBytes() {
        let criteriaPrompt = format.criteriaPrompt(query: "Add 2 and 3.")
        #expect(criteriaPrompt == [bos, user] + tokenizer.encode("Q: Add 2 and 3.\nCriteria?") + [assistant])
        let criteriaOutput = generated("math\n[C]\n1. result is 5\n[/C]")
        let evaluationPrompt = format.evaluationPrompt(criteriaPrompt: criteriaPrompt, criteriaOutput: criteriaOutput, response: "5")
        #expect(evaluationPrompt == criteriaPrompt + criteriaOutput + [user] + tokenizer.encode("R: 5\nEvaluate.") + [assistant])
        // Tokens after ⟨eos⟩ are not part of the turn; a text output without ⟨eos⟩ gets one.
        #expect(format.evaluationPrompt(criteriaPrompt: criteriaPrompt, criteriaOutput: criteriaOutput + [65, 66], response: "5") == evaluationPrompt)
        #expect(format.evaluationPrompt(criteriaPrompt: criteriaPrompt, criteriaOutput: Array(criteriaOutput.dropLast()), response: "5") == evaluationPrompt)
    }

    @Test func parsesTheSpecificationExample() {
        let criteria = format.parseCriteria(tokens: generated(
            "list task\n[C]\n1. exactly 3 items\n2. all lowercase\n3. separator ;\n4. every item is a fruit\n[/C]"))
        #expect(criteria == .valid(ParsedCriteria(analysis: "list task", items: [
            "exactly 3 items", "all lowercase", "separator ;", "every item is a fruit",
        ])))
        let evaluation = format.parseEvaluation(tokens: generated(
            "1. 3 items: 5/5\n2. \"Pear\" is not lowercase: 0/5\n3. uses ;: 5/5\n4. all fruits: 5/5\n=> 3/10"), criteriaCount: 4)
        #expect(evaluation == .valid(ParsedEvaluation(items: [
            ScoredItem(analysis: "3 items", score: 5), ScoredItem(analysis: "\"Pear\" is not lowercase", score: 0),
            ScoredItem(analysis: "uses ;", score: 5), ScoredItem(analysis: "all fruits", score: 5),
        ], otherPoint: nil, overall: 3)))
    }

    @Test func parsesHalvesAndTheOtherPoint() {
        let result = format.parseEvaluation(text: "1. ok: 3.5/5\n+. concise: 4/5\n=> 7.5/10", criteriaCount: 1)
        #expect(result == .valid(ParsedEvaluation(items: [ScoredItem(analysis: "ok", score: 3.5)],
                                                  otherPoint: ScoredItem(analysis: "concise", score: 4), overall: 7.5)))
        #expect(format.parseCriteria(text: "[C]\n1. a\n\n2. b\n[/C]\n") == .valid(ParsedCriteria(analysis: "", items: ["a", "b"])))
    }

    @Test func teacherTextRoundTrips() {
        let text = format.criteriaText(analysis: "sum", items: ["equals 5", "only a number"])
        #expect(text == "sum\n[C]\n1. equals 5\n2. only a number\n[/C]")
        #expect(format.parseCriteria(text: text) == .valid(ParsedCriteria(analysis: "sum", items: ["equals 5", "only a number"])))
        let evaluation = ParsedEvaluation(items: [ScoredItem(analysis: "is 5", score: 5), ScoredItem(analysis: "extra words", score: 2.5)],
                                          otherPoint: ScoredItem(analysis: "polite", score: 3), overall: 8.5)
        let evaluationText = format.evaluationText(items: evaluation.items, otherPoint: evaluation.otherPoint, overall: evaluation.overall)
        #expect(evaluationText == "1. is 5: 5/5\n2. extra words: 2.5/5\n+. polite: 3/5\n=> 8.5/10")
        #expect(format.parseEvaluation(tokens: format.outputTokens(text: evaluationText), criteriaCount: 2) == .valid(evaluation))
    }

    @Test(arguments: [
        ("list\n1. a\n[/C]", ParseFailure.missingStartMarker),
        ("x\n[C]\n1. a\n", .missingEndMarker),
        ("x\n[/C]\n[C]\n1. a\n", .missingEndMarker),
        ("x\n[C]\n\n  \n[/C]", .noCriteriaItems),
        ("x\n[C]\n1. a\n3. b\n[/C]", .badItemNumbering),
        ("x\n[C]\n2. a\n[/C]", .badItemNumbering),
        ("x\n[C]\n1. a\nnote\n[/C]", .badItemNumbering),
        ("x\n[C]\n1.a\n[/C]", .badItemNumbering),
        ("x\n[C]\n01. a\n[/C]", .badItemNumbering),
        ("x\n[C]\n1. a\n2.\n[/C]", .emptyItem),
        ("x\n[C]\n1.    \n[/C]", .emptyItem),
        ("x\n[C]\n1. a\n[/C]\nmore", .trailingText),
    ])
    func rejectsMalformedCriteria(text: String, reason: ParseFailure) {
        #expect(format.parseCriteria(text: text) == .invalid(reason: reason))
        #expect(format.parseCriteria(tokens: generated(text)) == .invalid(reason: reason))
    }

    @Test func tokenLevelFailures() {
        let good = generated("x\n[C]\n1. a\n[/C]")
        #expect(format.parseCriteria(tokens: Array(good.dropLast())) == .invalid(reason: .truncated))
        #expect(format.parseCriteria(tokens: []) == .invalid(reason: .truncated))
        #expect(format.parseCriteria(tokens: [bos] + good) == .invalid(reason: .unexpectedSpecialToken))
        #expect(format.parseCriteria(tokens: [-3] + good) == .invalid(reason: .unexpectedSpecialToken))
        #expect(format.parseEvaluation(tokens: tokenizer.encode("1. a: 5/5\n=> 9/10"), criteriaCount: 1) == .invalid(reason: .truncated))
        // What follows ⟨eos⟩ is never read.
        #expect(format.parseCriteria(tokens: good + [bos, 65]).isValid)
    }

    @Test(arguments: [
        ("1. a: 5/5", 1, ParseFailure.noScore),
        ("=> 3/10\n1. a: 5/5", 1, .noScore),
        ("1. a: 5/5\n=> 3", 1, .noScore),
        ("", 1, .noScore),
        ("1. a: 5/5\n=> 3.3/10", 1, .malformedScore),
        ("1. a: 5/5\n=> /10", 1, .malformedScore),
        ("1. a 5/5\n=> 3/10", 1, .malformedScore),
        ("1. a: five/5\n=> 3/10", 1, .malformedScore),
        ("1. a: 5\n=> 3/10", 1, .malformedScore),
        ("1. a: 6/5\n=> 3/10", 1, .scoreOutOfRange),
        ("1. a: 5/5\n=> 11/10", 1, .scoreOutOfRange),
        ("1. a: 5/5\n+. b: 5.5/5\n=> 10/10", 1, .scoreOutOfRange),
        ("1. a: 5/5\n=> 5/10", 2, .itemCountMismatch),
        ("1. a: 5/5\n2. b: 5/5\n=> 5/10", 1, .itemCountMismatch),
        ("2. a: 5/5\n1. b: 4/5\n=> 5/10", 2, .itemCountMismatch),
        ("+. x: 3/5\n1. a: 5/5\n=> 5/10", 1, .itemCountMismatch),
        ("1. a: 5/5\n+. x: 3/5\n+. y: 3/5\n=> 5/10", 1, .itemCountMismatch),
        ("a: 5/5\n=> 5/10", 1, .itemCountMismatch),
    ])
    func rejectsMalformedEvaluations(text: String, criteriaCount: Int, reason: ParseFailure) {
        #expect(format.parseEvaluation(text: text, criteriaCount: criteriaCount) == .invalid(reason: reason))
    }
}

@Suite struct CermFormatTests {
    let format = CermFormat()

    @Test func promptsCarryTheMarkersAndTheConversation() {
        let prompt = format.criteriaPrompt(query: "Name {three} colours.")
        let text = tokenizer.decode(prompt)
        #expect(prompt.first == bos && prompt[1] == user && prompt.last == assistant)
        #expect(text.contains("[Start of Query]\nName {three} colours.\n[End of Query]"))
        #expect(text.contains("[Start of Criteria]") && text.contains("[End of Criteria]"))
        let output = generated("colours\n[Start of Criteria]\n1. three items\n[End of Criteria]")
        let evaluation = format.evaluationPrompt(criteriaPrompt: prompt, criteriaOutput: output, response: "red, {query}")
        #expect(Array(evaluation.prefix(prompt.count + output.count)) == prompt + output)
        #expect(evaluation[prompt.count + output.count] == user && evaluation.last == assistant)
        #expect(tokenizer.decode(evaluation).contains("[Start of Response]\nred, {query}\n[End of Response]"))
        #expect(tokenizer.decode(evaluation).contains("\\boxed{}"))
    }

    @Test func teacherTextRoundTrips() {
        let criteria = ParsedCriteria(analysis: "The query asks for colours.", items: ["Exactly three colours", "Comma separated"])
        let criteriaText = format.criteriaText(analysis: criteria.analysis, items: criteria.items)
        #expect(format.parseCriteria(tokens: format.outputTokens(text: criteriaText)) == .valid(criteria))
        let evaluation = ParsedEvaluation(items: [ScoredItem(analysis: "Three given.", score: 5), ScoredItem(analysis: "Uses commas.", score: 4.5)],
                                          otherPoint: ScoredItem(analysis: "Polite.", score: 3), overall: 9)
        let text = format.evaluationText(items: evaluation.items, otherPoint: evaluation.otherPoint, overall: evaluation.overall)
        let parsed = format.parseEvaluation(text: text, criteriaCount: 2)
        #expect(parsed.value?.itemScores == [5, 4.5])
        #expect(parsed.value?.otherPoint?.score == 3)
        #expect(parsed.value?.overall == 9)
        #expect(parsed.value?.items.first?.analysis == "Criterion 1: Three given. Score:")
    }

    @Test func criteriaItemsMayContinueOnFollowingLines() {
        let text = "Analysis.\n[Start of Criteria]\n1) Correct sum\n   with the work shown\n2. Short\n[End of Criteria]\n"
        #expect(format.parseCriteria(text: text) == .valid(ParsedCriteria(analysis: "Analysis.", items: ["Correct sum with the work shown", "Short"])))
    }

    @Test func overallIsTheLastBox() {
        let text = "Criterion 1: fine \\boxed{4}\nCriterion 2: weak \\boxed{ 1.5 }\nOverall: \\boxed{6}. Done."
        #expect(format.parseEvaluation(text: text, criteriaCount: 2) == .valid(ParsedEvaluation(
            items: [ScoredItem(analysis: "Criterion 1: fine", score: 4), ScoredItem(analysis: "Criterion 2: weak", score: 1.5)],
            otherPoint: nil, overall: 6)))
    }

    @Test(arguments: [
        ("analysis only", ParseFailure.missingStartMarker),
        ("[Start of Criteria]\n1. a", .missingEndMarker),
        ("[End of Criteria][Start of Criteria]\n1. a", .missingEndMarker),
        ("[Start of Criteria]\n\n[End of Criteria]", .noCriteriaItems),
        ("[Start of Criteria]\nintro\n1. a\n[End of Criteria]", .badItemNumbering),
        ("[Start of Criteria]\n1. a\n3. b\n[End of Criteria]", .badItemNumbering),
        ("[Start of Criteria]\n1. a\n2.\n[End of Criteria]", .emptyItem),
        ("[Start of Criteria]\n1. a\n[End of Criteria]\nThanks!", .trailingText),
    ])
    func rejectsMalformedCriteria(text: String, reason: ParseFailure) {
        #expect(format.parseCriteria(text: text) == .invalid(reason: reason))
    }

    @Test(arguments: [
        ("No scores at all.", 1, ParseFailure.noScore),
        ("C1 \\boxed{abc} Overall \\boxed{5}", 1, .malformedScore),
        ("C1 \\boxed{3.25} Overall \\boxed{5}", 1, .malformedScore),
        ("C1 \\boxed{3} Overall \\boxed{5", 1, .malformedScore),
        ("C1 \\boxed{6} Overall \\boxed{5}", 1, .scoreOutOfRange),
        ("C1 \\boxed{5} Overall \\boxed{10.5}", 1, .scoreOutOfRange),
        ("C1 \\boxed{5} Overall \\boxed{7}", 2, .itemCountMismatch),
        ("C1 \\boxed{5} C2 \\boxed{5} Overall \\boxed{7}", 1, .itemCountMismatch),
    ])
    func rejectsMalformedEvaluations(text: String, criteriaCount: Int, reason: ParseFailure) {
        #expect(format.parseEvaluation(text: text, criteriaCount: criteriaCount) == .invalid(reason: reason))
    }

    @Test func otherPointNeedsItsHeading() {
        let withHeading = "C1 \\boxed{5} Other Points: tidy \\boxed{4} Overall \\boxed{9}"
        #expect(format.parseEvaluation(text: withHeading, criteriaCount: 1).value?.otherPoint == ScoredItem(analysis: "Other Points: tidy", score: 4))
        let other = format.parseEvaluation(text: "C1 \\boxed{5} Other Points: none. Overall \\boxed{9}", criteriaCount: 1)
        #expect(other.value?.otherPoint == nil)
        #expect(other.value?.overall == 9)
    }
}

@Suite struct PairwiseAndParFormatTests {
    @Test func pairwisePromptPlacesResponsesByPosition() {
        let format = PairwiseFormat()
        let text = tokenizer.decode(format.prompt(query: "q", chosen: "GOOD", rejected: "BAD", chosenIsA: false))
        #expect(text.contains("[Start of Response A]\nBAD\n[End of Response A]"))
        #expect(text.contains("[Start of Response B]\nGOOD\n[End of Response B]"))
        #expect(format.prompt(query: "q", chosen: "GOOD", rejected: "BAD", chosenIsA: true)
                == format.prompt(query: "q", responseA: "GOOD", responseB: "BAD"))
    }

    @Test func pairwiseVerdicts() {
        let format = PairwiseFormat()
        let good = format.outputText(rubric: "r", evaluation: "e", verdict: .b)
        #expect(format.parseVerdict(tokens: generated(good)) == .valid(.b))
        #expect(format.parseVerdict(text: "<answer>[[A]]</answer> yes [[A]]") == .valid(.a))
        #expect(format.parseVerdict(text: "[[A]] or [[B]]") == .invalid(reason: .bothVerdicts))
        #expect(format.parseVerdict(text: "<answer>A</answer>") == .invalid(reason: .noVerdict))
        #expect(format.parseVerdict(tokens: tokenizer.encode(good)) == .invalid(reason: .truncated))
    }

    @Test func parJudgments() {
        let format = ParFormat()
        let good = format.outputText(thought: "t", rubric: "be right", evaluation: "e", score: 7.5)
        #expect(good == "<think>t</think>\n<rubric>be right</rubric>\n<eval>e</eval>\n<answer>7.5</answer>")
        #expect(format.parseJudgment(tokens: generated(good)) == .valid(ParsedJudgment(rubric: "be right", score: 7.5)))
        #expect(format.parseJudgment(text: "<think></think><rubric></rubric><eval></eval><answer> 6.25 </answer>").value?.score == 6.25)
        #expect(format.parseJudgment(text: "<think></think><rubric></rubric><eval><answer>5</answer>") == .invalid(reason: .missingTags))
        #expect(format.parseJudgment(text: "<think></think><rubric></rubric><answer>5</answer><eval></eval>") == .invalid(reason: .misorderedTags))
        #expect(format.parseJudgment(text: "<think></think><rubric></rubric><eval></eval><answer>high</answer>") == .invalid(reason: .malformedScore))
        #expect(format.parseJudgment(text: "<think></think><rubric></rubric><eval></eval><answer>11</answer>") == .invalid(reason: .scoreOutOfRange))
        #expect(format.parseJudgment(text: "<think></think><rubric></rubric><eval></eval><answer>-1</answer>") == .invalid(reason: .scoreOutOfRange))
        #expect(format.parseJudgment(text: "<think></think><rubric></rubric><eval></eval><answer> </answer>") == .invalid(reason: .noScore))
        #expect(format.parseJudgment(tokens: tokenizer.encode(good)) == .invalid(reason: .truncated))
        let prompt = tokenizer.decode(format.prompt(query: "Q?", response: "R!"))
        #expect(prompt.contains("[Start of Query]\nQ?\n[End of Query]") && prompt.contains("[Start of Response]\nR!\n[End of Response]"))
    }
}

@Suite struct ParserTotalityTests {
    /// Pieces of the formats' syntax, so random outputs reach deep parser states.
    static let fragments: [[UInt8]] = [
        "[C]", "[/C]", "\n", "1. ", "2. ", "+. ", ": ", "/5", "=> ", "/10", "3", "4.5", "\\boxed{", "}",
        "[Start of Criteria]", "[End of Criteria]", "Other Point", "<think>", "</think>", "<rubric>", "</rubric>",
        "<eval>", "</eval>", "<answer>", "</answer>", "[[A]]", "[[B]]", ".", "\r\n", " ",
    ].map { Array($0.utf8) }

    @Test func randomTokensNeverTrap() {
        var state: UInt64 = 0x5EED
        func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state >> 11
        }
        let compact = CompactFormat(), cerm = CermFormat(), pairwise = PairwiseFormat(), par = ParFormat()
        var outcomes = Set<String>()
        for _ in 0..<10_000 {
            var tokens: [TokenID] = []
            let length = Int(next() % 120)
            while tokens.count < length {
                switch next() % 4 {
                case 0: tokens.append(TokenID(truncatingIfNeeded: Int64(next() % 300) - 20))
                case 1: tokens.append(TokenID(next() % 256))
                default: tokens += Self.fragments[Int(next() % UInt64(Self.fragments.count))].map { TokenID($0) }
                }
            }
            if next() % 4 != 0 { tokens.append(eos) }
            let count = Int(next() % 4)
            let results: [String] = [
                "\(compact.parseCriteria(tokens: tokens))", "\(compact.parseEvaluation(tokens: tokens, criteriaCount: count))",
                "\(cerm.parseCriteria(tokens: tokens))", "\(cerm.parseEvaluation(tokens: tokens, criteriaCount: count))",
                "\(pairwise.parseVerdict(tokens: tokens))", "\(par.parseJudgment(tokens: tokens))",
            ]
            let bytes = tokenizer.decodeBytes(tokens)
            _ = compact.parseCriteria(bytes: bytes); _ = cerm.parseEvaluation(bytes: bytes, criteriaCount: count)
            _ = par.parseJudgment(bytes: bytes); _ = compact.parseEvaluation(bytes: bytes, criteriaCount: count)
            outcomes.formUnion(results.map { String($0.prefix(24)) })
        }
        // The fuzz reached both valid and invalid outcomes of several parsers.
        #expect(outcomes.contains { $0.hasPrefix("valid") })
        #expect(outcomes.contains { $0.hasPrefix("invalid") })
    }

    @Test func hugeAndInvalidUTF8InputsParse() {
        let compact = CompactFormat(), cerm = CermFormat()
        let invalidUTF8: [UInt8] = [0xFF, 0xFE, 0xC0, 0x80, 0xED, 0xA0, 0x80]
        let criteria = Array("x\n[C]\n1. ".utf8) + invalidUTF8 + Array("\n[/C]".utf8)
        #expect(compact.parseCriteria(bytes: criteria).value?.items.count == 1)
        var huge: [UInt8] = []
        for i in 0..<200_000 { huge += [UInt8(truncatingIfNeeded: i &* 31), 0x5C] }
        huge += Array(String(repeating: "\\boxed{", count: 20_000).utf8)
        #expect(compact.parseCriteria(bytes: huge) == .invalid(reason: .missingStartMarker))
        #expect(cerm.parseEvaluation(bytes: huge, criteriaCount: 3) == .invalid(reason: .malformedScore))
        #expect(compact.parseEvaluation(bytes: huge, criteriaCount: 3).isValid == false)
        #expect(PairwiseFormat().parseVerdict(bytes: huge) == .invalid(reason: .noVerdict))
        #expect(ParFormat().parseJudgment(bytes: huge) == .invalid(reason: .missingTags))
    }

    @Test func failureReasonsHaveStableKeys() {
        #expect(ParseFailure.allCases.map(\.rawValue) == [
            "truncated", "unexpected_special_token", "missing_start_marker", "missing_end_marker", "no_criteria_items",
            "bad_item_numbering", "empty_item", "trailing_text", "no_score", "malformed_score", "score_out_of_range",
            "item_count_mismatch", "missing_tags", "misordered_tags", "no_verdict", "both_verdicts",
        ])
    }
}

@Suite struct DocumentedPromptTextTests {
    /// The cerm criteria prompt as docs/FORMATS.md shows it; keeps code and documentation in step.
    @Test func cermCriteriaPromptMatchesTheDocumentation() {
        let documented = """
            You are an impartial evaluator. Before seeing any response, decide what a good answer to the query below must achieve.

            [Start of Query]
            Q
            [End of Query]

            First analyse briefly what the query asks for. Then list concise, non-overlapping criteria, most important first, numbered 1., 2., 3., … between [Start of Criteria] and [End of Criteria].
            """
        #expect(CermFormat().criteriaPrompt(query: "Q") == [bos, user] + tokenizer.encode(documented) + [assistant])
    }

    /// The response-conditioned criteria prompts (`eval.criteria = "response-conditioned"`) as
    /// docs/FORMATS.md shows them: the query and the one response, then the criteria request.
    @Test func responseConditionedCriteriaPromptsMatchTheDocumentation() {
        let documented = """
            You are an impartial evaluator. Read the query and the response below, then decide what a good answer to the query must achieve, with this response in view.

            [Start of Query]
            Name {three} colours.
            [End of Query]

            [Start of Response]
            red, {query}
            [End of Response]

            First analyse briefly what the query asks for. Then list concise, non-overlapping criteria, most important first, numbered 1., 2., 3., … between [Start of Criteria] and [End of Criteria].
            """
        let cerm = CermFormat().criteriaPrompt(query: "Name {three} colours.", response: "red, {query}")
        #expect(cerm == [bos, user] + tokenizer.encode(documented) + [assistant])
        let compact = CompactFormat().criteriaPrompt(query: "Add 2 and 3.", response: "5")
        #expect(compact == [bos, user] + tokenizer.encode("Q: Add 2 and 3.\nR: 5\nCriteria?") + [assistant])
        // The two modes differ in the criteria prompt alone: unified never shows a response, and
        // the conditioned prompt differs per response.
        for format in [CermFormat(), CompactFormat()] as [any PromptFormat] {
            let unified = format.criteriaPrompt(query: "Add 2 and 3.")
            let first = format.criteriaPrompt(query: "Add 2 and 3.", response: "5")
            let second = format.criteriaPrompt(query: "Add 2 and 3.", response: "6")
            #expect(unified != first && first != second, "\(format.name)")
            #expect(!tokenizer.decode(unified).contains("5"), "\(format.name)")
            // The evaluation turn after either is the same request.
            let output = generated(format.criteriaText(analysis: "math", items: ["result is 5"]))
            #expect(format.evaluationPrompt(criteriaPrompt: first, criteriaOutput: output, response: "5").dropFirst(first.count)
                    == format.evaluationPrompt(criteriaPrompt: unified, criteriaOutput: output, response: "5").dropFirst(unified.count))
        }
    }

    @Test func scoresAreWrittenAsIntegersOrHalves() {
        #expect(ScoreFormatting.half(3) == "3")
        #expect(ScoreFormatting.half(3.5) == "3.5")
        #expect(ScoreFormatting.half(3.26) == "3.5")
        #expect(ScoreFormatting.half(-0.5) == "-0.5")
        #expect(ScoreFormatting.half(.nan) == "0")
        #expect(ScoreFormatting.half(1e300) == "0")
    }
}
