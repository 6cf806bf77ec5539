import Foundation
import Shared

/// Letter case a list query asks for.
public enum ListCase: String, CaseIterable, Sendable {
    case lowercase, uppercase, titlecase

    /// `word` (lowercase letters) in this case.
    public func apply(_ word: String) -> String {
        switch self {
        case .lowercase: word.lowercased()
        case .uppercase: word.uppercased()
        case .titlecase: word.prefix(1).uppercased() + word.dropFirst().lowercased()
        }
    }

    /// Whether `word` is written in this case.
    public func matches(_ word: String) -> Bool { apply(word.lowercased()) == word }
}

/// String transform a transform query asks for.
public enum TransformKind: String, CaseIterable, Sendable {
    case reverse, uppercase, sort

    /// The correct answer for `word`.
    public func apply(_ word: String) -> String {
        switch self {
        case .reverse: String(word.reversed())
        case .uppercase: word.uppercased()
        case .sort: String(word.sorted())
        }
    }
}

/// A category of list items, closed-world: an item belongs to it iff it is in `words`.
public struct ListCategory: Sendable, Equatable {
    /// Plural name used in queries (`fruits`).
    public let plural: String
    /// Singular name used in evaluations (`fruit`).
    public let singular: String
    /// Lowercase member words.
    public let words: [String]
}

/// A parsed synthetic query: its family, constraints and verifiable answer.
public enum SyntheticQuery: Sendable, Equatable {
    /// `List {count} {category} in {case}, separated by "{separator}".`
    case list(count: Int, category: ListCategory, letterCase: ListCase, separator: String)
    /// `What is {a}+{b}?` or `What is {a}-{b}?`
    case arithmetic(a: Int, op: Character, b: Int)
    /// `Reverse the word "w".`, `Uppercase the word "w".`, `Sort the letters of "w".`
    case transform(kind: TransformKind, word: String)

    /// The task type label (`list`, `math`, `string`).
    public var taskType: String {
        switch self {
        case .list: "list"
        case .arithmetic: "math"
        case .transform: "string"
        }
    }

    /// The query text.
    public var text: String {
        switch self {
        case let .list(count, category, letterCase, separator):
            "List \(count) \(category.plural) in \(letterCase.rawValue), separated by \"\(separator)\"."
        case let .arithmetic(a, op, b): "What is \(a)\(op)\(b)?"
        case let .transform(kind, word):
            switch kind {
            case .reverse: "Reverse the word \"\(word)\"."
            case .uppercase: "Uppercase the word \"\(word)\"."
            case .sort: "Sort the letters of \"\(word)\"."
            }
        }
    }

    /// The value of an arithmetic query.
    public var arithmeticValue: Int? {
        guard case let .arithmetic(a, op, b) = self else { return nil }
        return op == "+" ? a + b : a - b
    }

    /// Parses a query of one of the three families; nil for anything else.
    public static func parse(_ query: String) -> SyntheticQuery? {
        if query.hasPrefix("List "), query.hasSuffix("\".") {
            let parts = query.dropFirst(5).dropLast(2).components(separatedBy: ", separated by \"")
            guard parts.count == 2 else { return nil }
            let head = parts[0].split(separator: " ", omittingEmptySubsequences: false)
            guard head.count == 4, head[2] == "in", let count = Int(head[0]), (1...9).contains(count),
                  let category = SyntheticTask.categories.first(where: { $0.plural == head[1] }),
                  let letterCase = ListCase(rawValue: String(head[3])),
                  SyntheticTask.separators.contains(parts[1]) else { return nil }
            return .list(count: count, category: category, letterCase: letterCase, separator: parts[1])
        }
        if query.hasPrefix("What is "), query.hasSuffix("?") {
            let body = query.dropFirst(8).dropLast()
            guard let opIndex = body.firstIndex(where: { $0 == "+" || $0 == "-" }),
                  let a = Int(body[..<opIndex]), let b = Int(body[body.index(after: opIndex)...]),
                  a >= 0, b >= 0, a < 10_000, b < 10_000 else { return nil }
            return .arithmetic(a: a, op: body[opIndex], b: b)
        }
        let transformTemplates: [(TransformKind, String, String)] = [
            (.reverse, "Reverse the word \"", "\"."), (.uppercase, "Uppercase the word \"", "\"."),
            (.sort, "Sort the letters of \"", "\"."),
        ]
        for (kind, prefix, suffix) in transformTemplates where query.hasPrefix(prefix) && query.hasSuffix(suffix) {
            let word = String(query.dropFirst(prefix.count).dropLast(suffix.count))
            guard !word.isEmpty, word.allSatisfy({ $0.isASCII && $0.isLowercase }) else { return nil }
            return .transform(kind: kind, word: word)
        }
        return nil
    }
}

