#!/usr/bin/env bash
# Distributed-runtime benchmarks (BENCHMARKS.md, "Distributed runtime (issue 6)").
#
# Runs `cerm launch` on this machine with small config overrides and summarises each run's
# metrics.jsonl (per-step time split written by the coordinator):
#   A. coordinator overhead: the default cluster.toml config, random init, --steps 5; then the
#      same with a larger rollout (more criteria samples, longer outputs).
#   B. weight distribution time vs model size (hidden 128 / 256 / 512, tiny rollouts).
#   C. rollout throughput (generated tokens/s) with 1 vs 2 workers, 1 BLAS thread each.
#   D. rollout modes: sync vs async vs fixed-lag (lag 1), 2 workers, seconds per step from the
#      metrics' step end times (steps 2..N), and whether repeated fixed-lag runs give one checkpoint.
#   E. the update on the workers (grpo.distributed_update) vs the coordinator's own, 1 and 2
#      workers: update and step seconds, and whether all four runs give one checkpoint.
#
# Usage: scripts/bench_cluster.sh [SECTION...]   (sections: a b c d e; default a b c)
# Env:   CERM (binary, default .build/release/cerm), OUT (work dir, default /tmp/cerm-bench-cluster),
#        PORT (coordinator port, default 5599).
set -euo pipefail
cd "$(dirname "$0")/.."
CERM=${CERM:-.build/release/cerm}
OUT=${OUT:-/tmp/cerm-bench-cluster}
PORT=${PORT:-5599}
SECTIONS=${*:-a b c}
INIT=${INIT:-}   # section D: --init weights (e.g. the default run's SFT model); random init when empty
[ -x "$CERM" ] || { echo "no $CERM: run 'swift build -c release --product cerm' first" >&2; exit 2; }
mkdir -p "$OUT"
[ -f "$OUT/data/train.jsonl" ] || "$CERM" data synth --out "$OUT/data" >/dev/null

# run NAME WORKERS STEPS TOML-OVERRIDES: one `cerm launch`; prints the summary of its metrics.
run() {
    local name=$1 workers=$2 steps=$3 overrides=$4
    local config="$OUT/$name.toml"
    rm -rf "$OUT/Checkpoints/$name"
    # Keys left out take the defaults of cluster.toml (docs/CONFIG); overrides come last per section.
    python3 - "$config" "$name" "$OUT" "$PORT" "$workers" "$overrides" <<'PY'
import sys
path, name, out, port, workers, overrides = sys.argv[1:]
sections = {"run": {"name": f'"{name}"', "checkpoint_dir": f'"{out}/Checkpoints"', "save_every": "1000"},
            "cluster": {"endpoint": f'"tcp://127.0.0.1:{port}"', "workers": workers, "worker_threads": "1"},
            "curation": {"enabled": "false"}, "data": {"train": f'"{out}/data/train.jsonl"'}}
for item in filter(None, overrides.split(";")):
    key, value = item.split("=", 1)
    section, key = key.strip().split(".")
    sections.setdefault(section, {})[key] = value.strip()
with open(path, "w") as f:
    for section, keys in sections.items():
        f.write(f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()))
PY
    local started=$SECONDS
    "$CERM" launch --config "$config" --steps "$steps" ${INIT:+--init "$INIT"} >"$OUT/$name.log" 2>&1 || { echo "run $name failed, see $OUT/$name.log" >&2; tail -5 "$OUT/$name.log" >&2; exit 1; }
    echo "## $name: $workers worker(s), $steps steps, overrides: ${overrides:-none} (wall $((SECONDS - started)) s, load $(cut -d' ' -f1-3 /proc/loadavg))"
    python3 - "$OUT/Checkpoints/$name/metrics.jsonl" "$config" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows = [r for r in rows if "time_step_s" in r]
def col(k, rs=rows): return [r[k] for r in rs]
print("step  step_s  wait_s  update_s  dist_s  ckpt_s  other_s  overhead%  tokens  tok/s")
for r in rows:
    other = r["time_step_s"] - r["time_wait_rollouts_s"] - r["time_update_s"] - r["time_weight_distribution_s"] - r["time_checkpoint_s"]
    over = (r["time_step_s"] - r["time_wait_rollouts_s"] - r["time_update_s"]) / r["time_step_s"] * 100
    print(f'{r["step"]:4d} {r["time_step_s"]:7.3f} {r["time_wait_rollouts_s"]:7.3f} {r["time_update_s"]:9.3f} '
          f'{r["time_weight_distribution_s"]:7.3f} {r["time_checkpoint_s"]:7.3f} {other:8.4f} {over:9.1f}% '
          f'{r["generated_tokens"]:7d} {r["tokens_per_second"]:6.0f}')
