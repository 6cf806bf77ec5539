#!/usr/bin/env python3
"""Reference fixtures for cerm's Swift transformer engine (Sources/Engine).

Builds tiny Llama / Qwen2 / Qwen3 models with Hugging Face transformers, runs them in float64 on
the CPU and writes, per model, one HDF5 file with the weights, a padded batch, logits, per-token
log-probs, entropies, a weighted log-prob loss, the gradient of that loss for every parameter,
and a greedy generation trace. The file layout is the contract documented in
Tests/EngineTests/Fixtures/README.md.

Run by hand (never in CI), from the repository root:

    python3 -m venv .venv-fixtures
    .venv-fixtures/bin/pip install torch transformers h5py numpy
    .venv-fixtures/bin/python scripts/make_engine_fixtures.py [--out Tests/EngineTests/Fixtures]

Every run is deterministic: all randomness comes from torch.Generator objects with fixed seeds.

Besides Hugging Face, the script carries its own plain-torch float64 implementation of the
architecture (`independent_forward`), written from the conventions the README states (RoPE
layout, RMSNorm, GQA head mapping, QK-norm, biases, tied embeddings). The fixtures are only
written if that implementation agrees with Hugging Face on logits and on every gradient, so the
README's description of the conventions is checked, not just claimed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
import transformers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

GENERATOR_NAME = "scripts/make_engine_fixtures.py"

BATCH = 3
SEQ_LEN = 7
ROW_LENGTHS = [7, 5, 3]
PAD_TOKEN = 0  # written into padded slots; never attended to by valid positions
IGNORE = -100
PROMPT_LEN = 5
GEN_STEPS = 8

WEIGHT_STD = 0.2
NORM_WEIGHT_JITTER = 0.1
BIAS_STD = 0.1

# The engine computes in float32; a greedy step whose top-2 logits are closer than this could flip
# under float32 rounding, so such prompts are rejected in favour of the next prompt seed.
MIN_GREEDY_MARGIN = 1e-2


@dataclass(frozen=True)
class Spec:
    family: str
    file_name: str
    seed: int
    hidden_size: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn_size: int
    vocab_size: int
    max_seq_len: int
    rope_theta: float
    rms_norm_eps: float
    qk_norm: bool
    qkv_bias: bool
    tie_embeddings: bool

    def config_json(self) -> str:
        return json.dumps(
            {
                "family": self.family,
                "hidden_size": self.hidden_size,
                "layers": self.layers,
                "heads": self.heads,
                "kv_heads": self.kv_heads,
                "head_dim": self.head_dim,
                "ffn_size": self.ffn_size,
                "vocab_size": self.vocab_size,
                "max_seq_len": self.max_seq_len,
                "rope_theta": self.rope_theta,
                "rms_norm_eps": self.rms_norm_eps,
                "qk_norm": self.qk_norm,
                "qkv_bias": self.qkv_bias,
                "tie_embeddings": self.tie_embeddings,
            },
            sort_keys=True,
        )


SPECS = [
    Spec("llama", "llama_tiny.h5", seed=1001, hidden_size=32, layers=2, heads=4, kv_heads=2,
         head_dim=8, ffn_size=48, vocab_size=264, max_seq_len=64, rope_theta=10000.0,
         rms_norm_eps=1e-5, qk_norm=False, qkv_bias=False, tie_embeddings=False),
    Spec("qwen2", "qwen2_tiny.h5", seed=2002, hidden_size=32, layers=2, heads=4, kv_heads=2,
         head_dim=8, ffn_size=48, vocab_size=264, max_seq_len=64, rope_theta=1000000.0,
         rms_norm_eps=1e-6, qk_norm=False, qkv_bias=True, tie_embeddings=False),
    Spec("qwen3", "qwen3_tiny.h5", seed=3003, hidden_size=32, layers=2, heads=4, kv_heads=2,
         head_dim=8, ffn_size=48, vocab_size=264, max_seq_len=64, rope_theta=1000000.0,
         rms_norm_eps=1e-6, qk_norm=True, qkv_bias=False, tie_embeddings=True),
]


def build_hf_model(spec: Spec) -> torch.nn.Module:
    common = dict(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.ffn_size,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        max_position_embeddings=spec.max_seq_len,
        rope_theta=spec.rope_theta,
        rms_norm_eps=spec.rms_norm_eps,
        tie_word_embeddings=spec.tie_embeddings,
        hidden_act="silu",
        attention_dropout=0.0,
        rope_scaling=None,
        # No pad token: with one, nn.Embedding(padding_idx=...) would zero that row's gradient,
        # which the engine does not do. No bos/eos: generation must run the full GEN_STEPS.
        pad_token_id=None,
        bos_token_id=None,
        eos_token_id=None,
        use_cache=True,
    )
    if spec.family == "llama":
        config = LlamaConfig(head_dim=spec.head_dim, attention_bias=False, mlp_bias=False, **common)
        cls = LlamaForCausalLM
    elif spec.family == "qwen2":
        config = Qwen2Config(use_sliding_window=False, **common)
        cls = Qwen2ForCausalLM
    elif spec.family == "qwen3":
        config = Qwen3Config(head_dim=spec.head_dim, attention_bias=False, use_sliding_window=False,
                             **common)
        cls = Qwen3ForCausalLM
    else:
        raise ValueError(f"unknown family {spec.family}")
    config._attn_implementation = "eager"
    model = cls(config)
    model.config._attn_implementation = "eager"
    model.eval()
    if model.generation_config is not None:
        model.generation_config.eos_token_id = None
        model.generation_config.bos_token_id = None
        model.generation_config.pad_token_id = None
    return model


def is_norm_weight(name: str) -> bool:
    return name.endswith("norm.weight") or name.endswith("layernorm.weight")


def initialise(model: torch.nn.Module, seed: int) -> None:
    """Weights std 0.2, norm weights 1 + 0.1·randn, biases 0.1·randn, drawn in float32 so the
    float64 run uses exactly the values stored (float32 → float64 is exact)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen, dtype=torch.float32)
            if is_norm_weight(name):
                value = 1.0 + NORM_WEIGHT_JITTER * noise
            elif name.endswith(".bias"):
                value = BIAS_STD * noise
            else:
                value = WEIGHT_STD * noise
            param.copy_(value)