/// A list response split into letter runs (the items) and the text between them.
public struct ListResponse: Sendable, Equatable {
    /// Maximal runs of ASCII letters, in order.
    public var items: [String] = []
    /// The text between consecutive items (`items.count - 1` entries).
    public var separators: [String] = []
    /// Text before the first or after the last item.
    public var extra = ""

    public init(_ response: String) {
        var runs: [(isLetters: Bool, text: String)] = []
        for ch in response {
            let isLetter = ch.isASCII && ch.isLetter
            if let last = runs.last, last.isLetters == isLetter {
                runs[runs.count - 1].text.append(ch)
            } else {
                runs.append((isLetter, String(ch)))
            }
        }
        for (k, run) in runs.enumerated() {
            if run.isLetters {
                items.append(run.text)
            } else if k == 0 || k == runs.count - 1 {
                extra += run.text
            } else {
                separators.append(run.text)
            }
        }
    }
}

/// The embedded synthetic preference task (docs/DESIGN.md §9): three families of short queries with
/// verifiable answers, chosen responses that satisfy them and rejected ones that subtly fail.
public enum SyntheticTask {
    /// List categories (closed world; no word is in two categories).
    public static let categories: [ListCategory] = [
        ListCategory(plural: "fruits", singular: "fruit",
                     words: ["apple", "pear", "plum", "fig", "kiwi", "lime", "lemon", "mango", "grape", "peach", "melon", "date", "cherry", "banana"]),
        ListCategory(plural: "colors", singular: "color",
                     words: ["red", "blue", "green", "pink", "gray", "black", "white", "brown", "teal", "cyan", "navy", "purple", "violet", "beige"]),
        ListCategory(plural: "animals", singular: "animal",
                     words: ["cat", "dog", "cow", "fox", "owl", "bee", "ant", "pig", "hen", "lion", "wolf", "bear", "deer", "frog", "duck", "goat"]),
        ListCategory(plural: "tools", singular: "tool",
                     words: ["saw", "drill", "axe", "hammer", "wrench", "pliers", "rake", "shovel", "chisel", "spade", "clamp", "vise"]),
        ListCategory(plural: "drinks", singular: "drink",
                     words: ["tea", "milk", "juice", "water", "soda", "cocoa", "coffee", "cider", "beer", "wine", "lassi", "kefir"]),
        ListCategory(plural: "metals", singular: "metal",
                     words: ["iron", "zinc", "tin", "copper", "silver", "nickel", "lead", "cobalt", "gold", "steel", "brass", "bronze"]),
    ]
    /// Separators a list query may ask for.
    public static let separators = [";", ",", "|", "/", "-"]
    /// Item counts a list query may ask for.
    public static let listCounts = 2...4
    /// Operand range of arithmetic queries.
    public static let operands = 2...60
    /// Words for transform queries (4–6 lowercase letters).
    public static let transformWords = [
        "stone", "river", "cloud", "plant", "table", "chair", "bread", "light", "storm", "sugar", "tiger", "horse",
        "house", "music", "paper", "glass", "piano", "robot", "candy", "dream", "earth", "flame", "frost", "ghost",
        "honey", "jelly", "knife", "magic", "night", "ocean", "pearl", "queen", "salad", "smile", "snake", "sword",
        "train", "voice", "whale", "zebra", "brick", "crown", "drum", "fork", "lamp", "nest", "rope", "ship", "star",
        "kite", "moon", "rain", "sand", "tree", "bell", "corn", "desk", "gift", "hill", "king", "leaf", "nose", "park",
        "ring", "seed", "tent", "vase", "wind", "yard", "candle", "garden", "pencil", "rocket", "window", "basket",
        "bottle", "button", "castle", "dragon", "forest", "island", "jacket", "ladder", "marble", "number", "pepper",
        "rabbit", "saddle", "tomato", "turtle", "violin", "wallet", "yellow", "planet", "summer", "winter", "spring",
    ]
    /// Task types in generation order (items cycle through them).
    public static let taskTypes = ["list", "math", "string"]

    // MARK: - Oracle

    /// Ground truth: whether `response` fully satisfies `query`. False for unknown queries.
    public static func verify(query: String, response: String) -> Bool {
        guard let parsed = SyntheticQuery.parse(query) else { return false }
        return verify(parsed, response: response)
    }

