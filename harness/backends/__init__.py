"""Backends by name: where the tasks of a plan run (see base.py for the interface).

A backend is one module of this package (or of an installed package, through the entry-point
group `harness.backends`, or a plugin's registration) whose class declares its options as a
dataclass (`Options`, filled by `--backend-option key=value`); it is imported only when chosen
(Ray is an optional extra).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.backends.base import (
    MAX_RETRIES,
    Backend,
    BackendError,
    BackendLost,
    TaskFailed,
    WorkerSetupError,
    parse_options,
)
from harness.registry import Registry

BACKENDS: Registry[type] = Registry("backend", entry_points="harness.backends", error=BackendError)
BACKENDS.register("local", "harness.backends.local:LocalBackend", builtin=True)
BACKENDS.register("ray", "harness.backends.ray:RayBackend", builtin=True)
BACKENDS.register("slurm", "harness.backends.slurm:SlurmBackend", builtin=True)

__all__ = ["BACKENDS", "MAX_RETRIES", "Backend", "BackendError", "BackendLost", "TaskFailed", "WorkerSetupError", "create"]


def create(name: str, options: Mapping[str, Any] | None = None) -> Backend:
    """The backend called `name`, built from its options (checked against its Options
    dataclass); BackendError for an unknown name (with the known ones and the closest) or a bad
    option, before anything starts."""
    kind = BACKENDS.get(name)
    return kind(parse_options(kind.Options, options or {}, name))
