#!/usr/bin/env bash
# The GPU measurements docs/performance.md asks for, one step per command so that each fits a
# time-limited session on a lent machine; every output lands in $OUT with the machine's
# description and the commit beside it.
#
#   bash benchmarks/gpu.sh smoke               the smoke profile on the device: does it run at all
#   bash benchmarks/gpu.sh matrix [ARGS...]    the whole ablations.toml, timed (ARGS: e.g. --pack)
#   bash benchmarks/gpu.sh profile             torch.profiler's top entries: a batched group of the reference
#   bash benchmarks/gpu.sh bench               harness bench: the student's loop and the harness on the device
#   bash benchmarks/gpu.sh compare CPU_STORE   configurations and effects against a CPU store of the matrix
#
# DEVICE (default cuda) and OUT (default gpu-results) come from the environment; with DEVICE=cpu
# every step runs here too, which is how this script is checked without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/harness ]; then export PATH="$PWD/.venv/bin:$PATH"; fi  # the quick start's venv
device=${DEVICE:-cuda}
out=${OUT:-gpu-results}
step=${1:-}
case "$step" in
    smoke | matrix | profile | bench | compare) shift ;;
    *) echo "gpu.sh: unknown step '$step': use smoke, matrix, profile, bench or compare" >&2; exit 2 ;;
esac
mkdir -p "$out"

describe() {  # the machine, the load and the code, before every step
    {
        date -u +%FT%TZ; uptime; git rev-parse --short HEAD; git status --porcelain | head -n 5
        python -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA')"
        command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv || true
    } > "$out/$step.machine.txt" 2>&1
}

describe
harness data > /dev/null
case "$step" in
    smoke)
        harness run --matrix ablations.toml --profile smoke --device "$device" --fresh \
            --store "$out/smoke.sqlite" > "$out/smoke.log" 2>&1
        tail -n 1 "$out/smoke.log"
        ;;
    matrix)
        start=$(date +%s.%N)
        harness run --matrix ablations.toml --device "$device" --fresh --store "$out/ablations.sqlite" "$@" \
            > "$out/matrix.log" 2>&1
        end=$(date +%s.%N)
        python -c "import sys; print(f'ablations.toml on {sys.argv[3]}: {float(sys.argv[2]) - float(sys.argv[1]):.1f} s wall')" \
            "$start" "$end" "$device" | tee "$out/matrix.time.txt"
        tail -n 1 "$out/matrix.log"
        ;;
    profile)
        python - "$device" > "$out/profile.txt" <<'EOF'
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from harness.bench import reference_config
from harness.device import resolve
from harness.mnist import load_mnist
from harness.tasks.pairs.batched import train_rounds
from harness.tasks.pairs.data import PairSource

policy = resolve(sys.argv[1])
source = PairSource(load_mnist(None))
config = reference_config(epochs=2)
train_rounds(config, list(range(10)), source, policy)  # warm: kernels chosen, memory pooled
activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if policy.is_cuda else [])
with profile(activities=activities) as profiler:
    train_rounds(config, list(range(10)), source, policy)
    if policy.is_cuda:
        torch.cuda.synchronize()
key = "self_cuda_time_total" if policy.is_cuda else "self_cpu_time_total"
print(f"the reference (siamese CNN, ws + aux), 10 rounds as one batched model, 2 epochs, on {policy.device}")
print(profiler.key_averages().table(sort_by=key, row_limit=25))
EOF
        head -n 20 "$out/profile.txt"
        ;;
    bench)
        harness bench --device "$device" --rounds 10 --no-frameworks | tee "$out/bench.txt"
        ;;
    compare)
        cpu_store=${1:?"compare needs a CPU store of ablations.toml"}
        harness compare "$cpu_store" "$out/ablations.sqlite" --fail-on never | tee "$out/compare.md"
        ;;
esac
