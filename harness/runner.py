"""Run a plan's missing jobs on one machine and store each result as it finishes.

On CPU every run uses one torch thread, whatever the number of worker processes, so a run's
numbers do not depend on --workers (thread count changes float summation order).
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.config import ConfigError, Job, Plan
from harness.store import Store


@dataclass
class Summary:
    total: int
    already_done: int
    finished: int = 0
    failed: list[tuple[str, int, str]] = field(default_factory=list)
    seconds: float = 0.0


def resolve_device(requested: str) -> str:
    """'auto', 'cpu', 'cuda', 'cuda:N' or 'mps' -> a device that exists here, else ConfigError."""
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if requested == "cpu":
        return "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {requested}: CUDA is not available on this machine; use --device cpu or auto")
        index = requested.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ConfigError(f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return requested
    if requested == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError("--device mps: MPS is not available on this machine; use --device cpu or auto")
        return "mps"
    raise ConfigError(f"--device {requested}: unknown device; use auto, cpu, cuda, cuda:N or mps")


def code_version() -> str:
    """The git commit of the code (with '+dirty' for local changes), else the package version."""
    from harness import __version__

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    return f"{commit}{'+dirty' if dirty else ''}" if commit else __version__


def provenance(plan: Plan) -> dict[str, str]:
    import torch

    return {
        "torch_version": torch.__version__,
        "code_version": code_version(),
        "python_version": platform.python_version(),
        "matrix": plan.matrix.path + (f" --profile {plan.profile}" if plan.profile else ""),
        "command": " ".join(["harness", *sys.argv[1:]]) if sys.argv else "",
    }


# --------------------------------------------------------------------------- workers

_SOURCE = None
_DEVICE = "cpu"


def _init_worker(data_dir, checksums, device: str) -> None:
    """Load MNIST once per worker process."""
    global _SOURCE, _DEVICE
    import torch

    from harness.data import PairSource, load_mnist

    if device == "cpu":
        torch.set_num_threads(1)
    _SOURCE = PairSource(load_mnist(data_dir, download=False, checksums=checksums))
    _DEVICE = device


def _run_job(job: Job):
    from harness.train import train_run

    return job, train_run(job.config, job.round, _SOURCE, _DEVICE)


def _results(jobs: list[Job], workers: int, data_dir, checksums, device: str) -> Iterator:
    if workers <= 1:
        _init_worker(data_dir, checksums, device)
        for job in jobs:
            yield _run_job(job)
        return
    context = multiprocessing.get_context("spawn")  # fork after torch is loaded is unsafe
    with context.Pool(workers, initializer=_init_worker, initargs=(data_dir, checksums, device)) as pool:
        try:
            yield from pool.imap_unordered(_run_job, jobs)
        except BaseException:
            pool.terminate()  # Ctrl-C: runs in flight are lost, stored runs are complete
            raise


def default_workers(device: str) -> int:
    return (os.cpu_count() or 1) if device == "cpu" else 1


def run_plan(
    plan: Plan,
    store: Store,
    *,
    device: str = "cpu",
    workers: int | None = None,
    data_dir=None,
    splits=None,
    on_start: Callable[[int, int], None] | None = None,
    on_result: Callable[[Job, object], None] | None = None,
) -> Summary:
    """Train every job of `plan` that the store does not hold as done; store each as it ends.

    `splits`: MNIST already loaded and verified (else it is loaded here). Raises DataError
    before any work when MNIST is missing or corrupt.
    """
    from harness import data

    checksums = dict(data.MNIST_SHA256)
    if splits is None:
        splits = data.load_mnist(data_dir, checksums=checksums)  # fetch and verify once, here
    limit = data.max_pairs(splits)
    for config in plan.configs:
        if config.pairs > limit:
            raise data.DataError(f"{config.name}: {config.pairs} pairs asked, the data holds {limit} per set")
    del splits

    finished = store.finished_keys()
    jobs = [job for job in plan.jobs if job.key not in finished]
    summary = Summary(total=len(plan.jobs), already_done=len(plan.jobs) - len(jobs))
    if on_start:
        on_start(summary.already_done, len(jobs))
    if not jobs:
        return summary
    workers = workers or default_workers(device)
    if device != "cpu":
        workers = 1  # one process owns the accelerator
    workers = min(workers, len(jobs))
    record = provenance(plan)
    started = time.perf_counter()
    for job, result in _results(jobs, workers, data_dir, checksums, device):
        store.write(result, job.config, record)
        summary.finished += 1
        if result.status != "done":
            summary.failed.append((job.config.name, job.round, result.reason or "unknown"))
        if on_result:
            on_result(job, result)
    summary.seconds = time.perf_counter() - started
    return summary