def make_batch(spec: Spec, seed: int):
    gen = torch.Generator().manual_seed(seed + 17)
    input_ids = torch.randint(0, spec.vocab_size, (BATCH, SEQ_LEN), generator=gen, dtype=torch.int64)
    attention_mask = torch.zeros(BATCH, SEQ_LEN, dtype=torch.int64)
    targets = torch.full((BATCH, SEQ_LEN), IGNORE, dtype=torch.int64)
    for b, length in enumerate(ROW_LENGTHS):
        attention_mask[b, :length] = 1
        input_ids[b, length:] = PAD_TOKEN
        targets[b, : length - 1] = input_ids[b, 1:length]
    raw = torch.rand(BATCH, SEQ_LEN, generator=gen, dtype=torch.float32) * 2 - 1
    loss_weights = torch.where(targets != IGNORE, raw, torch.zeros_like(raw))
    position_ids = torch.arange(SEQ_LEN, dtype=torch.int64).unsqueeze(0).expand(BATCH, SEQ_LEN)
    return input_ids, attention_mask, targets, loss_weights, position_ids.contiguous()


def token_statistics(logits: torch.Tensor, targets: torch.Tensor, attention_mask: torch.Tensor):
    logp = torch.log_softmax(logits, dim=-1)
    valid_target = targets != IGNORE
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    logprobs = torch.where(valid_target, picked, torch.zeros_like(picked))
    ent = -(logp.exp() * logp).sum(-1)
    entropy = torch.where(attention_mask.bool(), ent, torch.zeros_like(ent))
    return logprobs, entropy


