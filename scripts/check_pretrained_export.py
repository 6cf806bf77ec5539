"""Checks a pretrained model exported by `cerm export` against transformers' own reading of the
model it was imported from (run by hand; needs torch, transformers, tokenizers and gguf):

    cerm import .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf --out /tmp/smol.h5
    cerm export /tmp/smol.h5 --out /tmp/smol-hf
    /work/venv-ref/bin/python scripts/check_pretrained_export.py /tmp/smol-hf \
        --gguf .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf

Prints, for the exported directory:
- corpus lines (Tests/TokenizersTests/Fixtures/corpus.jsonl) whose ids from the exported
  tokenizer.json differ from the reference (`tokenizers.Tokenizer.from_file`,
  `PreTrainedTokenizerFast(tokenizer_file=...)` and `AutoTokenizer.from_pretrained(DIR)`);
  the reference is smollm2-digits.ids (the GGUF's `pre = "smollm"`: Digits then ByteLevel, what
  cerm reads from the GGUF);
- conversations whose `apply_chat_template(..., add_generation_prompt=True)` ids differ from
  the committed transformers reference (chat.jsonl);
- the largest logit difference between `AutoModelForCausalLM.from_pretrained(DIR)` and
  transformers' float32 dequantisation of the GGUF on chat prompts, relative to the largest logit.
Exits with status 1 when any count is non-zero or the logit difference exceeds 1e-3 relative.
"""
import argparse
import json
import os
import sys

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, PreTrainedTokenizerFast

FIXTURES = "Tests/TokenizersTests/Fixtures"

parser = argparse.ArgumentParser()
parser.add_argument("export")
parser.add_argument("--gguf", default=".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf")
parser.add_argument("--reference-ids", default=f"{FIXTURES}/smollm2-digits.ids")
args = parser.parse_args()

with open(f"{FIXTURES}/corpus.jsonl", encoding="utf-8") as f:
    corpus = [json.loads(line) for line in f]
with open(args.reference_ids) as f:
    reference = [[int(x) for x in line.split()] for line in f.read().split("\n")[:-1]]
tokenizer_file = os.path.join(args.export, "tokenizer.json")
raw = Tokenizer.from_file(tokenizer_file)
fast = PreTrainedTokenizerFast(tokenizer_file=tokenizer_file)
auto = AutoTokenizer.from_pretrained(args.export)
failed = False
for name, encode in [("tokenizers.Tokenizer", lambda s: raw.encode(s, add_special_tokens=False).ids),
                     ("PreTrainedTokenizerFast", lambda s: fast(s, add_special_tokens=False)["input_ids"]),
                     ("AutoTokenizer", lambda s: auto(s, add_special_tokens=False)["input_ids"])]:
    differing = sum(encode(text) != ids for text, ids in zip(corpus, reference))
    print(f"{name}: {differing} of {len(corpus)} corpus lines differ from {args.reference_ids}")
    failed |= differing > 0
undecoded = sum(auto.decode(ids) != text for text, ids in zip(corpus, reference))
print(f"AutoTokenizer.decode: {undecoded} of {len(corpus)} corpus lines do not decode to their text")
failed |= undecoded > 0

def chat_ids(messages):
    ids = auto.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    return list(ids)

with open(f"{FIXTURES}/chat.jsonl", encoding="utf-8") as f:
    conversations = [json.loads(line) for line in f]
differing = sum(chat_ids(c["messages"]) != c["smollm2_ids"] for c in conversations)
print(f"apply_chat_template: {differing} of {len(conversations)} conversations differ from chat.jsonl")
failed |= differing > 0
generation = GenerationConfig.from_pretrained(args.export)
print(f"generation_config: bos {generation.bos_token_id}, eos {generation.eos_token_id}, pad {generation.pad_token_id}")

exported = AutoModelForCausalLM.from_pretrained(args.export, dtype=torch.float32).eval()
directory, name = os.path.split(args.gguf)
original = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32).eval()
worst = 0.0
with torch.no_grad():
    for c in conversations[:20]:
        ids = torch.tensor([c["smollm2_ids"][:256]])
        a = exported(ids).logits
        b = original(ids).logits
        worst = max(worst, ((a - b).abs().max() / b.abs().max()).item())
print(f"logits on 20 chat prompts: max |Δ| / max |logit| = {worst:.3g}")
failed |= worst > 1e-3
sys.exit(1 if failed else 0)
