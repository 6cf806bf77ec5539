#!/usr/bin/env python3
"""PyTorch / transformers side of the speed comparison (issue 25; BENCHMARKS.md, "Side by side").

Run by hand in the reference environment (scripts/setup_reference_env.sh), never in CI:

    .venv-ref/bin/python scripts/bench_torch.py --model .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf --threads 1
    .venv-ref/bin/python scripts/bench_torch.py --model ... --threads 2

It measures what `cerm bench engine --config-model --config configs/smollm2-135m.toml` measures
for cerm, on the same architecture, float32, with `torch.set_num_threads` equal:

- training: one forward and one backward pass of `LlamaForCausalLM` over a random batch
  (sum of token log-probabilities as the loss, as cerm's benchmark back-propagates), tokens/s
  at each batch shape (default 8x256, 8x512, 4x1024);
- generation: `generate` with a 256-token prompt and 128 new tokens (greedy, and sampled at
  temperature 1), tokens/s of new tokens at batch 1, 8 and 32.

Weights are random (speed does not depend on them); only the GGUF's config is read, so the model
is the one cerm trains. One warm-up, then the best of `--repeats` timed runs.
"""
import argparse
import time

import torch
from transformers import AutoConfig, LlamaForCausalLM


def model_config(path: str):
    import os
    directory, name = os.path.split(os.path.abspath(path))
    if name.endswith(".gguf"):
        return AutoConfig.from_pretrained(directory, gguf_file=name)
    return AutoConfig.from_pretrained(path)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="GGUF file or Hugging Face directory (its config only)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-shapes", default="8x256,8x512,4x1024")
    parser.add_argument("--generation-batches", default="1,8,32")
    parser.add_argument("--prompt", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-generation", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = model_config(args.model)
    model = LlamaForCausalLM(config).float()
    print(f"# torch {torch.__version__}, threads {torch.get_num_threads()}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters "
          f"(hidden {config.hidden_size}, layers {config.num_hidden_layers}, vocab {config.vocab_size})")

    model.train()
    for shape in args.train_shapes.split(","):
        batch, length = (int(x) for x in shape.split("x"))
        ids = torch.randint(0, config.vocab_size, (batch, length + 1))
        inputs, targets = ids[:, :-1], ids[:, 1:]

        def step() -> None:
            model.zero_grad(set_to_none=True)
            logits = model(input_ids=inputs).logits
            logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            (-logprobs.sum() / logprobs.numel()).backward()

        seconds = timed(step, args.repeats)
        print(f"train {batch}x{length}: {seconds:.2f} s per forward+backward, {batch * length / seconds:.0f} tokens/s")

    if args.skip_generation:
        return
    model.eval()
    for batch in (int(b) for b in args.generation_batches.split(",")):
        prompt = torch.randint(0, config.vocab_size, (batch, args.prompt))
        for sampled in (False, True):
            def generate() -> None:
                with torch.no_grad():
                    model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=args.new_tokens,
                                   min_new_tokens=args.new_tokens, do_sample=sampled, temperature=1.0 if sampled else None,
                                   top_p=None, top_k=None, pad_token_id=0)

            seconds = timed(generate, 1)
            mode = "sampled" if sampled else "greedy"
            print(f"generate batch {batch} {mode}: {seconds:.2f} s, {batch * args.new_tokens / seconds:.1f} new tokens/s")


if __name__ == "__main__":
    main()
