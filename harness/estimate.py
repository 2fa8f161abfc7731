"""What a plan will cost before it trains: each configuration's parameter count and a time
estimate, from its task (harness.tasks.TaskSpec's `parameter_count`, `seconds_per_run`) or
from the runs a store already holds."""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING

from harness.config import Plan
from harness.results import Status
from harness.settings import RunConfig
from harness.tasks import get_task, runs_user_code

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


TIMING_SECONDS = 20.0  # the most a user's model's timed steps may take, in a worker process
TIMING_BUDGET = 60.0  # the most all of a plan's user configurations' timings may take together
TIMING_CHUNK = 250  # configurations per task of the timing worker (most share their timed step)


def budget_spent(budget: float) -> str:
    """Why a configuration was not timed: the plan's time for timing users' models ran out."""
    return f"not timed: the {budget:g} s for timing users' models were spent"


def timed_in_worker(configs: tuple[RunConfig, ...], context, seconds: float = TIMING_SECONDS,
                    budget: float = TIMING_BUDGET) -> list[float | str | None]:
    """The work function that times users' configurations where their code may do anything:
    each one's seconds per run, or why there are none (each within `seconds`, all within
    `budget`). An exit or a crash fails the whole task, as the backend says."""
    from harness.backends.base import first_line
    from harness.plugins import TimeLimitExceeded, time_limit

    started = time.monotonic()
    timings: list[float | str | None] = []
    for config in configs:
        if time.monotonic() - started > budget:
            timings.append(budget_spent(budget))
            continue
        try:
            with time_limit(seconds, f"timing its steps took over {seconds:g} s"):
                timings.append(seconds_per_run(config))
        except TimeLimitExceeded as error:
            timings.append(str(error))
        except Exception as error:  # noqa: BLE001 - the user's code failed: that configuration has no estimate
            timings.append(first_line(error))
    return timings


def user_timings(plan: Plan, configs: list[RunConfig]) -> dict[str, float | str | None]:
    """Seconds per run of configurations whose runs execute a user's code, timed in one worker
    process (never in this one: that code may exit, crash or hang), each within
    TIMING_SECONDS and all within TIMING_BUDGET; a configuration whose timing failed, or that
    the budget left untimed, maps to the reason, in words."""
    from harness.backends.base import TaskFailed
    from harness.backends.local import LocalBackend
    from harness.device import policy_for
    from harness.runner import prepare_worker, worker_context

    if not configs:
        return {}
    context = worker_context(plan, {}, policy_for("cpu", workers=1))
    timings: dict[str, float | str | None] = {}
    started = time.monotonic()
    seconds, budget = TIMING_SECONDS, TIMING_BUDGET  # as this process has them (a test may lower them)
    work = functools.partial(timed_in_worker, seconds=seconds, budget=budget)
    chunks = [tuple(configs[i : i + TIMING_CHUNK]) for i in range(0, len(configs), TIMING_CHUNK)]
    while chunks and time.monotonic() - started <= budget:
        retried = []  # a chunk whose worker died: its configurations one by one, to find the one at fault
        backend = LocalBackend(workers=1)
        outcomes = backend.launch(chunks, work, context, prepare_worker, isolate=True, limit=lambda chunk: seconds + budget)
        try:
            for chunk, values in outcomes:
                if isinstance(values, TaskFailed) and len(chunk) > 1:
                    retried += [(config,) for config in chunk]
                    continue
                values = [values.reason] if isinstance(values, TaskFailed) else values
                timings.update((config.config_id, value) for config, value in zip(chunk, values))
                if time.monotonic() - started > budget:
                    break
        finally:
            outcomes.close()
            backend.close()
        chunks = retried
    for config in configs:
        timings.setdefault(config.config_id, budget_spent(budget))
    return timings


def cost_frame(plan: Plan, *, estimate: bool = True, stored: pd.DataFrame | None = None) -> pd.DataFrame:
    """A row per configuration: its id, name, settings and parameter count; with `estimate`,
    its seconds per run and how they were found. `stored`: the store's runs; their mean seconds
    replace the timed-step estimate, and their count is shown as rounds done."""
    import pandas as pd

    done = stored[stored["status"] == Status.DONE] if stored is not None and not stored.empty else None
    measured_ids = set(done["config_id"]) if done is not None else set()
    isolated = user_timings(plan, [config for config in plan.configs if estimate and config.config_id not in measured_ids
                                   and runs_user_code(config)])
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
                seconds = isolated[config.config_id] if config.config_id in isolated else seconds_per_run(config)
                failed = seconds if isinstance(seconds, str) else None
                seconds = None if failed else seconds
                row["s/run"] = round(seconds, 2) if seconds is not None else None
                row["timing"] = "timed steps" if seconds is not None else f"no estimate ({failed})" if failed else "no estimate"
        rows.append(row)
    return pd.DataFrame(rows)
