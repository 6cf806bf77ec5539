import Configuration
import Foundation
import Method
import Shared

/// What a criterion checks; the teacher's error rates are set per kind.
public enum CriterionKind: String, CaseIterable, Sendable {
    /// List: number of items.
    case count
    /// List: letter case of every item.
    case letterCase = "case"
    /// List: the separator between items.
    case separator
    /// List: every item in the category.
    case topic
    /// List, the `+.` line: items repeated (outside the criteria).
    case distinct
    /// Math: the value.
    case arithmetic
    /// Math: the answer is just a number.
    case format
    /// String: the transformed word.
    case transform
    /// String: number of letters.
    case length
}

/// One criterion of the teacher's criteria set.
public struct TeacherCriterion: Sendable, Equatable {
    public var kind: CriterionKind
    public var text: String
}

/// A query's criteria: an analysis line and numbered criteria, most important first.
public struct TeacherCriteria: Sendable, Equatable {
    public var analysis: String
    public var items: [TeacherCriterion]

    /// The criteria turn's output in the `compact` format (docs/FORMATS.md), without `⟨eos⟩`.
    public var text: String { text(in: CompactFormat()) }

    /// The criteria turn's output in `format`, without `⟨eos⟩`.
    public func text(in format: any PromptFormat) -> String {
        format.criteriaText(analysis: analysis, items: items.map(\.text))
    }
}

/// One scored line of an evaluation.
public struct EvaluationLine: Sendable, Equatable {
    public var analysis: String
    /// 0–5 in steps of 0.5.
    public var score: Double
}

/// An evaluation trace in the `compact` format and the scores it states.
public struct TeacherEvaluation: Sendable, Equatable {
    /// One line per criterion, in criteria order.
    public var items: [EvaluationLine]
    /// The `+.` line, when the teacher noticed something outside the criteria.
    public var other: EvaluationLine?
    /// 0–10 in steps of 0.5 (docs/DATA.md, "Overall score").
    public var overall: Double

    /// The evaluation turn's output in the `compact` format (docs/FORMATS.md), without `⟨eos⟩`.
    public var text: String { text(in: CompactFormat()) }

    /// The evaluation turn's output in `format`, without `⟨eos⟩`.
    public func text(in format: any PromptFormat) -> String {
        func scored(_ line: EvaluationLine) -> ScoredItem { ScoredItem(analysis: line.analysis, score: line.score) }
        return format.evaluationText(items: items.map(scored), otherPoint: other.map(scored), overall: overall)
    }

    /// The overall score of a set of line scores: 10 when every line is 5/5; otherwise
    /// `0.8 × mean`, rounded to the nearest half, which is at most 4 — one failed check puts a
    /// response clearly below every response that passes all checks.
    public static func overall(of scores: [Double]) -> Double {
        guard !scores.isEmpty else { return 0 }
        if scores.allSatisfy({ $0 >= 5 }) { return 10 }
        let mean = scores.reduce(0, +) / Double(scores.count)
        return min(4, (0.8 * mean * 2).rounded() / 2)
    }
}

/// A score as the formats write it: `5`, `3.5`.
public func formatScore(_ score: Double) -> String {
    score == score.rounded() ? String(Int(score)) : String(format: "%.1f", score)
}

/// How often the teacher is wrong, per criterion kind.
///
/// `missRates[kind]` is the base probability that the teacher overlooks a real flaw of that
/// kind (it then writes a confident, wrong "pass" line, e.g. it stops counting at the number
/// asked or misreads a wrong sum as the right one); harder flaws scale it up (docs/DATA.md,
/// "Teacher"). A check that truly passes is wrongly failed with probability `missRates[kind] × falseAlarmFactor`.
public struct TeacherErrorProfile: Sendable, Equatable {
    public var missRates: [CriterionKind: Double]
    public var falseAlarmFactor: Double

    public init(missRates: [CriterionKind: Double], falseAlarmFactor: Double = 0.25) {
        self.missRates = missRates
        self.falseAlarmFactor = falseAlarmFactor
    }

    /// Relative error weights per kind: counting and off-by-one arithmetic are the teacher's
    /// blind spots, separators and formats it almost never gets wrong. At the default error rate
    /// 0.2 the most overlooked flaws (one item too many, a sum off by one: difficulty 1.25) are
    /// missed 40% of the time, not 50%: at an even split, which of the two lines a model
    /// imitating the teacher writes greedily is decided by rounding (docs/DATA.md).
    public static let kindWeights: [CriterionKind: Double] = [
        .count: 1.6, .arithmetic: 1.6, .transform: 1.5, .distinct: 1.5, .letterCase: 1.0,
        .topic: 0.75, .separator: 0.5, .length: 0.5, .format: 0.25,
    ]

