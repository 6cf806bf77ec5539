import Configuration
@testable import Coordinator
import Datasets
import Engine
import EngineConfiguration
import Foundation
import Method
import Shared
import TestSupport
import Testing

/// A model small enough to train a few steps in a debug build.
private let tinyConfig = TransformerConfig(
    family: .qwen3, hiddenSize: 16, layers: 1, heads: 2, kvHeads: 1, headDim: 8, ffnSize: 32, vocabSize: 264,
    maxSeqLen: 384, ropeTheta: 10000, rmsNormEps: 1e-6, qkNorm: true, qkvBias: false, tieEmbeddings: true)

/// A few teacher traces of the synthetic task (both sides of each pair).
private func sampleTraces(pairs: Int = 3) -> [SFTTrace] {
    let dataset = SyntheticTask.generate(trainCount: pairs, evalCount: 0, seed: 11, bestOfN: 0)
    return Teacher(errorRate: 0, seed: 1).sftTraces(for: dataset.train.map { .pair($0) }).traces
}

@Suite("SFT sequences")
struct SFTSequenceTests {
    @Test("each trace gives a criteria and an evaluation turn; identical criteria turns are kept once")
    func dedupesCriteriaTurns() {
        let format = CompactFormat()
        let traces = sampleTraces(pairs: 2)
        #expect(traces.count == 4)
        let sequences = SFTSequenceBuilder.sequences(for: traces, format: format)
        // Per pair: one criteria turn (same query for chosen and rejected) + two evaluation turns.
        #expect(sequences.count == 6)
        let first = traces[0]
        let criteriaPrompt = format.criteriaPrompt(query: first.query)
        let criteriaOutput = format.outputTokens(text: first.criteria)
        #expect(sequences[0] == SFTSequence(prompt: criteriaPrompt, target: criteriaOutput))
        let evaluationPrompt = format.evaluationPrompt(criteriaPrompt: criteriaPrompt, criteriaOutput: criteriaOutput, response: first.response)
        #expect(sequences[1] == SFTSequence(prompt: evaluationPrompt, target: format.outputTokens(text: first.evaluation)))
        #expect(sequences[1].tokens.last == ByteTokenizer.Special.eos.rawValue)
        // The rejected response's evaluation turn follows; its criteria turn was a duplicate.
        #expect(sequences[2].tokens.starts(with: criteriaPrompt + criteriaOutput))
        #expect(sequences[2].scoredRanges.first?.lowerBound == format.evaluationPrompt(criteriaPrompt: criteriaPrompt, criteriaOutput: criteriaOutput,
                                                                     response: traces[1].response).count)
        #expect(Set(sequences).count == sequences.count)
    }

    @Test("criteria in the evaluation turn: one sequence per trace scoring the criteria and the evaluation")
    func criteriaInEvaluation() {
        let format = CompactFormat()
        let traces = sampleTraces(pairs: 2)
        let sequences = SFTSequenceBuilder.sequences(for: traces, format: format, criteria: .inEvaluation)
        #expect(sequences.count == 4)
        let criteriaPrompt = format.criteriaPrompt(query: traces[1].query)
        let criteriaOutput = format.outputTokens(text: traces[1].criteria)
        let evaluationPrompt = format.evaluationPrompt(criteriaPrompt: criteriaPrompt, criteriaOutput: criteriaOutput,
                                                       response: traces[1].response)
        let evaluationOutput = format.outputTokens(text: traces[1].evaluation)
        #expect(sequences[1].tokens == evaluationPrompt + evaluationOutput)
        #expect(sequences[1].scoredRanges == [criteriaPrompt.count..<(criteriaPrompt.count + criteriaOutput.count),
                                              evaluationPrompt.count..<(evaluationPrompt.count + evaluationOutput.count)])
        #expect(sequences[1].targetCount == criteriaOutput.count + evaluationOutput.count)
        // In the batch, the scored tokens are exactly the criteria output and the evaluation output.
        let batch = SFTSequenceBuilder.batch([sequences[1]])
        let scored = batch.targets[0].filter { $0 >= 0 }
        #expect(scored == criteriaOutput + evaluationOutput)
        #expect(batch.targets[0][criteriaPrompt.count - 2] == -1 && batch.targets[0][criteriaPrompt.count - 1] == criteriaOutput[0])
    }

    @Test("a trace file (`cerm sft --traces`) loads as written; an empty one or a bad line is an error naming it")
    func traceFile() throws {
        let directory = try makeTemporaryDirectory("sft-tests")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let traces = sampleTraces(pairs: 2)
        let path = directory + "/traces.jsonl"
        try (traces.map(\.jsonLine).joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try SFTData.traces(path: path, format: CompactFormat()) == traces)

        let empty = directory + "/empty.jsonl"
        try "\n".write(toFile: empty, atomically: true, encoding: .utf8)
        #expect(throws: CermError.invalid("\(empty): no SFT traces")) { try SFTData.traces(path: empty, format: CompactFormat()) }

        let bad = directory + "/bad.jsonl"
        try (traces[0].jsonLine + "\n" + #"{"id":"x","query":"q","criteria":"c","response":"r","overall":1,"label":"chosen"}"# + "\n")
            .write(toFile: bad, atomically: true, encoding: .utf8)
        #expect(throws: DataError(file: bad, line: 2, field: "evaluation", message: "missing")) { try SFTData.traces(path: bad, format: CompactFormat()) }
    }

    @Test("a trace too long for model.max_seq_len is refused naming the file, its line and its id")
    func overlongTraceNamesItsLine() throws {
        let directory = try makeTemporaryDirectory("sft-tests")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var traces = sampleTraces(pairs: 1)
        traces[1].id = "long-one"
        traces[1].response = String(repeating: "y", count: 300)
        let tokens = SFTSequenceBuilder.sequences(for: [traces[1]], format: CompactFormat()).map(\.tokens.count).max()!
        let path = directory + "/tr_long.jsonl"
        try (traces[0].jsonLine + "\n\n" + traces[1].jsonLine + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: CermError.invalid("\(path):3: trace \"long-one\": its SFT sequence has \(tokens) tokens; model.max_seq_len is 384")) {
            try SFTData.traces(path: path, format: CompactFormat(), maxSeqLen: 384)
        }
        // A sequence of max_seq_len + 1 tokens fills the context exactly (its last token is only a target).
        #expect(try SFTData.traces(path: path, format: CompactFormat(), maxSeqLen: tokens - 1) == traces)
    }

    @Test("a data.train record whose teacher trace is too long for model.max_seq_len names its line and response; skip_bad skips it")
    func overlongTeacherTraceNamesItsLine() throws {
        let directory = try makeTemporaryDirectory("sft-tests")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let dataset = SyntheticTask.generate(trainCount: 3, evalCount: 0, seed: 11, bestOfN: 0)
        var pairs = dataset.train
        pairs[1].rejected = String(repeating: "y", count: 300)
        var config = try Config.parse("")
        config.data.train = directory + "/train.jsonl"
        config.model.maxSeqLen = 384
        try (pairs.map(\.jsonLine).joined(separator: "\n") + "\n").write(toFile: config.data.train, atomically: true, encoding: .utf8)
        let trace = try #require(SFTData.teacher(config).sftTraces(for: [.pair(pairs[1])]).traces.last)
        let tokens = SFTSequenceBuilder.sequences(for: [trace], format: CompactFormat()).map(\.tokens.count).max()!
        let message = "the teacher's SFT sequence has \(tokens) tokens; model.max_seq_len is 384"
        #expect(throws: DataError(file: config.data.train, line: 2, field: "rejected", message: message)) {
            try SFTData.traces(config, format: makePromptFormat(config.rollout.format)) { _ in }
        }
        config.data.skipBad = true
        var log: [String] = []
        let (traces, _) = try SFTData.traces(config, format: makePromptFormat(config.rollout.format)) { log.append($0) }
        #expect(traces.count == 4)
        #expect(log.contains("skipped \(config.data.train):2: rejected: \(message)"))
    }

    @Test("batch targets are −1 over the prompt and the next target token after it")
    func masksPrompt() {
        let sequence = SFTSequence(prompt: [257, 259, 65, 260], target: [66, 67, 258])
        let batch = SFTSequenceBuilder.batch([sequence])
        #expect(batch.inputs == [[257, 259, 65, 260, 66, 67]])
        // Position 3 reads ⟨assistant⟩ and must predict the first target token.
        #expect(batch.targets == [[-1, -1, -1, 66, 67, 258]])
        #expect(batch.scoredCount == sequence.targetCount)
    }
}

