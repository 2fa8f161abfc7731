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

from harness.config import ConfigError, Job, Plan, RunConfig
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

@dataclass(frozen=True)
class Task:
    """One unit of work for a worker: one round of a configuration, or (batched) several rounds
    of one configuration trained together as one vectorised model."""

    config: RunConfig
    rounds: tuple[int, ...]
    batched: bool = False

    def jobs(self) -> list[Job]:
        return [Job(self.config, r) for r in self.rounds]


def make_tasks(jobs: list[Job], batched: bool, workers: int = 1) -> list[Task]:
    """Jobs as tasks: one each, or batched, one per configuration holding its missing rounds;
    with fewer configurations than workers, a configuration's rounds are split so that every
    worker gets a share."""
    if not batched:
        return [Task(job.config, (job.round,)) for job in jobs]
    rounds: dict[str, list[int]] = {}
    configs: dict[str, RunConfig] = {}
    for job in jobs:
        rounds.setdefault(job.config.config_id, []).append(job.round)
        configs[job.config.config_id] = job.config
    parts = max(1, -(-workers // len(rounds)))
    tasks = []
    for key, missing in rounds.items():
        missing = sorted(missing)
        size = -(-len(missing) // min(parts, len(missing)))
        tasks += [Task(configs[key], tuple(missing[i : i + size]), True) for i in range(0, len(missing), size)]
    return tasks


def run_task(task: Task, source, device: str) -> list[tuple[Job, object]]:
    """Train a task; (job, RunResult) for each of its rounds. Never raises for a failed run."""
    if task.batched:
        from harness.batched import train_rounds

        results = train_rounds(task.config, list(task.rounds), source, device)
    else:
        from harness.train import train_run

        results = [train_run(task.config, task.rounds[0], source, device)]
    return list(zip(task.jobs(), results))


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


def _run_task(task: Task):
    return run_task(task, _SOURCE, _DEVICE)


def _results(tasks: list[Task], workers: int, data_dir, checksums, device: str) -> Iterator:
    if workers <= 1:
        _init_worker(data_dir, checksums, device)
        for task in tasks:
            yield from _run_task(task)
        return
    context = multiprocessing.get_context("spawn")  # fork after torch is loaded is unsafe
    with context.Pool(workers, initializer=_init_worker, initargs=(data_dir, checksums, device)) as pool:
        try:
            for finished in pool.imap_unordered(_run_task, tasks):
                yield from finished
        except BaseException:
            pool.terminate()  # Ctrl-C: runs in flight are lost, stored runs are complete
            raise


def default_workers(device: str) -> int:
    return (os.cpu_count() or 1) if device == "cpu" else 1


def default_batching(device: str) -> bool:
    """Whether rounds train batched by default: on CUDA, where one small run leaves the GPU idle
    between kernel launches. On CPU, process workers with one thread each measured faster (see
    docs/performance.md and `harness bench`)."""
    return device.startswith("cuda")


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
    batched: bool | None = None,
    ray_options=None,
) -> Summary:
    """Train every job of `plan` that the store does not hold as done; store each as it ends.

    `splits`: MNIST already loaded and verified (else it is loaded here). Raises DataError
    before any work when MNIST is missing or corrupt. `batched`: train each configuration's
    missing rounds as one vectorised model (default: `default_batching(device)`).
    `ray_options` (harness.ray_backend.RayOptions): run the tasks on Ray instead of local
    worker processes; the store is still written here, by this process alone.
    """
    from harness import data

    checksums = dict(data.MNIST_SHA256)
    if splits is None:
        splits = data.load_mnist(data_dir, checksums=checksums)  # fetch and verify once, here
    limit = data.max_pairs(splits)
    for config in plan.configs:
        if config.pairs > limit:
            raise data.DataError(f"{config.name}: {config.pairs} pairs asked, the data holds {limit} per set")

    finished = store.finished_keys()
    jobs = [job for job in plan.jobs if job.key not in finished]
    summary = Summary(total=len(plan.jobs), already_done=len(plan.jobs) - len(jobs))
    if on_start:
        on_start(summary.already_done, len(jobs))
    if not jobs:
        return summary
    batched = default_batching(device) if batched is None else batched
    if ray_options is not None:
        from harness.data import PairSource
        from harness.ray_backend import ray_results

        results = ray_results(make_tasks(jobs, batched), PairSource(splits), device, ray_options)
    else:
        del splits  # workers read the files themselves
        workers = workers or default_workers(device)
        if device != "cpu":
            workers = 1  # one process owns the accelerator
        tasks = make_tasks(jobs, batched, workers)
        results = _results(tasks, min(workers, len(tasks)), data_dir, checksums, device)
    record = provenance(plan)
    started = time.perf_counter()
    for job, result in results:
        store.write(result, job.config, record)
        summary.finished += 1
        if result.status != "done":
            summary.failed.append((job.config.name, job.round, result.reason or "unknown"))
        if on_result:
            on_result(job, result)
    summary.seconds = time.perf_counter() - started
    return summary
