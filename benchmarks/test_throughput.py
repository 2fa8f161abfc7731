"""Throughput of the training paths (pytest-benchmark); not part of the default test run.

    harness data && pytest benchmarks/ --benchmark-only

Shortened reference runs (4 rounds of 10 epochs) keep the per-path timings under a few minutes
on a laptop; the 1.5x target is asserted on the full reference (10 rounds of 25 epochs), as
`harness bench` measures it. HARNESS_BENCH_DEVICE
picks the device (default cpu).
"""

import os

import pytest

from harness.bench import PATHS, measure
from harness.device import resolve
from harness.mnist import raw_dir, resolve_data_dir

ROUNDS, EPOCHS = 4, 10
DEVICE = os.environ.get("HARNESS_BENCH_DEVICE", "cpu")
CPU_TARGET = 1.5  # the harness's CPU path against the plain loop, in runs per second


@pytest.fixture(scope="module")
def data_dir():
    directory = resolve_data_dir(None)
    if not (raw_dir(directory) / "train-images-idx3-ubyte").exists() and not (raw_dir(directory) / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"no MNIST in {directory}: run `harness data` first")
    return directory


@pytest.mark.parametrize("path", PATHS)
def test_throughput(benchmark, path, data_dir):
    timing = benchmark.pedantic(lambda: measure([path], ROUNDS, resolve(DEVICE), data_dir, EPOCHS)[0], rounds=1, iterations=1)
    benchmark.extra_info.update(
        device=DEVICE, runs=timing.runs, runs_per_second=timing.runs_per_second,
        test_error=timing.test_error, peak_memory_mb=timing.peak_memory_mb,
    )
    assert timing.test_error < 0.5  # it learned something: a path that skips work is no faster path


PAIRED_REPEATS = 3  # plain then workers, three times: the median ratio, as drift on a shared machine moves both


@pytest.mark.skipif(DEVICE != "cpu", reason="the 1.5x target is for the CPU path")
def test_cpu_path_beats_the_plain_loop(benchmark, data_dir):
    """The target as `harness bench --device cpu` measures it: the full reference (10 runs of 25
    epochs on each path, in one go), process start-up included; shortened runs would weigh the
    workers' start-up (torch imported in each) more than a real plan does. Measured three times,
    each path right after the other, and the median of the three ratios asserted (every ratio
    is recorded: none is dropped)."""
    def paired():
        return [measure(["plain", "workers"], 10, resolve("cpu"), data_dir) for _ in range(PAIRED_REPEATS)]

    pairs = benchmark.pedantic(paired, rounds=1, iterations=1)
    ratios = sorted(workers.runs_per_second / plain.runs_per_second for plain, workers in pairs)
    steady = [plain.steady_seconds_per_run / workers.steady_seconds_per_run for plain, workers in pairs]
    benchmark.extra_info.update(ratios=ratios, steady_ratios=steady, outside_runs=[w.outside_runs for _, w in pairs])
    median = ratios[len(ratios) // 2]
    assert median >= CPU_TARGET, f"harness CPU path {median:.2f}x the plain loop (median of {ratios}), target {CPU_TARGET}x"