@Suite("SFT trainer")
struct SFTTrainerTests {
    @Test("first batch loss is the mean target NLL of a separate forward, and training lowers it")
    func lossMatchesForwardAndDecreases() throws {
        let sequences = SFTSequenceBuilder.sequences(for: sampleTraces(pairs: 2), format: CompactFormat())
        let weights = ModelWeights(config: tinyConfig, seed: 5, initStd: 0.02)

        // Independent reference: forward of the untouched weights, −mean log-prob over targets.
        let reference = try Transformer(weights: weights)
        let batch = SFTSequenceBuilder.batch(sequences)
        let pass = try reference.forward(batch)
        var sum = 0.0, count = 0
        for (row, targets) in batch.targets.enumerated() {
            for (t, target) in targets.enumerated() where target >= 0 {
                sum -= Double(pass.logprobs[row][t])
                count += 1
            }
        }
        let expectedFirstLoss = sum / Double(count)
        #expect(count == sequences.reduce(0) { $0 + $1.targetCount })

        let options = SFTOptions(learningRate: 1e-2, batchSize: sequences.count, epochs: 12, schedule: .constant,
                                 weightDecay: 0, maxGradNorm: 1, seed: 3)
        let trainer = try SFTTrainer(weights: weights, options: options)
        var losses: [Double] = []
        let result = try trainer.train(sequences) { losses.append($0.loss) }
        #expect(result.steps == 12 && result.totalSteps == 12 && !result.stoppedEarly)
        #expect(abs((result.firstLoss ?? 0) - expectedFirstLoss) < 1e-4)
        // Uniform over 264 tokens is ln 264 ≈ 5.58; a fresh model starts near it.
        #expect(abs(expectedFirstLoss - log(264)) < 0.2)
        #expect(losses.count == 12)
        #expect(losses.last! < 0.8 * losses.first!)
        #expect(try trainer.loss(of: sequences) < losses.first!)
    }