# ---------------------------------------------------------------------------------------------
# Independent implementation (plain torch ops, float64) of the conventions in the README.
# ---------------------------------------------------------------------------------------------

def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rope_tables(spec: Spec, positions: torch.Tensor):
    half = spec.head_dim // 2
    inv_freq = spec.rope_theta ** (-(2.0 * torch.arange(half, dtype=torch.float64)) / spec.head_dim)
    angles = positions.to(torch.float64).unsqueeze(-1) * inv_freq  # [B, T, head_dim/2]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, heads, T, head_dim]; rotates the pair (i, i + head_dim/2) by position·inv_freq[i]."""
    half = x.shape[-1] // 2
    first, second = x[..., :half], x[..., half:]
    c, s = cos.unsqueeze(1), sin.unsqueeze(1)
    return torch.cat([first * c - second * s, second * c + first * s], dim=-1)


def independent_forward(spec: Spec, w: dict[str, torch.Tensor], input_ids, attention_mask,
                        position_ids, collect_residuals: bool = False):
    batch, seq = input_ids.shape
    x = w["model.embed_tokens.weight"][input_ids]
    cos, sin = rope_tables(spec, position_ids)
    causal = torch.tril(torch.ones(seq, seq, dtype=torch.bool))
    allowed = causal.unsqueeze(0) & attention_mask.bool().unsqueeze(1)  # [B, Tq, Tk]
    group = spec.heads // spec.kv_heads
    kv_of_head = torch.arange(spec.heads) // group  # query head h reads kv head h // group
    residuals = [x]
    for layer in range(spec.layers):
        p = f"model.layers.{layer}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], spec.rms_norm_eps)

        def proj(name):
            out = h @ w[p + f"self_attn.{name}.weight"].T
            if spec.qkv_bias:
                out = out + w[p + f"self_attn.{name}.bias"]
            return out

        q = proj("q_proj").view(batch, seq, spec.heads, spec.head_dim)
        k = proj("k_proj").view(batch, seq, spec.kv_heads, spec.head_dim)
        v = proj("v_proj").view(batch, seq, spec.kv_heads, spec.head_dim)
        if spec.qk_norm:  # per head, over head_dim, before RoPE
            q = rms_norm(q, w[p + "self_attn.q_norm.weight"], spec.rms_norm_eps)
            k = rms_norm(k, w[p + "self_attn.k_norm.weight"], spec.rms_norm_eps)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, heads, T, head_dim]
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k, v = k[:, kv_of_head], v[:, kv_of_head]
        scores = q @ k.transpose(-1, -2) / math.sqrt(spec.head_dim)
        scores = scores.masked_fill(~allowed.unsqueeze(1), float("-inf"))
        attn = torch.softmax(scores, dim=-1) @ v
        attn = attn.transpose(1, 2).reshape(batch, seq, spec.heads * spec.head_dim)
        x = x + attn @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], spec.rms_norm_eps)
        gate = h @ w[p + "mlp.gate_proj.weight"].T
        up = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
        residuals.append(x)
    x = rms_norm(x, w["model.norm.weight"], spec.rms_norm_eps)
    head = w["model.embed_tokens.weight"] if spec.tie_embeddings else w["lm_head.weight"]
    logits = x @ head.T
    return (logits, torch.stack(residuals)) if collect_residuals else logits


# ---------------------------------------------------------------------------------------------


def max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = max(a.abs().max().item(), b.abs().max().item(), 1e-30)
    return (a - b).abs().max().item() / scale


