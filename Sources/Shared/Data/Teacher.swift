import Foundation

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
    public var text: String {
        ([analysis, "[C]"] + items.enumerated().map { "\($0.offset + 1). \($0.element.text)" } + ["[/C]"]).joined(separator: "\n")
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

    /// The evaluation turn's output (docs/FORMATS.md), without `⟨eos⟩`.
    public var text: String {
        var lines = items.enumerated().map { "\($0.offset + 1). \($0.element.analysis): \(formatScore($0.element.score))/5" }
        if let other { lines.append("+. \(other.analysis): \(formatScore(other.score))/5") }
        lines.append("=> \(formatScore(overall))/10")
        return lines.joined(separator: "\n")
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
    /// blind spots, separators and formats it almost never gets wrong.
    public static let kindWeights: [CriterionKind: Double] = [
        .count: 2.0, .arithmetic: 2.0, .transform: 1.5, .distinct: 1.5, .letterCase: 1.0,
        .topic: 0.75, .separator: 0.5, .length: 0.5, .format: 0.25,
    ]

    /// The profile for `data.teacher_error_rate`: miss rate of a kind = `errorRate × weight`
    /// (capped at 1). 0 is a perfect teacher.
    public static func scaled(_ errorRate: Double) -> TeacherErrorProfile {
        TeacherErrorProfile(missRates: kindWeights.mapValues { min(1, max(0, errorRate) * $0) })
    }

    /// This profile with `kind=rate` overrides (e.g. `count=0.5`, rate in 0…1), as the
    /// `--kind-rate` options of `cerm data teacher|sft-traces` give them.
    public func applying(overrides: [String]) throws -> TeacherErrorProfile {
        var profile = self
        for text in overrides {
            let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let kind = CriterionKind(rawValue: parts[0]) else {
                let kinds = CriterionKind.allCases.map(\.rawValue).joined(separator: ", ")
                throw CermError.invalid("error-rate override \"\(text)\": expected KIND=RATE with KIND one of \(kinds)")
            }
            guard let rate = Double(parts[1]), (0...1).contains(rate) else {
                throw CermError.invalid("error-rate override \"\(text)\": the rate must be a number in 0…1")
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
    /// learned the facts in one SFT pass yet: BENCHMARKS.md, issue 5.)
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
        var lines: [EvaluationLine] = []
        for criterion in criteria.items {
            guard let check = Self.check(criterion.kind, query: parsed, response: response) else { return nil }
            lines.append(judge(check, kind: criterion.kind, rng: &rng))
        }
        var other: EvaluationLine?
        if case .list = parsed, let check = Self.check(.distinct, query: parsed, response: response) {
            let line = judge(check, kind: .distinct, rng: &rng)
            if line.score < 5 { other = line }
        }
        let overall = TeacherEvaluation.overall(of: lines.map(\.score) + (other.map { [$0.score] } ?? []))
        return TeacherEvaluation(items: lines, other: other, overall: overall)
    }

    /// Applies the error model to a check's truth: a failed check is overlooked with its miss
    /// probability (times the flaw's difficulty), a passed one wrongly failed with the false-alarm
    /// probability. Two draws per check, whatever happens, keep later checks' draws stable.
    private func judge(_ check: Check, kind: CriterionKind, rng: inout SplitMix64) -> EvaluationLine {
        let u = rng.unit()
        let detail = rng.next()
        let rate = errors.missRate(kind)
        if check.passed {
            if let alarm = check.falseAlarm, u < rate * errors.falseAlarmFactor {
                return alarm(detail)
            }
            return EvaluationLine(analysis: check.passAnalysis, score: 5)
        }
        if u < min(1, rate * check.difficulty) {
            return EvaluationLine(analysis: check.missAnalysis, score: 5)
        }
        return EvaluationLine(analysis: check.failAnalysis, score: check.failScore)
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
        /// The line of a false alarm (from a random draw), nil if the kind has none.
        var falseAlarm: ((UInt64) -> EvaluationLine)?
    }

    /// A fragment of the response quoted in an analysis: one line, at most 16 bytes.
    static func quote(_ text: String) -> String {
        let flat = String(text.map { $0.isNewline || $0 == "\t" ? " " : $0 })
        var out = ""
        for ch in flat {
            if out.utf8.count + ch.utf8.count > 16 { return out + ".." }
            out.append(ch)
        }
        return out
    }

    /// Every line puts what the criterion needs beside what the response gives (`need 24, got
    /// 25`), so the score follows from two nearby values; list counts enumerate the items.
    static func check(_ kind: CriterionKind, query: SyntheticQuery, response: String) -> Check? {
        switch (kind, query) {
        case let (.count, .list(count, _, _, _)):
            let items = ListResponse(response).items
            func enumerate(_ list: ArraySlice<String>) -> String {
                "need \(count), " + list.enumerated().map { "\($0.offset + 1) \(quote($0.element))" }.joined(separator: " ")
            }
            let off = abs(items.count - count)
            // The teacher stops counting at the number asked: an extra item is what it overlooks.
            return Check(passed: off == 0, passAnalysis: enumerate(items[...]),
                         failAnalysis: items.isEmpty ? "need \(count), none" : enumerate(items[...]), failScore: off == 1 ? 1 : 0,
                         missAnalysis: enumerate(items.prefix(count)),
                         difficulty: items.count == count + 1 ? (count >= 3 ? 1.25 : 0.75) : 0,
                         falseAlarm: items.count < 2 ? nil : { _ in
                             EvaluationLine(analysis: enumerate(items.prefix(count - 1)), score: 1)
                         })
        case let (.letterCase, .list(_, _, letterCase, _)):
            let items = ListResponse(response).items
            let wrong = items.filter { !letterCase.matches($0) }
            let need = "need \(letterCase.rawValue), got "
            let alarm: ((UInt64) -> EvaluationLine)? = items.isEmpty ? nil : { detail in
                EvaluationLine(analysis: need + quote(items[Int(detail % UInt64(items.count))]), score: 1)
            }
            return Check(passed: !items.isEmpty && wrong.isEmpty, passAnalysis: need + "all",
                         failAnalysis: need + (wrong.first.map(quote) ?? "none"), failScore: wrong.count == 1 ? 1 : 0,
                         missAnalysis: need + "all", falseAlarm: alarm)
        case let (.separator, .list(_, _, _, separator)):
            let parsed = ListResponse(response)
            let bad = parsed.separators.filter { $0 != separator }
            let passed = bad.isEmpty && parsed.extra.isEmpty
            let need = "need \(separator), got "
            let otherSeparators = SyntheticTask.separators.filter { $0 != separator }
            let alarm: ((UInt64) -> EvaluationLine)? = parsed.separators.isEmpty ? nil : { detail in
                EvaluationLine(analysis: need + otherSeparators[Int(detail % UInt64(otherSeparators.count))], score: 1)
            }
            return Check(passed: passed, passAnalysis: need + separator,
                         failAnalysis: need + quote(bad.first ?? parsed.extra),
                         failScore: bad.count == 1 && parsed.separators.count >= 2 && parsed.extra.isEmpty ? 1 : 0,
                         missAnalysis: need + separator, falseAlarm: alarm)
        case let (.topic, .list(_, category, _, _)):
            let items = ListResponse(response).items
            let off = items.filter { !category.words.contains($0.lowercased()) }
            let need = "need \(category.plural), got "
            let alarm: ((UInt64) -> EvaluationLine)? = items.isEmpty ? nil : { detail in
                EvaluationLine(analysis: need + quote(items[Int(detail % UInt64(items.count))]), score: 1)
            }
            return Check(passed: !items.isEmpty && off.isEmpty, passAnalysis: need + "all",
                         failAnalysis: need + (off.first.map(quote) ?? "none"),
                         failScore: off.count == 1 ? 1 : 0, missAnalysis: need + "all", falseAlarm: alarm)
        case (.distinct, .list):
            var seen = Set<String>()
            var repeated: String?
            for item in ListResponse(response).items {
                if !seen.insert(item.lowercased()).inserted { repeated = repeated ?? item }
            }
            return Check(passed: repeated == nil, passAnalysis: "no repeats",
                         failAnalysis: "repeats \(quote(repeated ?? ""))", failScore: 1, missAnalysis: "no repeats")
        case (.arithmetic, .arithmetic):
            let value = query.arithmeticValue ?? 0
            let need = "need \(value), got "
            guard let given = Int(response.trimmingCharacters(in: .whitespaces)) else {
                return Check(passed: false, passAnalysis: need + "\(value)", failAnalysis: need + quote(response),
                             missAnalysis: need + "\(value)", difficulty: 0)
            }
            let off = abs(given - value)
            let difficulty = [0, 1.25, 0.75, 0.5][min(off, 3)]
            // A miss misreads the response as the value it computed.
            return Check(passed: response == String(value), passAnalysis: need + "\(value)",
                         failAnalysis: need + quote(response),
                         failScore: off == 1 ? 1 : off == 2 ? 0.5 : 0,
                         missAnalysis: need + "\(value)", difficulty: off == 0 ? 0 : max(difficulty, 0.25),
                         falseAlarm: { detail in
                             EvaluationLine(analysis: need + "\(detail & 1 == 0 ? value + 1 : max(0, value - 1))", score: 1)
                         })
        case (.format, .arithmetic):
            let isNumber = !response.isEmpty && Int(response) != nil
            return Check(passed: isNumber, passAnalysis: "a number", failAnalysis: "not a number", missAnalysis: "a number")
        case let (.transform, .transform(kind, word)):
            let expected = kind.apply(word)
            let need = "need \(expected), got "
            let passed = response == expected
            let near = Self.isOneEditAway(response, expected)
            let isSwap = Self.isAdjacentSwap(response, expected)
            let letters = Array(expected)
            let swappable = (0..<max(0, letters.count - 1)).filter { letters[$0] != letters[$0 + 1] }
            let alarm: ((UInt64) -> EvaluationLine)? = swappable.isEmpty ? nil : { detail in
                var swapped = letters
                let i = swappable[Int(detail % UInt64(swappable.count))]
                swapped.swapAt(i, i + 1)
                return EvaluationLine(analysis: need + String(swapped), score: 1)
            }
            return Check(passed: passed, passAnalysis: need + expected,
                         failAnalysis: need + quote(response), failScore: near || isSwap ? 1 : 0,
                         missAnalysis: need + expected, difficulty: isSwap ? 1.25 : 0.75,
                         falseAlarm: alarm)
        case let (.length, .transform(_, word)):
            let found = response.filter { $0.isLetter }.count
            let off = abs(found - word.count)
            let need = "need \(word.count), got "
            return Check(passed: off == 0, passAnalysis: need + "\(word.count)",
                         failAnalysis: need + "\(found)", failScore: off == 1 ? 1 : 0,
                         missAnalysis: need + "\(word.count)",
                         falseAlarm: { _ in EvaluationLine(analysis: need + "\(word.count - 1)", score: 1) })
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