    @Test("micro-batching does not change the step")
    func microBatchesAccumulate() throws {
        let sequences = SFTSequenceBuilder.sequences(for: sampleTraces(pairs: 1), format: CompactFormat())
        let weights = ModelWeights(config: tinyConfig, seed: 9, initStd: 0.02)
        func run(budget: Int) throws -> ModelWeights {
            let options = SFTOptions(learningRate: 1e-2, batchSize: sequences.count, epochs: 1, schedule: .constant,
                                     seed: 3, microBatchFloatBudget: budget)
            return try SFTTrainer(weights: weights, options: options).train(sequences).weights
        }
        let whole = try run(budget: .max)
        let split = try run(budget: 1)
        let maxDifference = zip(whole.values, split.values).map { abs($0 - $1) }.max() ?? 0
        #expect(maxDifference < 1e-6)
        #expect(whole != weights)
    }

    @Test("epoch order is a seeded permutation, different per epoch")
    func epochOrder() {
        let a = SFTTrainer.epochOrder(count: 10, seed: 1, epoch: 0)
        #expect(a.sorted() == Array(0..<10))
        #expect(a == SFTTrainer.epochOrder(count: 10, seed: 1, epoch: 0))
        #expect(a != SFTTrainer.epochOrder(count: 10, seed: 1, epoch: 1))
        #expect(a != SFTTrainer.epochOrder(count: 10, seed: 2, epoch: 0))
        #expect(SFTTrainer.totalSteps(sequenceCount: 33, batchSize: 16, epochs: 3) == 9)
    }

    @Test("a zero time cap stops before the first step")
    func timeCap() throws {
        let sequences = SFTSequenceBuilder.sequences(for: sampleTraces(pairs: 1), format: CompactFormat())
        let weights = ModelWeights(config: tinyConfig, seed: 9, initStd: 0.02)
        let options = SFTOptions(learningRate: 1e-2, batchSize: 2, epochs: 1, seed: 3, maxSeconds: 0)
        let result = try SFTTrainer(weights: weights, options: options).train(sequences)
        #expect(result.stoppedEarly && result.steps == 0 && result.weights == weights)
    }

