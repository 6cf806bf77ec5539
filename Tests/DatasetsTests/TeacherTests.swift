@testable import Configuration
@testable import Datasets
import Foundation
@testable import Method
@testable import Shared
import Testing

/// An independent check of the `compact` format rules (docs/FORMATS.md) for the teacher's
/// output; returns the problems found, empty when the text is valid.
enum CompactFormatCheck {
    struct Problem: Error, CustomStringConvertible {
        let description: String
    }

    static func isHalfStep(_ text: String, max: Double) -> Double? {
        guard let value = Double(text), value >= 0, value <= max, (value * 2).rounded() == value * 2,
              text.allSatisfy({ $0.isNumber || $0 == "." }), !text.hasSuffix("."), !text.hasPrefix(".") else { return nil }
        if text.contains(".") && !text.hasSuffix(".5") { return nil }
        return value
    }

    /// The criteria count, or a problem.
    static func criteria(_ text: String) -> Result<Int, Problem> {
        let lines = text.components(separatedBy: "\n")
        guard lines.count >= 4, !lines[0].contains("[C]") else { return .failure(Problem(description: "no analysis line before [C]")) }
        guard lines[1] == "[C]" else { return .failure(Problem(description: "missing_start_marker")) }
        guard lines.last == "[/C]" else { return .failure(Problem(description: "missing_end_marker")) }
        let items = lines[2..<(lines.count - 1)]
        for (k, line) in items.enumerated() {
            guard line.hasPrefix("\(k + 1). ") else { return .failure(Problem(description: "bad_item_numbering at \(line)")) }
            guard line.count > "\(k + 1). ".count else { return .failure(Problem(description: "empty_item")) }
        }
        return .success(items.count)
    }

    /// The stated scores (items, other, overall), or a problem.
    static func evaluation(_ text: String, criteriaCount: Int) -> Result<(items: [Double], other: Double?, overall: Double), Problem> {
        var lines = text.components(separatedBy: "\n")
        guard let last = lines.popLast(), last.hasPrefix("=> "), last.hasSuffix("/10"),
              let overall = isHalfStep(String(last.dropFirst(3).dropLast(3)), max: 10) else { return .failure(Problem(description: "no_score")) }
        var other: Double?
        func score(_ line: Substring) -> Double? {
            guard line.hasSuffix("/5"), let colon = line.range(of: ": ", options: .backwards) else { return nil }
            return isHalfStep(String(line[colon.upperBound...].dropLast(2)), max: 5)
        }
        if let plus = lines.last, plus.hasPrefix("+. ") {
            guard let s = score(plus.dropFirst(3)) else { return .failure(Problem(description: "malformed_score in \(plus)")) }
            other = s
            lines.removeLast()
        }
        guard lines.count == criteriaCount else { return .failure(Problem(description: "item_count_mismatch")) }
        var items: [Double] = []
        for (k, line) in lines.enumerated() {
            let prefix = "\(k + 1). "
            guard line.hasPrefix(prefix) else { return .failure(Problem(description: "item_count_mismatch (numbering) at \(line)")) }
            guard let s = score(line.dropFirst(prefix.count)) else { return .failure(Problem(description: "malformed_score in \(line)")) }
            items.append(s)
        }
        return .success((items, other, overall))
    }
}

@Suite struct TeacherTests {
    let perfect = Teacher(errorRate: 0, seed: 1)

