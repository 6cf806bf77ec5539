"""Reference token ids of CE-RM's `cerm` prompts rendered through SmolLM2-135M-Instruct's chat
template by transformers (`apply_chat_template(..., add_generation_prompt=True)`), for
Tests/MethodTests/ChatPromptParityTests.swift. Run by hand from the repository root with the
reference environment (scripts/setup_reference_env.sh):

    cerm data synth --out /tmp/synth50 --train 60 --eval 50 --seed 7
    cerm data sft-traces --data /tmp/synth50/eval.jsonl --format cerm --out /tmp/synth50/traces.jsonl
    .venv-ref/bin/python scripts/make_chat_prompt_fixtures.py /tmp/synth50/traces.jsonl \
        --gguf .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf

The two request texts mirror `CermFormat.criteriaInstruction` and `evaluationInstruction`
(Sources/Method/Formats/CermFormat.swift); change them together and run this again.
"""
import argparse
import json
import os

from transformers import AutoTokenizer

CRITERIA_INSTRUCTION = (
    "You are an impartial evaluator. Before seeing any response, decide what a good answer "
    "to the query below must achieve.\n\n"
    "[Start of Query]\n{query}\n[End of Query]\n\n"
    "First analyse briefly what the query asks for. Then list concise, non-overlapping "
    "criteria, most important first, numbered 1., 2., 3., … between [Start of Criteria] "
    "and [End of Criteria]."
)
EVALUATION_INSTRUCTION = (
    "Evaluate the response below against your criteria.\n\n"
    "[Start of Response]\n{response}\n[End of Response]\n\n"
    "For each criterion in order, write \"Criterion i:\", a short analysis and a score from 0 "
    "to 5 in \\boxed{{}}. If the response has strengths or flaws that the criteria miss, add "
    "\"Other Points:\" with an analysis and a score from 0 to 5 in \\boxed{{}}. Finish with "
    "\"Overall:\" and a score from 0 to 10 in \\boxed{{}}. Scores are integers or halves."
)

parser = argparse.ArgumentParser()
parser.add_argument("traces")
parser.add_argument("--gguf", default=".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf")
parser.add_argument("--out", default="Tests/MethodTests/Fixtures/smollm2_cerm_prompts.jsonl")
args = parser.parse_args()

directory, name = os.path.split(args.gguf)
tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
with open(args.traces) as f:
    traces = [json.loads(line) for line in f if line.strip()]
with open(args.out, "w") as out:
    for trace in traces:
        criteria_request = CRITERIA_INSTRUCTION.replace("{query}", trace["query"])
        evaluation_request = EVALUATION_INSTRUCTION.format(response=trace["response"])
        first = [{"role": "user", "content": criteria_request}]
        conversation = first + [{"role": "assistant", "content": trace["criteria"]},
                                {"role": "user", "content": evaluation_request}]
        record = {
            "query": trace["query"], "criteria": trace["criteria"], "response": trace["response"],
            "criteria_prompt": tokenizer.apply_chat_template(first, add_generation_prompt=True, tokenize=True, return_dict=False),
            "evaluation_prompt": tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True, return_dict=False),
        }
        out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
print(f"wrote {len(traces)} records to {args.out}")
