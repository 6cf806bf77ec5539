#!/usr/bin/env python3
"""llama.cpp side of the speed comparison (issue 25; BENCHMARKS.md, "Side by side"): generation only.

Run by hand, never in CI, in a venv of its own: PyPI's llama-cpp-python is an sdist, so pip builds
llama.cpp from source (cmake and ninja come as build dependencies; ~6 min on 2 cores, -march=native):

    python3 -m venv .venv-llama                                    # git-ignored (.venv*)
    CMAKE_BUILD_PARALLEL_LEVEL=2 .venv-llama/bin/pip install llama-cpp-python==0.3.36 numpy
    cerm export Checkpoints/sft/model.h5 --gguf /tmp/llama/smollm2-f32.gguf           # --f16: F16 matrices
    .venv-llama/bin/python scripts/bench_llamacpp.py --model /tmp/llama/smollm2-f32.gguf --threads 1

It measures what `cerm bench worker --batch 1,8,32 --prompt 256 --new-tokens 128 --skip-scoring`
and `scripts/bench_torch.py` measure for generation: each of B sequences gets its own random
prompt (token ids drawn from a generator seeded with the sequence index), then exactly
--new-tokens new tokens (no stop token), greedy (argmax) and sampled (softmax at temperature 1,
numpy, fixed seed). Every batch size, 1 included, runs through llama.cpp's low-level API with B
parallel sequences in one context (n_seq_max = B, a KV cache per sequence of prompt + new tokens
rounded up to 256, as llama.cpp pads it): one llama_decode over all the prompts, then one
llama_decode per step with one token per sequence, logits read with llama_get_logits_ith.
Reported: new tokens of all sequences ÷ wall time, prefill included; prefill = the prompts'
llama_decode and the first token; decode tokens/s = B × (new − 1) ÷ the rest (cerm's definition).
One warm-up, then the best of --repeats timed runs, per batch size and mode. The KV cache is F16
(llama.cpp's default) unless --cache-type f32; flash attention is llama.cpp's default (auto).
"""
import argparse
import ctypes
import sys
import time

import llama_cpp as L
import numpy as np


@L.llama_log_callback
def log_warnings(level, text, _):
    if level in (3, 4):  # GGML_LOG_LEVEL_WARN, GGML_LOG_LEVEL_ERROR
        sys.stderr.write(text.decode(errors="replace"))