    @Test func writesQueryDerivedCriteria() throws {
        let criteria = try #require(perfect.criteria(for: #"List 3 fruits in lowercase, separated by ";"."#))
        #expect(criteria.text == "list task\n[C]\n1. exactly 3 items\n2. all lowercase\n3. separated by ;\n4. only fruits\n[/C]")
        #expect(perfect.criteria(for: "What is 17+25?")?.text == "17+25: 7+5=12, 1+2+1=4\n[C]\n1. equals 42\n2. only a number\n[/C]")
        #expect(perfect.criteria(for: "What is 52-27?")?.text == "52-27: 12-7=5, 5-2-1=2\n[C]\n1. equals 25\n2. only a number\n[/C]")
        #expect(perfect.criteria(for: "What is 33-9?")?.analysis == "33-9: 13-9=4, 3-0-1=2")
        #expect(perfect.criteria(for: "What is 8+4?")?.analysis == "8+4: 8+4=12, 0+0+1=1")
        #expect(perfect.criteria(for: "What is 46-21?")?.analysis == "46-21: 6-1=5, 4-2=2")
        #expect(perfect.criteria(for: #"Reverse the word "stone"."#)?.text
            == "reverse stone\n[C]\n1. gives enots\n2. exactly 5 letters\n[/C]")
        #expect(perfect.criteria(for: #"Sort the letters of "candy"."#)?.text
            == "sort candy\n[C]\n1. gives acdny\n2. exactly 5 letters\n[/C]")
        #expect(perfect.criteria(for: "Tell me a joke.") == nil)
        // Criteria depend on the query only: a teacher with another seed and error rate writes the same.
        #expect(Teacher(errorRate: 0.9, seed: 99).criteria(for: "What is 17+25?") == perfect.criteria(for: "What is 17+25?"))
    }

    @Test func perfectTeacherScoresWhatItChecks() {
        let list = #"List 3 fruits in lowercase, separated by ";"."#
        #expect(perfect.evaluate(query: list, response: "apple;pear;plum")?.text
            == "1. need 3, 1 apple 2 pear 3 plum: 5/5\n2. need lowercase, got all: 5/5\n3. need ;, got ;: 5/5\n4. need fruits, got all: 5/5\n=> 10/10")
        // docs/FORMATS.md's example: mean 4 → 0.8·4 = 3.2 → 3.
        #expect(perfect.evaluate(query: list, response: "apple;Pear;plum")?.text
            == "1. need 3, 1 apple 2 Pear^ 3 plum: 5/5\n2. need lowercase, got Pear: 1/5\n3. need ;, got ;: 5/5\n4. need fruits, got all: 5/5\n=> 3/10")
        #expect(perfect.evaluate(query: list, response: "apple;pear;plum;fig")?.text
            == "1. need 3, 1 apple 2 pear 3 plum 4 fig: 1/5\n2. need lowercase, got all: 5/5\n3. need ;, got ;: 5/5\n4. need fruits, got all: 5/5\n=> 3/10")
        #expect(perfect.evaluate(query: list, response: "apple;pear,plum")?.text
            == "1. need 3, 1 apple 2 pear 3 plum: 5/5\n2. need lowercase, got all: 5/5\n3. need ;, got ,: 1/5\n4. need fruits, got all: 5/5\n=> 3/10")
        #expect(perfect.evaluate(query: #"List 2 animals in lowercase, separated by "|"."#, response: "cat|pear")?.text
            == "1. need 2, 1 cat 2 pear!: 5/5\n2. need lowercase, got all: 5/5\n3. need |, got |: 5/5\n4. need animals, got pear: 1/5\n=> 3/10")
        #expect(perfect.evaluate(query: list, response: "apple;lion;plum")?.text
            == "1. need 3, 1 apple 2 lion! 3 plum: 5/5\n2. need lowercase, got all: 5/5\n3. need ;, got ;: 5/5\n4. need fruits, got lion: 1/5\n=> 3/10")
        // A repeat is outside the criteria: the `+.` line; mean (5+5+5+5+1)/5 = 4.2 → 3.36 → 3.5.
        #expect(perfect.evaluate(query: list, response: "apple;pear;apple")?.text
            == "1. need 3, 1 apple 2 pear 3 apple=: 5/5\n2. need lowercase, got all: 5/5\n3. need ;, got ;: 5/5\n4. need fruits, got all: 5/5\n+. repeats apple: 1/5\n=> 3.5/10")
        #expect(perfect.evaluate(query: "What is 17+25?", response: "42")?.text == "1. need 42, got 42: 5/5\n2. a number: 5/5\n=> 10/10")
        #expect(perfect.evaluate(query: "What is 17+25?", response: "41")?.text == "1. need 42, got 41!: 1/5\n2. a number: 5/5\n=> 2.5/10")
        #expect(perfect.evaluate(query: "What is 17+25?", response: "44")?.text == "1. need 42, got 44!: 0.5/5\n2. a number: 5/5\n=> 2/10")
        #expect(perfect.evaluate(query: "What is 17+25?", response: "52")?.text == "1. need 42, got 5!2: 0/5\n2. a number: 5/5\n=> 2/10")
        #expect(perfect.evaluate(query: "What is 17+25?", response: "4")?.text == "1. need 42, got 4!: 0/5\n2. a number: 5/5\n=> 2/10")
        #expect(perfect.evaluate(query: "What is 17+25?", response: "forty")?.text == "1. need 42, got f!orty: 0/5\n2. not a number: 0/5\n=> 0/10")
        #expect(perfect.evaluate(query: #"Reverse the word "stone"."#, response: "enost")?.text
            == "1. got enos!t: 1/5\n2. need 5, got 5: 5/5\n=> 2.5/10")
        #expect(perfect.evaluate(query: #"Reverse the word "stone"."#, response: "enos")?.text
            == "1. got enos!: 0/5\n2. need 5, got 4: 1/5\n=> 0.5/10")
        #expect(perfect.evaluate(query: "Tell me a joke.", response: "no") == nil)
    }

    /// The count line marks each item a later verdict flags: `^` letter case, `!` not in the
    /// category, `=` repeats an earlier item; the transform line marks its first wrong letter.
    @Test func marksWhatTheVerdictsFlagWhereItIsRead() {
        let list = #"List 3 fruits in lowercase, separated by ";"."#
        // Scores 5, 1, 5, 1 and the repeat's 1: mean 2.6 → 0.8·2.6 = 2.08 → 2.
        #expect(perfect.evaluate(query: list, response: "apple;Lion;apple")?.text
            == "1. need 3, 1 apple 2 Lion^! 3 apple=: 5/5\n2. need lowercase, got Lion: 1/5\n3. need ;, got ;: 5/5\n4. need fruits, got Lion: 1/5\n+. repeats apple: 1/5\n=> 2/10")
        // Every flawed item is marked, though the line quotes the first.
        #expect(perfect.evaluate(query: list, response: "apple;lion;bear")?.text
            == "1. need 3, 1 apple 2 lion! 3 bear!: 5/5\n2. need lowercase, got all: 5/5\n3. need ;, got ;: 5/5\n4. need fruits, got lion: 0/5\n=> 3/10")
        // An overlooked flaw leaves no mark; a false alarm marks the item it names.
        let blindToTopic = Teacher(errors: TeacherErrorProfile(missRates: [.topic: 1], falseAlarmFactor: 1), seed: 5)
        #expect(blindToTopic.evaluate(query: list, response: "apple;lion;plum")?.text
            == "1. need 3, 1 apple 2 lion 3 plum: 5/5\n2. need lowercase, got all: 5/5\n3. need ;, got ;: 5/5\n4. need fruits, got all: 5/5\n=> 10/10")
        for (sample, response) in ["apple;pear;plum", "fig;kiwi;lime", "pear;plum;apple"].enumerated() {
            let evaluation = blindToTopic.evaluate(query: list, response: response, sample: UInt64(sample))
            let lines = evaluation?.text.split(separator: "\n").map(String.init) ?? []
            let named = lines.count == 5 ? lines[3].replacingOccurrences(of: "4. need fruits, got ", with: "")
                .replacingOccurrences(of: ": 1/5", with: "") : ""
            let items = response.split(separator: ";").map(String.init)
            #expect(items.contains(named), "\(lines)")
            let marked = items.enumerated().map { "\($0.offset + 1) \($0.element)\($0.element == named ? "!" : "")" }
            #expect(lines.first == "1. need 3, " + marked.joined(separator: " ") + ": 5/5")
        }
        // A false alarm on a right sum names a neighbour of it, marked where it differs.
        let alarmed = Teacher(errors: TeacherErrorProfile(missRates: [.arithmetic: 1], falseAlarmFactor: 1), seed: 0)
        for sample in UInt64(0)..<4 {
            let line = alarmed.evaluate(query: "What is 17+25?", response: "42", sample: sample)?.text.split(separator: "\n").first
            #expect(["1. need 42, got 43!: 1/5", "1. need 42, got 41!: 1/5"].contains(line.map(String.init)), "\(String(describing: line))")
        }
        #expect(Teacher.quoteMarkingDifference("rzgus", from: "ragus") == "rz!gus")
        #expect(Teacher.quoteMarkingDifference("rag", from: "ragus") == "rag!")
        #expect(Teacher.quoteMarkingDifference("ragusx", from: "ragus") == "ragusx!")
        #expect(Teacher.quoteMarkingDifference("ragus", from: "ragus") == "ragus")
        #expect(Teacher.quoteMarkingDifference("", from: "ab") == "!")
        #expect(Teacher.quoteMarkingDifference("a\nb", from: "ab") == "a !b")
        // Past the 16 quoted bytes the mark is cut with the text.
        #expect(Teacher.quoteMarkingDifference("abcdefghijklmnopqrstu", from: "abcdefghijklmnopqrstv") == "abcdefghijklmnop..")
        #expect(Teacher.quoteMarkingDifference("abcdefghijklmnopqrstu", from: "abcX") == "abcd!efghijklmnop..")
    }

    @Test func overallScoreSeparatesPassingFromFailing() {
        #expect(TeacherEvaluation.overall(of: [5, 5, 5, 5]) == 10)
        #expect(TeacherEvaluation.overall(of: [5, 1]) == 2.5)
        #expect(TeacherEvaluation.overall(of: [4.5, 5]) == 4)
        #expect(TeacherEvaluation.overall(of: [0, 0]) == 0)
        #expect(TeacherEvaluation.overall(of: []) == 0)
        #expect(formatScore(3.5) == "3.5" && formatScore(10) == "10" && formatScore(0.5) == "0.5")
    }

    @Test func evaluatesAgainstAGivenCriteriaSubset() throws {
        let query = #"List 3 fruits in lowercase, separated by ";"."#
        let full = try #require(perfect.criteria(for: query))
        let subset = TeacherCriteria(analysis: "list task", items: [full.items[3], full.items[0]])
        #expect(perfect.evaluate(query: query, criteria: subset, response: "apple;lion;plum")?.text
            == "1. need fruits, got lion: 1/5\n2. need 3, 1 apple 2 lion! 3 plum: 5/5\n=> 2.5/10")
        let mathCriteria = try #require(perfect.criteria(for: "What is 1+2?"))
        #expect(perfect.evaluate(query: query, criteria: mathCriteria, response: "apple;pear;plum") == nil)
    }

    @Test func tracesAreValidCompactFormat() throws {
        let data = SyntheticTask.generate(trainCount: 600, evalCount: 0, seed: 11)
        let teacher = Teacher(errorRate: 0.2, seed: 3)
        var longest = 0
        for pair in data.train {
            let criteria = try #require(teacher.criteria(for: pair.query))
            guard case let .success(count) = CompactFormatCheck.criteria(criteria.text) else {
                Issue.record("bad criteria for \(pair.query): \(CompactFormatCheck.criteria(criteria.text))")
                continue
            }
            #expect(count == criteria.items.count)
            #expect(criteria.text.utf8.count < 96, "criteria must fit rollout.criteria_max_tokens with ⟨eos⟩")
            for response in [pair.chosen, pair.rejected] {
                let evaluation = try #require(teacher.evaluate(query: pair.query, criteria: criteria, response: response))
                switch CompactFormatCheck.evaluation(evaluation.text, criteriaCount: count) {
                case let .success(parsed):
                    #expect(parsed.items == evaluation.items.map(\.score))
                    #expect(parsed.other == evaluation.other?.score)
                    #expect(parsed.overall == TeacherEvaluation.overall(of: parsed.items + (parsed.other.map { [$0] } ?? [])))
                case let .failure(problem):
                    Issue.record("bad evaluation \(problem): \(evaluation.text)")
                }
                // ⟨bos⟩⟨user⟩Q: …\nCriteria?⟨assistant⟩ criteria⟨eos⟩ ⟨user⟩R: …\nEvaluate.⟨assistant⟩ evaluation⟨eos⟩
                let total = 3 + 3 + pair.query.utf8.count + 10 + criteria.text.utf8.count + 1
                    + 1 + 3 + response.utf8.count + 10 + 1 + evaluation.text.utf8.count + 1
                longest = max(longest, total)
            }
        }
        #expect(longest <= 384)
    }

    @Test func mistakesAreDeterministicPerTraceAndSeed() {
        let data = SyntheticTask.generate(trainCount: 0, evalCount: 150, seed: 7)
        let a = Teacher(errorRate: 0.2, seed: 5), b = Teacher(errorRate: 0.2, seed: 6)
        var differing = 0
        for pair in data.eval {
            let first = a.evaluate(query: pair.query, response: pair.rejected)
            // Same seed, same trace, whatever was evaluated in between.
            _ = a.evaluate(query: pair.query, response: pair.chosen)
            #expect(a.evaluate(query: pair.query, response: pair.rejected) == first)
            if b.evaluate(query: pair.query, response: pair.rejected) != first { differing += 1 }
            // Another sample index is another trace.
            _ = a.evaluate(query: pair.query, response: pair.rejected, sample: 1)
        }
        #expect(differing > 10)
    }

    @Test func perfectTeacherIsAlwaysRightOnTheEvalSplit() {
        let data = SyntheticTask.generate(trainCount: 0, evalCount: 300, seed: 7)
        let report = perfect.measure(pairs: data.eval, bestOfN: data.bestOfN)
        #expect(report.pairwise == AccuracyTally(count: 300, credit: 300))
        #expect(report.bestOfN == AccuracyTally(count: 300, credit: 300))
        #expect(report.pairwiseByType.mapValues(\.accuracy) == ["list": 1, "math": 1, "string": 1])
        #expect(report.unsupported == 0)
    }

    @Test func defaultTeacherIsGoodButImperfect() {
        // The default run's eval split (seed 7, 200 pairs, Best-of-4 per query); docs/DATA.md
        // documents the bands: pairwise 75–90 %, Best-of-4 50–75 %.
        let data = SyntheticTask.generate(trainCount: 0, evalCount: 200, seed: 7)
        let report = Teacher(errorRate: DataConfig().teacherErrorRate, seed: 0).measure(pairs: data.eval, bestOfN: data.bestOfN)
        #expect((0.75...0.90).contains(report.pairwise.accuracy), "\(report.summary)")
        #expect((0.50...0.75).contains(report.bestOfN.accuracy), "\(report.summary)")
        for type in SyntheticTask.taskTypes {
            #expect((0.65...0.95).contains(report.pairwiseByType[type]?.accuracy ?? 0), "\(report.summary)")
        }
        // More error means less accuracy.
        let sloppy = Teacher(errorRate: 0.45, seed: 0).measure(pairs: data.eval)
        #expect(sloppy.pairwise.accuracy < report.pairwise.accuracy)
    }

    @Test func unknownQueriesAreCountedNotScored() {
        let pairs = [PreferencePair(id: "x", query: "Tell me a joke.", chosen: "a", rejected: "b")]
        let report = perfect.measure(pairs: pairs, bestOfN: [BestOfNItem(id: "y", query: "Hi", responses: ["a", "b"], best: 0)])
        #expect(report.unsupported == 2 && report.pairwise.count == 0 && report.bestOfN.count == 0)
    }

    @Test func sftTraceLinesCarryQueryCriteriaResponseAndEvaluation() throws {
        let line = try #require(perfect.sftTraceLine(id: "p1", query: "What is 17+25?", response: "41", label: "rejected", taskType: "math"))
        #expect(line == #"{"id":"p1","task_type":"math","query":"What is 17+25?","criteria":"17+25: 7+5=12, 1+2+1=4\n[C]\n1. equals 42\n2. only a number\n[/C]","response":"41","evaluation":"1. need 42, got 41!: 1/5\n2. a number: 5/5\n=> 2.5/10","overall":2.5,"label":"rejected"}"#)
        let parsed = try JSONParser.parse(Array(line.utf8))
        #expect(parsed["evaluation"] == .string("1. need 42, got 41!: 1/5\n2. a number: 5/5\n=> 2.5/10"))
        // The same judgment in the `cerm` format (docs/FORMATS.md), as `rollout.format = "cerm"` trains on.
        let cerm = try #require(perfect.sftTrace(id: "p1", query: "What is 17+25?", response: "41", label: "rejected", taskType: "math",
                                                 format: CermFormat()))
        #expect(cerm.criteria == "17+25: 7+5=12, 1+2+1=4\n\n[Start of Criteria]\n1. equals 42\n2. only a number\n[End of Criteria]")
        #expect(cerm.evaluation == "Criterion 1: need 42, got 41! Score: \\boxed{1}\nCriterion 2: a number Score: \\boxed{5}\nOverall: \\boxed{2.5}")
    }

    @Test func sftTraceFilesRoundTrip() throws {
        let data = SyntheticTask.generate(trainCount: 6, evalCount: 2, seed: 7)
        let records = data.train.map(PreferenceRecord.pair) + data.bestOfN.map(PreferenceRecord.bestOfN)
            + [.pair(PreferencePair(id: "x", query: "Tell me a joke.", chosen: "a", rejected: "b"))]
        let (traces, unsupported) = Teacher(errorRate: 0.2, seed: 1).sftTraces(for: records, samples: 2)
        #expect(traces.count == 2 * (6 * 2 + 2 * 4) && unsupported == 2)
        #expect(traces[0].label == "chosen" && traces[2].label == "rejected" && traces[0].id == "train-0")
        #expect(traces.filter { $0.id.hasPrefix("bo4-") && $0.label == "best" }.count == 2 * 2)
        let path = try Scratch.file("sft.jsonl", lines: traces.map(\.jsonLine))
        #expect(try SFTTrace.load(path: path) == traces)
        // The teacher's traces, mistakes included, are valid compact-format turns; written in
        // the cerm format, valid cerm turns with the same scores.
        #expect(try SFTTrace.load(path: path, format: CompactFormat()) == traces)
        let cerm = Teacher(errorRate: 0.2, seed: 1).sftTraces(for: records, samples: 2, format: CermFormat()).traces
        let cermPath = try Scratch.file("sft-cerm.jsonl", lines: cerm.map(\.jsonLine))
        #expect(try SFTTrace.load(path: cermPath, format: CermFormat()) == cerm)
        #expect(cerm.map(\.overall) == traces.map(\.overall))
        // Both parse to the same judgment: criteria and scores.
        for (compact, full) in zip(traces, cerm) {
            guard case let .valid(criteria) = CompactFormat().parseCriteria(text: compact.criteria),
                  case let .valid(a) = CompactFormat().parseEvaluation(text: compact.evaluation, criteriaCount: criteria.items.count),
                  case let .valid(b) = CermFormat().parseEvaluation(text: full.evaluation, criteriaCount: criteria.items.count) else {
                Issue.record("unparsed trace \(full.id)"); continue
            }
            #expect(CermFormat().parseCriteria(text: full.criteria) == .valid(criteria))
            // (The cerm parser keeps a line's whole text as its analysis.)
            #expect(a.items.map(\.score) == b.items.map(\.score) && a.otherPoint?.score == b.otherPoint?.score && a.overall == b.overall)
        }
        let bad = try Scratch.file("sft-bad.jsonl", lines: [#"{"id":"a","query":"q","criteria":"c","response":"r","evaluation":"e","label":"l"}"#])
        #expect(throws: DataError(file: bad, line: 1, field: "overall", message: "missing")) { try SFTTrace.load(path: bad) }
    }

    /// `cerm sft --traces`: contents are checked, not only presence (a trace with
    /// `"evaluation":"garbage"` or `"label":"good"` used to train without complaint).
    @Test func sftTraceContentsAreChecked() throws {
        let good = #"{"id":"p1","task_type":"math","query":"What is 17+25?","criteria":"17+25: 7+5=12, 1+2+1=4\n[C]\n1. equals 42\n2. only a number\n[/C]","response":"41","evaluation":"1. need 42, got 41!: 1/5\n2. a number: 5/5\n=> 2.5/10","overall":2.5,"label":"rejected"}"#
        func variant(_ from: String, _ to: String) -> String {
            precondition(good.contains(from), "the test's trace has no \(from)")
            return good.replacingOccurrences(of: from, with: to)
        }
        func failure(_ line: String, format: (any PromptFormat)? = CompactFormat(), at expectedLine: Int = 3) throws -> DataError? {
            let path = try Scratch.file("sft-contents.jsonl", lines: [good, good.replacingOccurrences(of: "\"p1\"", with: "\"p2\""), line])
            do {
                _ = try SFTTrace.load(path: path, format: format)
                return nil
            } catch let error as DataError {
                #expect(error.file == path && error.line == expectedLine)
                return error
            }
        }
        // task_type is optional: absent, null or a string.
        #expect(try failure(variant(#""task_type":"math","#, "")) == nil)
        #expect(try failure(variant(#""task_type":"math""#, #""task_type":null"#)) == nil)
        // label: the documented values only.
        for label in ["chosen", "best", "other"] { #expect(try failure(variant(#""label":"rejected""#, "\"label\":\"\(label)\"")) == nil) }
        #expect(try failure(variant(#""label":"rejected""#, #""label":"good""#))?.description.hasSuffix(
            #":3: label: expected "chosen", "rejected", "best" or "other", got "good""#) == true)
        // Without a format only the fields are checked.
        #expect(try failure(variant(#""evaluation":"1. need"#, #""evaluation":"garbage","x":"1. need"#), format: nil) == nil)
        // With one, both turns must parse.
        let garbageEvaluation = try failure(variant(#""evaluation":"1. need"#, #""evaluation":"garbage","x":"1. need"#))
        #expect(garbageEvaluation?.field == "evaluation")
        #expect(garbageEvaluation?.message == "does not parse as a compact-format evaluation turn (no_score)")
        let oneItemTooFew = try failure(variant(#"1. need 42, got 41!: 1/5\n2. a number"#, #"1. a number"#))
        #expect(oneItemTooFew?.message == "does not parse as a compact-format evaluation turn (item_count_mismatch)")
        let garbageCriteria = try failure(variant(#""criteria":"17+25"#, #""criteria":"garbage","x":"17+25"#))
        #expect(garbageCriteria?.field == "criteria")
        #expect(garbageCriteria?.message == "does not parse as a compact-format criteria turn (missing_start_marker)")
        // The format is the run's: compact traces are not cerm-format turns.
        #expect(try failure(good, format: CermFormat(), at: 1)?.message == "does not parse as a cerm-format criteria turn (missing_start_marker)")
    }

    @Test func errorRatesAreConfigurablePerKind() throws {
        let profile = try TeacherErrorProfile.scaled(0.2).applying(overrides: ["count=0", "arithmetic=1"])
        #expect(profile.missRate(.count) == 0 && profile.missRate(.arithmetic) == 1 && profile.missRate(.letterCase) == 0.2)
        let kinds = "kinds: count case separator topic distinct arithmetic format transform length"
        #expect(throws: CermError.invalid("\"speed=0.1\": unknown kind speed; \(kinds)")) {
            try TeacherErrorProfile.scaled(0.2).applying(overrides: ["speed=0.1"])
        }
        #expect(throws: CermError.invalid("\"count\": expected KIND=RATE; \(kinds)")) {
            try TeacherErrorProfile.scaled(0.2).applying(overrides: ["count"])
        }
        #expect(throws: CermError.invalid("\"count=2\": the rate must be a number in 0…1")) {
            try TeacherErrorProfile.scaled(0.2).applying(overrides: ["count=2"])
        }
        #expect(throws: CermError.invalid("\"count=\": the rate must be a number in 0…1")) {
            try TeacherErrorProfile.scaled(0.2).applying(overrides: ["count="])
        }
        // A teacher that always misses off-by-one sums (difficulty 1.25 × rate 1) ties them.
        let blind = Teacher(errors: TeacherErrorProfile(missRates: [.arithmetic: 1], falseAlarmFactor: 0), seed: 0)
        #expect(blind.evaluate(query: "What is 17+25?", response: "41")?.text == "1. need 42, got 42: 5/5\n2. a number: 5/5\n=> 10/10")
        #expect(blind.pairwiseCredit(PreferencePair(id: "p", query: "What is 17+25?", chosen: "42", rejected: "41")) == 0.5)
    }
}