    @Test("the weights do not depend on threads; shards change only float rounding")
    func shardsAndThreads() throws {
        let sequences = SFTSequenceBuilder.sequences(for: sampleTraces(pairs: 2), format: CompactFormat())
        let weights = ModelWeights(config: tinyConfig, seed: 4, initStd: 0.02)
        func run(shards: Int, threads: Int) throws -> ModelWeights {
            let options = SFTOptions(learningRate: 1e-2, batchSize: 4, epochs: 1, schedule: .constant, seed: 3,
                                     shards: shards, threads: threads)
            return try SFTTrainer(weights: weights, options: options).train(sequences).weights
        }
        let sequential = try run(shards: 2, threads: 1)
        #expect(try run(shards: 2, threads: 2) == sequential)
        #expect(try run(shards: 3, threads: 2) == run(shards: 3, threads: 1))
        let single = try run(shards: 1, threads: 1)
        #expect(single != weights)
        // Adam divides by the gradient's running RMS, so a rounding difference in a near-zero
        // gradient can move a weight by a visible fraction of one step (lr 1e-2): measured up to
        // 1.2e-5 with OpenBLAS's generic kernels. The bound is 1% of one step.
        let maxDifference = zip(single.values, sequential.values).map { abs($0 - $1) }.max() ?? 0
        #expect(maxDifference < 1e-4)
    }
}

/// A judge whose outputs are scripted: one-item criteria (or garbage for queries listed in
/// `badCriteria`), and evaluations with the overall score `scores[response][sample]`
/// (nil = a malformed evaluation).
final class ScriptedJudge: JudgeBackend {
    let scores: [String: [Double?]]
    let badCriteria: Set<String>
    var criteriaCalls = 0

    init(scores: [String: [Double?]], badCriteria: Set<String> = []) {
        self.scores = scores
        self.badCriteria = badCriteria
    }

    func criteria(_ jobs: [CriteriaJob]) throws -> [[TokenID]] {
        criteriaCalls += 1
        return jobs.map { job in
            CompactFormat().outputTokens(text: badCriteria.contains(job.query) ? "no markers" : "t\n[C]\n1. right\n[/C]")
        }
    }

    func evaluations(_ jobs: [EvaluationJob]) throws -> [[[TokenID]]] {
        jobs.map { job in
            job.responses.map { response in
                guard let score = scores[response]?[job.sample] else { return CompactFormat().outputTokens(text: "1. ok: 5/5") }
                return CompactFormat().outputTokens(text: "1. ok: 5/5\n=> \(formatScore(score))/10")
            }
        }
    }
}

@Suite("Evaluation scoring")
struct EvaluationScoringTests {
    @Test("pairwise credit: higher wins, ties and double-invalid are ½, valid beats invalid")
    func pairwise() {
        #expect(EvaluationScoring.pairwiseCredit(chosen: 7, rejected: 3) == 1)
        #expect(EvaluationScoring.pairwiseCredit(chosen: 3, rejected: 7) == 0)
        #expect(EvaluationScoring.pairwiseCredit(chosen: 5, rejected: 5) == 0.5)
        #expect(EvaluationScoring.pairwiseCredit(chosen: nil, rejected: nil) == 0.5)
        #expect(EvaluationScoring.pairwiseCredit(chosen: 0, rejected: nil) == 1)
        #expect(EvaluationScoring.pairwiseCredit(chosen: nil, rejected: 0) == 0)
    }

    @Test("Best-of-N credit: strict top 1, tie at the top with t others 1/(t+1), else 0")
    func bestOfN() {
        #expect(EvaluationScoring.bestOfNCredit(scores: [9, 5, 3, 1], best: 0) == 1)
        #expect(EvaluationScoring.bestOfNCredit(scores: [9, 9, 3, 1], best: 0) == 0.5)
        #expect(EvaluationScoring.bestOfNCredit(scores: [9, 9, 9, nil], best: 2) == 1.0 / 3)
        #expect(EvaluationScoring.bestOfNCredit(scores: [9, 10, 3, 1], best: 0) == 0)
        #expect(EvaluationScoring.bestOfNCredit(scores: [nil, nil, nil, nil], best: 1) == 0.25)
        #expect(EvaluationScoring.bestOfNCredit(scores: [nil, 1, nil, nil], best: 0) == 0)
        #expect(EvaluationScoring.bestOfNCredit(scores: [1, 2], best: 5) == 0)
    }

