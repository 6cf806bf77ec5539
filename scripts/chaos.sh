#!/usr/bin/env bash
# Chaos suite (issue 27, points 1–3): a small run of real `cerm` processes — one coordinator and
# three workers on loopback (or, in the netns case, each in a network namespace of its own),
# supervised by this script — while a seeded fault schedule fires; then the final checkpoint is
# compared with an undisturbed run of the same config.
#
#   scripts/chaos.sh [--short] [CASE ...]          (make chaos; make test runs --short)
#
# Cases (all of them, in this order, when none is named):
#   worker-kills       20 kill -9 of random workers at random moments; each restarted by the
#                      suite, as a supervisor would, after a random delay
#   coordinator-kills  5 kill -9 of the coordinator, each followed by `cerm coordinator --resume`;
#                      the workers keep running and reconnect
#   freeze             a worker stopped with SIGSTOP for heartbeat_timeout + 1.5 s, then SIGCONT:
#                      declared dead, its tasks re-run elsewhere, its late results dropped
#   disk-full          the checkpoint directory on a small tmpfs, filled up so that a checkpoint
#                      write fails: earlier checkpoints intact, the coordinator fails saying so,
#                      and after space is freed a --resume reaches the same weights
#   all                everything above in one run
#   hello-flood        a hostile peer (scripts/hello_flood.c) floods the coordinator with HELLOs,
#                      a new connection (routing id) each, half with the run's config hash, in
#                      alternate blocks of CHAOS_FLOOD_BLOCK (5) steps; compares the mean step
#                      time of flooded and quiet steps of the same run; CHAOS_FLOOD_RATE=N
#                      HELLOs a second at most (default 0: as fast as the coordinator answers);
#                      CHAOS_FLOOD_WAIT_MS=N: each connection waits N ms (1000) for its answer
#                      before it closes (a short wait: a flooder that hardly waits for answers);
#                      CHAOS_FLOOD_ENDPOINT=tcp://…: flood there instead (a port nobody listens
#                      on measures what the flooder's own CPU costs the run, as a control)
#   netns              real hosts: the coordinator and each worker in its own network namespace
#                      (iproute2), joined by veth pairs to a bridge in a namespace of its own,
#                      CURVE required; one worker's link down for CHAOS_PARTITION_SECONDS (30),
#                      then up, and later the coordinator's; `tc netem` delay and loss on every
#                      link where the kernel has netem. Needs root and `ip netns`: without them the
#                      case says why and is skipped, and the loopback cases run as usual
#   --short            one quick case for `make test`: 2 worker kills and 1 coordinator kill in a
#                      run of 8 steps
#
# Each case checks, against the undisturbed run (run first, same config, same port):
#   - every tensor of the final checkpoint (policy, reference, AdamW moments) and the step,
#     versions, data cursor and RNG state, bit for bit (`cerm inspect --checksums`);
#   - metrics.jsonl: the last line of every step, timing fields and workers_alive removed;
#   - the pairs of every step (`event step_trained`, last line of a step): none lost, none twice;
#   - the fault's own evidence in the coordinator's log.
# and prints a summary table. Exit status 0 when every case passed, 1 otherwise.
#
# Environment: CHAOS_SEED (the schedule's seed; default: from the clock, always printed),
# CERM_BIN (default .build/release/cerm), CHAOS_DIR (work directory; default a new one under
# /tmp, removed at the end unless CHAOS_KEEP=1 or a case failed), CHAOS_STEPS (steps of the run),
# CHAOS_PARTITION_SECONDS (how long the netns case keeps a host's link down; default 30),
# CHAOS_DISTRIBUTED_UPDATE (true: the GRPO update runs on the workers, grpo.distributed_update).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CERM_BIN=${CERM_BIN:-$REPO/.build/release/cerm}
SHORT=0
CASES=()
for argument in "$@"; do
    case $argument in
        --short) SHORT=1 ;;
        worker-kills|coordinator-kills|freeze|disk-full|all|hello-flood|netns) CASES+=("$argument") ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "chaos: unknown argument '$argument' (cases: worker-kills coordinator-kills freeze disk-full all hello-flood netns; or --short)" >&2; exit 2 ;;
    esac