# Step 1's weights were fetched before the step opened; later steps measure a full fetch.
later = rows[1:] or rows
total = sum(col("time_step_s", later))
over = total - sum(col("time_wait_rollouts_s", later)) - sum(col("time_update_s", later))
dist = sum(col("time_weight_distribution_s", later)); ckpt = sum(col("time_checkpoint_s", later))
wait = sum(col("time_wait_rollouts_s", later))
print(f"steps 2..{rows[-1]['step']}: coordinator overhead (step - wait - update) {over:.3f} s of {total:.3f} s = {over / total * 100:.1f}% "
      f"(weight distribution {dist:.3f} s, checkpoint {ckpt:.3f} s, rest {over - dist - ckpt:.4f} s); "
      f"median distribution {st.median(col('time_weight_distribution_s', later)):.3f} s; "
      f"rollout {sum(col('generated_tokens', later)) / wait if wait else 0:.0f} tok/s")
PY
}

params() {  # parameter count of a [model] with tied embeddings (vocab 264, qk-norm)
    python3 -c "h,l,heads,kv,f=$1,$2,$3,$4,$5; d=h//heads; print(264*h + h + l*(2*h + h*heads*d + 2*h*kv*d + heads*d*h + 3*h*f + 2*d))"
}

for section in $SECTIONS; do case $section in
a)
    echo "# A. coordinator overhead, default config (random init), 2 workers"
    run a-default 2 5 ""
    run a-larger-rollout 2 5 "rollout.nc=8;rollout.criteria_max_tokens=192"
    ;;
b)
    echo "# B. weight distribution vs model size (tiny rollouts: 2 pairs, nc 2, 8 tokens)"
    for h in 128 256 512; do
        f=$((3 * h)); p=$(params $h 4 4 2 $f)
        echo "model hidden $h, 4 layers, ffn $f: $p parameters = $((p * 4 / 1024)) KiB of float32"
        run b-hidden$h 2 4 "model.hidden_size=$h;model.ffn_size=$f;grpo.pairs_per_batch=2;grpo.mini_batches=1;rollout.nc=2;rollout.criteria_max_tokens=8"
    done
    ;;
c)
    echo "# C. rollout throughput, default config, 1 BLAS thread per worker"
    run c-1worker 1 4 ""
    run c-2workers 2 4 ""
    run c-1worker-large 1 4 "rollout.nc=8;rollout.criteria_max_tokens=192"
    run c-2workers-large 2 4 "rollout.nc=8;rollout.criteria_max_tokens=192"
    ;;
d)
    echo "# D. rollout modes, default config${INIT:+ from $INIT}, 2 workers, 12 steps each"
    for mode in sync async fixed-lag; do
        run "d-$mode" 2 12 "cluster.mode=\"$mode\";cluster.max_staleness=1;run.save_every=12"
        python3 - "$OUT/Checkpoints/d-$mode/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows = [r for r in rows if "time_step_s" in r]
ends = [r["time"] for r in rows]
per = (ends[-1] - ends[0]) / (len(ends) - 1)
print(f"seconds per step (steps 2..{rows[-1]['step']}, from step end times): {per:.3f}; "
      f"versions sampled: {[r['policy_version'] for r in rows]}")
PY
        "$CERM" inspect "$OUT/Checkpoints/d-$mode/step_12.h5" --checksums | md5sum | sed "s/ .*/  (d-$mode: md5 of the step-12 checksums)/"
    done
    ;;
e)
    echo "# E. update on the workers vs on the coordinator, default config${INIT:+ from $INIT}, 12 steps each"
    for where in coordinator workers; do
        distributed=$([ "$where" = workers ] && echo true || echo false)
        for workers in 1 2; do
            name="e-$where-${workers}w"
            run "$name" "$workers" 12 "grpo.distributed_update=$distributed;run.save_every=12"
            python3 - "$OUT/Checkpoints/$name/metrics.jsonl" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows = [r for r in rows if "time_step_s" in r][1:]
ends = [r["time"] for r in rows]
print(f"steps 2..{rows[-1]['step']}: {(ends[-1] - ends[0]) / (len(ends) - 1):.3f} s per step (from step end times), "
      f"median update {st.median(r['time_update_s'] for r in rows):.3f} s, median wait {st.median(r['time_wait_rollouts_s'] for r in rows):.3f} s")
PY
            "$CERM" inspect "$OUT/Checkpoints/$name/step_12.h5" --checksums | grep -v "^file\|^checksum\|config" | md5sum | sed "s/ .*/  ($name: md5 of the step-12 tensor checksums)/"
        done
    done
    ;;
*) echo "unknown section $section (a, b, c, d, e)" >&2; exit 2 ;;
esac; done