    @Test("k-averaged scores over scripted outputs give the hand-computed table")
    func scriptedTable() throws {
        // Response scores per criteria sample (k = 2); nil = malformed evaluation.
        let scores: [String: [Double?]] = [
            "c1": [8, 6], "r1": [7, nil],      // 7 vs 7: tie, ½
            "c2": [nil, nil], "r2": [nil, nil], // both invalid: tie, ½
            "c3": [3, nil], "r3": [nil, nil],   // valid beats invalid: 1
            "c4": [2, 4], "r4": [5, 4.5],       // 3 vs 4.75: 0
            "b0": [5, 5], "b1": [9, 8], "b2": [8, 9], "b3": [1, nil], // 5, 8.5, 8.5, 1: best 1 ties with 2 → ½
            "d0": [6, 6], "d1": [2, 2],
        ]
        let items = [
            EvaluationItem(id: "p1", query: "q1", responses: ["c1", "r1"], kind: .pair, taskType: "a", index: 0),
            EvaluationItem(id: "p2", query: "q2", responses: ["c2", "r2"], kind: .pair, taskType: "a", index: 1),
            EvaluationItem(id: "p3", query: "q3", responses: ["c3", "r3"], kind: .pair, taskType: "b", index: 2),
            EvaluationItem(id: "p4", query: "q4", responses: ["c4", "r4"], kind: .pair, taskType: "b", index: 3),
            EvaluationItem(id: "p5", query: "qbad", responses: ["d0", "d1"], kind: .pair, taskType: "b", index: 4),
            EvaluationItem(id: "n1", query: "q5", responses: ["b0", "b1", "b2", "b3"], kind: .bestOfN(best: 1), taskType: "a", index: 0),
        ]
        let judge = ScriptedJudge(scores: scores, badCriteria: ["qbad"])
        let evaluator = Evaluator(format: CompactFormat(), options: EvaluationOptions(k: 2, seed: 1, chunkSize: 4))
        let report = try evaluator.evaluate(items, backend: judge)
        #expect(judge.criteriaCalls == 2)
        // Pairs: ½ + ½ + 1 + 0 + ½ (criteria invalid for both samples: no scores, tie) = 2.5 of 5.
        #expect(report.pairwise == AccuracyTally(count: 5, credit: 2.5, squaredCredit: 1.75))
        #expect(report.pairwiseByType["a"] == AccuracyTally(count: 2, credit: 1, squaredCredit: 0.5))
        #expect(report.pairwiseByType["b"] == AccuracyTally(count: 3, credit: 1.5, squaredCredit: 1.25))
        #expect(report.bestOfN == AccuracyTally(count: 1, credit: 0.5, squaredCredit: 0.25))
        #expect(report.bestOfNSize == 4)
        // 6 items × 2 samples = 12 criteria sets, 2 invalid; evaluations: 2 per valid pair set (8 sets), 4 per BoN set (2).
        #expect(report.criteriaGenerated == 12 && report.criteriaValid == 10)
        #expect(report.criteriaFailures == [ParseFailure.missingStartMarker.rawValue: 2])
        #expect(report.evaluationsGenerated == 24)
        // Malformed: r1, c2, r2 ×2, c3, r3 ×2, b3 = 9.
        #expect(report.evaluationsValid == 15)
        #expect(report.evaluationFailures == [ParseFailure.noScore.rawValue: 9])
        #expect(report.responses == 14 && report.responsesWithoutScore == 5) // c2, r2, r3, d0, d1

        // The standard error of the mean credit: sample variance ((0 + 0 + ¼ + ¼ + 0) / 4) over n = 5.
        #expect(abs(try #require(report.pairwise.standardError) - (0.125 / 5).squareRoot()) < 1e-12)
        #expect(report.table(title: "t").split(separator: "\n")[2] == "overall       50.0% ± 15.8 (n=5)       50.0% (n=1)")
        #expect(report.jsonMembers.first { $0.0 == "best_of_n" }?.1 == #"{"accuracy":0.5,"standard_error":null,"count":1,"credit":0.5}"#)
        // 0/1 credits: the binomial √(p(1 − p)/(n − 1)).
        #expect(abs(try #require(AccuracyTally(count: 5, credit: 4).standardError) - (0.8 * 0.2 / 4).squareRoot()) < 1e-12)

        // Per-response criteria: one criteria set per response and sample.
        let perResponse = Evaluator(format: CompactFormat(), options: EvaluationOptions(k: 2, criteriaMode: .perResponse, seed: 1))
        let ablation = try perResponse.evaluate(items, backend: ScriptedJudge(scores: scores, badCriteria: ["qbad"]))
        #expect(ablation.criteriaGenerated == 28)
        #expect(ablation.pairwise == report.pairwise && ablation.bestOfN == report.bestOfN)
    }