done
if [ "$SHORT" = 1 ]; then
    [ ${#CASES[@]} -eq 0 ] || { echo "chaos: --short takes no case" >&2; exit 2; }
    CASES=(short)
elif [ ${#CASES[@]} -eq 0 ]; then
    CASES=(worker-kills coordinator-kills freeze disk-full all hello-flood netns)
fi
[ -x "$CERM_BIN" ] || { echo "chaos: no cerm binary at $CERM_BIN (swift build -c release --product cerm, or set CERM_BIN)" >&2; exit 2; }
CERM_BIN=$(cd "$(dirname "$CERM_BIN")" && pwd)/$(basename "$CERM_BIN")   # the runs cd into their directories
command -v python3 > /dev/null || { echo "chaos: python3 is needed (the checks parse JSON with it)" >&2; exit 2; }

SEED=${CHAOS_SEED:-$(( $(date +%s%N) % 1000000 ))}
# The model: big enough that a task takes a good part of a second (kills land mid-task) in
# the release build; the short case, run by `make test` with the debug build, uses a smaller one.
if [ "$SHORT" = 1 ]; then
    STEPS=${CHAOS_STEPS:-8}; HIDDEN=${CHAOS_HIDDEN:-32}; LAYERS=${CHAOS_LAYERS:-2}; FFN=${CHAOS_FFN:-64}; TOKENS=${CHAOS_TOKENS:-32}
else
    STEPS=${CHAOS_STEPS:-150}; HIDDEN=${CHAOS_HIDDEN:-128}; LAYERS=${CHAOS_LAYERS:-4}; FFN=${CHAOS_FFN:-384}; TOKENS=${CHAOS_TOKENS:-96}
fi
WORKERS=3
HEARTBEAT_TIMEOUT=2.0
FREEZE_MS=3500          # heartbeat_timeout + 1.5 s
ROOT=${CHAOS_DIR:-$(mktemp -d /tmp/cerm-chaos.XXXXXX)}
mkdir -p "$ROOT"
FAILED=0

echo "chaos: CHAOS_SEED=$SEED (CHAOS_SEED=$SEED scripts/chaos.sh ${*:-} repeats this schedule)"
echo "chaos: binary $CERM_BIN, work directory $ROOT, $STEPS steps, $WORKERS workers, cases: ${CASES[*]}"

# ---------------------------------------------------------------------------------------------
# Processes: every pid this script starts is in STARTED; the trap ends them (and only them),
# continues a stopped one first, and unmounts the tmpfs.
STARTED=()
MOUNTED=""
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do kill -CONT "$pid" 2> /dev/null; kill -KILL "$pid" 2> /dev/null; done
    [ ${#STARTED[@]} -eq 0 ] || wait "${STARTED[@]}" 2> /dev/null
    if [ -n "$MOUNTED" ]; then umount "$MOUNTED" 2> /dev/null || umount -l "$MOUNTED" 2> /dev/null; MOUNTED=""; fi
    ! declare -F netns_teardown > /dev/null || netns_teardown   # defined further down
    if [ "${CHAOS_KEEP:-0}" = 1 ] || [ "$FAILED" != 0 ]; then
        echo "chaos: work directory kept: $ROOT"
    elif [ -z "${CHAOS_DIR:-}" ]; then
        rm -rf "$ROOT"
    fi
}
trap cleanup EXIT
# bash reports every child it reaps after a signal ("line 300: 1234 Killed  ( cd … )"): the
# kills are this script's own, and the fault log lists them.
exec 2> >(grep --line-buffered -v '^[^ ]*: line [0-9]*: *[0-9]* Killed ' >&2)
trap 'echo "chaos: interrupted" >&2; exit 130' INT TERM

now_ms() { local t=${EPOCHREALTIME/./}; echo $(( t / 1000 )); }

# Whether pid runs (a zombie, or a pid that is gone, does not).
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2> /dev/null) || return 1
    stat=${stat##*) }
    [ "${stat:0:1}" != Z ] && [ "${stat:0:1}" != X ]
}

# The seeded schedule: a 64-bit LCG (Knuth's MMIX constants), reseeded per case.
RNG=0
rng_seed() { RNG=$(( $1 * 6364136223846793005 + 1442695040888963407 )); rng_next > /dev/null; }
rng_next() { RNG=$(( RNG * 6364136223846793005 + 1442695040888963407 )); echo $(( (RNG >> 33) & 0x7fffffff )); }
# rnd N: 0..N-1 (result in R; no subshell, so the generator state advances).
rnd() { RNG=$(( RNG * 6364136223846793005 + 1442695040888963407 )); R=$(( ((RNG >> 33) & 0x7fffffff) % $1 )); }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
PORT=$(free_port)

# ---------------------------------------------------------------------------------------------
# The run: the same config text for every case (relative paths, one port), so even the
# checkpoints' stored config agrees. 24 pairs, 4 a step: an epoch every 6 steps.
# The netns case passes its endpoint and its CURVE key lines for [cluster].
write_run() {
    local dir=$1 endpoint=${2:-tcp://127.0.0.1:$PORT} cluster_keys=${3:-}
    mkdir -p "$dir"
    local i
    for i in $(seq 0 23); do
        echo "{\"id\":\"p$i\",\"query\":\"q$i\",\"chosen\":\"good $i\",\"rejected\":\"bad $(( i % 5 ))\"}"
    done > "$dir/pairs.jsonl"
    cat > "$dir/cluster.toml" << EOF
# Written by scripts/chaos.sh: a small random model (its criteria do not parse, so rewards are 0
# and the updates come from the KL term; every sampled token still shapes the weights).
[run]
name = "chaos"
seed = 11
checkpoint_dir = "Checkpoints"
steps = $STEPS
save_every = 1
keep_last = 3
[cluster]
endpoint = "$endpoint"
workers = $WORKERS
pairs_per_task = 1
heartbeat_interval = 0.1
heartbeat_timeout = $HEARTBEAT_TIMEOUT
${cluster_keys}[model]
hidden_size = $HIDDEN
layers = $LAYERS
heads = 4
kv_heads = 2
ffn_size = $FFN
max_seq_len = 192
init_std = 0.5
[rollout]
nc = 4
ne = 2
criteria_max_tokens = $TOKENS
evaluation_max_tokens = 32
[grpo]
pairs_per_batch = 4
mini_batches = 2
learning_rate = 0.01
kl_coef = 0.05
distributed_update = ${CHAOS_DISTRIBUTED_UPDATE:-false}
[curation]
enabled = false
[data]
train = "pairs.jsonl"
EOF
}

# Per case: DIR, the coordinator's pid (CPID), its lives (CLIVES), the workers' pids and
# starts, and the counters of the summary.
DIR=""; CPID=""; CLIVES=0; WPIDS=(); WSTARTS=0
declare -A WDOWN_UNTIL=()   # worker index -> when (ms) the suite restarts it
CDOWN_UNTIL=0               # when (ms) the suite restarts the coordinator; 0: up or not due
FROZEN=""                   # pid of the stopped worker
FINISHED=0

start_coordinator() {
    CLIVES=$(( CLIVES + 1 ))
    local resume=()
    [ "$1" = resume ] && resume=(--resume)
    (cd "$DIR" && exec ${NETNS_HOSTS[c]:+ip netns exec "${NETNS_HOSTS[c]}"} "$CERM_BIN" coordinator --config cluster.toml "${resume[@]}") \
        > "$DIR/coordinator.$CLIVES.log" 2>&1 &
    CPID=$!
    STARTED+=("$CPID")
}

declare -A WLOG_FROM=()     # worker index -> first line of its current life in worker.N.log
start_worker() {
    local index=$1
    WSTARTS=$(( WSTARTS + 1 ))
    WLOG_FROM[$index]=$(( $(cat "$DIR/worker.$index.log" 2> /dev/null | wc -l) + 1 ))
    local config=cluster.toml
    [ -f "$DIR/worker.$index.toml" ] && config=worker.$index.toml
    (cd "$DIR" && exec ${NETNS_HOSTS[w$index]:+ip netns exec "${NETNS_HOSTS[w$index]}"} "$CERM_BIN" worker --connect "$CONNECT" --config "$config" \
        --threads 1 --name "w$index") >> "$DIR/worker.$index.log" 2>&1 &
    WPIDS[$index]=$!
    STARTED+=("$!")
}

coordinator_logs() { cat "$DIR"/coordinator.*.log 2> /dev/null; }
# Steps trained so far, over every life of the coordinator (monotonic).
progress() { coordinator_logs | grep -c 'event step_trained'; }

# ---------------------------------------------------------------------------------------------
# Fault schedule of a case: lines "anchor delay_ms kind target aux" — fire `kind` once `anchor`
# steps have been trained (counted over all lives) and `delay_ms` more have passed since the
# previous fault fired or the anchor was reached, whichever is later. Kill delays are drawn as
# 0–99% of the undisturbed run's mean step time (STEP_MS), so a kill lands anywhere in a step.
make_schedule() {
    local name=$1 worker_kills=0 coordinator_kills=0 freeze=0 disk=0 partitions=0 i
    case $name in
        short) worker_kills=2; coordinator_kills=1 ;;
        worker-kills) worker_kills=20 ;;
        coordinator-kills) coordinator_kills=5 ;;
        freeze) freeze=1 ;;
        disk-full) disk=1 ;;
        all) worker_kills=20; coordinator_kills=5; freeze=1; disk=1 ;;
        netns) partitions=1 ;;
    esac
    rng_seed $(( SEED * 1000003 + ${#name} * 7919 + $(printf '%d' "'${name:0:1}") ))
    local last=$(( STEPS - 2 ))
    {
        for ((i = 0; i < worker_kills; i++)); do
            rnd $(( last )); local anchor=$(( R + 1 ))
            # The short run is over in seconds: its worker kills come first (steps 1–2), its
            # coordinator kill after them (steps 3–4), so that all fire before the end.
            [ "$name" = short ] && { rnd 2; anchor=$(( R + 1 )); }
            rnd 100; local delay=$(( R * STEP_MS / 100 ))
            rnd $WORKERS; local target=$R
            rnd 1300; echo "$anchor $delay worker-kill $target $(( R + 200 ))"
        done
        for ((i = 0; i < coordinator_kills; i++)); do
            # Spread over the run (at least one step saved first), each in its own slice.
            local slice=$(( (last - 2) / coordinator_kills ))
            [ $slice -ge 1 ] || slice=1
            rnd $slice; local anchor=$(( 2 + i * slice + R ))
            [ "$name" = short ] && { rnd 2; anchor=$(( R + 3 )); }
            rnd 100; local delay=$(( R * STEP_MS / 100 ))
            rnd 1500; echo "$anchor $delay coordinator-kill - $(( R + 300 ))"
        done
        if [ $freeze = 1 ]; then
            # In the first half: the run goes on long after the thaw.
            rnd $(( STEPS / 2 - 1 )); local anchor=$(( R + 2 ))
            # Soon after a step's update, while the next step's tasks are out.
            rnd 250; local delay=$(( R + 150 ))
            rnd $WORKERS; echo "$anchor $delay freeze $R $FREEZE_MS"
        fi
        if [ $disk = 1 ]; then
            rnd $(( last - 3 )); echo "$(( R + 3 )) 0 disk-full - 0"
        fi
        if [ $partitions = 1 ]; then
            # A worker's host in the first fifth of the run (the others train on), the
            # coordinator's at the middle (after the first heals: see fire).
            rnd $(( STEPS / 10 + 1 )); local anchor=$(( STEPS / 10 + R + 1 ))
            rnd 100; local delay=$(( R * STEP_MS / 100 ))
            rnd $WORKERS; echo "$anchor $delay partition w$R $PARTITION_MS"
            rnd $(( STEPS / 10 + 1 )); anchor=$(( STEPS / 2 + R ))
            rnd 100; echo "$anchor $(( R * STEP_MS / 100 )) partition c $PARTITION_MS"
        fi
    } | sort -n -k1,1 -k2,2 -s
}

# ---------------------------------------------------------------------------------------------
# Checks. Each prints what differs and returns 1.

# `cerm inspect --checksums` of a checkpoint into FILE.
checksums() {
    "$CERM_BIN" inspect --checksums "$1" > "$2" 2>&1
}

# metrics.jsonl, the last line of each step, without timing fields and workers_alive.
metrics_numbers() {
    python3 - "$1" << 'EOF'
import json, sys
last = {}
for line in open(sys.argv[1]):
    if line.strip():
        entry = json.loads(line)
        last[entry["step"]] = entry
timing = {"time", "tokens_per_second", "workers_alive"}
for step in sorted(last):
    print(json.dumps({k: v for k, v in sorted(last[step].items()) if k not in timing and not k.startswith("time_")}))
EOF
}

# "step pair,pair,..." per step, the last step_trained line of each step.
step_pairs() {
    grep -ho 'event step_trained step=[0-9]* pairs=[0-9,]*' "$@" \
        | sed 's/event step_trained step=\([0-9]*\) pairs=\(.*\)/\1 \2/' \
        | awk '{ last[$1] = $2 } END { for (s in last) print s, last[s] }' | sort -n
}

# Pairs lost and duplicated: the multiset of (step, pair) of the case against the reference.
# Prints "lost duplicated retrained".
pair_accounting() {
    local reference=$1 case_log=$2
    python3 - "$reference" "$case_log" << 'EOF'
import sys, collections
def load(path):
    per_step = {}
    for line in open(path):
        step, pairs = line.split()
        per_step[int(step)] = collections.Counter(int(p) for p in pairs.split(",") if p)
    return per_step
reference, case = load(sys.argv[1]), load(sys.argv[2])
lost = duplicated = 0
for step in sorted(set(reference) | set(case)):
    a, b = reference.get(step, collections.Counter()), case.get(step, collections.Counter())
    missing, extra = a - b, b - a
    for p in sorted(missing.elements()): print(f"  step {step}: pair {p} lost", file=sys.stderr)
    for p in sorted(extra.elements()): print(f"  step {step}: pair {p} trained but not in the undisturbed run's step", file=sys.stderr)
    lost += sum(missing.values()); duplicated += sum(extra.values())
print(lost, duplicated)
EOF
}

# ---------------------------------------------------------------------------------------------
# One run under a schedule (empty for the undisturbed run). Sets RUN_SECONDS and the counters.
REF_SECONDS=0
declare -A INJECTED=()

run_case() {
    local name=$1 schedule=$2
    DIR=$ROOT/$name
    rm -rf "$DIR"
    CONNECT=tcp://127.0.0.1:$PORT
    if [ "$name" = netns ]; then
        netns_setup || return 1
        netns_write_run "$DIR" || { echo "  FAIL netns: cannot write the CURVE run (above)"; FAILED=1; return 1; }
    else
        write_run "$DIR"
    fi
    CPID=""; CLIVES=0; WPIDS=(); WSTARTS=0; WDOWN_UNTIL=(); CDOWN_UNTIL=0; FROZEN=""; FINISHED=0
    PARTITIONED=""; PARTITION_START=0; PARTITION_UNTIL=0; PARTITION_LOG=()
    INJECTED=([worker-kill]=0 [coordinator-kill]=0 [freeze]=0 [disk-full]=0 [partition]=0 [hello-flood]=0)
    local frozen_until=0 disk_filler="" disk_failed=0 faults=() fired=0 anchor_reached=0 last_fire
    [ -n "$schedule" ] && mapfile -t faults <<< "$schedule"
    if grep -q disk-full <<< "$schedule"; then
        if ! mount_tmpfs "$DIR/Checkpoints"; then
            echo "  disk-full: skipped: $SKIP_REASON"
            SKIPPED_DISK="$SKIP_REASON"; SKIP_REASON=""
            mapfile -t faults < <(printf '%s\n' "${faults[@]}" | grep -v disk-full)
        fi
    fi
    local started
    started=$(now_ms)
    local deadline=$(( started + ( REF_SECONDS > 0 ? REF_SECONDS * 8000 + 240000 : 900000 ) ))
    last_fire=$started
    start_coordinator fresh
    local i
    for ((i = 0; i < WORKERS; i++)); do start_worker $i; done
    FLOOD_PID=""; FLOOD_FROM=0
    if [ "$name" = hello-flood ]; then
        flood_prepare || { echo "  hello-flood: skipped: $SKIP_REASON"; return 1; }
    fi

    while :; do
        local now
        now=$(now_ms)
        if [ "$now" -gt "$deadline" ]; then
            echo "  FAIL $name: no end after $(( (now - started) / 1000 )) s (hang?): $(progress) step(s) trained; coordinator log tail:"
            coordinator_logs | tail -n 15 | sed 's/^/    /'
            FAILED=1
            return 1
        fi
        # The coordinator: finished, failed, or down after a kill.
        if [ -n "$CPID" ] && ! alive "$CPID"; then
            wait "$CPID" 2> /dev/null; local status=$?
            CPID=""
            if [ $status = 0 ] && coordinator_logs | grep -q "event run_finished steps=$STEPS"; then
                FINISHED=1
                break
            elif [ "$CDOWN_UNTIL" -gt 0 ]; then
                : # killed by the schedule: restarted below
            elif [ -n "$disk_filler" ]; then
                # The disk filled up: the coordinator must have failed saying so.
                disk_failed=$status
                check_disk_full "$status" "$disk_filler" || { FAILED=1; return 1; }
                rm -f "$disk_filler"; disk_filler=""
                CDOWN_UNTIL=$(( now + 200 ))
            else
                echo "  FAIL $name: the coordinator exited with status $status unasked; log tail:"
                tail -n 15 "$DIR/coordinator.$CLIVES.log" | sed 's/^/    /'
                FAILED=1
                return 1
            fi
        fi
        if [ -z "$CPID" ] && [ "$CDOWN_UNTIL" -gt 0 ] && [ "$now" -ge "$CDOWN_UNTIL" ]; then
            start_coordinator resume
            CDOWN_UNTIL=0
        fi
        # Workers: restart any that is down (killed, or gone after the coordinator's GOODBYE).
        for ((i = 0; i < WORKERS; i++)); do
            local pid=${WPIDS[$i]:-}
            if [ -n "$pid" ] && ! alive "$pid"; then
                wait "$pid" 2> /dev/null
                WPIDS[$i]=""
                [ -n "${WDOWN_UNTIL[$i]:-}" ] || WDOWN_UNTIL[$i]=$(( now + 200 ))
            fi
            if [ -z "${WPIDS[$i]}" ] && [ "$now" -ge "${WDOWN_UNTIL[$i]:-0}" ]; then
                unset "WDOWN_UNTIL[$i]"
                start_worker $i
            fi
        done
        # The flood: on in odd blocks of FLOOD_BLOCK trained steps, off in even ones.
        if [ -n "$FLOOD_BIN" ] && [ "$name" = hello-flood ]; then
            if [ $(( $(progress) / FLOOD_BLOCK % 2 )) = 1 ]; then
                [ -n "$FLOOD_PID" ] || flood_start
            elif [ -n "$FLOOD_PID" ]; then
                flood_stop
            fi
        fi
        # The frozen worker thaws.
        if [ -n "$FROZEN" ] && [ "$now" -ge "$frozen_until" ]; then
            kill -CONT "$FROZEN"
            FROZEN=""
        fi
        # The partitioned host's link comes up again.
        if [ -n "$PARTITIONED" ] && [ "$now" -ge "$PARTITION_UNTIL" ]; then
            netns_link "$PARTITIONED" up
            echo "  link of $(netns_host_name "$PARTITIONED") up again after $(( now - PARTITION_START )) ms, $(progress) trained step(s)" >> "$DIR/faults.log"
            PARTITIONED=""
        fi
        # The next fault.
        if [ $fired -lt ${#faults[@]} ]; then
            local anchor delay kind target aux
            read -r anchor delay kind target aux <<< "${faults[$fired]}"
            if [ "$anchor_reached" = 0 ] && [ "$(progress)" -ge "$anchor" ]; then anchor_reached=$now; fi
            local since=$(( anchor_reached > last_fire ? anchor_reached : last_fire ))
            if [ "$anchor_reached" != 0 ] && [ $(( now - since )) -ge "$delay" ] && fire "$kind" "$target" "$aux" "$now"; then
                fired=$(( fired + 1 )); anchor_reached=0; last_fire=$now
                INJECTED[$kind]=$(( INJECTED[$kind] + 1 ))
                case $kind in
                    freeze) frozen_until=$(( now + aux )) ;;
                    disk-full) disk_filler=$FILLER ;;
                esac
            fi
        fi
        sleep 0.05
    done
    [ -z "$FLOOD_PID" ] || flood_stop
    RUN_SECONDS=$(( ($(now_ms) - started) / 1000 ))
    RUN_MS=$(( $(now_ms) - started ))
    if [ $fired -lt ${#faults[@]} ]; then
        echo "  FAIL $name: the run ended before $(( ${#faults[@]} - fired )) of its ${#faults[@]} faults fired (next: ${faults[$fired]}); the case proved less than it should"
        FAILED=1
    fi
    if [ -n "$PARTITIONED" ]; then
        echo "  FAIL $name: the run finished while $(netns_host_name "$PARTITIONED")'s link was down: its heal was not observed"
        netns_link "$PARTITIONED" up; PARTITIONED=""; FAILED=1
    fi
    if [ -n "$FROZEN" ]; then
        echo "  FAIL $name: the run finished while worker $FROZEN_NAME was still stopped: its thaw was not observed"
        kill -CONT "$FROZEN"; kill -KILL "$FROZEN"; FROZEN=""; FAILED=1
    fi
    # Stop the workers (they got GOODBYE and exit 0 by themselves).
    for ((i = 0; i < WORKERS; i++)); do
        local pid=${WPIDS[$i]:-}
        [ -n "$pid" ] || continue
        local waited=0
        while alive "$pid" && [ $waited -lt 100 ]; do sleep 0.1; waited=$(( waited + 1 )); done
        if alive "$pid"; then
            # A worker (re)started as the run ended may not have been registered when the
            # coordinator said GOODBYE: it reconnects for ever, as designed; a supervisor stops it.
            if tail -n +"${WLOG_FROM[$i]}" "$DIR/worker.$i.log" | grep -q 'coordinator said goodbye'; then
                echo "  FAIL $name: worker w$i (pid $pid) got GOODBYE but still runs 10 s after the run finished"; FAILED=1
            else
                echo "  worker w$i (pid $pid), started as the run ended, got no GOODBYE: stopped by the script" >> "$DIR/faults.log"
            fi
            kill -KILL "$pid"
        fi
        wait "$pid" 2> /dev/null
    done
    return 0
}

# Fires one fault; returns 1 when it cannot fire yet (its target is down).
fire() {
    local kind=$1 target=$2 aux=$3 now=$4
    case $kind in
        worker-kill)
            # The scheduled worker, or the next one up.
            local k index pid=""
            for ((k = 0; k < WORKERS; k++)); do
                index=$(( (target + k) % WORKERS ))
                pid=${WPIDS[$index]:-}
                if [ -n "$pid" ] && alive "$pid" && [ "$pid" != "$FROZEN" ]; then break; fi
                pid=""
            done
            [ -n "$pid" ] || return 1
            kill -KILL "$pid"
            WDOWN_UNTIL[$index]=$(( now + aux ))
            echo "  kill -9 worker w$index (pid $pid) after $(progress) trained step(s); restart in $aux ms" >> "$DIR/faults.log"
            ;;
        coordinator-kill)
            [ -n "$CPID" ] && alive "$CPID" && grep -q 'coordinator listening' "$DIR/coordinator.$CLIVES.log" || return 1
            kill -KILL "$CPID"
            CDOWN_UNTIL=$(( now + aux ))
            echo "  kill -9 coordinator (pid $CPID, life $CLIVES) after $(progress) trained step(s); --resume in $aux ms" >> "$DIR/faults.log"
            ;;
        freeze)
            # Stopped while its compute thread runs a task, so that it has a result to send
            # late after SIGCONT: poll (5 ms) the scheduled worker, after 1 s any worker, for
            # up to 3 s.
            local index pid="" waited_ms start_ms
            start_ms=$(now_ms)
            while :; do
                waited_ms=$(( $(now_ms) - start_ms ))
                [ $waited_ms -lt 3000 ] || break
                for index in $target $(( (target + 1) % WORKERS )) $(( (target + 2) % WORKERS )); do
                    [ $waited_ms -lt 1000 ] && [ "$index" != "$target" ] && continue
                    if computing "${WPIDS[$index]:-}"; then pid=${WPIDS[$index]}; target=$index; break 2; fi
                done
                sleep 0.002
            done
            [ -n "$pid" ] || { pid=${WPIDS[$target]:-}; echo "  (no worker was computing for 3 s: w$target stopped anyway)" >> "$DIR/faults.log"; }
            [ -n "$pid" ] && alive "$pid" || return 1
            kill -STOP "$pid"
            FROZEN=$pid
            FROZEN_NAME=w$target
            echo "  SIGSTOP worker w$target (pid $pid) for $aux ms after $(progress) trained step(s)" >> "$DIR/faults.log"
            ;;
        partition)
            # One host at a time, and only with every worker registered: the coordinator's
            # partition waits for the worker's to heal and that worker to join again, so that
            # it cuts off all of them.
            [ -z "$PARTITIONED" ] || return 1
            [ "$(coordinator_logs | grep -o 'event worker_[a-z]* worker=[^ ]* .*alive=[0-9]*' | tail -n 1 | sed 's/.*alive=//')" = "$WORKERS" ] || return 1
            netns_link "$target" down || return 1
            PARTITIONED=$target; PARTITION_START=$now; PARTITION_UNTIL=$(( now + aux ))
            # Where the coordinator's log stood: the deaths and rejoins of this partition follow.
            PARTITION_LOG+=("$target:$(cat "$DIR"/coordinator.*.log | wc -l)")
            echo "  link of $(netns_host_name "$target") down for $aux ms after $(progress) trained step(s)" >> "$DIR/faults.log"
            ;;
        disk-full)
            # Leave less room than a checkpoint needs (but room for log lines): the next
            # checkpoint write runs out of space part-way.
            local avail size
            avail=$(df -B1 --output=avail "$DIR/Checkpoints" | tail -n 1 | tr -d ' ')
            size=$(stat -c %s "$ROOT/undisturbed/Checkpoints/chaos/step_$STEPS.h5")
            FILLER=$DIR/Checkpoints/filler
            local leave=$(( size / 3 ))
            head -c $(( avail - leave )) /dev/zero > "$FILLER" 2> /dev/null
            # What must stay intact: every checkpoint there now, as it reads now.
            mkdir -p "$DIR/disk.before"
            local file
            for file in "$DIR"/Checkpoints/chaos/step_*.h5; do checksums "$file" "$DIR/disk.before/$(basename "$file").sums"; done
            echo "  filled $DIR/Checkpoints (tmpfs) to $(df -B1 --output=avail "$DIR/Checkpoints" | tail -n 1 | tr -d ' ') bytes free (a checkpoint is $size bytes) after $(progress) trained step(s)" >> "$DIR/faults.log"
            ;;
    esac
    return 0
}

