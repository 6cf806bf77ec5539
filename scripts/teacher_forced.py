#!/usr/bin/env python3
"""Teacher-forced check of a cerm model on one SFT trace, with an independent numpy forward.

    python3 scripts/teacher_forced.py MODEL.h5 TRACES.jsonl LINE

MODEL.h5 is a weights file (`cerm sft` output) or a checkpoint (its `model/` group is read);
TRACES.jsonl is an SFT trace file (`cerm data sft-traces`, docs/DATA.md); LINE is 0-based.
Prints the criteria and evaluation targets of the trace in the compact format with every token
the model would not predict greedily marked `[target|predicted]`, and the mean NLL of each turn.
It answers "is this skill learned?" without generation: a wrong score on a *training* trace
means the model never fitted it, not that it fails to generalise. Needs numpy and h5py only;
the forward is written from the Llama/Qwen equations, not from the engine, so agreement with
`cerm eval --show` is also a check of the engine.
"""
import json
import sys

import h5py
import numpy as np

BOS, EOS, USER, ASSISTANT = 257, 258, 259, 260


def load(path):
    with h5py.File(path, "r") as f:
        # Weights files keep the model config in a root attribute, checkpoints in /meta
        # (docs/CHECKPOINT.md); both use the same keys.
        if "model_config_json" in f.attrs:
            config = json.loads(f.attrs["model_config_json"])
        else:
            config = json.loads(bytes(f["meta/model_config_json"][()]).decode("utf-8"))
        group = f["model"]
        weights = {name: group[name][()].astype(np.float64) for name in group}
    return config, weights


def rms_norm(x, weight, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * weight


def rope(x, theta):
    """Rotate-half RoPE (HF convention) over positions 0..T-1; x is [T, heads, head_dim]."""
    positions, _, dim = x.shape
    inverse = theta ** (-np.arange(0, dim, 2) / dim)
    angles = np.arange(positions)[:, None] * inverse[None, :]
    angles = np.concatenate([angles, angles], -1)[:, None, :]
    rotated = np.concatenate([-x[..., dim // 2:], x[..., : dim // 2]], -1)
    return x * np.cos(angles) + rotated * np.sin(angles)


def forward(config, w, tokens):
    """Logits [T, vocab] of a causal decoder (llama / qwen2 / qwen3 families)."""
    eps, theta = config["rms_norm_eps"], config["rope_theta"]
    heads, kv_heads = config["heads"], config["kv_heads"]
    x = w["model.embed_tokens.weight"][tokens]
    length = len(tokens)
    mask = np.triu(np.full((length, length), -np.inf), 1)
    for layer in range(config["layers"]):
        p = f"model.layers.{layer}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        proj = {}
        for name, count in (("q", heads), ("k", kv_heads), ("v", kv_heads)):
            y = h @ w[p + f"self_attn.{name}_proj.weight"].T
            if config.get("qkv_bias"):
                y = y + w[p + f"self_attn.{name}_proj.bias"]
            proj[name] = y.reshape(length, count, -1)
        q, k, v = proj["q"], proj["k"], proj["v"]
        if config.get("qk_norm"):
            q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps)
            k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
        q, k = rope(q, theta), rope(k, theta)
        out = np.zeros_like(q)
        group = heads // kv_heads
        for head in range(heads):
            scores = q[:, head] @ k[:, head // group].T / np.sqrt(q.shape[-1]) + mask
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            out[:, head] = (scores / scores.sum(-1, keepdims=True)) @ v[:, head // group]
        x = x + out.reshape(length, -1) @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate = h @ w[p + "mlp.gate_proj.weight"].T
        up = h @ w[p + "mlp.up_proj.weight"].T
        x = x + ((gate / (1 + np.exp(-gate))) * up) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return x @ head.T


def text(s):
    return list(s.encode("utf-8"))


def log_probs(config, weights, tokens):
    """Log-softmax of the logits: [T, vocab]; row t predicts token t + 1."""
    logits = forward(config, weights, np.array(tokens))
    logits = logits - logits.max(-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def evaluation_sequence(trace, evaluation=None):
    """The evaluation turn's whole sequence in the compact format (docs/FORMATS.md): the criteria
    turn, then the evaluation prompt and `evaluation` (default: the trace's) with ⟨eos⟩. Returns
    the tokens and the ranges (start, end) of the criteria output and the evaluation output."""
    criteria_prompt = [BOS, USER] + text(f"Q: {trace['query']}\nCriteria?") + [ASSISTANT]
    criteria = text(trace["criteria"]) + [EOS]
    evaluation_prompt = criteria_prompt + criteria + [USER] + text(f"R: {trace['response']}\nEvaluate.") + [ASSISTANT]
    target = text(trace["evaluation"] if evaluation is None else evaluation) + [EOS]
    tokens = evaluation_prompt + target
    return tokens, (len(criteria_prompt), len(criteria_prompt) + len(criteria)), (len(evaluation_prompt), len(tokens))


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    config, weights = load(sys.argv[1])
    with open(sys.argv[2], encoding="utf-8") as f:
        trace = json.loads(f.readlines()[int(sys.argv[3])])
    tokens, criteria_range, evaluation_range = evaluation_sequence(trace)
    logprobs = log_probs(config, weights, tokens)
    predicted = logprobs.argmax(-1)

    def show(start, end):
        count = end - start

        def char(t):
            return chr(t) if t < 256 else f"<{t}>"
        pieces, nll = [], 0.0
        for t in range(start, end):
            target, guess = tokens[t], predicted[t - 1]
            nll -= logprobs[t - 1, target]
            pieces.append(char(target) if guess == target else f"[{char(target)}|{char(guess)}]")
        print("".join(pieces), f"   (mean NLL {nll / count:.3f})")

    print(f"query: {trace['query']}\nresponse: {trace['response']}")
    show(*criteria_range)
    show(*evaluation_range)


if __name__ == "__main__":
    main()
