"""Backends by name: where the tasks of a plan run (see base.py for the interface)."""

from __future__ import annotations

from harness.backends.base import MAX_RETRIES, Backend, BackendError, TaskFailed, WorkerSetupError

NAMES = ("local", "ray")

__all__ = ["MAX_RETRIES", "NAMES", "Backend", "BackendError", "TaskFailed", "WorkerSetupError", "make"]


def make(name: str, *, device: str, workers: int = 1, address=None, cpus_per_job: float = 1.0,
         gpus_per_job: float = 0.0) -> Backend:
    """The backend called `name`, configured; BackendError for an unknown name or bad options."""
    if name == "local":
        from harness.backends.local import LocalBackend

        return LocalBackend(workers)
    if name == "ray":
        from harness.backends.ray import RayBackend, RayOptions

        return RayBackend(RayOptions(address, cpus_per_job, gpus_per_job), device)
    import difflib

    close = difflib.get_close_matches(name, NAMES, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise BackendError(f"unknown backend '{name}' (known: {', '.join(NAMES)}){hint}")