def greedy_trace(model: torch.nn.Module, prompt: torch.Tensor):
    """Greedy decoding by full recomputation (no KV cache): tokens, per-step logits, min margin."""
    sequence = prompt.clone()
    tokens, step_logits, margins = [], [], []
    with torch.no_grad():
        for _ in range(GEN_STEPS):
            ids = sequence.unsqueeze(0)
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                           position_ids=torch.arange(ids.shape[1]).unsqueeze(0)).logits[0, -1]
            top2 = torch.topk(logits, 2).values
            margins.append((top2[0] - top2[1]).item())
            token = int(torch.argmax(logits))
            tokens.append(token)
            step_logits.append(logits.clone())
            sequence = torch.cat([sequence, torch.tensor([token])])
    return torch.tensor(tokens, dtype=torch.int64), torch.stack(step_logits), min(margins)


def hf_generate(model: torch.nn.Module, prompt: torch.Tensor) -> torch.Tensor:
    out = model.generate(input_ids=prompt.unsqueeze(0), attention_mask=torch.ones(1, len(prompt), dtype=torch.int64),
                         do_sample=False, max_new_tokens=GEN_STEPS, min_new_tokens=GEN_STEPS,
                         eos_token_id=None, pad_token_id=PAD_TOKEN, num_beams=1)
    return out[0, len(prompt):]