    /// Ground truth for a parsed query.
    public static func verify(_ query: SyntheticQuery, response: String) -> Bool {
        switch query {
        case let .list(count, category, letterCase, separator):
            let items = response.components(separatedBy: separator)
            return items.count == count
                && items.allSatisfy { item in
                    !item.isEmpty && item.allSatisfy { $0.isASCII && $0.isLetter }
                        && letterCase.matches(item) && category.words.contains(item.lowercased())
                }
                && Set(items.map { $0.lowercased() }).count == count
        case .arithmetic:
            return response == String(query.arithmeticValue ?? Int.min)
        case let .transform(kind, word):
            return response == kind.apply(word)
        }
    }

    // MARK: - Generation

    /// Generates the train split, a held-out eval split whose queries never occur in train, and
    /// a Best-of-`bestOfN` item per eval query (one correct response, `bestOfN`−1 subtly wrong).
    ///
    /// Each split draws from its own stream of `seed`, so the eval split does not change when
    /// `trainCount` does, and neither split changes with `validationCount`. Items cycle through
    /// the task types list, math, string.
    ///
    /// The validation split (`validationCount` pairs, drawn after the others) is where settings
    /// are chosen: its queries are drawn like the held-out ones (no invented words) and occur in
    /// neither train nor eval, so a setting tuned on it has seen none of the held-out queries.
    public static func generate(trainCount: Int, evalCount: Int, seed: UInt64, bestOfN: Int = 4,
                                validationCount: Int = 0) -> SyntheticDataset {
        var evalRNG = SplitMix64(seed: seed, streams: 1)
        var evalQueries = Set<String>()
        var eval: [PreferencePair] = []
        for i in 0..<max(0, evalCount) {
            guard let query = drawQuery(family: i % 3, rng: &evalRNG, accept: { !evalQueries.contains($0) }) else { continue }
            evalQueries.insert(query.text)
            eval.append(makePair(id: "eval-\(i)", query: query, rng: &evalRNG))
        }
        var trainRNG = SplitMix64(seed: seed, streams: 2)
        var train: [PreferencePair] = []
        for i in 0..<max(0, trainCount) {
            guard let query = drawQuery(family: i % 3, rng: &trainRNG, inventedWords: true, accept: { !evalQueries.contains($0) }) else { continue }
            train.append(makePair(id: "train-\(i)", query: query, rng: &trainRNG))
        }
        var seen = evalQueries.union(train.map(\.query))
        var validationRNG = SplitMix64(seed: seed, streams: 4)
        var validation: [PreferencePair] = []
        for i in 0..<max(0, validationCount) {
            guard let query = drawQuery(family: i % 3, rng: &validationRNG, accept: { !seen.contains($0) }) else { continue }
            seen.insert(query.text)
            validation.append(makePair(id: "validation-\(i)", query: query, rng: &validationRNG))
        }
        var bestOf: [BestOfNItem] = []
        if bestOfN >= 2 {
            for (i, pair) in eval.enumerated() {
                var rng = SplitMix64(seed: seed, streams: 3, UInt64(i))
                guard let query = SyntheticQuery.parse(pair.query) else { continue }
                var responses = [pair.chosen]
                var attempts = 0
                while responses.count < bestOfN && attempts < 200 {
                    attempts += 1
                    let wrong = rejectedResponse(for: query, chosen: pair.chosen, rng: &rng)
                    if !responses.contains(wrong) { responses.append(wrong) }
                }
                guard responses.count == bestOfN else { continue }
                let shuffled = rng.shuffled(responses)
                let best = shuffled.firstIndex(of: pair.chosen) ?? 0
                bestOf.append(BestOfNItem(id: "bo\(bestOfN)-\(i)", query: pair.query, responses: shuffled, best: best, taskType: pair.taskType))
            }
        }
        return SyntheticDataset(train: train, eval: eval, bestOfN: bestOf, validation: validation)
    }

    /// A random query of `family` (0 list, 1 math, 2 string) that `accept` takes; nil when none
    /// is found in a bounded number of draws (a family's query space is finite).
    static func drawQuery(family: Int, rng: inout SplitMix64, inventedWords: Bool = false,
                          accept: (String) -> Bool) -> SyntheticQuery? {
        for _ in 0..<2000 {
            let query = randomQuery(family: family, rng: &rng, inventedWords: inventedWords)
            if accept(query.text) { return query }
        }
        return nil
    }

    /// Share of training string queries whose word is invented (random letters) rather than
    /// taken from `transformWords`: with only 100 words a model memorises each word's
    /// transforms; invented words make it learn the transform itself. Held-out queries always
    /// use `transformWords`.
    public static let inventedWordShare = 0.75
    private static let alphabet = Array("abcdefghijklmnopqrstuvwxyz")