    @Test("seeds depend on item, sample and response only; sampling criteria when k > 1")
    func seeds() {
        let options = EvaluationOptions(k: 2, temperature: 0, seed: 42)
        let item = EvaluationItem(id: "x", query: "q", responses: ["a", "b"], kind: .pair, taskType: nil, index: 3)
        #expect(options.seed(item: item, sample: 0, response: -1) == options.seed(item: item, sample: 0, response: -1))
        #expect(options.seed(item: item, sample: 0, response: -1) != options.seed(item: item, sample: 1, response: -1))
        #expect(options.seed(item: item, sample: 0, response: -1, evaluationOf: 0) != options.seed(item: item, sample: 0, response: -1, evaluationOf: 1))
        #expect(options.criteriaTemperature == 1)
        #expect(EvaluationOptions(k: 1, temperature: 0, seed: 42).criteriaTemperature == 0)
    }
}

@Suite("Evaluation backends and weights files")
struct EvaluationBackendTests {
    @Test("the teacher through the evaluation path scores as the teacher does")
    func teacherAccuracy() throws {
        let dataset = SyntheticTask.generate(trainCount: 0, evalCount: 3, seed: 21, bestOfN: 4)
        let items = dataset.eval.enumerated().map { EvaluationItem(pair: $1, index: $0) }
            + dataset.bestOfN.enumerated().map { EvaluationItem(bestOfN: $1, index: $0) }
        let evaluator = Evaluator(format: CompactFormat(), options: EvaluationOptions(seed: 1))
        // A perfect teacher ranks every chosen response first.
        let perfect = try evaluator.evaluate(items, backend: TeacherJudge(teacher: Teacher(errorRate: 0, seed: 1), format: CompactFormat()))
        #expect(perfect.pairwise == AccuracyTally(count: 3, credit: 3))
        #expect(perfect.validFormatRate == 1)
        // A noisy teacher: the same credit as the teacher's own accuracy measurement, in either
        // prompt format (`rollout.format = "cerm"` used to get compact text from the teacher,
        // every output unparseable).
        let formats: [any PromptFormat] = [CompactFormat(), CermFormat()]
        for seed: UInt64 in [1, 2, 3] {
            let teacher = Teacher(errorRate: 1, seed: seed)
            let known = teacher.measure(pairs: dataset.eval, bestOfN: dataset.bestOfN)
            for format in formats {
                let report = try Evaluator(format: format, options: EvaluationOptions(seed: 1))
                    .evaluate(items, backend: TeacherJudge(teacher: teacher, format: format))
                #expect(report.validFormatRate == 1, "\(format.name)")
                #expect(report.pairwise == known.pairwise, "\(format.name)")
                #expect(abs(report.bestOfN.credit - known.bestOfN.credit) < 1e-12 && report.bestOfN.count == known.bestOfN.count)
            }
        }
    }