# Whether worker pid is computing: its compute thread (named cerm-compute) is running or
# runnable. Stopped then, it has a result to send late; stopped while its socket thread fetches
# weights, it would only time out and reconnect.
computing() {
    [ -n "$1" ] || return 1
    local thread comm stat
    for thread in /proc/$1/task/*; do
        read -r comm < "$thread/comm" 2> /dev/null || continue
        [ "$comm" = cerm-compute ] || continue
        read -r stat < "$thread/stat" 2> /dev/null || return 1
        stat=${stat##*) }
        [ "${stat:0:1}" = R ]
        return
    done
    return 1
}

# tmpfs for the checkpoint directory (root only). Sets SKIP_REASON when it cannot.
SKIPPED_DISK=""
mount_tmpfs() {
    local where=$1
    mkdir -p "$where"
    if [ "$(id -u)" != 0 ]; then SKIP_REASON="not root: cannot mount a tmpfs"; return 1; fi
    local error
    # Room for keep_last = 3 checkpoints, the one being written and the logs, with margin.
    local size
    size=$(( $(stat -c %s "$ROOT/undisturbed/Checkpoints/chaos/step_$STEPS.h5") * 6 / 1024 + 4096 ))k
    if ! error=$(mount -t tmpfs -o size=$size tmpfs "$where" 2>&1); then
        SKIP_REASON="mount -t tmpfs failed: $error"
        return 1
    fi
    MOUNTED=$where
    return 0
}

# ---------------------------------------------------------------------------------------------
# The hello-flood case: scripts/hello_flood.c, built here with cc and libzmq, against the
# run's loopback endpoint. Each flood period is a process of its own; its start and stop
# times (epoch seconds) go to flood.periods, its counts to faults.log.
FLOOD_BLOCK=${CHAOS_FLOOD_BLOCK:-5}
FLOOD_BIN=""
flood_prepare() {
    SKIP_REASON=""
    command -v cc > /dev/null || { SKIP_REASON="no C compiler (cc) to build scripts/hello_flood.c"; return 1; }
    local error
    if ! error=$(cc -O2 -o "$ROOT/hello_flood" "$REPO/scripts/hello_flood.c" -lzmq 2>&1); then
        SKIP_REASON="cannot build scripts/hello_flood.c: $error"; return 1
    fi
    FLOOD_BIN=$ROOT/hello_flood
    FLOOD_HASH=$("$CERM_BIN" config check "$DIR/cluster.toml" | sed -n 's/.*(hash \([0-9a-f]*\);.*/\1/p' | head -n 1)
    [ -n "$FLOOD_HASH" ] || { SKIP_REASON="cannot read the config hash from cerm config check"; return 1; }
    # The protocol version the coordinator speaks: a HELLO of another is dropped unanswered.
    FLOOD_PROTOCOL=$(sed -n 's/.*static let version: UInt16 = \([0-9]*\).*/\1/p' "$REPO/Sources/WireProtocol/MessageCodec.swift")
    [ -n "$FLOOD_PROTOCOL" ] || { SKIP_REASON="cannot read MessageCodec.version from Sources/WireProtocol/MessageCodec.swift"; return 1; }
    : > "$DIR/flood.periods"
}
flood_start() {
    # Bounded in time (the case's own deadline) and count, as any load this suite makes.
    "$FLOOD_BIN" "${CHAOS_FLOOD_ENDPOINT:-$CONNECT}" "$FLOOD_HASH" "$FLOOD_PROTOCOL" 900 8 2000000 "${CHAOS_FLOOD_RATE:-0}" "${CHAOS_FLOOD_WAIT_MS:-1000}" >> "$DIR/flood.out" 2>&1 &
    FLOOD_PID=$!
    STARTED+=("$FLOOD_PID")
    FLOOD_FROM=$EPOCHREALTIME
    INJECTED[hello-flood]=$(( ${INJECTED[hello-flood]:-0} + 1 ))
}
flood_stop() {
    kill -INT "$FLOOD_PID" 2> /dev/null
    wait "$FLOOD_PID" 2> /dev/null
    echo "$FLOOD_FROM $EPOCHREALTIME" >> "$DIR/flood.periods"
    FLOOD_PID=""
}

