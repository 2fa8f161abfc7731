"""Presentation: the only layer that formats tables (tabulate) and talks to the terminal."""

from __future__ import annotations

import io

import pandas as pd
from tabulate import tabulate

from harness.config import PRESENTATION_KEYS, Plan

FACTORS = (
    "encoder", "pairing", "weight_sharing", "aux_loss", "batch_norm", "dropout", "swap_augment", "transfer",
)


def _varying(frame: pd.DataFrame, keys) -> list[str]:
    """The factor columns, plus any other setting that differs between configurations."""
    columns = [k for k in keys if k in frame and frame[k].astype(str).nunique() > 1]
    return columns or [k for k in FACTORS if k in frame][:1]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plan_frame(plan: Plan, *, estimate: bool = True, stored: pd.DataFrame | None = None) -> pd.DataFrame:
    """A row per configuration. `stored`: the store's runs; their mean seconds replace the
    timed-step estimate, and their count is shown as rounds done."""
    from harness.plan import parameter_count, seconds_per_run

    done = stored[stored["status"] == "done"] if stored is not None and not stored.empty else None
    rows = []
    for config in plan.configs:
        row = {"id": config.config_id[:10], "name": config.name, **config.__dict__}
        row["params"] = parameter_count(config)
        measured = done[done["config_id"] == config.config_id] if done is not None else None
        if done is not None:
            row["done"] = int(measured["round"].lt(config.rounds).sum())
        if estimate:
            if measured is not None and len(measured):
                row["s/run"], row["timing"] = round(float(measured["seconds"].mean()), 2), "stored"
            else:
                row["s/run"], row["timing"] = round(seconds_per_run(config), 2), "timed steps"
        rows.append(row)
    return pd.DataFrame(rows)


def plan_table(
    plan: Plan,
    output_format: str = "text",
    *,
    workers: int | None = None,
    estimate: bool = True,
    stored: pd.DataFrame | None = None,
) -> str:
    import os

    frame = plan_frame(plan, estimate=estimate, stored=stored)
    extra = ("id", "name", "params", "s/run", "timing", "done", *PRESENTATION_KEYS)
    settings = [k for k in frame.columns if k not in extra]
    shown = ["id", "name", *_varying(frame, FACTORS + tuple(k for k in settings if k not in FACTORS)), "params", "rounds"]
    shown += [k for k in ("done", "s/run") if k in frame]
    if output_format == "csv":
        buffer = io.StringIO()
        frame[shown].to_csv(buffer, index=False)
        return buffer.getvalue().rstrip("\n")
    lines = [tabulate(frame[shown], headers="keys", tablefmt="simple", showindex=False)]
    runs = int(frame["rounds"].sum())
    lines.append(f"\n{len(frame)} configurations, {runs} runs" + (f" (profile {plan.profile})" if plan.profile else ""))
    if estimate:
        workers = workers or os.cpu_count() or 1
        remaining = frame["rounds"] - frame.get("done", 0)
        total = float((frame["s/run"] * frame["rounds"]).sum()) / workers
        left = float((frame["s/run"] * remaining).sum()) / workers
        stored_count = int((frame["timing"] == "stored").sum())
        lines.append(
            f"estimated time with {workers} worker(s): {_duration(total)} in all, {_duration(left)} for what is not done "
            f"({stored_count} configurations timed from stored runs, {len(frame) - stored_count} from a few timed "
            "training steps on this CPU: a lower bound, as evaluation, data and process overheads are not timed)"
        )
    if plan.dropped:
        lines.append(f"\n{len(plan.dropped)} combinations dropped:")
        by_reason: dict[str, list[dict]] = {}
        for dropped in plan.dropped:
            by_reason.setdefault(dropped.reason, []).append(dropped.settings)
        for reason, combos in by_reason.items():
            shared = {k: v for k, v in combos[0].items() if all(c.get(k) == v for c in combos)}
            where = ", ".join(f"{k}={v}" for k, v in shared.items())
            lines.append(f"  {len(combos):4d} x {reason}" + (f" [{where}]" if where else ""))
    return "\n".join(lines)