    @Test("the teacher skips and counts queries it does not know, as `cerm data teacher` does")
    func teacherSkipsUnknownQueries() throws {
        let dataset = SyntheticTask.generate(trainCount: 0, evalCount: 3, seed: 21, bestOfN: 0)
        let foreign = (1...3).map {
            PreferencePair(id: "sky-\($0)", query: "Write a haiku about rain number \($0).", chosen: "Soft rain on the roof", rejected: "No.",
                           taskType: "chat")
        }
        let pairs = dataset.eval + foreign
        let items = pairs.enumerated().map { EvaluationItem(pair: $1, index: $0) }
        let teacher = Teacher(errorRate: 0, seed: 1)
        let (kept, unsupported) = TeacherJudge.supportedItems(items, teacher: teacher)
        #expect(kept == Array(items.prefix(3)))
        #expect(unsupported == 3)
        #expect(teacher.measure(pairs: pairs).unsupported == unsupported)

        let evaluator = Evaluator(format: CompactFormat(), options: EvaluationOptions(seed: 1))
        // Judged anyway, the unknown queries were truncated criteria and ties (the bug).
        let unfiltered = try evaluator.evaluate(items, backend: TeacherJudge(teacher: teacher, format: CompactFormat()))
        #expect(unfiltered.criteriaFailures == ["truncated": 3])
        #expect(unfiltered.pairwise == AccuracyTally(count: 6, credit: 4.5, squaredCredit: 3.75))

        var report = try evaluator.evaluate(kept, backend: TeacherJudge(teacher: teacher, format: CompactFormat()))
        report.unsupported = unsupported
        #expect(report.pairwise == AccuracyTally(count: 3, credit: 3))
        #expect(report.criteriaFailures.isEmpty && report.evaluationFailures.isEmpty)
        let lines = report.table(title: "teacher").split(separator: "\n").map(String.init)
        #expect(lines.contains("unsupported queries (skipped): 3"))
        #expect(!lines.contains { $0.contains("parse failures") })
        #expect(report.jsonMembers.contains { $0 == ("unsupported", "3") })
        var merged = report
        merged.merge(report)
        #expect(merged.unsupported == 6)
        // Nothing unsupported, nothing said.
        #expect(!unfiltered.table(title: "t").contains("unsupported"))
    }

    @Test("Best-of-N items of different N are labelled as such, with a note, not as the largest N")
    func mixedBestOfNSizesAreNamed() throws {
        let two = SyntheticTask.generate(trainCount: 0, evalCount: 3, seed: 21, bestOfN: 2).bestOfN
        let four = SyntheticTask.generate(trainCount: 0, evalCount: 3, seed: 21, bestOfN: 4).bestOfN
        let evaluator = Evaluator(format: CompactFormat(), options: EvaluationOptions(seed: 1))
        let judge = TeacherJudge(teacher: Teacher(errorRate: 0, seed: 1), format: CompactFormat())
        let single = try evaluator.evaluate(four.enumerated().map { EvaluationItem(bestOfN: $1, index: $0) }, backend: judge)
        #expect(single.bestOfNSize == 4 && single.bestOfNSmallestSize == 4)
        #expect(single.table(title: "t").split(separator: "\n")[1].hasSuffix(" best-of-4"))
        #expect(!single.table(title: "t").contains("note:"))
        let items = (two + four).enumerated().map { EvaluationItem(bestOfN: $1, index: $0) }
        let mixed = try evaluator.evaluate(items, backend: judge)
        #expect(mixed.bestOfNSize == 4 && mixed.bestOfNSmallestSize == 2)
        let lines = mixed.table(title: "t").split(separator: "\n").map(String.init)
        #expect(lines[1].hasSuffix(" best-of-2…4"))
        #expect(lines.contains("note: the Best-of-N items have 2 to 4 responses, and their chance levels differ (1/N): "
                + "evaluate each Best-of-N file alone to compare N"))
        var merged = single
        merged.merge(try evaluator.evaluate(two.enumerated().map { EvaluationItem(bestOfN: $1, index: $0) }, backend: judge))
        #expect(merged.bestOfNSmallestSize == 2 && merged.bestOfNSize == 4)
    }

    @Test("a model judge generates and parses; both threads give the same report as one")
    func modelJudgeRuns() throws {
        let dataset = SyntheticTask.generate(trainCount: 0, evalCount: 2, seed: 21, bestOfN: 0)
        let items = dataset.eval.enumerated().map { EvaluationItem(pair: $1, index: $0) }
        let weights = ModelWeights(config: tinyConfig, seed: 2, initStd: 0.02)
        let evaluator = Evaluator(format: CompactFormat(), options: EvaluationOptions(seed: 1))
        let make: @Sendable () throws -> any JudgeBackend = { try ModelJudge(weights: weights, criteriaMaxTokens: 8, evaluationMaxTokens: 8, chat: ByteChat()) }
        let one = try evaluator.evaluate(items, threads: 1, makeBackend: make)
        let two = try evaluator.evaluate(items, threads: 2, makeBackend: make)
        // A random model never closes a criteria turn in 8 tokens: all truncated, pairs tie.
        #expect(one.criteriaFailures[ParseFailure.truncated.rawValue] == 2)
        #expect(one.pairwise == AccuracyTally(count: 2, credit: 1, squaredCredit: 0.5))
        var a = one, b = two
        a.seconds = 0; b.seconds = 0
        #expect(a == b)
    }

    @Test("SFT weights round trip through the output file; checkpoints are detected")
    func weightsRoundTrip() throws {
        let directory = try makeTemporaryDirectory("sft-tests")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let weights = ModelWeights(config: tinyConfig, seed: 4, initStd: 0.02)
        let path = directory + "/sft/model.h5"
        try WeightsFile.saveAtomically(weights, to: path)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory + "/sft") == ["model.h5"])
        let (loaded, kind, _) = try WeightsFile.load(path: path)
        #expect(kind == .modelWeights && loaded == weights)

        let tensors = try weights.layout.tensors(of: weights.values).map { NamedTensor(name: $0.name, shape: $0.shape, values: $0.values) }
        let state = TrainingState(step: 3, policyVersion: 3, tensors: tensors, modelConfigJSON: tinyConfig.jsonString())
        let written = try CheckpointWriter(directory: directory + "/run", keepLast: 2).write(state)
        let (fromCheckpoint, checkpointKind, _) = try WeightsFile.load(path: written.path)
        #expect(checkpointKind == .checkpoint && fromCheckpoint == weights)
    }
}