# The flood's effect: each step of metrics.jsonl (the last line of a step, its time_step_s
# ending at its time) is flooded when a flood period covers it whole, quiet when none touches
# it; prints the counts, the mean step time of each and their ratio.
flood_effect() {
    python3 - "$DIR/Checkpoints/chaos/metrics.jsonl" "$DIR/flood.periods" << 'EOF'
import json, sys
steps = {}
for line in open(sys.argv[1]):
    if line.strip():
        entry = json.loads(line)
        steps[entry["step"]] = (entry["time"] - entry["time_step_s"], entry["time"], entry["time_step_s"])
periods = [tuple(map(float, line.split())) for line in open(sys.argv[2]) if line.strip()]
flooded, quiet = [], []
for start, end, seconds in steps.values():
    if any(a <= start and end <= b for a, b in periods): flooded.append(seconds)
    elif not any(start < b and a < end for a, b in periods): quiet.append(seconds)
if not flooded or not quiet:
    print(f"flooded {len(flooded)} quiet {len(quiet)} - - -")
else:
    f, q = sum(flooded) / len(flooded), sum(quiet) / len(quiet)
    print(f"flooded {len(flooded)} quiet {len(quiet)} {f:.3f} {q:.3f} {f / q:.3f}")
EOF
}

# ---------------------------------------------------------------------------------------------
# Real hosts (the netns case): one network namespace per host (coordinator c, workers w0…),
# each with one link, eth0, whose veth peer is a port of a bridge in a namespace of its own, so
# that every link and address this case makes lives in namespaces it made, and goes with them.
# 10.27.0.0/24: the coordinator .1, worker i .(10 + i).
PARTITION_MS=$(( ${CHAOS_PARTITION_SECONDS:-30} * 1000 ))
declare -A NETNS_HOSTS=()   # host (c, w0, …) -> its namespace; empty outside the netns case
NETNS_SWITCH=""
NETNS_TAG=cerm-chaos-$$
NETEM_ARGS=(delay 2ms 1ms loss 0.5%)   # every host's egress, where the kernel has netem
NETEM_NOTE=""; NETEM_SHORT=""
netns_address() { if [ "$1" = c ]; then echo 10.27.0.1; else echo "10.27.0.$(( 10 + ${1#w} ))"; fi; }
netns_host_name() { if [ "$1" = c ]; then echo "the coordinator's host"; else echo "worker $1's host"; fi; }
netns_link() { ip -n "${NETNS_HOSTS[$1]}" link set eth0 "$2"; }