    /// The profile for `data.teacher_error_rate`: miss rate of a kind = `errorRate × weight`
    /// (capped at 1). 0 is a perfect teacher.
    public static func scaled(_ errorRate: Double) -> TeacherErrorProfile {
        TeacherErrorProfile(missRates: kindWeights.mapValues { min(1, max(0, errorRate) * $0) })
    }

    /// This profile with `kind=rate` overrides (e.g. `count=0.5`, rate in 0…1), as the
    /// `--kind-rate` options of `cerm data teacher|sft-traces` give them. A bad override is a
    /// `CermError.invalid` that quotes it and lists the kinds, e.g. `"bogus=1": unknown kind
    /// bogus; kinds: count case …` (the caller names the option it came from).
    public func applying(overrides: [String]) throws -> TeacherErrorProfile {
        var profile = self
        let kinds = "kinds: " + CriterionKind.allCases.map(\.rawValue).joined(separator: " ")
        for text in overrides {
            let parts = text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2 else {
                throw CermError.invalid("\(JSONWriter.quote(text)): expected KIND=RATE; \(kinds)")
            }
            guard let kind = CriterionKind(rawValue: parts[0]) else {
                throw CermError.invalid("\(JSONWriter.quote(text)): unknown kind \(parts[0]); \(kinds)")
            }
            guard let rate = Double(parts[1]), (0...1).contains(rate) else {
                throw CermError.invalid("\(JSONWriter.quote(text)): the rate must be a number in 0…1")
            }
            profile.missRates[kind] = rate
        }
        return profile
    }

    /// The base miss rate of `kind`.
    public func missRate(_ kind: CriterionKind) -> Double { missRates[kind] ?? 0 }
}

/// A programmatic teacher for the synthetic task: it writes query-derived criteria and
/// evaluation traces in the `compact` format, computing scores from what it checks, and makes
/// realistic, seeded mistakes (docs/DATA.md, "Teacher").
public struct Teacher: Sendable {
    public var errors: TeacherErrorProfile
    /// Fixes every mistake: the trace for (query, response, sample) depends only on this seed.
    public var seed: UInt64

    public init(errors: TeacherErrorProfile, seed: UInt64 = 0) {
        self.errors = errors
        self.seed = seed
    }

    /// A teacher with the default error weights scaled by `errorRate` (see ``TeacherErrorProfile/scaled(_:)``).
    public init(errorRate: Double = DataConfig().teacherErrorRate, seed: UInt64 = 0) {
        self.init(errors: .scaled(errorRate), seed: seed)
    }

    /// The criteria for `query`, or nil when it is not a synthetic query the teacher knows.
    /// Criteria depend on the query alone (unified criteria), never on the seed.
    public func criteria(for query: String) -> TeacherCriteria? {
        guard let parsed = SyntheticQuery.parse(query) else { return nil }
        return Self.criteria(for: parsed)
    }

    static func criteria(for query: SyntheticQuery) -> TeacherCriteria {
        switch query {
        case let .list(count, category, letterCase, separator):
            return TeacherCriteria(analysis: "list task", items: [
                TeacherCriterion(kind: .count, text: "exactly \(count) items"),
                TeacherCriterion(kind: .letterCase, text: "all \(letterCase.rawValue)"),
                TeacherCriterion(kind: .separator, text: "separated by \(separator)"),
                TeacherCriterion(kind: .topic, text: "only \(category.plural)"),
            ])
        case let .arithmetic(a, op, b):
            return TeacherCriteria(analysis: "\(a)\(op)\(b): \(arithmeticSteps(a, op, b))", items: [
                TeacherCriterion(kind: .arithmetic, text: "equals \(query.arithmeticValue ?? 0)"),
                TeacherCriterion(kind: .format, text: "only a number"),
            ])
        case let .transform(kind, word):
            return TeacherCriteria(analysis: "\(kind.rawValue) \(word)", items: [
                TeacherCriterion(kind: .transform, text: "gives \(kind.apply(word))"),
                TeacherCriterion(kind: .length, text: "exactly \(word.count) letters"),
            ])
        }
    }

