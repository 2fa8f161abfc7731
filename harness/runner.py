"""Run a plan's missing jobs on one machine and store each result as it finishes.

On CPU every run uses one torch thread, whatever the number of worker processes, so a run's
numbers do not depend on --workers (thread count changes float summation order).
"""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.backends import Backend, TaskFailed
from harness.backends.local import usable_cores
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


def code_version(root: Path | None = None) -> str:
    """The git commit of the code (with '+dirty' for local changes), else the package version.

    Only a checkout of this project counts: the package installed inside some other git
    repository (a virtual environment within one, say) reports its version, not that
    repository's commit."""
    from harness import __version__

    root = (root or Path(__file__).resolve().parent.parent).resolve()

    def git(*arguments: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *arguments], capture_output=True, text=True, timeout=5
        ).stdout.strip()

    try:
        toplevel = git("rev-parse", "--show-toplevel")
        if not toplevel or Path(toplevel).resolve() != root or not git("ls-files", "harness/runner.py"):
            return __version__
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return __version__
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


@dataclass(frozen=True)
class WorkerContext:
    """What every worker holds for all its tasks: the verified data, where to train, threads."""

    source: object  # harness.data.PairSource
    device: str
    threads: int = 1


def prepare_worker(context: WorkerContext) -> None:
    """Once per worker: one torch thread per run on CPU, so numbers do not depend on --workers."""
    import torch

    if context.device == "cpu":
        torch.set_num_threads(context.threads)


def execute(task: Task, context: WorkerContext) -> list[tuple[Job, object]]:
    """The work function every backend runs: one task in, its rounds' results out."""
    return run_task(task, context.source, context.device)


def worker_count(requested: int | None, device: str) -> int:
    """Worker processes for `device`: one process owns an accelerator; on CPU, the request
    (default: every core) capped at the cores this process may use, as more would only share them."""
    if device != "cpu":
        return 1
    return max(1, min(requested or usable_cores(), usable_cores()))


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
    backend: Backend | None = None,
) -> Summary:
    """Train every job of `plan` that the store does not hold as done; store each as it ends.

    `splits`: MNIST already loaded and verified (else it is loaded here); workers receive it
    from here and never read the files themselves. Raises DataError before any work when MNIST
    is missing or corrupt. `batched`: train each configuration's missing rounds as one
    vectorised model (default: `default_batching(device)`). `backend`: where the tasks run
    (default: local worker processes, `worker_count(workers, device)` of them); the store is
    written here, by this process alone. A task whose worker was lost past its retries, or
    whose work raised, is stored as failed with the reason; WorkerSetupError and StoreError end
    the run, with every run finished before them stored.
    """
    from harness import data
    from harness.train import failed_result

    if splits is None:
        splits = data.load_mnist(data_dir)  # fetch and verify once, here
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
    if backend is None:
        from harness.backends.local import LocalBackend

        backend = LocalBackend(worker_count(workers, device))
    tasks = make_tasks(jobs, batched, backend.workers)
    context = WorkerContext(data.PairSource(splits), device, backend.threads_per_task)
    record = provenance(plan)
    started = time.perf_counter()
    outcomes = backend.launch(tasks, execute, context, prepare_worker)
    try:
        for task, outcome in outcomes:
            if isinstance(outcome, TaskFailed):
                outcome = [(job, failed_result(job.config, job.round, outcome.reason, device)) for job in task.jobs()]
            for job, result in outcome:
                store.write(result, job.config, record)
                summary.finished += 1
                if result.status != "done":
                    summary.failed.append((job.config.name, job.round, result.reason or "unknown"))
                if on_result:
                    on_result(job, result)
    finally:
        outcomes.close()  # stops the workers now, whatever ended the loop
    summary.seconds = time.perf_counter() - started
    return summary