# Makes the namespaces, the bridge and the links. Returns 1 with SKIP_REASON set where
# namespaces cannot be made (not root, no iproute2, no `ip netns`); a later failure is a FAIL.
netns_setup() {
    SKIP_REASON=""
    if [ "$(id -u)" != 0 ]; then SKIP_REASON="not root: cannot create network namespaces"; return 1; fi
    command -v ip > /dev/null || { SKIP_REASON="no ip command (iproute2)"; return 1; }
    local error host namespace i
    if ! error=$(ip netns add "$NETNS_TAG-switch" 2>&1); then SKIP_REASON="ip netns add failed: $error"; return 1; fi
    NETNS_SWITCH=$NETNS_TAG-switch
    if ! error=$( {
        set -e
        ip -n "$NETNS_SWITCH" link add br0 type bridge
        ip -n "$NETNS_SWITCH" link set br0 up
    } 2>&1 ); then echo "  FAIL netns: cannot make the bridge: $error"; FAILED=1; return 1; fi
    for host in c $(for ((i = 0; i < WORKERS; i++)); do echo "w$i"; done); do
        namespace=$NETNS_TAG-$host
        if ! error=$(ip netns add "$namespace" 2>&1); then echo "  FAIL netns: ip netns add $namespace: $error"; FAILED=1; return 1; fi
        NETNS_HOSTS[$host]=$namespace
        if ! error=$( {
            set -e
            ip -n "$NETNS_SWITCH" link add "port-$host" type veth peer name eth0 netns "$namespace"
            ip -n "$NETNS_SWITCH" link set "port-$host" master br0 up
            ip -n "$namespace" link set lo up
            ip -n "$namespace" addr add "$(netns_address "$host")/24" dev eth0
            ip -n "$namespace" link set eth0 up
        } 2>&1 ); then echo "  FAIL netns: cannot link $namespace to the bridge: $error"; FAILED=1; return 1; fi
    done
    echo "  namespaces: ${NETNS_HOSTS[*]} and $NETNS_SWITCH (bridge br0), 10.27.0.0/24"
    # netem: delay and loss on every host's link, or say why not (many kernels lack sch_netem).
    if error=$(ip netns exec "${NETNS_HOSTS[c]}" tc qdisc add dev eth0 root netem "${NETEM_ARGS[@]}" 2>&1); then
        for host in "${!NETNS_HOSTS[@]}"; do
            [ "$host" = c ] || ip netns exec "${NETNS_HOSTS[$host]}" tc qdisc add dev eth0 root netem "${NETEM_ARGS[@]}"
        done
        NETEM_NOTE="netem ${NETEM_ARGS[*]} on every link"; NETEM_SHORT="netem ${NETEM_ARGS[*]}"
    else
        NETEM_SHORT="no netem"
        NETEM_NOTE="netem skipped: tc qdisc add … netem ${NETEM_ARGS[*]} answered: $(tr '\n' ' ' <<< "$error" | sed 's/ *$//')"
    fi
    echo "  $NETEM_NOTE"
}

