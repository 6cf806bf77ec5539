#!/usr/bin/env python3
"""Reference numbers for cerm's parity check with a real pretrained model (issue 23, point 5).

Loads SmolLM2-135M-Instruct from its Q4_1 GGUF with Hugging Face transformers (dequantised to
float32 by transformers' GGUF loader and the `gguf` package) and its tokenizer from the same file,
renders 20 judge-like chat prompts with the model's chat template (`add_generation_prompt=True`),
and records for each prompt:

- the prompt's token ids;
- at every prompt position, from the float32 logits of one forward pass over the whole prompt:
  the top-8 ids and their logits (the first is the argmax), the max |logit| over the vocabulary,
  and the logits at a fixed seeded sample of vocabulary ids (the same for every position);
- the greedy 64-token continuation from `generate(do_sample=False)` with end-of-sequence
  stopping disabled (all 64 tokens are kept; the index of the first end-of-turn token is
  recorded), and at each step the margin between the two largest logits, so that a greedy
  disagreement can be told apart from a near-tie.

A full-vocabulary dump would be ~1 GB; this one is ~0.4 MB. Output (the contract read by
`cerm check-parity` through Sources/Engine/Parity/ParityFixture.swift):

    DIR/reference.json   index: versions, model sha256, vocab sample, per prompt its messages,
                         token ids, greedy tokens, margins and the offset of its rows
    DIR/logits.f32       little-endian float32 rows, one per prompt position, prompts in order:
                         [max|logit|, top-8 logits..., sampled logits...]
    DIR/top_ids.i32      little-endian int32 rows, one per prompt position: the top-8 ids

Run by hand, from the repository root (never in CI; `make test` only reads the fixture):

    scripts/setup_reference_env.sh            # creates .venv-ref (git-ignored)
    make fetch-model                          # .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf
    .venv-ref/bin/python scripts/reference_smollm2.py [--model GGUF] [--out Tests/Fixtures/smollm2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

GENERATOR_NAME = "scripts/reference_smollm2.py"
DEFAULT_MODEL = ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_OUT = "Tests/Fixtures/smollm2"

TOP_K = 8
VOCAB_SAMPLE_SIZE = 32
VOCAB_SAMPLE_SEED = 23  # issue 23
GREEDY_TOKENS = 64
MAX_PROMPT_TOKENS = 256
END_OF_TURN = "<|im_end|>"

JUDGE_SYSTEM = ("You are a strict, fair judge of answers written by AI assistants. "
                "Explain your reasoning briefly, then give a verdict.")

# Judge-like prompts: a query with one or two responses, asking for criteria or an evaluation.
# Lengths vary from a few dozen tokens to just under MAX_PROMPT_TOKENS (the default system prompt
# of the template, when no system message is given, is part of the count).
PROMPTS: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "List three criteria for judging an answer to: What is the capital of France?"}],
    [{"role": "user", "content": "Is this answer correct? Question: 2 + 2 = ? Answer: 5"}],
    [{"role": "system", "content": JUDGE_SYSTEM},
     {"role": "user", "content": "Query: Name a primary colour.\nResponse A: Red.\nResponse B: Green is a primary "
      "colour of light, so it counts.\nWhich response is better, A or B?"}],
    [{"role": "user", "content": "Write the criteria a grader should use to evaluate a short poem about the sea. "
      "Give each criterion a name and one sentence."}],
    [{"role": "user", "content": "Query: How do I reverse a list in Python?\n\nResponse: Use `my_list.reverse()` to "
      "reverse it in place, or `my_list[::-1]` to get a reversed copy.\n\nRate the response from 1 to 10 and "
      "explain the score."}],
    [{"role": "system", "content": JUDGE_SYSTEM},
     {"role": "user", "content": "Query: Why is the sky blue?\n\nResponse A: Because it reflects the ocean.\n\n"
      "Response B: Sunlight is scattered by the molecules of the air, and short (blue) wavelengths are scattered "
      "much more than long (red) ones, so blue light reaches us from every direction of the sky.\n\n"
      "First list the criteria you will use, then evaluate both responses against them, then answer "
      "with A or B."}],
    [{"role": "user", "content": "You are grading math homework. Problem: A train travels 120 km in 1.5 hours. "
      "What is its average speed?\nStudent answer: 120 / 1.5 = 80 km/h.\nIs the student right? Answer yes or no, "
      "then justify."}],
    [{"role": "user", "content": "Criteria?"}],
    [{"role": "system", "content": "You evaluate customer-support replies for politeness, accuracy and "
      "helpfulness."},
     {"role": "user", "content": "Customer: My order #4417 arrived broken. I want a refund.\n\nReply: Sorry to hear "
      "that! I have issued a full refund to your original payment method; it should appear within 5 business "
      "days. You do not need to return the broken item.\n\nEvaluate the reply on each of the three criteria and "
      "give an overall score out of 10."}],
    [{"role": "user", "content": "Query: Translate 'good morning' into Spanish.\nResponse A: Buenos días.\n"
      "Response B: Buenas noches.\nWhich is correct?"}],
    [{"role": "user", "content": "Here is a function:\n\n```python\ndef mean(xs):\n    return sum(xs) / len(xs)\n```\n\n"
      "A reviewer says: 'This crashes on an empty list.' Another says: 'This is fine.' Which reviewer is right, "
      "and what criteria should a code review of this function consider?"}],
    [{"role": "system", "content": JUDGE_SYSTEM},
     {"role": "user", "content": "Query: Summarise the plot of Romeo and Juliet in one sentence.\n\n"
      "Response A: Two young lovers from feuding families in Verona secretly marry, and a chain of "
      "misunderstandings ends in both of their deaths, which reconciles the families.\n\n"
      "Response B: Romeo and Juliet is a play by Shakespeare that is very famous and has been adapted many "
      "times into films, ballets and operas, and it is set in Italy.\n\n"
      "Response C: In Verona, Romeo, a Montague, falls in love with Juliet, a Capulet, at a feast; they "
      "marry in secret with the help of Friar Laurence, but after Romeo kills Tybalt in a street fight and is "
      "banished, Juliet fakes her death to escape an arranged marriage, Romeo believes she is really dead and "
      "poisons himself, and Juliet, waking, stabs herself.\n\n"
      "Evaluate: does each response follow the instruction (one sentence, plot only)? Which is best?"}],
    [{"role": "user", "content": "What makes a good answer to a medical question from a layperson? Give five "
      "criteria, most important first."}],
    [{"role": "user", "content": "Query: What is 17 * 23?\nResponse: 391.\nCheck the response step by step and "
      "say whether it is correct."}],
    [{"role": "system", "content": "You are an expert essay grader."},
     {"role": "user", "content": "Prompt: Argue for or against school uniforms in about 100 words.\n\n"
      "Essay: School uniforms should be required. They reduce the pressure on students to wear expensive "
      "brands, which helps families with less money. They also make it easy to spot strangers on school "
      "grounds, improving safety. Critics say uniforms limit self-expression, but students can still express "
      "themselves through their work, their clubs and their friendships. Finally, uniforms save time every "
      "morning. For these reasons, every school should adopt a uniform.\n\n"
      "Essay 2: Uniforms are a bad idea. Children grow quickly, so parents must buy new uniforms every year, "
      "and the official suppliers charge more than ordinary shops. Uniforms also teach students that looking "
      "the same matters more than thinking for themselves. Schools with uniforms do not have better results. "
      "Let students choose their clothes.\n\n"
      "Grade both essays for argument, structure and style, each out of 5, with one sentence per grade, then say "
      "which essay is more convincing."}],
    [{"role": "user", "content": "Response A says the Earth is about 4.5 billion years old. Response B says it is "
      "about 6,000 years old. The question was: How old is the Earth according to scientific evidence? "
      "Which response is accurate?"}],
    [{"role": "user", "content": "Give me a checklist for evaluating whether a recipe is easy to follow."}],
    [{"role": "system", "content": JUDGE_SYSTEM},
     {"role": "user", "content": "Query: Write a haiku about autumn.\n\nResponse A:\nCrisp leaves drift and fall\n"
      "golden light on quiet paths\nthe year exhales slow\n\nResponse B:\nAutumn is a season that comes after "
      "summer and before winter, when leaves change colour.\n\nWhich response is a haiku? Explain with the "
      "5-7-5 rule."}],
    [{"role": "user", "content": "Query: Explain recursion to a ten-year-old.\n\nResponse: Recursion is when a "
      "function calls itself. For example, to count down from 5, you say 5 and then count down from 4, and so "
      "on, until you reach 0 and stop.\n\nIs this a good explanation for a child? What criteria did you use?"}],
    [{"role": "user", "content": "Two assistants answered 'How many legs does a spider have?'. A: Eight. B: Six. "
      "Pick the better one and say why in one line."}],
]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def chat_ids(tokenizer, messages) -> list[int]:
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    # transformers 5 returns a BatchEncoding here, 4.x a plain list.
    ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
    return [int(i) for i in ids]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"the GGUF file (default {DEFAULT_MODEL})")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    args = parser.parse_args()

    model_path = Path(args.model)
    if not model_path.is_file():
        sys.exit(f"reference_smollm2: {model_path} does not exist (run `make fetch-model` first)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    tokenizer = AutoTokenizer.from_pretrained(str(model_path.parent), gguf_file=model_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(model_path.parent), gguf_file=model_path.name,
                                                 dtype=torch.float32, attn_implementation="eager")
    model.eval()
    vocab = model.config.vocab_size
    end_of_turn = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    assert isinstance(end_of_turn, int) and end_of_turn >= 0, f"{END_OF_TURN} is not a token"
    assert model.lm_head.weight.dtype == torch.float32

    vocab_sample = sorted(int(i) for i in
                          np.random.default_rng(VOCAB_SAMPLE_SEED).choice(vocab, VOCAB_SAMPLE_SIZE, replace=False))
    sample_index = torch.tensor(vocab_sample)

    # No end-of-sequence token anywhere (generate merges the model's own generation config into
    # the one passed): it runs all GREEDY_TOKENS steps and masks no token.
    model.generation_config.eos_token_id = None
    greedy = GenerationConfig(max_new_tokens=GREEDY_TOKENS, do_sample=False, eos_token_id=None,
                              pad_token_id=model.config.eos_token_id, bos_token_id=None,
                              return_dict_in_generate=True, output_logits=True)

    float_rows: list[np.ndarray] = []
    id_rows: list[np.ndarray] = []
    prompts_index = []
    row_offset = 0
    for number, messages in enumerate(PROMPTS):
        ids = chat_ids(tokenizer, messages)
        if len(ids) > MAX_PROMPT_TOKENS:
            sys.exit(f"reference_smollm2: prompt {number} has {len(ids)} tokens, more than {MAX_PROMPT_TOKENS}")
        input_ids = torch.tensor([ids])
        with torch.no_grad():
            logits = model(input_ids).logits[0].to(torch.float32)  # [positions, vocab]
            top = torch.topk(logits, TOP_K, dim=-1)
            max_abs = logits.abs().max(dim=-1).values
            rows = torch.cat([max_abs[:, None], top.values, logits[:, sample_index]], dim=1)
            generated = model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                       generation_config=greedy)
        tokens = [int(t) for t in generated.sequences[0, len(ids):]]
        if len(tokens) != GREEDY_TOKENS:
            sys.exit(f"reference_smollm2: prompt {number}: generate returned {len(tokens)} tokens, "
                     f"expected {GREEDY_TOKENS}")
        step_logits = torch.stack([step[0] for step in generated.logits])  # [steps, vocab]
        if [int(t) for t in step_logits.argmax(dim=-1)] != tokens:
            sys.exit(f"reference_smollm2: prompt {number}: generate's tokens are not the argmax of its logits")
        if tokens[0] != int(top.indices[-1, 0]):
            sys.exit(f"reference_smollm2: prompt {number}: the first greedy token {tokens[0]} is not the argmax "
                     f"{int(top.indices[-1, 0])} of the prompt forward at the last position")
        top2 = torch.topk(step_logits, 2, dim=-1).values
        margins = (top2[:, 0] - top2[:, 1]).tolist()
        first_end = next((i for i, t in enumerate(tokens) if t == end_of_turn), None)

        float_rows.append(rows.numpy().astype("<f4"))
        id_rows.append(top.indices.numpy().astype("<i4"))
        prompts_index.append({
            "messages": messages,
            "tokens": ids,
            "row_offset": row_offset,
            "greedy_tokens": tokens,
            "greedy_text": tokenizer.decode(tokens),
            "greedy_first_end_of_turn": first_end,
            "greedy_margins": [round(m, 6) for m in margins],
        })
        row_offset += len(ids)
        print(f"prompt {number:2d}: {len(ids):3d} tokens, max|logit| {float(max_abs.max()):.3f}, "
              f"greedy min margin {min(margins):.5f}, end of turn at {first_end}", flush=True)

    floats = np.concatenate(float_rows)
    top_ids = np.concatenate(id_rows)
    (out / "logits.f32").write_bytes(floats.tobytes())
    (out / "top_ids.i32").write_bytes(top_ids.tobytes())
    index = {
        "generator": GENERATOR_NAME,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "numpy": np.__version__},
        "model": {"file": model_path.name, "sha256": sha256_of(model_path), "vocab_size": vocab,
                  "end_of_turn": end_of_turn},
        "row_layout": {"floats_per_row": int(floats.shape[1]), "ids_per_row": TOP_K,
                       "floats": "max|logit|, top-8 logits (descending), logits at vocab_sample",
                       "ids": "top-8 ids (descending logit)"},
        "top_k": TOP_K,
        "vocab_sample_seed": VOCAB_SAMPLE_SEED,
        "vocab_sample": vocab_sample,
        "greedy_tokens": GREEDY_TOKENS,
        "rows": int(floats.shape[0]),
        "prompts": prompts_index,
    }
    (out / "reference.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out}/reference.json, logits.f32 ({floats.nbytes} bytes), top_ids.i32 ({top_ids.nbytes} bytes); "
          f"{len(PROMPTS)} prompts, {floats.shape[0]} positions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