    /// Column arithmetic of a two-digit sum or difference, ones first: `7+8=15, 4+3+1=8` for
    /// 47+38, `12-7=5, 5-2-1=2` for 52-27 (a borrow is written as the `1` before the ones and
    /// the `-1` in the tens), so the value is read off one-digit facts and a carry instead of
    /// one lookup over thousands of operand pairs. (The default 1M-parameter model has not
    /// learned the facts in one SFT pass yet: docs/experiments/2026-11-22-trace-design-experiments.md.)
    static func arithmeticSteps(_ a: Int, _ op: Character, _ b: Int) -> String {
        let (a1, a0) = a.quotientAndRemainder(dividingBy: 10)
        let (b1, b0) = b.quotientAndRemainder(dividingBy: 10)
        if op == "+" {
            let carry = (a0 + b0) / 10
            return "\(a0)+\(b0)=\(a0 + b0), \(a1)+\(b1)\(carry > 0 ? "+1" : "")=\(a1 + b1 + carry)"
        }
        let borrow = a0 < b0 ? 1 : 0
        return "\(borrow > 0 ? "1" : "")\(a0)-\(b0)=\(10 * borrow + a0 - b0), \(a1)-\(b1)\(borrow > 0 ? "-1" : "")=\(a1 - b1 - borrow)"
    }

    /// The evaluation of `response` against the teacher's own criteria for `query`.
    public func evaluate(query: String, response: String, sample: UInt64 = 0) -> TeacherEvaluation? {
        guard let criteria = criteria(for: query) else { return nil }
        return evaluate(query: query, criteria: criteria, response: response, sample: sample)
    }

    /// The evaluation of `response` against `criteria`, one line per criterion, or nil when the
    /// query is unknown or a criterion does not apply to its family. Mistakes are drawn from a
    /// stream of (seed, query, response, sample), so a trace is reproducible on its own.
    public func evaluate(query: String, criteria: TeacherCriteria, response: String, sample: UInt64 = 0) -> TeacherEvaluation? {
        guard let parsed = SyntheticQuery.parse(query) else { return nil }
        var rng = SplitMix64(seed: seed, streams: stableHash(query), stableHash(response), sample)
        var checks: [(Check, CriterionKind, Draw)] = []
        for criterion in criteria.items {
            guard let check = Self.check(criterion.kind, query: parsed, response: response) else { return nil }
            checks.append((check, criterion.kind, Draw(&rng)))
        }
        var distinct: (Check, Draw)?
        if case .list = parsed, let check = Self.check(.distinct, query: parsed, response: response) {
            distinct = (check, Draw(&rng))
        }
        // The list checks' verdicts mark the items they flag in the count line's enumeration,
        // so the count line is written last, with the marks of every other verdict.
        var marks: [Int: String] = [:]
        func addMarks(_ verdict: Verdict, kind: CriterionKind) {
            guard let mark = Self.itemMarks[kind] else { return }
            for index in verdict.flaggedItems { marks[index, default: ""] += mark }
        }
        var lines = [EvaluationLine?](repeating: nil, count: checks.count)
        for (index, (check, kind, draw)) in checks.enumerated() where kind != .count {
            let verdict = judge(check, kind: kind, draw: draw)
            addMarks(verdict, kind: kind)
            lines[index] = verdict.line
        }
        var other: EvaluationLine?
        if let (check, draw) = distinct {
            let verdict = judge(check, kind: .distinct, draw: draw)
            if verdict.line.score < 5 {
                other = verdict.line
                addMarks(verdict, kind: .distinct)
            }
        }
        for (index, (check, kind, draw)) in checks.enumerated() where kind == .count {
            let marked = check.withItemMarks?(marks) ?? check
            lines[index] = judge(marked, kind: kind, draw: draw).line
        }
        let items = lines.compactMap { $0 }
        let overall = TeacherEvaluation.overall(of: items.map(\.score) + (other.map { [$0.score] } ?? []))
        return TeacherEvaluation(items: items, other: other, overall: overall)
    }

    /// The marks a list check's failing verdict puts after the items it flags in the count
    /// line's enumeration (`need 3, 1 apple 2 Lion^! 3 apple=`): the decision about an item is
    /// written where the item is read, one token, instead of only at the end of a later line.
    static let itemMarks: [CriterionKind: String] = [.letterCase: "^", .topic: "!", .distinct: "="]

