"""The Python API: the functions the command line calls, for notebooks and scripts.

    from harness import api

    plan = api.plan("ablations.toml", sets=["epochs=5", "dropout=[0, 0.5]"], only={"encoder": "cnn"})
    plan = api.plan(configs=[{"encoder": "MyNet", "aux_loss": True}], plugins=["my_models.py"])
    summary = api.run(plan, store="results/mine.sqlite", device="auto", workers=2)
    api.summary("results/mine.sqlite", plan)      # a DataFrame: one row per configuration
    api.effects("results/mine.sqlite", plan)      # a DataFrame: paired effects with intervals
    print(api.table("results/mine.sqlite", plan))  # the markdown `harness table` prints

Errors are the command line's: ConfigError, DataError, StoreError, BackendError, each with a
one-line message.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.config import (
    MAX_CONFIGS,
    ConfigError,
    Plan,
    expand,
    load_matrix,
    parse_assignments,
    with_sets,
)

if TYPE_CHECKING:
    import pandas as pd

    from harness.runner import Summary

DEFAULT_STORE = "results/harness.sqlite"


def plan(
    matrix: str | Path | None = None,
    *,
    configs: list | None = None,
    profile: str | None = None,
    sets: list[str] | tuple[str, ...] = (),
    only: dict[str, Any] | list[str] | tuple[str, ...] | None = None,
    plugins: list[str] | tuple[str, ...] = (),
    overrides: dict[str, Any] | None = None,
    max_configs: int = MAX_CONFIGS,
) -> Plan:
    """A plan from a matrix file (with a profile, `--set` style assignments, checked
    `overrides` that beat them all, and an `only` filter), or from configurations (RunConfig
    objects or dicts of settings). `plugins`: .py files or modules to import first, so that
    their models can be named. `only`: settings to keep, a dict or `key=value` strings as on
    the command line (checked once the plugins are imported). `harness plan`, `run` and
    `table` build their plans here."""
    if (matrix is None) == (configs is None):
        raise ConfigError("api.plan: give a matrix file or configs, not both or neither")
    if configs is not None:
        return Plan.from_configs(configs, source="(python)", plugins=tuple(plugins))
    loaded, set_overrides = with_sets(load_matrix(matrix, tuple(plugins)), tuple(sets))
    if isinstance(only, (list, tuple)):
        only = parse_assignments(tuple(only), "--only")
    return expand(loaded, profile, {**set_overrides, **(overrides or {})}, only, max_configs=max_configs)


def run(
    the_plan: Plan,
    store: str | Path = DEFAULT_STORE,
    *,
    device: str = "auto",
    workers: int | None = None,
    batched: bool | None = None,
    pack: bool = False,
    data_dir: str | Path | None = None,
    backend: str = "local",
    **backend_options: Any,
) -> Summary:
    """Train what the store lacks of the plan (as `harness run`, `pack` as its --pack); the
    summary of what ran."""
    from harness import backends
    from harness.data import load_mnist
    from harness.device import resolve
    from harness.runner import run_plan
    from harness.store import Store

    remote_gpus = backend_options.get("gpus_per_job", 0.0) if backend != "local" else None
    policy = resolve(device, workers=workers, batched=batched, remote_gpus=remote_gpus, pack=pack)
    chosen = backends.make(backend, device=policy.device, workers=policy.workers, **backend_options)
    splits = load_mnist(data_dir)
    chosen.start()
    try:
        with Store(store) as opened:
            return run_plan(the_plan, opened, policy=policy, splits=splits, backend=chosen)
    finally:
        chosen.close()


def runs(store: str | Path = DEFAULT_STORE, the_plan: Plan | None = None) -> pd.DataFrame:
    """The store's runs (read only), one row each with its settings; the plan's alone if given."""
    from harness.report import select
    from harness.store import Store

    with Store.open_readonly(store) as opened:
        return select(opened.runs(), the_plan)


def summary(store: str | Path = DEFAULT_STORE, the_plan: Plan | None = None) -> pd.DataFrame:
    """One row per configuration: errors mean and std over rounds (%), rounds, settings."""
    from harness.stats import summarize

    return summarize(runs(store, the_plan))


def effects(store: str | Path = DEFAULT_STORE, the_plan: Plan | None = None) -> pd.DataFrame:
    """Each factor's paired effect on test error (percentage points) with its 95 % interval
    and Benjamini-Hochberg adjusted p-value."""
    from harness.stats import effects as paired_effects

    return paired_effects(runs(store, the_plan))


def table(store: str | Path = DEFAULT_STORE, the_plan: Plan | None = None, output_format: str = "markdown") -> str:
    """What `harness table` prints: markdown, latex or csv."""
    from harness.report import results_report

    return results_report(runs(store), store_path=str(store), plan=the_plan, output_format=output_format)
