import ArgumentParser
import Configuration
import Coordinator
import Datasets
import Foundation
import Method
import Shared

/// `cerm judge --model W --query Q --response R [--response R2 …]` (or `--input items.jsonl`):
/// a judge's criteria for the query and its evaluation of each response, the overall scores and
/// the preferred response. How a user checks a trained judge on their own example.
struct JudgeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "judge",
        abstract: "Judge responses to a query with a model: its criteria, each response's overall score and the preferred response.",
        discussion: """
        The judge writes criteria for the query once, before seeing any response, then evaluates \
        each response under them (CE-RM's unified criteria, through the same prompts, parsing and \
        scoring as `cerm eval`). stdout: the criteria, each response's overall 0-10 score or \
        "no valid score: REASON" (REASON is "criteria FAILURE" when the criteria did not parse, \
        so no evaluation was written, or "evaluation FAILURE"; failures as in docs/FORMATS.md), \
        then the preferred response: a valid score beats none, and a shared top score is reported \
        as a tie. Responses are numbered from 0. --show-evaluations prints each evaluation under \
        its score. With --json, one JSON object per item, one a line: id, query, criteria, \
        criteria_valid, criteria_reason, responses (each score, valid, reason, evaluation), \
        preferred (the index, or null on a tie or when no score is valid) and tied (the indices \
        sharing the top score). Progress and logs go to stderr.

        --input FILE judges one item per line, {"query": "...", "responses": ["...", ...]} with an \
        optional "id" (other keys are ignored, so a Best-of-N file judges as it is); a bad line is \
        an error naming the file, the line and the key.

        MODEL is a GGUF file, a Hugging Face model directory, a cerm weights file or an RL \
        checkpoint, as for `cerm generate`. The prompt format is rollout.format of --config; \
        without --config it is `cerm` for a model with a tokenizer and chat template (a \
        pretrained model, or a cerm file that stores one) and the default rollout.format \
        (`compact`) for a model with cerm's byte tokenizer: give the training config to judge \
        with a byte model trained in another format. Token budgets default to \
        rollout.criteria_max_tokens and rollout.evaluation_max_tokens (of --config, else the \
        defaults), counted in the model's tokens; --seed defaults to run.seed.
        """)

    @Option(help: "The judge: a GGUF file, a Hugging Face model directory, a cerm weights file or an RL checkpoint.")
    var model: String
    @Option(help: "The query (with --response).")
    var query: String?
    @Option(help: "A response to judge; repeat for more.")
    var response: [String] = []
    @Option(help: "A JSON Lines file of items {\"query\": ..., \"responses\": [...]} instead of --query/--response.")
    var input: String?
    @Option(help: "A run configuration: its rollout.format and token budgets (defaults when omitted).")
    var config: String?
    @Option(help: "auto (the model's own or stored template), chatml, llama3 or none.")
    var chatTemplate = "auto"
    @Option(help: "Decoding temperature of criteria and evaluations; 0 is greedy.")
    var temperature: Float = 0
    @Option(help: "Seed of the sampler (temperature > 0; default run.seed).")
    var seed: UInt64?
    @Option(help: "Most tokens of the criteria turn (default rollout.criteria_max_tokens).")
    var maxCriteriaTokens: Int?
    @Option(help: "Most tokens of each evaluation turn (default rollout.evaluation_max_tokens).")
    var maxEvaluationTokens: Int?
    @Flag(help: "Print each evaluation's text under its score.")
    var showEvaluations = false
    @Flag(help: "Print one JSON object per item instead of text.")
    var json = false

    func validate() throws {
        if input != nil {
            guard query == nil, response.isEmpty else { throw ValidationError("give either --input FILE or --query with --response, not both") }
        } else {
            guard query != nil else { throw ValidationError("give --query with at least one --response, or --input FILE") }
            guard !response.isEmpty else { throw ValidationError("--query needs at least one --response") }
        }
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be 0 or positive, not \(temperature)") }
        for (name, value) in [("--max-criteria-tokens", maxCriteriaTokens), ("--max-evaluation-tokens", maxEvaluationTokens)] {
            if let value, value < 1 { throw ValidationError("\(name) must be positive, not \(value)") }
        }
    }

    func run() throws {
        func log(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }
        let started = Date()
        do {
            let cfg = try config.map { try loadConfigOrExit($0) } ?? Config()
            let items = try input.map { try JudgeItem.load(path: $0) }
                ?? [JudgeItem(id: "command-line", query: query ?? "", responses: response)]
            let source = try ModelSource.open(model, chatTemplate: chatTemplate, loadWeights: true)
            guard let weights = source.weights else { throw CermError.io(path: model, reason: "holds no model weights") }
            let chat = try source.chat()
            // A model with its own tokenizer is an instruction-tuned one: CE-RM's sentences, not the byte models' markers.
            let formatName = config == nil && source.tokenizer != nil ? PromptFormatName.cerm : cfg.rollout.format
            let format = makePromptFormat(formatName, chat: chat)
            let backend = try ModelJudge(weights: weights, criteriaMaxTokens: maxCriteriaTokens ?? cfg.rollout.criteriaMaxTokens,
                                         evaluationMaxTokens: maxEvaluationTokens ?? cfg.rollout.evaluationMaxTokens, topP: 1, chat: chat)
            log("judge: \(source.description), \(formatName.rawValue) format, temperature \(temperature)")
            var done = 0
            try JudgeVerdict.judge(items, format: format, backend: backend, temperature: temperature, seed: seed ?? cfg.run.seed) { verdict in
                let text = json ? verdict.json : (done > 0 ? "\n" : "") + verdict.text(showEvaluations: showEvaluations, header: input != nil)
                // Unbuffered: a script reading a pipe gets each item as it is judged.
                FileHandle.standardOutput.write(Data((text + "\n").utf8))
                done += 1
                if input != nil { log("judged \(done)/\(items.count) items") }
            }
            log(String(format: "%d item%@ judged in %.1f s", items.count, items.count == 1 ? "" : "s", Date().timeIntervalSince(started)))
        } catch let error as ExitCode {
            throw error
        } catch {
            throw exitWithError(error)
        }
    }
}
