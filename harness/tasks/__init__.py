"""Tasks: what is learned, registered by name like models and backends.

A task supplies its data (drawn per round from the round's data seed, so rounds pair across
configurations), its models, losses and metrics (its trainer), its checks on a configuration,
its default matrix and, optionally, its own figures. Everything else (the matrix, ids, the
store, tables, effects, compare, plots, the HTML report) is shared: a trainer returns a
`harness.results.RunResult` whose metrics use the shared names (`train_error`, `test_error`,
`validation_error`, `train_loss`, `test_predicted_share`, `train_chance_error`, and any of the
digit errors it has), so the report layer needs no task-specific code.

A task's own settings are declared in `harness/settings.py` with `task="name"`; the others'
settings must stay at their defaults in its configurations.

Adding a task (a plugin file named in a matrix's `plugins`, or a module in the package):

    from harness.tasks import TaskSpec, register_task

    register_task(TaskSpec(
        name="xor",
        help="points in the unit square, label 1 in two opposite quadrants",
        loader="my_task:load",          # load(data_dir) -> the source handed to every run
        trainer="my_task:train_run",    # train_run(config, round_index, source, policy) -> RunResult
    ))

References are `module:attribute` strings (imported where used, so declaring a task imports
neither torch nor its models) or the callables themselves.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class UnknownTaskError(ValueError):
    """A task name nobody registered; the message lists the known names and a close match."""


@dataclass(frozen=True)
class TaskSpec:
    """One task. `loader(data_dir)` runs once per `harness run` in the main process and its
    result is shipped to every worker; `trainer(config, round_index, source, policy)` trains
    one round and never raises for a failed run; `batched_trainer(config, rounds, source,
    policy)`, when given, trains several rounds as one vectorised model; `packed_trainer(jobs,
    source, policy)` trains (config, round) jobs of configurations with one `pack_key(config)`
    together (`--pack`). `check(config)` says why a configuration means nothing for this task
    (it is dropped from the plan), or None.
    `figures(runs, epochs, out_dir)` draws the task's own figures from the store's DataFrames
    and returns the paths written. `parameter_count(config)` and `seconds_per_run(config)` let
    `harness plan` show a configuration's size and an estimate of its time before training. `size_setting`: the setting holding the examples per set,
    which `validation` must stay below."""

    name: str
    help: str
    loader: str | Callable[[Any], Any]
    trainer: str | Callable[..., Any]
    batched_trainer: str | Callable[..., Any] | None = None
    packed_trainer: str | Callable[..., Any] | None = None
    pack_key: str | Callable[[Any], str] | None = None
    check: str | Callable[[Any], str | None] | None = None
    figures: str | Callable[..., list] | None = None
    default_matrix: str | None = None
    parameter_count: str | Callable[[Any], int] | None = None  # config -> parameters, without training
    seconds_per_run: str | Callable[[Any], float] | None = None  # config -> estimated seconds of one run
    size_setting: str = "pairs"
    needs_data_files: bool = False  # True: the loader reads files (e.g. MNIST) that `harness data` fetches

    def resolve(self, attribute: str) -> Callable[..., Any] | None:
        """The callable behind one of the references (imported on first use)."""
        reference = getattr(self, attribute)
        if reference is None or callable(reference):
            return reference
        module, _, name = reference.partition(":")
        return getattr(importlib.import_module(module), name)


REGISTRY: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    """Register a task under its name (a later registration of the same name replaces it, so a
    plugin imported twice is harmless)."""
    if not spec.name or not spec.name.replace("_", "").isalnum():
        raise ValueError(f"task name {spec.name!r}: use letters, digits and underscores")
    REGISTRY[spec.name] = spec
    return spec


def task_names() -> list[str]:
    """Every registered task: the built-in ones, then those plugins registered."""
    return list(REGISTRY)


def builtin_task_names() -> list[str]:
    return list(BUILTIN)


def get_task(name: str) -> TaskSpec:
    """The registered task; UnknownTaskError naming the known tasks and a close match."""
    try:
        return REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UnknownTaskError(f"unknown task {name!r}: known tasks are {', '.join(REGISTRY)}{hint}") from None


register_task(TaskSpec(
    name="pairs",
    help="two MNIST digits as one 2x14x14 tensor: is the first lesser than or equal to the second?",
    loader="harness.data:load_pair_source",
    trainer="harness.training:train_run",
    batched_trainer="harness.training:train_rounds",
    packed_trainer="harness.training:train_pack",
    pack_key="harness.training:pack_key",
    check="harness.config:why_meaningless_pairs",
    default_matrix="ablations.toml",
    parameter_count="harness.plan:pairs_parameter_count",
    seconds_per_run="harness.plan:pairs_seconds_per_run",
    size_setting="pairs",
    needs_data_files=True,
))

register_task(TaskSpec(
    name="disk",
    help="points drawn in the unit square: inside the disk of area 1/2 centred at (0.5, 0.5)? (the course's Project 2)",
    loader="harness.tasks.disk:DiskSource",
    trainer="harness.training.disk:train_run",
    check="harness.tasks.disk:why_meaningless",
    figures="harness.tasks.disk:figures",
    default_matrix="matrices/reports-p2.toml",
    parameter_count="harness.training.disk:parameter_count",
    seconds_per_run="harness.training.disk:seconds_per_run",
    size_setting="points",
))

BUILTIN = tuple(REGISTRY)  # the tasks of the package itself (the settings table lists these)