# Removes every namespace this script made (their links and addresses go with them). The
# processes in them are gone first (cleanup kills them; a case ends with them).
netns_teardown() {
    local namespace
    for namespace in "${NETNS_HOSTS[@]}" $NETNS_SWITCH; do
        ip netns del "$namespace" 2> /dev/null || echo "chaos: warning: cannot remove network namespace $namespace" >&2
    done
    NETNS_HOSTS=(); NETNS_SWITCH=""
}

# The run of the netns case: the loopback run's config with the coordinator's address and
# CURVE required (a key pair per host; each worker's config names its own secret key).
netns_write_run() {
    local dir=$1 i
    mkdir -p "$dir/keys"
    {
        "$CERM_BIN" keygen coordinator --dir "$dir/keys" &&
        for ((i = 0; i < WORKERS; i++)); do
            "$CERM_BIN" keygen "w$i" --dir "$dir/keys" && cat "$dir/keys/w$i.pub" >> "$dir/keys/authorized_workers" || return 1
        done
    } > /dev/null || return 1
    CONNECT=tcp://$(netns_address c):$PORT
    write_run "$dir" "$CONNECT" 'curve_secret_key_file = "keys/coordinator.key"
authorized_keys_file = "keys/authorized_workers"
server_public_key_file = "keys/coordinator.pub"
worker_secret_key_file = "keys/w0.key"
'
    for ((i = 0; i < WORKERS; i++)); do
        sed "s|^worker_secret_key_file = .*|worker_secret_key_file = \"keys/w$i.key\"|" "$dir/cluster.toml" > "$dir/worker.$i.toml"
    done
    "$CERM_BIN" config check "$dir/cluster.toml" > /dev/null
}