    /// The two random draws of one check, taken in criteria order whatever the outcome, so a
    /// check's outcome never shifts another's.
    struct Draw {
        var u: Double
        var detail: UInt64
        init(_ rng: inout SplitMix64) {
            u = rng.unit()
            detail = rng.next()
        }
    }

    /// What the teacher wrote for one check and which list items (indices) its line flags.
    struct Verdict {
        var line: EvaluationLine
        var flaggedItems: [Int] = []
    }

    /// Applies the error model to a check's truth: a failed check is overlooked with its miss
    /// probability (times the flaw's difficulty), a passed one wrongly failed with the false-alarm
    /// probability.
    private func judge(_ check: Check, kind: CriterionKind, draw: Draw) -> Verdict {
        let rate = errors.missRate(kind)
        if check.passed {
            if let alarm = check.falseAlarm, draw.u < rate * errors.falseAlarmFactor {
                return alarm(draw.detail)
            }
            return Verdict(line: EvaluationLine(analysis: check.passAnalysis, score: 5))
        }
        if draw.u < min(1, rate * check.difficulty) {
            return Verdict(line: EvaluationLine(analysis: check.missAnalysis, score: 5))
        }
        return Verdict(line: EvaluationLine(analysis: check.failAnalysis, score: check.failScore), flaggedItems: check.failItems)
    }

    // MARK: - Checks

    /// The truth of one criterion for one response, plus the lines a mistaken teacher writes.
    struct Check {
        var passed: Bool
        /// The line when it passes.
        var passAnalysis: String
        /// The line when it fails and the teacher sees it.
        var failAnalysis = ""
        var failScore = 0.0
        /// The confident wrong "pass" line when the teacher overlooks the flaw.
        var missAnalysis = ""
        /// Scales the miss rate: subtle flaws are overlooked more often.
        var difficulty = 1.0
        /// The line of a false alarm (from a random draw) and the item it wrongly flags, nil if
        /// the kind has none.
        var falseAlarm: ((UInt64) -> Verdict)?
        /// List checks: the items the failing line is about (all of them, not only the one quoted).
        var failItems: [Int] = []
        /// The count check: the same check with the other checks' item marks in its enumeration.
        var withItemMarks: (([Int: String]) -> Check)?
    }

    /// A fragment of the response quoted in an analysis: one line, at most 16 bytes of it (cut
    /// with `..`), with a `!` after character `markAfter` (or at the end when it equals the
    /// character count) when that falls inside the quote.
    static func quote(_ text: String, markAfter: Int? = nil) -> String {
        let flat = flatten(text)
        var out = ""
        var bytes = 0
        for (index, ch) in flat.enumerated() {
            if bytes + ch.utf8.count > 16 { return out + ".." }
            out.append(ch)
            bytes += ch.utf8.count
            if index == markAfter { out.append("!") }
        }
        if markAfter == flat.count { out.append("!") }
        return out
    }

    /// `text` on one line: newlines and tabs as spaces.
    static func flatten(_ text: String) -> String {
        String(text.map { $0.isNewline || $0 == "\t" ? " " : $0 })
    }

    /// Where `got` first differs from `need`: the index of its first character that differs,
    /// `got.count` when it stops short of `need`, nil when they are equal.
    static func firstDifference(_ got: String, from need: String) -> Int? {
        let (have, wanted) = (Array(got), Array(need))
        if let index = have.indices.first(where: { $0 >= wanted.count || have[$0] != wanted[$0] }) { return index }
        return have.count < wanted.count ? have.count : nil
    }

    /// The quote of `response` with `!` after its first character that differs from `need`
    /// (`rz!gus` for need `ragus`), or at its end when it stops short (`rag!`): the comparison is
    /// decided at the character where it fails, by one token, as the copy is written.
    static func quoteMarkingDifference(_ response: String, from need: String) -> String {
        quote(response, markAfter: firstDifference(flatten(response), from: need))
    }

    /// Every line puts what the criterion needs beside what the response gives (`need 24, got
    /// 25!`), so the score follows from two nearby values; list counts enumerate the items. The
    /// transform line quotes only the response (`got enos!t`): its criterion is the word itself.
    static func check(_ kind: CriterionKind, query: SyntheticQuery, response: String) -> Check? {
        switch query {
        case .list: listCheck(kind, query: query, response: response)
        case .arithmetic: arithmeticCheck(kind, query: query, response: response)
        case .transform: transformCheck(kind, query: query, response: response)
        }
    }

