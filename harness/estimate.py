"""What a plan will cost before it trains: each configuration's parameter count and a time
estimate, from its task (harness.tasks.TaskSpec's `parameter_count`, `seconds_per_run`) or
from the runs a store already holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.config import Plan
from harness.results import Status
from harness.settings import RunConfig
from harness.tasks import get_task

if TYPE_CHECKING:
    import pandas as pd


def parameter_count(config: RunConfig) -> int | None:
    """The configuration's parameter count, from its task (None when the task cannot tell)."""
    count = get_task(config.task).hook("parameter_count")
    return count(config) if count else None


def seconds_per_run(config: RunConfig) -> float | None:
    """An estimate of one run's seconds, from its task (None when the task has none)."""
    estimate = get_task(config.task).hook("seconds_per_run")
    return estimate(config) if estimate else None


def cost_frame(plan: Plan, *, estimate: bool = True, stored: pd.DataFrame | None = None) -> pd.DataFrame:
    """A row per configuration: its id, name, settings and parameter count; with `estimate`,
    its seconds per run and how they were found. `stored`: the store's runs; their mean seconds
    replace the timed-step estimate, and their count is shown as rounds done."""
    import pandas as pd

    done = stored[stored["status"] == Status.DONE] if stored is not None and not stored.empty else None
    rows = []
    for config in plan.configs:
        row = {"id": config.config_id[:10], "name": config.name, **config.settings()}
        row["params"] = parameter_count(config)
        measured = done[done["config_id"] == config.config_id] if done is not None else None
        if done is not None:
            row["done"] = int(measured["round"].lt(config.rounds).sum())
        if estimate:
            if measured is not None and len(measured):
                row["s/run"], row["timing"] = round(float(measured["seconds"].mean()), 2), "stored"
            else:
                seconds = seconds_per_run(config)
                row["s/run"] = round(seconds, 2) if seconds is not None else None
                row["timing"] = "timed steps" if seconds is not None else "no estimate"
        rows.append(row)
    return pd.DataFrame(rows)