def make_batch(tokens: int, seqs, positions, outputs) -> L.llama_batch:
    """A llama_batch of the given per-token sequence ids, positions and logits flags."""
    batch = L.llama_batch_init(tokens, 0, 1)
    batch.n_tokens = tokens
    np.ctypeslib.as_array(batch.pos, (tokens,))[:] = positions
    np.ctypeslib.as_array(batch.n_seq_id, (tokens,))[:] = 1
    np.ctypeslib.as_array(batch.logits, (tokens,))[:] = outputs
    for i, seq in enumerate(seqs):
        batch.seq_id[i][0] = int(seq)
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="GGUF file (e.g. `cerm export --gguf` of a SmolLM2 model)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--prompt", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--ubatch", type=int, default=512, help="llama.cpp's n_ubatch (its default); raised to the batch size")
    parser.add_argument("--cache-type", choices=["f16", "f32"], default="f16", help="KV cache type (llama.cpp's default f16)")
    parser.add_argument("--show-tokens", action="store_true", help="print sequence 0's new tokens (a check: greedy ones agree across batches)")
    args = parser.parse_args()
    P, N = args.prompt, args.new_tokens

    L.llama_log_set(log_warnings, None)
    L.llama_backend_init()
    model = L.llama_model_load_from_file(args.model.encode(), L.llama_model_default_params())
    if not model:
        sys.exit(f"bench_llamacpp: cannot load {args.model}")
    vocab_size = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    desc = ctypes.create_string_buffer(128)
    L.llama_model_desc(model, desc, len(desc))
    print(f"# llama-cpp-python {L.__version__}, threads {args.threads}, {desc.value.decode()}, "
          f"{L.llama_model_n_params(model) / 1e6:.1f}M parameters, vocab {vocab_size}, KV cache {args.cache_type}")
    print(f"# {L.llama_print_system_info().decode().strip()}")

    rows = []
    for B in (int(b) for b in args.batches.split(",")):
        params = L.llama_context_default_params()
        params.n_ctx = B * -(-(P + N) // 256) * 256  # llama.cpp pads each sequence's context to 256 anyway
        params.n_seq_max = B
        params.n_batch = B * P
        params.n_ubatch = max(args.ubatch, B)
        params.n_threads = params.n_threads_batch = args.threads
        params.type_k = params.type_v = L.GGML_TYPE_F16 if args.cache_type == "f16" else L.GGML_TYPE_F32
        params.no_perf = True
        ctx = L.llama_init_from_model(model, params)
        if not ctx:
            sys.exit(f"bench_llamacpp: cannot create a context for batch {B}")
        print(f"# batch {B}: n_ctx {L.llama_n_ctx(ctx)} ({L.llama_n_ctx_seq(ctx)} a sequence), n_seq_max {L.llama_n_seq_max(ctx)}, "
              f"n_batch {L.llama_n_batch(ctx)}, n_ubatch {L.llama_n_ubatch(ctx)}")
        prompts = np.stack([np.random.default_rng(s).integers(0, vocab_size, P) for s in range(B)])
        prefill = make_batch(B * P, np.repeat(np.arange(B), P), np.tile(np.arange(P), B), np.tile(np.arange(P) == P - 1, B))
        np.ctypeslib.as_array(prefill.token, (B * P,))[:] = prompts.ravel()
        step = make_batch(B, range(B), 0, 1)
        step_tokens, step_pos = np.ctypeslib.as_array(step.token, (B,)), np.ctypeslib.as_array(step.pos, (B,))

        def logits(indices) -> np.ndarray:
            return np.stack([np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, int(i)), (vocab_size,)) for i in indices])

        def generate(sampled: bool):
            rng = np.random.default_rng(0)

            def pick(x: np.ndarray) -> np.ndarray:
                if not sampled:
                    return x.argmax(axis=1)
                cdf = np.cumsum(np.exp(x - x.max(axis=1, keepdims=True)), axis=1, dtype=np.float64)
                return (cdf < rng.random((len(x), 1)) * cdf[:, -1:]).sum(axis=1)

            L.llama_memory_clear(L.llama_get_memory(ctx), True)
            start = time.perf_counter()
            if L.llama_decode(ctx, prefill) != 0:
                raise RuntimeError(f"llama_decode failed on the prompts of batch {B}")
            tokens = [pick(logits(np.arange(B) * P + P - 1))]
            first = time.perf_counter()
            for k in range(N - 1):
                step_tokens[:], step_pos[:] = tokens[-1], P + k
                if L.llama_decode(ctx, step) != 0:
                    raise RuntimeError(f"llama_decode failed at step {k} of batch {B}")
                tokens.append(pick(logits(range(B))))
            end = time.perf_counter()
            return end - start, first - start, np.stack(tokens, axis=1)

        for sampled in (False, True):
            generate(sampled)  # warm-up
            seconds, prefill_s, out = min((generate(sampled) for _ in range(args.repeats)), key=lambda run: run[0])
            assert out.shape == (B, N)
            mode = "sampled" if sampled else "greedy"
            rate, decode = B * N / seconds, B * (N - 1) / max(seconds - prefill_s, 1e-9)
            rows.append((B, mode, seconds, rate, prefill_s, decode))
            print(f"generate batch {B} {mode}: {seconds:.2f} s, {rate:.1f} new tokens/s; prefill {prefill_s:.2f} s, "
                  f"decode {decode:.1f} tokens/s ({1000 * (seconds - prefill_s) / max(N - 1, 1):.1f} ms a step)", flush=True)
            if args.show_tokens:
                print(f"#   sequence 0: {out[0].tolist()}")
        L.llama_batch_free(prefill)
        L.llama_batch_free(step)
        L.llama_free(ctx)
    L.llama_model_free(model)

    print(f"\n| batch | mode | seconds | new tokens/s | prefill s | decode tokens/s |\n|---|---|---|---|---|---|")
    for B, mode, seconds, rate, prefill_s, decode in rows:
        print(f"| {B} | {mode} | {seconds:.2f} | {rate:.1f} | {prefill_s:.2f} | {decode:.1f} |")


if __name__ == "__main__":
    main()