    /// The criteria of a list query: count, letter case, separator, topic, distinct items.
    static func listCheck(_ kind: CriterionKind, query: SyntheticQuery, response: String) -> Check? {
        switch (kind, query) {
        case let (.count, .list(count, _, _, _)):
            let items = ListResponse(response).items
            func countCheck(marks: [Int: String]) -> Check {
                func enumerate(_ list: ArraySlice<String>) -> String {
                    "need \(count), " + list.enumerated().map { "\($0.offset + 1) \(quote($0.element))\(marks[$0.offset] ?? "")" }.joined(separator: " ")
                }
                let off = abs(items.count - count)
                // The teacher stops counting at the number asked: an extra item is what it overlooks.
                return Check(passed: off == 0, passAnalysis: enumerate(items[...]),
                             failAnalysis: items.isEmpty ? "need \(count), none" : enumerate(items[...]), failScore: off == 1 ? 1 : 0,
                             missAnalysis: enumerate(items.prefix(count)),
                             difficulty: items.count == count + 1 ? (count >= 3 ? 1.25 : 0.75) : 0,
                             falseAlarm: items.count < 2 ? nil : { _ in
                                 Verdict(line: EvaluationLine(analysis: enumerate(items.prefix(count - 1)), score: 1))
                             },
                             withItemMarks: { countCheck(marks: $0) })
            }
            return countCheck(marks: [:])
        case let (.letterCase, .list(_, _, letterCase, _)):
            let items = ListResponse(response).items
            let wrong = items.indices.filter { !letterCase.matches(items[$0]) }
            let need = "need \(letterCase.rawValue), got "
            let alarm: ((UInt64) -> Verdict)? = items.isEmpty ? nil : { detail in
                let index = Int(detail % UInt64(items.count))
                return Verdict(line: EvaluationLine(analysis: need + quote(items[index]), score: 1), flaggedItems: [index])
            }
            return Check(passed: !items.isEmpty && wrong.isEmpty, passAnalysis: need + "all",
                         failAnalysis: need + (wrong.first.map { quote(items[$0]) } ?? "none"), failScore: wrong.count == 1 ? 1 : 0,
                         missAnalysis: need + "all", falseAlarm: alarm, failItems: wrong)
        case let (.separator, .list(_, _, _, separator)):
            let parsed = ListResponse(response)
            let bad = parsed.separators.filter { $0 != separator }
            let passed = bad.isEmpty && parsed.extra.isEmpty
            let need = "need \(separator), got "
            let otherSeparators = SyntheticTask.separators.filter { $0 != separator }
            let alarm: ((UInt64) -> Verdict)? = parsed.separators.isEmpty ? nil : { detail in
                Verdict(line: EvaluationLine(analysis: need + otherSeparators[Int(detail % UInt64(otherSeparators.count))], score: 1))
            }
            return Check(passed: passed, passAnalysis: need + separator,
                         failAnalysis: need + quote(bad.first ?? parsed.extra),
                         failScore: bad.count == 1 && parsed.separators.count >= 2 && parsed.extra.isEmpty ? 1 : 0,
                         missAnalysis: need + separator, falseAlarm: alarm)
        case let (.topic, .list(_, category, _, _)):
            let items = ListResponse(response).items
            let off = items.indices.filter { !category.words.contains(items[$0].lowercased()) }
            let need = "need \(category.plural), got "
            let alarm: ((UInt64) -> Verdict)? = items.isEmpty ? nil : { detail in
                let index = Int(detail % UInt64(items.count))
                return Verdict(line: EvaluationLine(analysis: need + quote(items[index]), score: 1), flaggedItems: [index])
            }
            return Check(passed: !items.isEmpty && off.isEmpty, passAnalysis: need + "all",
                         failAnalysis: need + (off.first.map { quote(items[$0]) } ?? "none"),
                         failScore: off.count == 1 ? 1 : 0, missAnalysis: need + "all", falseAlarm: alarm, failItems: off)
        case (.distinct, .list):
            var seen = Set<String>()
            var repeats: [Int] = []
            let items = ListResponse(response).items
            for (index, item) in items.enumerated() where !seen.insert(item.lowercased()).inserted {
                repeats.append(index)
            }
            return Check(passed: repeats.isEmpty, passAnalysis: "no repeats",
                         failAnalysis: "repeats \(quote(repeats.first.map { items[$0] } ?? ""))", failScore: 1,
                         missAnalysis: "no repeats", failItems: repeats)
        default:
            return nil
        }
    }

