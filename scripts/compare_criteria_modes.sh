#!/usr/bin/env bash
# Unified vs response-conditioned criteria on Best-of-N, N = 2, 4, 8 (issue 24 point 6).
#
# Writes a Best-of-N file per N (`cerm data synth --train 0 --bon-n N`: the held-out queries of
# the synthetic task, each with one correct and N-1 subtly wrong responses; queries without N
# distinct responses get no item), then runs `cerm eval` on each with --criteria unified and
# response-conditioned, greedy (k = 1) and with K sampled criteria sets (criteria at T = 1,
# evaluations greedy), and prints one Markdown table of Best-of-N accuracy ± standard error.
#
# Usage: scripts/compare_criteria_modes.sh WEIGHTS|teacher [CONFIG]
#   WEIGHTS: what `cerm eval --checkpoint` takes; `teacher` evaluates the programmatic teacher
#   (whose criteria ignore the response, so its two modes must agree: a check of the plumbing).
#   CONFIG: the run configuration the weights were trained with (default cluster.toml).
# Env: CERM (binary, default .build/release/cerm), OUT (work dir, default /tmp/cerm-criteria-modes),
#      NS (default "2 4 8"), K (sampled criteria sets, default 4), THREADS (default 2),
#      LIMIT (items per file, default all).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n '2,18p' "$0" >&2; exit 2; }
WEIGHTS=$1
CONFIG=${2:-cluster.toml}
CERM=${CERM:-.build/release/cerm}
OUT=${OUT:-/tmp/cerm-criteria-modes}
NS=${NS:-2 4 8}
K=${K:-4}
THREADS=${THREADS:-2}
[ -x "$CERM" ] || { echo "no $CERM: run 'swift build -c release --product cerm' first" >&2; exit 2; }
if [ "$WEIGHTS" = teacher ]; then judge=(--teacher); else judge=(--checkpoint "$WEIGHTS"); fi
limit=(); [ -n "${LIMIT:-}" ] && limit=(--limit "$LIMIT")
mkdir -p "$OUT"

rows=()
for n in $NS; do
    dir="$OUT/bo$n"
    [ -f "$dir/bo$n.jsonl" ] || "$CERM" data synth --config "$CONFIG" --out "$dir" --train 0 --bon-n "$n" >&2
    row="| $n | $(python3 -c "print(f'{100/$n:.1f}%')")"
    for k in 1 "$K"; do
        for mode in unified response-conditioned; do
            json="$OUT/bo$n-$mode-k$k.json"
            echo "bo$n, $mode, k $k" >&2
            "$CERM" eval "${judge[@]}" --config "$CONFIG" --data "$dir/bo$n.jsonl" --bon '' --criteria "$mode" --k "$k" \
                --threads "$THREADS" "${limit[@]}" --json > "$json"
            row+=" | $(python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))["best_of_n"]
acc, se, n = t["accuracy"], t["standard_error"], t["count"]
if acc is None: print("—")
elif se is None: print("%.1f (n=%d)" % (100 * acc, n))
else: print("%.1f ± %.1f (n=%d)" % (100 * acc, 100 * se, n))
' "$json")"
        done
    done
    rows+=("$row |")
done

echo "| N | chance | unified, greedy | response-conditioned, greedy | unified, k = $K | response-conditioned, k = $K |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "Best-of-N accuracy in % ± one standard error; judge: $WEIGHTS, config: $CONFIG; JSON per cell in $OUT."