    static func randomQuery(family: Int, rng: inout SplitMix64, inventedWords: Bool = false) -> SyntheticQuery {
        switch family {
        case 0:
            return .list(count: rng.int(in: listCounts), category: rng.pick(categories),
                         letterCase: rng.pick(ListCase.allCases), separator: rng.pick(separators))
        case 1:
            let a = rng.int(in: operands), b = rng.int(in: operands)
            if rng.chance(0.5) { return .arithmetic(a: a, op: "+", b: b) }
            return a == b ? .arithmetic(a: a, op: "+", b: b) : .arithmetic(a: max(a, b), op: "-", b: min(a, b))
        default:
            while true {
                let kind = rng.pick(TransformKind.allCases)
                let word = inventedWords && rng.chance(inventedWordShare)
                    ? String((0..<rng.int(in: 4...6)).map { _ in rng.pick(alphabet) })
                    : rng.pick(transformWords)
                let query = SyntheticQuery.transform(kind: kind, word: word)
                if case let .transform(kind, word) = query, kind.apply(word) != word { return query }
            }
        }
    }

    static func makePair(id: String, query: SyntheticQuery, rng: inout SplitMix64) -> PreferencePair {
        let chosen = correctResponse(for: query, rng: &rng)
        let rejected = rejectedResponse(for: query, chosen: chosen, rng: &rng)
        return PreferencePair(id: id, query: query.text, chosen: chosen, rejected: rejected, taskType: query.taskType)
    }

    /// A response that satisfies `query` (list items drawn at random).
    public static func correctResponse(for query: SyntheticQuery, rng: inout SplitMix64) -> String {
        switch query {
        case let .list(count, category, letterCase, separator):
            return rng.shuffled(category.words).prefix(count).map(letterCase.apply).joined(separator: separator)
        case .arithmetic:
            return String(query.arithmeticValue ?? 0)
        case let .transform(kind, word):
            return kind.apply(word)
        }
    }

    /// A subtly wrong response: `chosen` with exactly one flaw (docs/DATA.md lists the kinds).
    /// Always differs from `chosen` and fails ``verify(_:response:)``.
    public static func rejectedResponse(for query: SyntheticQuery, chosen: String, rng: inout SplitMix64) -> String {
        for _ in 0..<100 {
            let candidate = flawed(query, chosen: chosen, rng: &rng)
            if candidate != chosen && !candidate.isEmpty && !verify(query, response: candidate) { return candidate }
        }
        // Unreachable for the generated queries; a guaranteed failure keeps the contract total.
        return chosen + "?"
    }

    private static func flawed(_ query: SyntheticQuery, chosen: String, rng: inout SplitMix64) -> String {
        switch query {
        case let .list(count, category, letterCase, separator):
            var items = chosen.components(separatedBy: separator)
            switch rng.below(5) {
            case 0:  // one item too many or too few
                if count > 2 && rng.chance(0.5) {
                    items.remove(at: rng.below(items.count))
                } else {
                    let unused = category.words.filter { w in !items.contains { $0.lowercased() == w } }
                    items.insert(letterCase.apply(rng.pick(unused)), at: rng.below(items.count + 1))
                }
                return items.joined(separator: separator)
            case 1:  // one item in the wrong case
                let k = rng.below(items.count)
                let others = ListCase.allCases.filter { $0 != letterCase }
                items[k] = rng.pick(others).apply(items[k].lowercased())
                return items.joined(separator: separator)
            case 2:  // one separator wrong
                let k = rng.below(items.count - 1)
                let other = rng.pick(separators.filter { $0 != separator })
                var out = items[0]
                for i in 1..<items.count { out += (i - 1 == k ? other : separator) + items[i] }
                return out
            case 3:  // one item off-topic
                let k = rng.below(items.count)
                let otherCategory = rng.pick(categories.filter { $0 != category })
                items[k] = letterCase.apply(rng.pick(otherCategory.words))
                return items.joined(separator: separator)
            default:  // one item repeated
                let k = rng.below(items.count)
                var j = rng.below(items.count - 1)
                if j >= k { j += 1 }
                items[k] = items[j]
                return items.joined(separator: separator)
            }
        case .arithmetic:
            let value = query.arithmeticValue ?? 0
            let offset = rng.int(in: 1...3) * (rng.chance(0.5) ? 1 : -1)
            return String(max(0, value + offset))
        case let .transform(kind, _):
            var letters = Array(chosen)
            switch rng.below(3) {
            case 0:  // two adjacent letters swapped
                let candidates = (0..<(letters.count - 1)).filter { letters[$0] != letters[$0 + 1] }
                guard let k = candidates.isEmpty ? nil : rng.pick(candidates) else { return chosen }
                letters.swapAt(k, k + 1)
            case 1:  // one letter changed (for uppercase: left in lowercase)
                let k = rng.below(letters.count)
                if kind == .uppercase {
                    letters[k] = Character(letters[k].lowercased())
                } else {
                    let others = alphabet.filter { $0 != letters[k] }
                    letters[k] = rng.pick(others)
                }
            default:  // one letter dropped
                letters.remove(at: rng.below(letters.count))
            }
            return String(letters)
        }
    }

