#!/usr/bin/env python3
"""Checks that `cerm export` output loads in Hugging Face transformers and computes the engine's logits.

    python3 scripts/check_hf_export.py [--cerm PATH] [MODEL.h5 ...]

Run by hand (never in CI: it needs torch and transformers), from the repository root:

    python3 -m venv .venv-hf && .venv-hf/bin/pip install torch transformers h5py numpy
    swift build && .venv-hf/bin/python scripts/check_hf_export.py

Without MODEL arguments it checks the three engine fixtures (Tests/EngineTests/Fixtures: tiny
Llama, Qwen2 and Qwen3 models). Each fixture's weights are written as a cerm SFT weights file
(the layout of `ModelWeights.save`, docs/ENGINE_TRAINING.md), exported with `cerm export`, and
loaded with `AutoModelForCausalLM.from_pretrained(DIR)`. The loaded model must be of the
family's class, and on the fixture's batch give the fixture's logits: the float64 transformers
reference that the Swift engine is held to by EngineTests/FixtureTests (2e-5 absolute). Its
greedy continuation of the fixture's prompt must be the fixture's `gen_tokens`, which the
engine reproduces in EngineTests/GenerationFixtureTests. So export and engine compute the same
function of the same weights.

With MODEL arguments (SFT weights files or RL checkpoints, e.g. Checkpoints/sft/model.h5) each
is exported and its transformers logits on a few tokens are compared with the independent
numpy forward of scripts/teacher_forced.py (written from the Llama/Qwen equations).

Exits with status 1 on the first mismatch; prints one line per check.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "Tests" / "EngineTests" / "Fixtures"
FAMILY_CLASS = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}
# Exported float32 weights run in float64 here as in the fixtures: only the version of
# transformers and summation order separate the two (observed ~1e-7).
FIXTURE_TOLERANCE = 1e-5
# Against the numpy forward: both float64 over the same float32 weights; transformers computes
# RoPE angles in float32 (observed ~1e-7 relative).
NUMPY_TOLERANCE = 1e-4
# A few tokens through every special the prompts use: ⟨bos⟩ "Hi!" ⟨eos⟩ ⟨user⟩ and two bytes.
TOKENS = [257, 72, 105, 33, 258, 259, 3, 200]


def fail(message: str) -> None:
    print(f"FAIL {message}")
    sys.exit(1)


def export(cerm: str, model: Path, out: Path) -> None:
    result = subprocess.run([cerm, "export", str(model), "--out", str(out)], capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"cerm export {model}: {result.stderr.strip()}")
    print(f"     {result.stdout.splitlines()[0]}")


def load_export(directory: Path, family: str) -> torch.nn.Module:
    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float64)
    model.eval()
    if type(model).__name__ != FAMILY_CLASS[family]:
        fail(f"{directory}: loaded as {type(model).__name__}, expected {FAMILY_CLASS[family]}")
    return model


def write_sft_weights(fixture: Path, path: Path) -> str:
    """The fixture's weights as a cerm SFT weights file; returns the family."""
    with h5py.File(fixture, "r") as source, h5py.File(path, "w") as target:
        config = source.attrs["config_json"]
        target.attrs["model_config_json"] = config
        target.attrs["tokenizer"] = "byte-level v1"
        # No weights_fnv1a64: ModelWeights.load checks it only when present.
        group = target.create_group("model")
        for name, dataset in source["weights"].items():
            group.create_dataset(name, data=np.asarray(dataset[()], dtype="<f4"))
        return json.loads(config)["family"]


def check_fixture(cerm: str, fixture: Path, work: Path) -> None:
    weights = work / (fixture.stem + ".h5")
    family = write_sft_weights(fixture, weights)
    out = work / (fixture.stem + "-hf")
    export(cerm, weights, out)
    model = load_export(out, family)
    with h5py.File(fixture, "r") as f:
        ids = torch.tensor(f["input_ids"][()])
        mask = torch.tensor(f["attention_mask"][()])
        reference = f["logits"][()].astype(np.float64)
        prompt = f["gen_prompt"][()].tolist()
        expected_tokens = f["gen_tokens"][()].tolist()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits.numpy()
    valid = mask.numpy() == 1  # padded positions are not part of the fixture's contract
    diff = float(np.abs(logits[valid] - reference[valid]).max())
    if diff > FIXTURE_TOLERANCE:
        fail(f"{fixture.name}: exported model's logits differ from the fixture by {diff:.3g} (> {FIXTURE_TOLERANCE})")
    # The fixture's greedy trace was made without EOS; stop only by length here too.
    with torch.no_grad():
        generated = model.generate(torch.tensor([prompt]), max_new_tokens=len(expected_tokens), do_sample=False,
                                   eos_token_id=None, pad_token_id=0)[0, len(prompt):].tolist()
    if generated != expected_tokens:
        fail(f"{fixture.name}: greedy continuation {generated}, fixture (and engine) {expected_tokens}")
    print(f"OK   {fixture.name}: {type(model).__name__} from config.json; logits max |diff| {diff:.2e} vs the "
          f"fixture the engine matches; greedy {len(expected_tokens)} tokens identical")


def check_model(cerm: str, path: Path, work: Path) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    import teacher_forced  # noqa: E402  (numpy forward and loader, weights files and checkpoints)

    config, weights = teacher_forced.load(str(path))
    out = work / (path.stem + "-hf")
    export(cerm, path, out)
    model = load_export(out, config["family"])
    with torch.no_grad():
        logits = model(torch.tensor([TOKENS])).logits[0].numpy()
    reference = teacher_forced.forward(config, weights, np.array(TOKENS))
    diff = float(np.abs(logits - reference).max())
    scale = float(np.abs(reference).max())
    if diff > NUMPY_TOLERANCE * max(1.0, scale):
        fail(f"{path}: exported model's logits differ from the numpy forward by {diff:.3g}")
    print(f"OK   {path}: {type(model).__name__}; logits on {len(TOKENS)} tokens max |diff| {diff:.2e} (max |logit| {scale:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cerm", default=str(ROOT / ".build" / "debug" / "cerm"), help="the cerm binary")
    parser.add_argument("models", nargs="*", type=Path, help="SFT weights files or checkpoints (default: the engine fixtures)")
    args = parser.parse_args()
    if not os.access(args.cerm, os.X_OK):
        fail(f"no cerm binary at {args.cerm} (swift build, or --cerm PATH)")
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory(prefix="cerm-hf-export-") as tmp:
        work = Path(tmp)
        if args.models:
            for path in args.models:
                check_model(args.cerm, path, work)
        else:
            fixtures = [FIXTURES / f"{name}_tiny.h5" for name in ("llama", "qwen2", "qwen3")]
            for fixture in fixtures:
                if not fixture.exists():
                    fail(f"missing fixture {fixture}")
                check_fixture(args.cerm, fixture, work)


if __name__ == "__main__":
    main()