def check_hf_conventions(spec: Spec, model: torch.nn.Module) -> None:
    """Fails loudly if this transformers version does not build what the README describes."""
    attn = model.model.layers[0].self_attn
    assert attn.q_proj.weight.shape == (spec.heads * spec.head_dim, spec.hidden_size)
    assert attn.k_proj.weight.shape == (spec.kv_heads * spec.head_dim, spec.hidden_size)
    assert (attn.q_proj.bias is not None) == spec.qkv_bias
    assert (attn.k_proj.bias is not None) == spec.qkv_bias
    assert (attn.v_proj.bias is not None) == spec.qkv_bias
    assert attn.o_proj.bias is None
    assert hasattr(attn, "q_norm") == spec.qk_norm
    if spec.qk_norm:
        assert attn.q_norm.weight.shape == (spec.head_dim,)
        assert attn.q_norm.variance_epsilon == spec.rms_norm_eps
        assert attn.k_norm.variance_epsilon == spec.rms_norm_eps
    tied = model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert tied == spec.tie_embeddings, f"tie mismatch: {tied}"
    inv_freq = model.model.rotary_emb.inv_freq.to(torch.float64)
    expected = spec.rope_theta ** (-(2.0 * torch.arange(spec.head_dim // 2, dtype=torch.float64)) / spec.head_dim)
    assert torch.allclose(inv_freq, expected, rtol=1e-6), (inv_freq, expected)
    assert model.model.embed_tokens.padding_idx is None
    assert model.config._attn_implementation == "eager"


def make_fixture(spec: Spec, out_dir: Path) -> dict:
    torch.manual_seed(spec.seed)
    model = build_hf_model(spec)
    initialise(model, spec.seed)
    check_hf_conventions(spec, model)
    weights32 = {name: p.detach().clone() for name, p in model.named_parameters()}

    input_ids, attention_mask, targets, loss_weights, position_ids = make_batch(spec, spec.seed)

    # float32 run: only to report how far a float32 implementation lands from the reference.
    out32 = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
    model.zero_grad()
    lp32, _ = token_statistics(out32, targets, attention_mask)
    (-(loss_weights * lp32).sum()).backward()
    grads32 = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    model.zero_grad()

    model = model.to(torch.float64)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
    logprobs, entropy = token_statistics(logits, targets, attention_mask)
    loss = -(loss_weights.to(torch.float64) * logprobs).sum()
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    assert set(grads) == set(weights32)

    # Independent implementation: logits and gradients must match Hugging Face.
    leaves = {name: t.to(torch.float64).clone().requires_grad_(True) for name, t in weights32.items()}
    ind_logits, residuals = independent_forward(spec, leaves, input_ids, attention_mask, position_ids,
                                                collect_residuals=True)
    ind_lp, ind_ent = token_statistics(ind_logits, targets, attention_mask)
    ind_loss = -(loss_weights.to(torch.float64) * ind_lp).sum()
    ind_loss.backward()
    valid = attention_mask.bool()
    # HF's float64 run still computes RoPE tables and RMSNorm in float32 internally, so agreement
    # is at float32 precision (~1e-7 relative), far tighter than any float32 engine test needs.
    checks = {
        "logits_valid": max_rel_diff(ind_logits[valid], logits[valid]),
        "logits_all": max_rel_diff(ind_logits, logits),
        "entropy": max_rel_diff(ind_ent, entropy),
        "loss": abs(ind_loss.item() - loss.item()) / max(abs(loss.item()), 1e-30),
        "grads": max(max_rel_diff(leaves[n].grad, grads[n]) for n in grads),
    }
    for key, value in checks.items():
        if not value < 1e-5:
            raise SystemExit(f"{spec.family}: independent implementation disagrees with HF on {key}: {value:.3e}")

    f32_logit_err = max_rel_diff(out32.detach().to(torch.float64)[valid], logits.detach()[valid])
    f32_grad_err = max(max_rel_diff(grads32[n].to(torch.float64), grads[n]) for n in grads)

    # Greedy generation reference.
    prompt_gen = torch.Generator().manual_seed(spec.seed + 99)
    for _attempt in range(50):
        prompt = torch.randint(0, spec.vocab_size, (PROMPT_LEN,), generator=prompt_gen, dtype=torch.int64)
        gen_tokens, gen_logits, margin = greedy_trace(model, prompt)
        if margin >= MIN_GREEDY_MARGIN:
            break
    else:
        raise SystemExit(f"{spec.family}: no prompt with greedy margin >= {MIN_GREEDY_MARGIN}")
    with torch.no_grad():
        cached = hf_generate(model, prompt)
    if not torch.equal(cached, gen_tokens):
        raise SystemExit(f"{spec.family}: model.generate {cached.tolist()} != argmax loop {gen_tokens.tolist()}")

    path = out_dir / spec.file_name
    with h5py.File(path, "w") as f:
        f.attrs["config_json"] = spec.config_json()
        f.attrs["torch_version"] = str(torch.__version__)
        f.attrs["transformers_version"] = str(transformers.__version__)
        f.attrs["h5py_version"] = str(h5py.__version__)
        f.attrs["numpy_version"] = str(np.__version__)
        f.attrs["generator"] = GENERATOR_NAME
        f.attrs["hf_class"] = type(model).__name__
        f.attrs["seed"] = spec.seed
        f.attrs["reference_precision"] = "float64 (HF computes RoPE tables and RMSNorm in float32)"
        f.attrs["padded_positions_note"] = ("logits at padded positions are stored but are not part of the "
                                            "contract; compare only positions with attention_mask == 1")
        f.attrs["float32_hf_logits_max_rel_diff"] = f32_logit_err
        f.attrs["float32_hf_grads_max_rel_diff"] = f32_grad_err
        f.attrs["gen_min_top2_margin"] = margin
        f.attrs["loss_float64"] = loss.item()
        wg = f.create_group("weights")
        gg = f.create_group("grads")
        for name in weights32:
            wg.create_dataset(name, data=weights32[name].numpy().astype(np.float32))
            gg.create_dataset(name, data=grads[name].numpy().astype(np.float32))
        f.create_dataset("input_ids", data=input_ids.numpy().astype(np.int64))
        f.create_dataset("attention_mask", data=attention_mask.numpy().astype(np.int64))
        f.create_dataset("targets", data=targets.numpy().astype(np.int64))
        f.create_dataset("loss_weights", data=loss_weights.numpy().astype(np.float32))
        f.create_dataset("logits", data=logits.detach().numpy().astype(np.float32))
        f.create_dataset("logprobs", data=logprobs.detach().numpy().astype(np.float32))
        f.create_dataset("entropy", data=entropy.detach().numpy().astype(np.float32))
        f.create_dataset("loss", data=np.array([loss.item()], dtype=np.float32))
        f.create_dataset("gen_prompt", data=prompt.numpy().astype(np.int64))
        f.create_dataset("gen_tokens", data=gen_tokens.numpy().astype(np.int64))
        f.create_dataset("gen_logits", data=gen_logits.numpy().astype(np.float32))
        dbg = f.create_group("debug")
        dbg.create_dataset("residual", data=residuals.detach().numpy().astype(np.float32))

    return {"path": path, "checks": checks, "f32_logits": f32_logit_err, "f32_grads": f32_grad_err,
            "margin": margin, "loss": loss.item(), "gen": gen_tokens.tolist()}


def verify(path: Path, spec: Spec) -> None:
    """Re-reads the file and checks the contract: names, shapes, dtypes, masks."""
    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["config_json"])
        assert config["family"] == spec.family
        for key in ("torch_version", "transformers_version", "generator"):
            assert isinstance(f.attrs[key], str), key
        names = sorted(f["weights"].keys())
        assert names == sorted(f["grads"].keys())
        assert ("lm_head.weight" in names) == (not spec.tie_embeddings)
        for name in names:
            w, g = f["weights"][name], f["grads"][name]
            assert w.dtype == np.float32 and g.dtype == np.float32 and w.shape == g.shape, name
            assert np.isfinite(g[()]).all() and np.abs(g[()]).max() > 0, f"zero/NaN grad {name}"
        expected = {
            "input_ids": ((BATCH, SEQ_LEN), np.int64),
            "attention_mask": ((BATCH, SEQ_LEN), np.int64),
            "targets": ((BATCH, SEQ_LEN), np.int64),
            "loss_weights": ((BATCH, SEQ_LEN), np.float32),
            "logits": ((BATCH, SEQ_LEN, spec.vocab_size), np.float32),
            "logprobs": ((BATCH, SEQ_LEN), np.float32),
            "entropy": ((BATCH, SEQ_LEN), np.float32),
            "loss": ((1,), np.float32),
            "gen_prompt": ((PROMPT_LEN,), np.int64),
            "gen_tokens": ((GEN_STEPS,), np.int64),
            "gen_logits": ((GEN_STEPS, spec.vocab_size), np.float32),
            "debug/residual": ((spec.layers + 1, BATCH, SEQ_LEN, spec.hidden_size), np.float32),
        }
        for name, (shape, dtype) in expected.items():
            ds = f[name]
            assert ds.shape == shape and ds.dtype == dtype, (name, ds.shape, ds.dtype)
        targets, weights = f["targets"][()], f["loss_weights"][()]
        assert (weights[targets == IGNORE] == 0).all()
        assert np.allclose(-(weights * f["logprobs"][()]).sum(), f["loss"][0], rtol=1e-5)
        assert (f["gen_logits"][()].argmax(-1) == f["gen_tokens"][()]).all()
        print(f"  {path.name}: {path.stat().st_size} bytes, {len(names)} weight tensors, "
              f"{sum(f['weights'][n].size for n in names)} parameters")
        for name in names:
            print(f"    {name:48s} {f['weights'][name].shape}")
        for name in expected:
            print(f"    {name:48s} {f[name].shape} {f[name].dtype}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("Tests/EngineTests/Fixtures"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, h5py {h5py.__version__}, "
          f"numpy {np.__version__}, python {sys.version.split()[0]}")
    for spec in SPECS:
        result = make_fixture(spec, args.out)
        print(f"{spec.family}: loss {result['loss']:.6f}, greedy {result['gen']} (min top-2 margin "
              f"{result['margin']:.4f}); independent vs HF max rel diff "
              + ", ".join(f"{k} {v:.2e}" for k, v in result["checks"].items())
              + f"; HF float32 vs float64: logits {result['f32_logits']:.2e}, grads {result['f32_grads']:.2e}")
        verify(result["path"], spec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
