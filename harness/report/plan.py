"""`harness plan`'s output: the configurations a matrix expands to (the settings that vary among
them), their parameter counts, rounds and time estimates, and the combinations dropped, with
their reasons."""

from __future__ import annotations

import os

import pandas as pd

from harness.config import Plan
from harness.report.cells import duration
from harness.report.formats import Document, Paragraph, Table, records
from harness.tasks import declared, factors


def _varying(frame: pd.DataFrame, keys) -> list[str]:
    """The factor columns, plus any other setting that differs between configurations."""
    columns = [k for k in keys if k in frame and frame[k].astype(str).nunique() > 1]
    return columns or [k for k in factors() if k in frame][:1]


def plan_document(frame: pd.DataFrame, plan: Plan, *, workers: int | None = None, estimate: bool = True) -> Document:
    """From harness.estimate.cost_frame's rows: a table of the configurations (its CSV), the
    runs and the time they take, the dropped combinations grouped by reason, the notes on its
    configurations (its JSON: every row with every setting, the dropped combinations, the notes)."""
    presentation = [name for name, declaration in declared().items() if declaration.meta.presentation]
    extra = ("id", "name", "params", "s/run", "timing", "done", *presentation)
    settings = [k for k in frame.columns if k not in extra]
    ordered = factors() + [k for k in settings if k not in factors()]
    shown = ["id", "name", *_varying(frame, ordered), "params", "rounds"]
    shown += [k for k in ("done", "s/run") if k in frame]
    runs = int(frame["rounds"].sum())
    lines = [f"{len(frame)} configurations, {runs} runs" + (f" (profile {plan.profile})" if plan.profile else "")]
    if estimate:
        workers = workers or os.cpu_count() or 1
        remaining = frame["rounds"] - frame.get("done", 0)
        total = float((frame["s/run"] * frame["rounds"]).sum()) / workers
        left = float((frame["s/run"] * remaining).sum()) / workers
        stored_count = int((frame["timing"] == "stored").sum())
        lines.append(
            f"estimated time with {workers} worker(s): {duration(total)} in all, {duration(left)} for what is not done "
            f"({stored_count} configurations timed from stored runs, {len(frame) - stored_count} from a few timed "
            "training steps on this CPU: a lower bound, as evaluation, data and process overheads are not timed)"
        )
        missing = frame[frame["s/run"].isna()]
        if len(missing):
            lines.append(f"{len(missing)} configurations have no estimate, left out of that time:")
            for timing, rows in missing.groupby("timing", sort=False):
                why = timing.removeprefix("no estimate").strip().removeprefix("(").removesuffix(")") or "its task gives none"
                lines.append(f"  {len(rows):4d} x {why} (e.g. {rows['name'].iloc[0]})")
    if plan.design is not None:
        lines += plan.design.lines()
    if plan.adaptive is not None:
        lines += plan.adaptive.lines()
    blocks = [Table(frame[shown]), Paragraph("\n".join(lines))]
    if plan.dropped:
        dropped = [f"{len(plan.dropped)} combinations dropped:"]
        by_reason: dict[str, list[dict]] = {}
        for combination in plan.dropped:
            by_reason.setdefault(combination.reason, []).append(combination.settings)
        for reason, combos in by_reason.items():
            shared = {k: v for k, v in combos[0].items() if all(c.get(k) == v for c in combos)}
            where = ", ".join(f"{k}={v}" for k, v in shared.items())
            dropped.append(f"  {len(combos):4d} x {reason}" + (f" [{where}]" if where else ""))
        blocks.append(Paragraph("\n".join(dropped)))
    if plan.notes:
        blocks.append(Paragraph("\n".join(["notes:", *(f"  {note}" for note in plan.notes)])))
    machine = {"configurations": records(frame), "runs": runs,
               "dropped": [{"settings": combination.settings, "reason": combination.reason} for combination in plan.dropped],
               "notes": list(plan.notes)}
    return Document("harness plan", blocks, table=frame[shown], records=machine, preamble=False)