@Suite("SFT data: the synthetic task")
struct SyntheticDataTests {
    /// A fresh directory gets all three files, as `make run` on a fresh clone; a second call
    /// reuses them; with one removed the others are kept and the missing key is named.
    @Test func generatesOnlyWhenNoDataFileExists() throws {
        let directory = try makeTemporaryDirectory("sft-tests")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var data = DataConfig()
        data.dir = directory + "/synth"
        (data.train, data.eval, data.bestOfN) = (data.dir + "/train.jsonl", data.dir + "/eval.jsonl", data.dir + "/bo4.jsonl")
        (data.synthTrain, data.synthEval) = (6, 3)
        #expect(try SFTData.ensureSynthetic(data) == [data.train, data.eval, data.bestOfN])
        let written = try [data.train, data.eval].map { try Data(contentsOf: URL(fileURLWithPath: $0)) }
        #expect(try SFTData.ensureSynthetic(data) == [])

        try FileManager.default.removeItem(atPath: data.bestOfN)
        #expect(throws: CermError.invalid("""
            missing data file: data.best_of_n = "\(data.bestOfN)" (data.train and data.eval exist); cerm generates the synthetic \
            task only when none of the data files exists and never overwrites one: point data.best_of_n at an existing file, set \
            data.best_of_n = "" to skip Best-of-N, or remove "\(data.train)" and "\(data.eval)" to have the synthetic task \
            generated into "\(data.dir)"
            """)) { try SFTData.ensureSynthetic(data) }
        #expect(try [data.train, data.eval].map { try Data(contentsOf: URL(fileURLWithPath: $0)) } == written)
        #expect(!FileManager.default.fileExists(atPath: data.bestOfN))

        data.bestOfN = ""
        #expect(try SFTData.ensureSynthetic(data) == [])
    }

    /// With no data file at all, a key the synthetic task would not write is named instead of
    /// generating files that leave it missing.
    @Test func refusesWhenGeneratingWouldNotWriteAMissingFile() throws {
        let directory = try makeTemporaryDirectory("sft-tests")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var data = DataConfig()
        data.dir = directory + "/synth"
        (data.train, data.eval, data.bestOfN) = (directory + "/pairs.jsonl", data.dir + "/eval.jsonl", "")
        #expect(throws: CermError.invalid("""
            missing data files: data.train = "\(data.train)", data.eval = "\(data.eval)"; the synthetic task generated into \
            data.dir would write "\(data.dir)/train.jsonl" for data.train instead: point data.train and data.eval at existing \
            files, or point data.train at that file to have it generated
            """)) { try SFTData.ensureSynthetic(data) }
        #expect(!FileManager.default.fileExists(atPath: data.dir))
    }
}
