#!/usr/bin/env python3
"""Writes the fixtures of Tests/ModelFormatsTests/Fixtures (committed; run by hand):

    .venv-ref/bin/python scripts/make_modelformats_fixtures.py

Needs numpy, gguf (gguf-py), torch, transformers and safetensors.

- dequant.gguf: for each ggml type cerm reads, a tensor `q.<TYPE>` of random blocks (random
  bytes with finite f16 scales) and `expected.<TYPE>` (F32), its dequantization by gguf-py's
  `gguf.quants.dequantize`; plus metadata of every GGUF value type, nested arrays included, and
  a custom alignment of 64.
- <family>_tiny/: a tiny randomly initialised model (hidden 8, 2 layers, vocab 32) written by
  transformers' `save_pretrained` (llama float32 and sharded in 3 files, qwen2 bfloat16, qwen3
  float16), and <family>_tiny.gguf: the same float32 weights written with GGUFWriter as
  llama.cpp's converter does (llama Q/K rows permuted for ggml's RoPE; GGUF metadata and
  tokenizer keys), checked to load back in transformers with the same logits (llama and qwen2;
  transformers' qwen3 GGUF mapping ignores attention.key_length, see below).
- reference_logits.json: transformers' float32 logits of `TOKENS` for each model.
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
import gguf
from gguf.quants import dequantize
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config, Qwen3Config

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "Tests", "ModelFormatsTests", "Fixtures")
TOKENS = [1, 5, 17, 3, 30, 9, 22, 2]
T = gguf.GGMLQuantizationType


def random_halves(rng, n, low, high):
    return rng.uniform(low, high, size=n).astype(np.float16).view(np.uint8).reshape(n, 2)


def quant_blocks(rng, qtype, n_blocks):
    """Random bytes of `n_blocks` blocks with the f16 scale fields set to finite values."""
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    if qtype in (T.Q8_0, T.Q4_0):
        blocks[:, 0:2] = random_halves(rng, n_blocks, -2, 2)
    elif qtype in (T.Q4_1, T.Q4_K, T.Q5_K):
        blocks[:, 0:2] = random_halves(rng, n_blocks, -2, 2)   # d
        blocks[:, 2:4] = random_halves(rng, n_blocks, -1, 1)   # m / dmin
    elif qtype == T.Q6_K:
        blocks[:, 208:210] = random_halves(rng, n_blocks, -2, 2)
    return blocks


def write_dequant_fixture(rng):
    path = os.path.join(OUT, "dequant.gguf")
    writer = gguf.GGUFWriter(path, "test")
    writer.add_custom_alignment(64)
    writer.add_uint8("test.uint8", 200)
    writer.add_int8("test.int8", -100)
    writer.add_uint16("test.uint16", 60000)
    writer.add_int16("test.int16", -30000)
    writer.add_uint32("test.uint32", 4000000000)
    writer.add_int32("test.int32", -2000000000)
    writer.add_float32("test.float32", 0.1)
    writer.add_uint64("test.uint64", 2**63 + 5)
    writer.add_int64("test.int64", -(2**62))
    writer.add_float64("test.float64", 0.1)
    writer.add_bool("test.bool", True)
    writer.add_string("test.string", "héllo ✓")
    writer.add_array("test.strings", ["a", "", "ζ"])
    writer.add_array("test.nested", [[1, 2], [3], [-4, 5, 6]])
    rows = 2
    for qtype in (T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q4_K, T.Q5_K, T.Q6_K):
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        per_row = 2 * max(block_size, 32)  # elements per row
        if qtype == T.F32:
            raw = rng.standard_normal((rows, per_row)).astype(np.float32).view(np.uint8)
        elif qtype == T.F16:
            halves = rng.standard_normal(rows * per_row).astype(np.float16)
            halves[:4] = np.array([0.0, -0.0, 6e-8, -3e-5], dtype=np.float16)  # zeros, subnormals
            raw = halves.view(np.uint8).reshape(rows, per_row * 2)
        elif qtype == T.BF16:
            raw = (rng.standard_normal(rows * per_row).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
            raw = raw.view(np.uint8).reshape(rows, per_row * 2)
        else:
            raw = quant_blocks(rng, qtype, rows * per_row // block_size).reshape(rows, per_row // block_size * type_size)
        expected = dequantize(raw, qtype)
        assert expected.shape == (rows, per_row) and expected.dtype == np.float32
        writer.add_tensor(f"q.{qtype.name}", raw, raw_dtype=qtype)
        writer.add_tensor(f"expected.{qtype.name}", expected.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def tiny_config(family):
    common = dict(hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=4, vocab_size=32, max_position_embeddings=64,
                  rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)
    if family == "llama":
        return LlamaConfig(rope_parameters=rope(10000.0), tie_word_embeddings=True, **common)
    if family == "qwen2":
        return Qwen2Config(rope_parameters=rope(100000.0), tie_word_embeddings=False, **common)
    return Qwen3Config(rope_parameters=rope(1000000.0), tie_word_embeddings=False, **common)


def rope(theta):
    return {"rope_type": "default", "rope_theta": theta}


def permute(w, n_head):
    """convert_hf_to_gguf.py LlamaModel.permute (rotate-half rows → ggml's interleaved RoPE rows)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


GGUF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight", "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.q_norm.weight": "attn_q_norm.weight", "self_attn.k_norm.weight": "attn_k_norm.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(name):
    if name in GGUF_NAMES:
        return GGUF_NAMES[name]
    parts = name.split(".")  # model.layers.N.rest
    return f"blk.{parts[2]}." + GGUF_NAMES[".".join(parts[3:])]


def write_gguf(family, config, state, path):
    writer = gguf.GGUFWriter(path, family)
    writer.add_name(f"{family}-tiny")
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    if family == "qwen3":
        writer.add_key_length(config.head_dim)
        writer.add_value_length(config.head_dim)
    else:
        writer.add_rope_dimension_count(config.head_dim)
    writer.add_file_type(0)
    # Tokenizer material as llama.cpp's converter writes it (a toy byte-level vocabulary).
    tokens = ["<unk>", "<s>", "</s>"] + [f"t{i}" for i in range(3, 31)] + ["<|im_end|>"]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([3, 3, 3] + [1] * 28 + [4])
    writer.add_token_merges(["t 1", "t1 0"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(2)
    writer.add_chat_template("{% for message in messages %}{{ message['content'] }}{% endfor %}")
    for name, tensor in state.items():
        w = tensor.detach().to(torch.float32).numpy().copy()
        if family == "llama" and name.endswith("q_proj.weight"):
            w = permute(w, config.num_attention_heads)
        elif family == "llama" and name.endswith("k_proj.weight"):
            w = permute(w, config.num_key_value_heads)
        writer.add_tensor(gguf_name(name), w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def logits_of(model):
    with torch.no_grad():
        return model(torch.tensor([TOKENS])).logits[0].to(torch.float32).numpy()


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(23)
    write_dequant_fixture(rng)

    reference = {"tokens": TOKENS, "logits": {}}
    for family, dtype, shard in (("llama", torch.float32, "2KB"), ("qwen2", torch.bfloat16, None), ("qwen3", torch.float16, None)):
        torch.manual_seed({"llama": 1, "qwen2": 2, "qwen3": 3}[family])
        config = tiny_config(family)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        with torch.no_grad():
            for p in model.parameters():  # norms and biases away from 1 and 0, so mix-ups show
                p.add_(torch.randn_like(p) * 0.3)
        # The directory stores the weights in `dtype`; the reference uses exactly those values.
        model = model.to(dtype).to(torch.float32)
        directory = os.path.join(OUT, f"{family}_tiny")
        shutil.rmtree(directory, ignore_errors=True)
        model.to(dtype).save_pretrained(directory, safe_serialization=True,
                                        **({"max_shard_size": shard} if shard else {}))
        model = model.to(torch.float32)
        logits = logits_of(model)
        reference["logits"][family] = logits.tolist()

        gguf_path = os.path.join(OUT, f"{family}_tiny.gguf")
        state = {k: v for k, v in model.state_dict().items() if not (config.tie_word_embeddings and k == "lm_head.weight")}
        write_gguf(family, config, state, gguf_path)
        # transformers' own GGUF loader (which reverses the permutation) must agree. Its qwen3
        # mapping ignores attention.key_length and keeps Qwen3Config's default head_dim of 128,
        # so it cannot load a tiny qwen3 (llama.cpp reads key_length, and so does cerm).
        if family != "qwen3":
            back = AutoModelForCausalLM.from_pretrained(OUT, gguf_file=f"{family}_tiny.gguf", dtype=torch.float32)
            difference = np.abs(logits_of(back) - logits).max()
            # (float-rounding level: the GGUF holds rms_norm_eps as float32)
            assert difference < 1e-4 * np.abs(logits).max(), f"{family}: transformers' GGUF load differs by {difference}"
            print(f"{family}: GGUF reload in transformers, max |Δlogit| {difference:.2e}", file=sys.stderr)
        print(f"{family}: {dtype}, logits max |x| {np.abs(logits).max():.3f}", file=sys.stderr)

    with open(os.path.join(OUT, "reference_logits.json"), "w") as f:
        json.dump(reference, f)


if __name__ == "__main__":
    main()
