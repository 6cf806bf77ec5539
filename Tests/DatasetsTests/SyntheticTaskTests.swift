@testable import Datasets
@testable import Shared
import Testing

@Suite struct SyntheticTaskTests {
    @Test func splitMix64MatchesTheReferenceSequence() {
        // Reference values of SplitMix64 (Vigna) for seed 0.
        var rng = SplitMix64(seed: 0)
        #expect(rng.next() == 0xE220_A839_7B1D_CDAF)
        #expect(rng.next() == 0x6E78_9E6A_A1B9_65F4)
    }

    @Test func generationIsDeterministicFromTheSeed() {
        // The defaults of `cerm data synth` (data.synth_train, synth_eval, synth_seed).
        let a = SyntheticTask.generate(trainCount: 2000, evalCount: 200, seed: 7)
        #expect(a.train[0] == PreferencePair(id: "train-0", query: "List 4 tools in uppercase, separated by \"/\".",
                                            chosen: "CHISEL/SAW/AXE/SPADE", rejected: "CHISEL/Saw/AXE/SPADE", taskType: "list"))
        #expect(a.train[1] == PreferencePair(id: "train-1", query: "What is 33-9?", chosen: "24", rejected: "25", taskType: "math"))
        #expect(a.eval[0] == PreferencePair(id: "eval-0", query: "List 2 tools in titlecase, separated by \"|\".",
                                           chosen: "Hammer|Rake", rejected: "Hammer|Rake|Drill", taskType: "list"))
        #expect(a.bestOfN[1] == BestOfNItem(id: "bo4-1", query: "What is 46-21?", responses: ["23", "25", "28", "22"], best: 1, taskType: "math"))
        #expect(SyntheticTask.generate(trainCount: 2000, evalCount: 200, seed: 7) == a)
        #expect(SyntheticTask.generate(trainCount: 30, evalCount: 12, seed: 8).train != Array(a.train.prefix(30)))
        // The eval split and Best-of-N file do not depend on the train size.
        let smaller = SyntheticTask.generate(trainCount: 90, evalCount: 200, seed: 7)
        #expect(smaller.eval == a.eval && smaller.bestOfN == a.bestOfN && smaller.train == Array(a.train.prefix(90)))
    }

    @Test func chosenPassesTheOracleAndRejectedFailsIt() {
        let data = SyntheticTask.generate(trainCount: 900, evalCount: 300, seed: 3)
        for pair in data.train + data.eval {
            #expect(SyntheticTask.verify(query: pair.query, response: pair.chosen), "\(pair)")
            #expect(!SyntheticTask.verify(query: pair.query, response: pair.rejected), "\(pair)")
            #expect(pair.query.utf8.count <= 60 && pair.chosen.utf8.count <= 40 && pair.rejected.utf8.count <= 40, "\(pair)")
            #expect(SyntheticQuery.parse(pair.query)?.text == pair.query)
            #expect(SyntheticQuery.parse(pair.query)?.taskType == pair.taskType)
        }
        #expect(data.train.count == 900 && data.eval.count == 300)
        #expect(Dictionary(grouping: data.eval, by: { $0.taskType ?? "" }).mapValues(\.count) == ["list": 100, "math": 100, "string": 100])
    }

    @Test func evalQueriesAreHeldOutFromTrain() {
        let data = SyntheticTask.generate(trainCount: 2000, evalCount: 200, seed: 7)
        let trainQueries = Set(data.train.map(\.query))
        #expect(data.eval.allSatisfy { !trainQueries.contains($0.query) })
        #expect(Set(data.eval.map(\.query)).count == data.eval.count)
    }

    /// The validation split is where settings are chosen: none of its queries may be a held-out
    /// or a training query, and asking for it must not change the other splits.
    @Test func validationQueriesOccurInNeitherTrainNorEval() {
        let without = SyntheticTask.generate(trainCount: 600, evalCount: 120, seed: 7)
        let data = SyntheticTask.generate(trainCount: 600, evalCount: 120, seed: 7, validationCount: 90)
        #expect(without.validation.isEmpty)
        #expect(data.train == without.train && data.eval == without.eval && data.bestOfN == without.bestOfN)
        #expect(data.validation.count == 90)
        let seen = Set((data.train + data.eval).map(\.query))
        #expect(data.validation.allSatisfy { !seen.contains($0.query) })
        #expect(Set(data.validation.map(\.query)).count == 90)
        #expect(Dictionary(grouping: data.validation, by: { $0.taskType ?? "" }).mapValues(\.count) == ["list": 30, "math": 30, "string": 30])
        #expect(data.validation.map(\.id) == (0..<90).map { "validation-\($0)" })
        for pair in data.validation {
            #expect(SyntheticTask.verify(query: pair.query, response: pair.chosen) && !SyntheticTask.verify(query: pair.query, response: pair.rejected))
        }
        // Drawn like the held-out split: string queries use the named words, never invented ones.
        #expect(data.validation.filter { $0.taskType == "string" }.allSatisfy { pair in
            SyntheticTask.transformWords.contains { pair.query.contains("\"\($0)\"") }
        })
        #expect(SyntheticTask.generate(trainCount: 600, evalCount: 120, seed: 7, validationCount: 90) == data)
    }

    @Test func bestOfFourHasOneCorrectAndThreeDistinctWrongResponses() {
        let data = SyntheticTask.generate(trainCount: 0, evalCount: 120, seed: 5)
        #expect(data.bestOfN.count == 120)
        for (item, pair) in zip(data.bestOfN, data.eval) {
            #expect(item.query == pair.query && item.responses.count == 4 && Set(item.responses).count == 4)
            #expect(item.responses[item.best] == pair.chosen)
            let passing = item.responses.indices.filter { SyntheticTask.verify(query: item.query, response: item.responses[$0]) }
            #expect(passing == [item.best], "\(item)")
        }
        // The correct response is not always in the same slot.
        #expect(Set(data.bestOfN.map(\.best)).count == 4)
    }

    @Test func oracleOnHandWrittenCases() {
        let list = #"List 3 fruits in lowercase, separated by ";"."#
        #expect(SyntheticTask.verify(query: list, response: "apple;pear;plum"))
        #expect(!SyntheticTask.verify(query: list, response: "apple;Pear;plum"))
        #expect(!SyntheticTask.verify(query: list, response: "apple;pear"))
        #expect(!SyntheticTask.verify(query: list, response: "apple,pear,plum"))
        #expect(!SyntheticTask.verify(query: list, response: "apple;pear;apple"))
        #expect(!SyntheticTask.verify(query: list, response: "apple;pear;lion"))
        #expect(!SyntheticTask.verify(query: list, response: "apple;pear;plum;"))
        let title = #"List 2 colors in titlecase, separated by "-"."#
        #expect(SyntheticTask.verify(query: title, response: "Red-Navy"))
        #expect(!SyntheticTask.verify(query: title, response: "Red-NAVY"))
        #expect(SyntheticTask.verify(query: "What is 17+25?", response: "42"))
        #expect(!SyntheticTask.verify(query: "What is 17+25?", response: "41"))
        #expect(SyntheticTask.verify(query: "What is 43-18?", response: "25"))
        #expect(!SyntheticTask.verify(query: "What is 43-18?", response: " 25"))
        #expect(SyntheticTask.verify(query: #"Reverse the word "stone"."#, response: "enots"))
        #expect(!SyntheticTask.verify(query: #"Reverse the word "stone"."#, response: "enost"))
        #expect(SyntheticTask.verify(query: #"Uppercase the word "moon"."#, response: "MOON"))
        #expect(!SyntheticTask.verify(query: #"Uppercase the word "moon"."#, response: "MOoN"))
        #expect(SyntheticTask.verify(query: #"Sort the letters of "candy"."#, response: "acdny"))
        #expect(!SyntheticTask.verify(query: #"Sort the letters of "candy"."#, response: "acndy"))
        #expect(!SyntheticTask.verify(query: "Tell me a joke.", response: "no"))
        #expect(SyntheticQuery.parse(#"List 3 rocks in lowercase, separated by ";"."#) == nil)
        #expect(SyntheticQuery.parse("What is 3*4?") == nil)
    }

    @Test func listResponsesSplitIntoItemsSeparatorsAndExtraText() {
        let parsed = ListResponse(" Apple; pear|plum.")
        #expect(parsed.items == ["Apple", "pear", "plum"])
        #expect(parsed.separators == ["; ", "|"])
        #expect(parsed.extra == " .")
        #expect(ListResponse("").items.isEmpty)
    }
}