    // MARK: - Files

    /// Writes `train.jsonl`, `eval.jsonl`, `bo{N}.jsonl` and, when the split is not empty,
    /// `validation.jsonl` into `directory` (created if needed).
    /// Returns the paths written. Throws, writing nothing, when any of them exists: a data file
    /// there may be the user's own.
    /// With `manifest`, also `synthetic.json` (``SyntheticManifest``), not among the paths
    /// returned.
    @discardableResult
    public static func write(_ dataset: SyntheticDataset, to directory: String, bestOfN: Int = 4,
                             manifest: SyntheticManifest? = nil) throws -> [String] {
        let names = ["train.jsonl", "eval.jsonl"] + (dataset.bestOfN.isEmpty ? [] : ["bo\(bestOfN).jsonl"])
            + (dataset.validation.isEmpty ? [] : ["validation.jsonl"]) + (manifest == nil ? [] : [SyntheticManifest.fileName])
        if let existing = names.map({ (directory as NSString).appendingPathComponent($0) }).first(where: { FileManager.default.fileExists(atPath: $0) }) {
            throw CermError.io(path: existing, reason: "exists; cerm does not overwrite a data file (remove it, or write the synthetic task elsewhere)")
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw CermError.io(path: directory, reason: "cannot create directory (\(error.localizedDescription))")
        }
        @discardableResult
        func save(_ name: String, _ lines: [String]) throws -> String {
            let path = (directory as NSString).appendingPathComponent(name)
            let text = lines.map { $0 + "\n" }.joined()
            do {
                try text.write(toFile: path, atomically: true, encoding: .utf8)
            } catch {
                throw CermError.io(path: path, reason: "cannot write (\(error.localizedDescription))")
            }
            return path
        }
        // The data files are returned; the manifest beside them is not a data file.
        var written = [try save("train.jsonl", dataset.train.map(\.jsonLine)), try save("eval.jsonl", dataset.eval.map(\.jsonLine))]
        if !dataset.bestOfN.isEmpty { written.append(try save("bo\(bestOfN).jsonl", dataset.bestOfN.map(\.jsonLine))) }
        if !dataset.validation.isEmpty { written.append(try save("validation.jsonl", dataset.validation.map(\.jsonLine))) }
        if let manifest { try save(SyntheticManifest.fileName, [manifest.jsonLine]) }
        return written
    }
}

/// What a directory's synthetic task was generated with, written beside it as `synthetic.json`
/// (docs/DATA.md): a run whose `data.synth_*` keys changed since would otherwise train on the
/// old files, which cerm reuses and never overwrites.
public struct SyntheticManifest: Codable, Equatable, Sendable {
    public static let fileName = "synthetic.json"
    public var seed: UInt64
    public var train: Int
    public var eval: Int
    /// Validation pairs (0: none).
    public var validation: Int
    /// Responses per Best-of-N item (0: no Best-of-N file).
    public var bestOfN: Int

    public init(seed: UInt64, train: Int, eval: Int, validation: Int, bestOfN: Int) {
        (self.seed, self.train, self.eval, self.validation, self.bestOfN) = (seed, train, eval, validation, bestOfN)
    }

    /// One line of JSON with sorted keys.
    public var jsonLine: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }

    /// The manifest in `directory`, nil when there is none; throws naming the file when it
    /// cannot be read.
    public static func read(directory: String) throws -> SyntheticManifest? {
        let path = (directory as NSString).appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        do {
            return try JSONDecoder().decode(SyntheticManifest.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw CermError.io(path: path, reason: "not a synthetic-task manifest (\(error.localizedDescription)); remove it, or the directory, to have the task generated again")
        }
    }
}

/// The splits of the synthetic task.
public struct SyntheticDataset: Sendable, Equatable {
    public var train: [PreferencePair]
    public var eval: [PreferencePair]
    public var bestOfN: [BestOfNItem]
    /// Pairs for choosing settings, disjoint from train and eval (empty unless asked for).
    public var validation: [PreferencePair] = []
}
