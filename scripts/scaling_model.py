#!/usr/bin/env python3
"""Step time of a cerm run against the number of workers and the coordinator's bandwidth
(docs/SCALING.md): an analytic model fed with measured per-step costs.

Workers are separate machines with one core each; everything between the coordinator and the
workers goes through the coordinator's one link (a star), as in cerm today:

  rollouts   R / N                      worker-seconds of sampling spread over N workers
  weights    N * W / B                  the new policy to every worker, through the link
  update     M * (ceil(S / N) * U / (M * S)       each mini-batch's S shards on min(N, S) workers
                  + S * G / B                     their gradients into the coordinator
                  + S * G / A + T_adam            the sum in shard order, AdamW
                  + L)                            dispatch-to-result latency of a round
             + (M - 1) * N * W / B               intermediate weights for mini-batches 1..M-1

with S = min(N, S_max) gradient shards (grpo.gradient_shards set to the worker count; it fixes
the bits, so a run keeps it), W = G = 4 bytes per parameter.

Usage: scripts/scaling_model.py --rollout-s R --update-s U --params P [--mini-batches M]
           [--adam-s T] [--add-gbps A] [--latency-s L] [--max-shards S] [--workers 1,2,...] [--gbits 1,10]
"""
import argparse
import math


def step_seconds(n, bandwidth, a):
    shards = min(n, a.max_shards)
    w = g = 4 * a.params
    rollouts = a.rollout_s / n + n * w / bandwidth
    per_mini_batch = (math.ceil(shards / n) * a.update_s / (a.mini_batches * shards)
                      + shards * g / bandwidth + shards * g / (a.add_gbps * 1e9) + a.adam_s + a.latency_s)
    update = a.mini_batches * per_mini_batch + (a.mini_batches - 1) * n * w / bandwidth
    return rollouts, update


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rollout-s", type=float, required=True, help="worker-seconds of rollouts per step (1 worker's wait)")
    p.add_argument("--update-s", type=float, required=True, help="core-seconds of forward+backward per step (1 worker's update)")
    p.add_argument("--params", type=float, required=True, help="parameter count")
    p.add_argument("--mini-batches", type=int, default=1)
    p.add_argument("--adam-s", type=float, default=0.0, help="seconds of clip + AdamW per mini-batch on the coordinator")
    p.add_argument("--add-gbps", type=float, default=10.0, help="GB/s of the coordinator's gradient sum (memory bound)")
    p.add_argument("--latency-s", type=float, default=0.0, help="seconds from a mini-batch's tasks going out to its last result, beyond compute")
    p.add_argument("--max-shards", type=int, default=256, help="grpo.gradient_shards upper bound")
    p.add_argument("--workers", default="1,2,4,8,16,32,64")
    p.add_argument("--gbits", default="1,10", help="coordinator link speeds, Gb/s")
    a = p.parse_args()
    links = [float(x) for x in a.gbits.split(",")]
    print("| workers | " + " | ".join(f"{l:g} Gb/s: step s (rollouts + update), link share" for l in links) + " |")
    print("|---|" + "---|" * len(links))
    for n in [int(x) for x in a.workers.split(",")]:
        cells = []
        for l in links:
            bandwidth = l * 1e9 / 8
            rollouts, update = step_seconds(n, bandwidth, a)
            shards = min(n, a.max_shards)
            link = (n * 4 * a.params + a.mini_batches * shards * 4 * a.params + (a.mini_batches - 1) * n * 4 * a.params) / bandwidth
            cells.append(f"{rollouts + update:.1f} ({rollouts:.1f} + {update:.1f}), {link / (rollouts + update) * 100:.0f}%")
        print(f"| {n} | " + " | ".join(cells) + " |")
    print()
    for l in links:
        bandwidth = l * 1e9 / 8
        best = min(range(1, 1025), key=lambda n: sum(step_seconds(n, bandwidth, a)))
        print(f"- {l:g} Gb/s: fastest at {best} workers, {sum(step_seconds(best, bandwidth, a)):.1f} s a step")


if __name__ == "__main__":
    main()
