#!/usr/bin/env bash
# The first GPU hour as one prepared script: does ablations.toml run on the device, does a rerun
# give the same numbers, does the GPU give the CPU's answers (against the committed runs,
# baselines/main.json.gz, with no CPU rerun), what do TF32 and nondeterministic kernels buy, what
# does the host cost per step, and how long does the whole matrix take (measured, or
# extrapolated from a resumable slice: the output says which). Every output lands in $OUT beside
# the machine's description; each step prints its last lines and goes on when one fails.
#
#   bash benchmarks/gpu.sh hour           every step below, in this order, within about 8 minutes
#   bash benchmarks/gpu.sh smoke          the smoke profile: does it run at all
#   bash benchmarks/gpu.sh rerun          a slice twice (same numbers?), against the committed runs
#   bash benchmarks/gpu.sh precision      the slice with --tf32, and with --nondeterministic: their cost
#   bash benchmarks/gpu.sh inflight       the slice with $WORKERS processes sharing the GPU: time, same numbers?
#   bash benchmarks/gpu.sh bench          harness bench: host µs per group-step, launches, paths
#   bash benchmarks/gpu.sh matrix [ARGS]  ablations.toml for MATRIX_SECONDS at most, resumable (ARGS: e.g. --workers 4)
#
# DEVICE (default cuda), OUT (default gpu-results), MATRIX_SECONDS (default 200), WORKERS (default 4)
# and SLICE (the slice's --only/--rounds options) come from the environment; with DEVICE=cpu every step runs
# here too, which is how this script is checked without a GPU. MNIST must be on the machine: in
# ./data (MNIST/raw/*-ubyte or .gz: `harness data --data-dir data` where the network is), or
# $HARNESS_DATA_DIR; nothing is fetched.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/harness ]; then export PATH="$PWD/.venv/bin:$PATH"; fi  # the quick start's venv
device=${DEVICE:-cuda}
out=${OUT:-gpu-results}
matrix_seconds=${MATRIX_SECONDS:-200}
workers=${WORKERS:-4}
read -r -a slice <<< "${SLICE:---only encoder=cnn --only pairing=siamese --only weight_sharing=true --only transfer=none --rounds 2}"
step=${1:-}
case "$step" in
    hour | smoke | rerun | precision | inflight | bench | matrix) shift ;;
    *) echo "gpu.sh: unknown step '$step': use hour, smoke, rerun, precision, inflight, bench or matrix" >&2; exit 2 ;;
esac
mkdir -p "$out"

describe() {  # the machine, the load and the code
    {
        date -u +%FT%TZ; uptime; git rev-parse --short HEAD; git status --porcelain | head -n 5
        python -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA')"
        command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv || true
    } > "$out/machine.txt" 2>&1
    cat "$out/machine.txt"
}

timed() {  # timed NAME COMMAND...: run it, its output to $OUT/NAME.log; print its time, status and last lines
    local name=$1; shift
    local start end status
    start=$(date +%s.%N)
    "$@" > "$out/$name.log" 2>&1
    status=$?
    end=$(date +%s.%N)
    python -c "import sys; print(f'::: {sys.argv[1]}: {float(sys.argv[3]) - float(sys.argv[2]):.1f} s wall, exit {sys.argv[4]}')" \
        "$name" "$start" "$end" "$status" | tee -a "$out/times.txt"
    tail -n 4 "$out/$name.log"
    return $status
}

slice_run() {  # slice_run STORE [OPTIONS...]: the slice of ablations.toml into a fresh store
    local store=$1; shift
    rm -f "$store" "$store"-* "$store".lock
    harness run --matrix ablations.toml --device "$device" "${slice[@]}" --store "$store" "$@"
}

smoke() {
    timed smoke harness run --matrix ablations.toml --profile smoke --device "$device" --fresh --store "$out/smoke.sqlite"
}

rerun() {
    timed slice-a slice_run "$out/slice-a.sqlite"
    timed slice-b slice_run "$out/slice-b.sqlite"
    # the same code on the same GPU with deterministic kernels: compare holds them to equality
    timed rerun-equality harness compare "$out/slice-a.sqlite" "$out/slice-b.sqlite" --fail-on never
    grep -E "^[0-9]+ |^execution policies|DETERMINISM" "$out/rerun-equality.log"
    # the GPU's answers against the committed CPU runs of the same configurations and rounds
    timed against-committed harness compare baselines/main.json.gz "$out/slice-a.sqlite" --fail-on never
    grep -E "^[0-9]+ |^execution policies" "$out/against-committed.log"
}

precision() {
    timed slice-tf32 slice_run "$out/slice-tf32.sqlite" --tf32
    timed slice-nondeterministic slice_run "$out/slice-nondeterministic.sqlite" --nondeterministic
    timed tf32-against-float32 harness compare "$out/slice-a.sqlite" "$out/slice-tf32.sqlite" --fail-on never
    grep -E "^[0-9]+ |^execution policies" "$out/tf32-against-float32.log"
}

inflight() {  # several groups in flight: each process dispatches its own steps to the one GPU
    [ -f "$out/slice-a.sqlite" ] || timed slice-a slice_run "$out/slice-a.sqlite"
    timed slice-workers slice_run "$out/slice-workers.sqlite" --workers "$workers"
    grep -h "::: slice-a:\|::: slice-workers:" "$out/times.txt" | tail -n 2
    # which process trains a group changes none of its numbers: compare holds them to equality
    timed workers-equality harness compare "$out/slice-a.sqlite" "$out/slice-workers.sqlite" --fail-on never
    grep -E "^[0-9]+ |^execution policies|DETERMINISM" "$out/workers-equality.log"
}

bench() {
    timed bench harness bench --device "$device" --rounds 10 --epochs 1 --paths batched --no-frameworks
    grep -A 3 "fixed µs (host)" "$out/bench.log"
}

matrix() {  # resumable: a second call goes on where the first stopped
    local before after
    before=$(python -c "from harness import api; print(len(api.runs('$out/ablations.sqlite')))" 2> /dev/null || echo 0)
    timed matrix timeout --signal=TERM "$matrix_seconds" harness run --matrix ablations.toml --device "$device" \
        --store "$out/ablations.sqlite" "$@"
    after=$(python -c "from harness import api; print(len(api.runs('$out/ablations.sqlite')))")
    python - "$before" "$after" "$out" <<'EOF' | tee -a "$out/times.txt"
import re, sys
before, after, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
seconds = float(re.findall(r"::: matrix: ([0-9.]+) s wall", open(f"{out}/times.txt").read())[-1])
if after >= 1520:
    print(f"ablations.toml: all 1520 runs stored; this call trained {after - before} in {seconds:.0f} s (measured)")
elif after > before:
    print(f"ablations.toml: {after} of 1520 runs stored; {after - before} in {seconds:.0f} s: the whole matrix "
          f"about {seconds * 1520 / (after - before):.0f} s (extrapolated from this slice, start-up included)")
else:
    print(f"ablations.toml: no run finished in {seconds:.0f} s")
EOF
    timed matrix-against-committed harness compare baselines/main.json.gz "$out/ablations.sqlite" --fail-on never
    grep -E "^[0-9]+ |^execution policies" "$out/matrix-against-committed.log"
}

describe
case "$step" in
    hour) smoke; rerun; precision; inflight; bench; matrix "$@" ;;
    *) "$step" "$@" ;;
esac
exit 0