LONG_START = 600.0  # seconds of estimated training past which `harness run` says how to get a first answer sooner


def start_lines(frame: pd.DataFrame, plan: Plan, workers: int) -> list[str]:
    """What `harness run` says before its first run, from cost_frame's rows of the
    configurations it will train (`done`: their rounds already stored): the time the runs left
    will take on `workers` workers and where the figure comes from; when that is long, how to
    get a first answer sooner."""
    if frame.empty or "s/run" not in frame:
        return []
    left = frame["rounds"] - frame.get("done", 0)
    timed = frame["s/run"].notna()
    runs_left = int(left.sum())
    seconds = float((frame["s/run"] * left)[timed].sum()) / max(1, workers)
    stored = int(((frame["timing"] == "stored") & (left > 0)).sum())
    stepped = int(((frame["timing"] == "timed steps") & (left > 0)).sum())
    untimed = int((~timed & (left > 0)).sum())
    sources = [f"{stored} configurations timed from their stored runs"] if stored else []
    if stepped:
        sources.append(f"{stepped} configurations from a few timed training steps: a lower bound, as evaluation, "
                       "data and process start are not timed")
    if untimed:
        sources.append(f"{untimed} configurations without an estimate")
    lines = [f"estimated time: about {duration(seconds)} for the {runs_left} runs to do with {workers} worker(s) "
             f"({'; '.join(sources)})"]
    if seconds > LONG_START:
        if plan.profile is None and "smoke" in plan.matrix.profiles:
            lines.append(f"a first answer sooner: harness run --matrix {plan.matrix.path} --profile smoke (a store of "
                         "its own; this command resumes where it stops)")
        else:
            lines.append("a first answer sooner: fewer rounds (--rounds 2) or configurations (--only KEY=VALUE); "
                         "this command resumes where it stops")
    return lines


def power_document(frame: pd.DataFrame, plan: Plan, source: str, *, mde: float | None = None, alpha: float = 0.05,
                   power: float = 0.8) -> Document:
    """`harness plan --power`: per effect, the pilot's round-to-round spread, the minimum
    detectable effect at the plan's rounds (the range between the conservative and the
    lenient Benjamini-Hochberg thresholds) and, with `mde`, the rounds it needs."""
    rounds = max(config.rounds for config in plan.configs)
    table = pd.DataFrame({
        "factor": frame["factor"],
        "change": frame["change"],
        **({"at": frame["context"]} if "context" in frame and frame["context"].astype(bool).any() else {}),
        "pilot rounds": frame["rounds"],
        "spread (pp)": frame["spread"].map(lambda v: f"{v:.2f}"),
        f"detectable at {rounds} rounds (pp)": [f"{first:.2f} ({last:.2f})" for first, last in
                                                zip(frame["mde_first"], frame["mde_last"])],
    })
    if mde is not None:
        table[f"rounds for {mde:g} pp"] = frame["rounds_needed"].map(lambda v: "over 1000" if v is None or pd.isna(v)
                                                                      else str(int(v)))
    family = len(frame)
    words = (f"Power of the paired effects at {rounds} rounds, from the round-to-round spread of each effect in "
             f"{source}: the smallest true effect the two-sided paired t test detects with probability {power:g}, at "
             f"alpha {alpha:g}/{family} (the Benjamini–Hochberg threshold the first-ranked of the {family} effects must "
             f"pass, a conservative bound) and, in brackets, at alpha {alpha:g} (met when every effect of the family "
             "is real).")
    if mde is not None:
        words += f" Rounds for {mde:g} pp: the fewest that detect it at the conservative threshold."
    return Document("harness plan --power", [Paragraph(words), Table(table)], table=table,
                    records={"rounds": rounds, "source": source, "effects": records(frame)})