# After the coordinator exited with the disk full: it failed (status != 0), said why, left no
# temporary file, and the checkpoints written before are intact and equal the undisturbed run's.
check_disk_full() {
    local status=$1 ok=0 log=$DIR/coordinator.$CLIVES.log
    if [ "$status" = 0 ]; then echo "  FAIL disk-full: the coordinator exited 0 with the disk full"; ok=1; fi
    if [ "$status" -gt 128 ]; then echo "  FAIL disk-full: the coordinator crashed (signal $(( status - 128 ))) on the full disk instead of exiting with its error"; ok=1; fi
    if ! grep -q 'No space left on device' "$log"; then echo "  FAIL disk-full: the coordinator's error does not say 'No space left on device'"; ok=1; fi
    if ! grep -q 'checkpoint write failed, previous checkpoints kept' "$log"; then
        echo "  FAIL disk-full: no 'checkpoint write failed, previous checkpoints kept' in $log"; ok=1
    fi
    grep -m1 -E 'checkpoint write failed|training failed' "$log" | sed 's/^/    coordinator said: /' >> "$DIR/faults.log"
    if ls "$DIR/Checkpoints/chaos" | grep -q 'tmp'; then
        echo "  FAIL disk-full: a temporary file was left: $(ls "$DIR/Checkpoints/chaos" | grep tmp | tr '\n' ' ')"; ok=1
    fi
    local before checked=0
    for before in "$DIR"/disk.before/*.sums; do
        local base
        base=$(basename "$before" .sums)
        if [ ! -f "$DIR/Checkpoints/chaos/$base" ]; then echo "  FAIL disk-full: $base, there before the disk filled up, is gone"; ok=1; continue; fi
        if ! checksums "$DIR/Checkpoints/chaos/$base" "$DIR/disk.after.$base.sums"; then
            echo "  FAIL disk-full: $base does not read back after the failed write: $(tail -n 1 "$DIR/disk.after.$base.sums")"; ok=1; continue
        fi
        if ! diff -q "$before" "$DIR/disk.after.$base.sums" > /dev/null; then echo "  FAIL disk-full: $base changed during the failed write"; ok=1; fi
        checked=$(( checked + 1 ))
    done
    echo "    $checked checkpoint(s) kept intact (checksum OK, every value as before the disk filled up); coordinator exit status $status" >> "$DIR/faults.log"
    DISK_CHECKED=$checked
    return $ok
}

# ---------------------------------------------------------------------------------------------
# The comparison of a finished case with the undisturbed run. Sets EQUAL, METRICS_EQUAL, LOST, DUP.
compare_case() {
    local name=$1 final=Checkpoints/chaos/step_$STEPS.h5
    EQUAL=no; METRICS_EQUAL=no; LOST=?; DUP=?
    local ok=0
    if [ ! -f "$DIR/$final" ]; then
        echo "  FAIL $name: no final checkpoint $final"; FAILED=1; return 1
    fi
    checksums "$ROOT/undisturbed/$final" "$ROOT/undisturbed.sums"
    if ! checksums "$DIR/$final" "$DIR/final.sums"; then
        echo "  FAIL $name: $final: $(tail -n 1 "$DIR/final.sums")"; ok=1
    elif diff "$ROOT/undisturbed.sums" "$DIR/final.sums" > "$DIR/final.diff"; then
        EQUAL=yes
    else
        echo "  FAIL $name: the final checkpoint differs from the undisturbed run's in $(grep -c '^>' "$DIR/final.diff") value(s):"
        grep '^>' "$DIR/final.diff" | head -n 12 | sed 's/^> /    /'
        ok=1
    fi
    metrics_numbers "$ROOT/undisturbed/Checkpoints/chaos/metrics.jsonl" > "$ROOT/undisturbed.metrics"
    metrics_numbers "$DIR/Checkpoints/chaos/metrics.jsonl" > "$DIR/metrics.numbers"
    if diff "$ROOT/undisturbed.metrics" "$DIR/metrics.numbers" > "$DIR/metrics.diff"; then
        METRICS_EQUAL=yes
    else
        echo "  FAIL $name: metrics.jsonl differs from the undisturbed run's (timing fields aside):"
        head -n 8 "$DIR/metrics.diff" | cut -c1-200 | sed 's/^/    /'
        ok=1
    fi
    step_pairs "$ROOT"/undisturbed/coordinator.*.log > "$ROOT/undisturbed.pairs"
    step_pairs "$DIR"/coordinator.*.log > "$DIR/pairs"
    local counts
    counts=$(pair_accounting "$ROOT/undisturbed.pairs" "$DIR/pairs" 2> "$DIR/pairs.diff")
    read -r LOST DUP <<< "$counts"
    if [ "$(wc -l < "$ROOT/undisturbed.pairs")" != "$STEPS" ]; then
        echo "  FAIL $name: the undisturbed run logged step_trained for $(wc -l < "$ROOT/undisturbed.pairs") of $STEPS steps"; ok=1
    fi
    if [ "$LOST" != 0 ] || [ "$DUP" != 0 ]; then
        echo "  FAIL $name: $LOST pair(s) lost, $DUP trained twice or out of place:"; head -n 10 "$DIR/pairs.diff"; ok=1
    fi
    RETRAINED=$(( $(coordinator_logs | grep -c 'event step_trained') - STEPS ))
    [ $ok = 0 ] || FAILED=1
    return $ok
}

# Evidence that the faults happened and were handled as the protocol says.
check_evidence() {
    local name=$1 ok=0 logs
    logs=$(coordinator_logs)
    if [ "${INJECTED[worker-kill]}" -gt 0 ]; then
        local deaths
        deaths=$(grep -c 'event worker_died' <<< "$logs")
        echo "    workers declared dead: $deaths; tasks re-queued: $(grep -o 'event tasks_requeued count=[0-9]*' <<< "$logs" | awk -F= '{ s += $2 } END { print s + 0 }')" >> "$DIR/faults.log"
    fi
    if [ "${INJECTED[coordinator-kill]}" -gt 0 ]; then
        local resumes
        resumes=$(grep -c 'event resumed' <<< "$logs")
        echo "    coordinator resumes: $resumes ($(grep -o 'event resumed path=[^ ]* step=[0-9]*' <<< "$logs" | sed 's/.*step=//' | tr '\n' ' '))" >> "$DIR/faults.log"
        if [ "$resumes" -lt "${INJECTED[coordinator-kill]}" ]; then
            echo "  FAIL $name: ${INJECTED[coordinator-kill]} coordinator kills but $resumes 'event resumed'"; ok=1
        fi
    fi
    if [ "${INJECTED[freeze]}" -gt 0 ]; then
        local died late
        died=$(grep "event worker_died worker=$FROZEN_NAME " <<< "$logs" | head -n 1)
        # A RESULT, or with distributed_update the GRADIENT_RESULT of a gradient task.
        late=$(grep -E "dropped (GRADIENT_)?RESULT of task [0-9]* from $FROZEN_NAME \(declared dead" <<< "$logs")
        echo "    frozen $FROZEN_NAME: ${died#*event }" >> "$DIR/faults.log"
        [ -n "$late" ] && echo "    its late result: ${late#*] }" >> "$DIR/faults.log"
        if [ -z "$died" ]; then echo "  FAIL $name: frozen worker $FROZEN_NAME was never declared dead"; ok=1; fi
        if [ -n "$died" ] && ! grep -q 'requeued=[1-9]' <<< "$died"; then
            echo "  FAIL $name: frozen worker $FROZEN_NAME held no task when declared dead ($died): nothing was re-run elsewhere"; ok=1
        fi
        if [ -z "$late" ]; then
            echo "  FAIL $name: no 'dropped [GRADIENT_]RESULT of task N from $FROZEN_NAME (declared dead …)' line: the frozen worker's late result went unlogged"; ok=1
        elif ! grep -q "event late_result_dropped task=[0-9]* worker=$FROZEN_NAME\$" <<< "$logs"; then
            echo "  FAIL $name: no late_result_dropped event for $FROZEN_NAME"; ok=1
        fi
    fi
    if [ "$name" = hello-flood ]; then
        local totals
        totals=$(awk -F'[= ]' '/^hellos=/ { h += $2; w += $4; r += $6; u += $8 } END { print h + 0, w + 0, r + 0, u + 0 }' "$DIR/flood.out")
        read -r FLOOD_HELLOS FLOOD_WELCOMED FLOOD_REFUSED FLOOD_UNANSWERED <<< "$totals"
        read -r _ FLOODED_STEPS _ QUIET_STEPS FLOODED_MEAN QUIET_MEAN FLOOD_RATIO <<< "$(flood_effect)"
        echo "    ${INJECTED[hello-flood]} flood period(s): $FLOOD_HELLOS HELLOs on as many connections ($FLOOD_WELCOMED welcomed, $FLOOD_REFUSED refused, $FLOOD_UNANSWERED unanswered)" >> "$DIR/faults.log"
        # (Joining workers expire after heartbeat_timeout: a slow flood never reaches the bound.)
        echo "    $(grep -c 'forgot joining worker' <<< "$logs") 'forgot joining worker' line(s) and $(grep -c 'suppressed [0-9]* more "forgot joining worker"' <<< "$logs") summary line(s) in the coordinator's log" >> "$DIR/faults.log"
        echo "    step time: flooded steps $FLOODED_STEPS, mean $FLOODED_MEAN s; quiet steps $QUIET_STEPS, mean $QUIET_MEAN s; flooded / quiet $FLOOD_RATIO" >> "$DIR/faults.log"
        if [ "$FLOODED_STEPS" = 0 ] || [ "$QUIET_STEPS" = 0 ]; then
            echo "  FAIL $name: $FLOODED_STEPS flooded and $QUIET_STEPS quiet step(s): nothing to compare"; ok=1
        fi
        # A flood the coordinator never answers (HELLOs it cannot decode) tests nothing; past
        # its HELLO budget (docs/PROTOCOL.md, "Handshake") it leaves the rest unanswered.
        if [ -z "${CHAOS_FLOOD_ENDPOINT:-}" ] && { [ "$FLOOD_WELCOMED" = 0 ] || [ "$FLOOD_REFUSED" = 0 ]; }; then
            echo "  FAIL $name: of $FLOOD_HELLOS HELLOs $FLOOD_WELCOMED were welcomed and $FLOOD_REFUSED refused: the flood did not reach the coordinator as HELLOs (protocol v$FLOOD_PROTOCOL)"; ok=1
        fi
    fi
    if [ "$name" = netns ] && ! grep -q 'coordinator listening curve=true' <<< "$logs"; then
        echo "  FAIL $name: the coordinator did not listen with CURVE"; ok=1
    fi
    # Each partition: the workers cut off (the one whose host it was, or all of them when it
    # was the coordinator's) declared dead after it began, and each joined again after that.
    local entry
    for entry in "${PARTITION_LOG[@]}"; do
        local target=${entry%%:*} from=${entry##*:} cut_off=() worker died joined after
        if [ "$target" = c ]; then
            for ((i = 0; i < WORKERS; i++)); do cut_off+=("w$i"); done
        else
            cut_off=("$target")
        fi
        after=$(tail -n +"$(( from + 1 ))" <<< "$logs")
        for worker in "${cut_off[@]}"; do
            died=$(grep -n -m1 "event worker_died worker=$worker " <<< "$after")
            if [ -z "$died" ]; then
                echo "  FAIL $name: $worker was never declared dead after $(netns_host_name "$target")'s link went down"; ok=1; continue
            fi
            joined=$(tail -n +"${died%%:*}" <<< "$after" | grep -m1 "event worker_joined worker=$worker ")
            if [ -z "$joined" ]; then
                echo "  FAIL $name: $worker never joined again after $(netns_host_name "$target")'s link came up"; ok=1; continue
            fi
            echo "    $(netns_host_name "$target") cut off $worker: ${died#*event }; then ${joined#*event }" >> "$DIR/faults.log"
        done
    done
    [ $ok = 0 ] || FAILED=1
    return $ok
}

# ---------------------------------------------------------------------------------------------
SUMMARY=()
summary_row() { SUMMARY+=("$(printf '| %s | %s |' "$1" "$2")"); }
seconds() { awk -v ms="$1" 'BEGIN { printf "%.1f", ms / 1000 }'; }

echo "chaos: undisturbed run"
run_case undisturbed "" || { echo "chaos: the undisturbed run failed; nothing to compare with"; exit 1; }
REF_SECONDS=$RUN_SECONDS
REF_MS=$RUN_MS
STEP_MS=$(( REF_MS / STEPS ))
echo "  finished $STEPS steps in $(seconds $REF_MS) s"
summary_row undisturbed "$(printf '%s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s s (1.00×)' 0 0 0 0 0 0 1 $WORKERS 0 - - - "$(seconds $REF_MS)")"

for name in "${CASES[@]}"; do
    schedule=$(make_schedule "$name")
    if [ -n "$schedule" ]; then
        echo "chaos: case $name ($(wc -l <<< "$schedule") fault(s) scheduled; anchor step, delay ms, kind, target, restart/freeze/down ms):"
        echo "$schedule" | awk '{ printf "%s%s", (NR > 1 ? "; " : "    "), $0 } END { print "" }' | fold -s -w 120 | sed '2,$s/^/    /'
    else
        echo "chaos: case $name (HELLO flood in steps $FLOOD_BLOCK–$(( 2 * FLOOD_BLOCK - 1 )), $(( 3 * FLOOD_BLOCK ))–$(( 4 * FLOOD_BLOCK - 1 )), …)"
    fi
    SKIPPED_DISK=""; SKIP_REASON=""
    if run_case "$name" "$schedule"; then
        check_evidence "$name"
        compare_case "$name"
        [ -f "$DIR/faults.log" ] && cat "$DIR/faults.log"
        if [ -n "$MOUNTED" ]; then umount "$MOUNTED" || echo "  warning: cannot unmount $MOUNTED"; MOUNTED=""; fi
        [ -n "$SKIPPED_DISK" ] && INJECTED[disk-full]="skipped"
        [ "$name" = netns ] && INJECTED[partition]="${INJECTED[partition]} (CURVE, $NETEM_SHORT)"
        [ "$name" = hello-flood ] && INJECTED[hello-flood]="$FLOOD_HELLOS in ${INJECTED[hello-flood]} period(s); steps ${FLOOD_RATIO}× as long"
        summary_row "$name" "$(printf '%s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s s (%s×)' \
            "${INJECTED[worker-kill]}" "${INJECTED[coordinator-kill]}" "${INJECTED[freeze]}" "${INJECTED[disk-full]}" "${INJECTED[partition]}" "${INJECTED[hello-flood]}" \
            "$CLIVES" "$WSTARTS" "$RETRAINED" "$EQUAL" "$METRICS_EQUAL" "$LOST" "$DUP" "$(seconds $RUN_MS)" \
            "$(awk -v a="$RUN_MS" -v b="$REF_MS" 'BEGIN { printf "%.2f", a / b }')")"
        echo "  final weights equal: $EQUAL; metrics equal: $METRICS_EQUAL; pairs lost / duplicated: $LOST / $DUP"
    elif [ -n "$SKIP_REASON" ]; then
        # No namespaces here: the loopback cases prove what they can.
        echo "  $name: skipped: $SKIP_REASON"
        summary_row "$name" "skipped: $SKIP_REASON"
    else
        [ -f "$DIR/faults.log" ] && cat "$DIR/faults.log"
        if [ -n "$MOUNTED" ]; then umount "$MOUNTED"; MOUNTED=""; fi
        summary_row "$name" "run failed (above)"
    fi
    # The run's processes are gone; kill any left (only ours), then the namespaces.
    for pid in "${STARTED[@]}"; do alive "$pid" && { kill -CONT "$pid"; kill -KILL "$pid"; }; done
    [ ${#STARTED[@]} -eq 0 ] || wait "${STARTED[@]}" 2> /dev/null
    STARTED=()
    netns_teardown
done

echo
echo "chaos: summary (CHAOS_SEED=$SEED, $STEPS steps, $WORKERS workers, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"
echo "| case | worker kill -9 | coordinator kill -9 + resume | SIGSTOP | disk full | link down ${PARTITION_MS%000} s | HELLO flood | coordinator runs | worker starts | steps retrained | final weights equal | metrics equal | pairs lost / duplicated | wall time (vs undisturbed) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for row in "${SUMMARY[@]}"; do echo "$row"; done
if [ "$FAILED" = 0 ]; then echo "chaos: PASS"; else echo "chaos: FAIL"; fi
exit $FAILED
