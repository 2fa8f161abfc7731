"""Backends by name: where the tasks of a plan run (see base.py for the interface).

A backend is one module of this package with a `create(**options)` constructor, registered by
one line in REGISTRY; it is imported only when chosen (Ray is an optional extra).
"""

from __future__ import annotations

import difflib
import importlib

from harness.backends.base import MAX_RETRIES, Backend, BackendError, TaskFailed, WorkerSetupError

REGISTRY = {  # name -> the module whose create() builds it
    "local": "harness.backends.local",
    "ray": "harness.backends.ray",
}
NAMES = tuple(REGISTRY)

__all__ = ["MAX_RETRIES", "NAMES", "REGISTRY", "Backend", "BackendError", "TaskFailed", "WorkerSetupError", "make"]


def make(name: str, *, device: str, workers: int = 1, **options) -> Backend:
    """The backend called `name`, configured (options a backend does not use are ignored);
    BackendError for an unknown name (with the known ones and the closest) or bad options."""
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, NAMES, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise BackendError(f"unknown backend '{name}' (known: {', '.join(NAMES)}){hint}")
    return importlib.import_module(REGISTRY[name]).create(device=device, workers=workers, **options)