    /// The criteria of an arithmetic query: the value, and that the answer is a number.
    static func arithmeticCheck(_ kind: CriterionKind, query: SyntheticQuery, response: String) -> Check? {
        switch (kind, query) {
        case (.arithmetic, .arithmetic):
            let value = query.arithmeticValue ?? 0
            let needed = String(value)
            let need = "need \(needed), got "
            guard let given = Int(response.trimmingCharacters(in: .whitespaces)) else {
                return Check(passed: false, passAnalysis: need + needed, failAnalysis: need + quoteMarkingDifference(response, from: needed),
                             missAnalysis: need + needed, difficulty: 0)
            }
            let off = abs(given - value)
            let difficulty = [0, 1.25, 0.75, 0.5][min(off, 3)]
            // A miss misreads the response as the value it computed.
            return Check(passed: response == needed, passAnalysis: need + needed,
                         failAnalysis: need + quoteMarkingDifference(response, from: needed),
                         failScore: off == 1 ? 1 : off == 2 ? 0.5 : 0,
                         missAnalysis: need + needed, difficulty: off == 0 ? 0 : max(difficulty, 0.25),
                         falseAlarm: { detail in
                             Verdict(line: EvaluationLine(analysis: need + quoteMarkingDifference("\(detail & 1 == 0 ? value + 1 : max(0, value - 1))", from: needed), score: 1))
                         })
        case (.format, .arithmetic):
            let isNumber = !response.isEmpty && Int(response) != nil
            return Check(passed: isNumber, passAnalysis: "a number", failAnalysis: "not a number", missAnalysis: "a number")
        default:
            return nil
        }
    }

    /// The criteria of a word transform: the transformed word, and its length.
    static func transformCheck(_ kind: CriterionKind, query: SyntheticQuery, response: String) -> Check? {
        switch (kind, query) {
        case let (.transform, .transform(kind, word)):
            let expected = kind.apply(word)
            // The needed word stands in the criteria (`gives enots`); restated beside the copy, the
            // model copied it in place of the response (docs/experiments/2026-12-01-digit-marks.md).
            let got = "got "
            let passed = response == expected
            let near = Self.isOneEditAway(response, expected)
            let isSwap = Self.isAdjacentSwap(response, expected)
            let letters = Array(expected)
            let swappable = (0..<max(0, letters.count - 1)).filter { letters[$0] != letters[$0 + 1] }
            let alarm: ((UInt64) -> Verdict)? = swappable.isEmpty ? nil : { detail in
                var swapped = letters
                let i = swappable[Int(detail % UInt64(swappable.count))]
                swapped.swapAt(i, i + 1)
                return Verdict(line: EvaluationLine(analysis: got + quoteMarkingDifference(String(swapped), from: expected), score: 1))
            }
            return Check(passed: passed, passAnalysis: got + expected,
                         failAnalysis: got + quoteMarkingDifference(response, from: expected), failScore: near || isSwap ? 1 : 0,
                         missAnalysis: got + expected, difficulty: isSwap ? 1.25 : 0.75,
                         falseAlarm: alarm)
        case let (.length, .transform(_, word)):
            let found = response.filter { $0.isLetter }.count
            let off = abs(found - word.count)
            let need = "need \(word.count), got "
            return Check(passed: off == 0, passAnalysis: need + "\(word.count)",
                         failAnalysis: need + "\(found)", failScore: off == 1 ? 1 : 0,
                         missAnalysis: need + "\(word.count)",
                         falseAlarm: { _ in Verdict(line: EvaluationLine(analysis: need + "\(word.count - 1)", score: 1)) })
        default:
            return nil
        }
    }

    /// Same length and exactly one differing position.
    static func isOneEditAway(_ a: String, _ b: String) -> Bool {
        let x = Array(a), y = Array(b)
        return x.count == y.count && zip(x, y).filter { $0 != $1 }.count == 1
    }

    /// `a` is `b` with two adjacent letters swapped.
    static func isAdjacentSwap(_ a: String, _ b: String) -> Bool {
        let x = Array(a), y = Array(b)
        guard x.count == y.count else { return false }
        let diffs = x.indices.filter { x[$0] != y[$0] }
        return diffs.count == 2 && diffs[1] == diffs[0] + 1 && x[diffs[0]] == y[diffs[1]] && x[diffs[1]] == y[diffs[0]]
    }
}
