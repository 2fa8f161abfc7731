"""The Ray backend: each task (a round, or a batched group of rounds) is a Ray task.

The driver alone writes the store: results stream back as tasks finish, so resume, --fresh,
progress and the failure summary are the local backend's. MNIST reaches the cluster once, as
one Ray object holding the downsampled digits; each worker process reads it on its first task
and keeps it for the next ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from harness.config import ConfigError

RAY_MISSING = "--backend ray needs Ray, an optional extra: pip install -e '.[ray]'"


@dataclass(frozen=True)
class RayOptions:
    """address: None starts a local Ray sized to this machine, "auto" joins a running cluster,
    or a cluster address. cpus_per_job / gpus_per_job: the resources of each task (fractional
    GPUs pack several small tasks onto one GPU). max_retries: how often Ray reruns a task whose
    worker died before it is recorded failed."""

    address: str | None = None
    cpus_per_job: float = 1.0
    gpus_per_job: float = 0.0
    max_retries: int = 3


def check(options: RayOptions, device: str) -> None:
    """ConfigError for options that cannot work, before anything starts."""
    require_ray()
    if options.cpus_per_job <= 0 or options.gpus_per_job < 0:
        raise ConfigError("--cpus-per-job must be greater than 0 and --gpus-per-job not negative")
    if device.startswith("cuda") and options.gpus_per_job <= 0:
        raise ConfigError(f"--device {device} with --backend ray needs --gpus-per-job (e.g. 0.25 packs four jobs a GPU)")
    if device == "cpu" and options.gpus_per_job > 0:
        raise ConfigError("--gpus-per-job with --device cpu reserves GPUs that no job uses; use --device cuda")


def require_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


_SOURCE = None  # this worker process's PairSource, read from the object store on its first task


def run_remote(task, data_box: list, device: str, threads: int):
    """The body of one Ray task: (job, RunResult) pairs of the task's rounds."""
    global _SOURCE
    import ray
    import torch

    from harness.runner import run_task

    if _SOURCE is None:
        _SOURCE = ray.get(data_box[0])  # in a list so that Ray does not fetch it for every task
    if device == "cpu":
        torch.set_num_threads(threads)  # one thread (the default) gives the local backend's numbers
    return run_task(task, _SOURCE, device)


def ray_results(tasks, source, device: str, options: RayOptions, body: Callable = run_remote) -> Iterator:
    """Run `tasks` on Ray; yield (job, RunResult) as tasks finish. A task that raises, or whose
    worker is lost more than `max_retries` times, yields failed results with the reason.
    Ctrl-C (or any exception here) cancels the tasks still outstanding."""
    ray = require_ray()
    from harness.train import failed_result

    check(options, device)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=options.address, include_dashboard=False, logging_level="warning", log_to_driver=False)
    try:
        data_box = [ray.put(source)]
        remote = ray.remote(body).options(
            num_cpus=options.cpus_per_job,
            num_gpus=options.gpus_per_job,
            max_retries=options.max_retries,
            retry_exceptions=False,  # a task that raises has a reason worth recording, not retrying
        )
        threads = max(1, int(options.cpus_per_job))
        pending = {remote.remote(task, data_box, device, threads): task for task in tasks}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                task = pending.pop(ready[0])
                try:
                    finished = ray.get(ready[0])
                except ray.exceptions.RayError as error:
                    reason = f"{type(error).__name__}: {_first_line(error)}"
                    finished = [(job, failed_result(job.config, job.round, reason, device)) for job in task.jobs()]
                yield from finished
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started_here:
            ray.shutdown()


def _first_line(error: Exception) -> str:
    text = str(getattr(error, "cause", None) or error)  # RayTaskError carries the task's own exception
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:300]
