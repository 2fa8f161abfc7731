"""Presentation: the only layer that formats tables (tabulate) and talks to the terminal."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from harness.config import Plan
from harness.results import Status
from harness.settings import DECLARED, FACTORS, PRESENTATION_KEYS
from harness.stats import effects, interactions, summarize


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


def plan_table(
    frame: pd.DataFrame,
    plan: Plan,
    output_format: str = "text",
    *,
    workers: int | None = None,
    estimate: bool = True,
) -> str:
    """`harness plan` output from `harness.plan.plan_frame`'s rows: text or CSV."""
    import os

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


# --------------------------------------------------------------------------- results tables


class ReportError(Exception):
    """Nothing to report, or a check failed; the message says what and how to fix it."""


def _mean_std(mean: float, std: float) -> str:
    if pd.isna(mean):
        return "–"
    return f"{mean:.2f} ± {std:.2f}" if not pd.isna(std) else f"{mean:.2f}"


def _flag(row) -> str:
    notes = []
    if row["rounds_done"] < row["rounds"]:
        notes.append(f"{row['rounds_done']}/{row['rounds']} rounds")
    if row["rounds_failed"]:
        notes.append(f"{row['rounds_failed']} failed")
    if row.get("rounds_degenerate"):
        notes.append(f"{DEGENERATE} {row['rounds_degenerate']} degenerate")
    return "; ".join(notes)


DEGENERATE = "⚠"  # marks a configuration with rounds that learned nothing (stats.degenerate)


def configuration_rows(summary: pd.DataFrame, *, with_reference: bool) -> pd.DataFrame:
    """The configurations table as display strings (errors in %)."""
    table = pd.DataFrame(
        {
            "configuration": summary["name"],
            "params": summary["params"].map(lambda v: "–" if pd.isna(v) else f"{int(v):,}"),
            "train error %": [_mean_std(m, s) for m, s in zip(summary["train_error_mean"], summary["train_error_std"])],
            "test error %": [_mean_std(m, s) + (f" {DEGENERATE}" if bad else "") for m, s, bad in zip(
                summary["test_error_mean"], summary["test_error_std"], summary["rounds_degenerate"])],
            "range %": [
                "–" if pd.isna(low) else f"{low:.1f}–{high:.1f}"
                for low, high in zip(summary["test_error_min"], summary["test_error_max"])
            ],
            "rounds": summary["rounds_done"],
            "s/run": summary["seconds_per_run"].map(lambda v: "–" if pd.isna(v) else f"{v:.1f}"),
        }
    )
    if summary["test_digit_error_mean"].notna().any():  # where digit logits were trained
        table.insert(list(table.columns).index("test error %") + 1, "test digit error %", [
            _mean_std(m, s) for m, s in zip(summary["test_digit_error_mean"], summary["test_digit_error_std"])
        ])
    if summary["validation_error_mean"].notna().any():  # choices are made on these columns, not on test
        table.insert(2, "validation error %", [
            _mean_std(m, s) for m, s in zip(summary["validation_error_mean"], summary["validation_error_std"])
        ])
        if summary["validation_digit_error_mean"].notna().any():
            table.insert(3, "validation digit error %", [
                _mean_std(m, s) for m, s in zip(summary["validation_digit_error_mean"],
                                                summary["validation_digit_error_std"])
            ])
    if with_reference:
        table["published test %"] = [
            "–" if pd.isna(m) else _mean_std(m, s)
            for m, s in zip(summary["reference_test_error"], summary["reference_test_std"])
        ]
        table["published params"] = summary["reference_params"].map(lambda v: "–" if pd.isna(v) else f"{int(v):,}")
        table["verdict"] = summary["verdict"].map(lambda v: "–" if v is None or pd.isna(v) else v)
        if "evidence" in summary and summary["evidence"].notna().any():
            table["evidence"] = summary["evidence"].map(lambda v: "" if v is None or pd.isna(v) else v)
    flags = summary.apply(_flag, axis=1)
    if flags.any():
        table["note"] = flags
    return table


def _interval(low: float, high: float) -> str:
    return "–" if pd.isna(low) else f"[{low:+.2f}, {high:+.2f}]"


def _with_intervals(estimates, lows, highs) -> list[str]:
    """Cells "+1.23 [+0.40, +2.06]": each estimate with its interval (pp)."""
    return [f"{value:+.2f} {_interval(low, high)}" for value, low, high in zip(estimates, lows, highs)]


def _p(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.2g}"


def metric_words(metric: str) -> str:
    """How tables name an error column: "test error", "validation digit error"."""
    return metric.replace("_", " ")


def effect_rows(frame: pd.DataFrame, metric: str = "test_error") -> pd.DataFrame:
    if frame.empty:
        return frame
    return pd.DataFrame(
        {
            "factor": frame["factor"],
            "change": frame["change"],
            f"Δ {metric_words(metric)} (pp)": frame["effect"].map(lambda v: f"{v:+.2f}"),
            "95% CI": [_interval(lo, hi) for lo, hi in zip(frame["ci_low"], frame["ci_high"])],
            "p": frame["p"].map(_p),
            "p (BH)": frame.get("p_adjusted", pd.Series(dtype=float)).map(_p),
            "matched pairs": frame["pairs"],
            "rounds": frame["rounds"],
        }
    )


def select(runs: pd.DataFrame, plan: Plan | None) -> pd.DataFrame:
    """The stored runs of the plan's configurations (all runs without a plan), with the number
    of rounds each configuration asks for."""
    if plan is None:
        return runs
    asked = {c.config_id: c for c in plan.configs}
    chosen = runs[runs["config_id"].isin(asked)].copy()
    chosen["rounds"] = chosen["config_id"].map(lambda i: asked[i].rounds)
    # the matrix names its configurations: runs stored under an earlier label (the same
    # configuration in another matrix) are shown under this one's
    chosen["name"] = chosen["config_id"].map(lambda i: asked[i].name)
    chosen = chosen[chosen["round"] < chosen["rounds"]]
    return chosen


def order(summary: pd.DataFrame, plan: Plan | None, sort: str) -> pd.DataFrame:
    if sort in ("test_error", "validation_error"):  # validation: how a search matrix chooses
        return summary.sort_values([f"{sort}_mean", "name"], na_position="last")
    if sort == "name":
        return summary.sort_values("name")
    if sort == "params":
        return summary.sort_values(["params", "name"])
    if plan is not None:
        position = {c.config_id: i for i, c in enumerate(plan.configs)}
        return summary.sort_values("config_id", key=lambda ids: ids.map(position))
    return summary.sort_values("name")


LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "Δ": r"$\Delta$", "–": "--", "—": "---", "→": r"$\rightarrow$", "≤": r"$\le$",
    "≥": r"$\ge$", "×": r"$\times$", "…": r"\ldots{}", "−": r"$-$", "⚠": r"\textbf{(!)}",
}


def latex_escape(text: str) -> str:
    """Text as LaTeX typesets it literally: special characters escaped, symbols as math, and
    `--` kept two hyphens (a command's options), not an en dash."""
    text = str(text).replace("->", "→")
    return "".join(
        "-{}" if character == "-" and text[position + 1 : position + 2] == "-" else LATEX_SPECIAL.get(character, character)
        for position, character in enumerate(text)
    )


def _inline_code(text: str, code) -> str:
    """`text` with its `backquoted` spans passed to `code` and the rest to latex_escape."""
    pieces = text.split("`")
    return "".join(code(piece) if index % 2 else latex_escape(piece) for index, piece in enumerate(pieces))


def _markdown_table(frame: pd.DataFrame) -> str:
    # a '|' in a label would end its cell
    frame = frame.apply(lambda column: column.map(lambda v: v.replace("|", "\\|") if isinstance(v, str) else v))
    return tabulate(frame, headers="keys", tablefmt="github", showindex=False, disable_numparse=True)


def _latex_table(frame: pd.DataFrame) -> str:
    """A booktabs longtable (it breaks across pages), its header repeated on each."""
    columns = "l" + "r" * (len(frame.columns) - 1)
    row = lambda cells: " & ".join(latex_escape(cell) for cell in cells) + r" \\"  # noqa: E731
    lines = [rf"\begin{{longtable}}{{{columns}}}", r"\toprule", row(frame.columns), r"\midrule", r"\endhead"]
    lines += [row(values) for values in frame.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{longtable}"]
    return "\n".join(lines)


@dataclass(frozen=True)
class OutputFormat:
    """How one document format writes the parts of `harness table`'s report."""

    preamble: str
    heading: Callable[[str], str]
    paragraph: Callable[[str], str]
    table: Callable[[pd.DataFrame], str]
    items: Callable[[list[str]], str]  # items may hold `code` spans


def _html_inline(text: str) -> str:
    """Escaped text with markdown's `code` and **bold** spans as HTML."""
    import html
    import re

    text = html.escape(text)
    text = re.sub(r"`([^`]*)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


def _html_table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, escape=True, border=0, classes="results")


HTML_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
    "table.results{border-collapse:collapse;font-size:13px;margin:1em 0}"
    "table.results th,table.results td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}"
    "table.results td:first-child,table.results th:first-child{text-align:left}"
    "code{background:#f4f4f4;padding:0 3px}figure{margin:1em 0}svg{max-width:100%;height:auto}"
)


FORMATS = {
    "markdown": OutputFormat(
        preamble="",
        heading=lambda text: f"## {text}",
        paragraph=lambda text: text,
        table=_markdown_table,
        items=lambda items: "\n".join(f"- {item}" for item in items),
    ),
    "html": OutputFormat(
        preamble="",
        heading=lambda text: f"<h2>{_html_inline(text)}</h2>",
        paragraph=lambda text: f"<p>{_html_inline(text)}</p>",
        table=_html_table,
        items=lambda items: "<ul>\n" + "\n".join(f"<li>{_html_inline(item)}</li>" for item in items) + "\n</ul>",
    ),
    "latex": OutputFormat(
        preamble="% harness table --format latex: \\input it into a document that loads booktabs and longtable",
        heading=lambda text: rf"\section*{{{latex_escape(text)}}}",
        paragraph=latex_escape,
        table=_latex_table,
        items=lambda items: "\n".join(
            [r"\begin{itemize}", *(r"\item " + _inline_code(item, lambda c: rf"\texttt{{{latex_escape(c)}}}") for item in items),
             r"\end{itemize}"]
        ),
    ),
}


def _render(frame: pd.DataFrame, output_format: str) -> str:
    return FORMATS[output_format].table(frame)


def _cells(line: str) -> list[str]:
    """The cells of a markdown table row, '\\|' read back as '|'."""
    marker = "\0"
    parts = line.strip().replace("\\|", marker).strip("|").split("|")
    return [cell.strip().replace(marker, "|") for cell in parts]


def provenance_lines(runs: pd.DataFrame, store_path: str) -> list[str]:
    done = runs[runs["status"] == Status.DONE]
    def values(column):
        return ", ".join(sorted(str(v) for v in done[column].dropna().unique())) or "–"
    return [
        f"store: `{store_path}` ({len(runs)} runs, {len(done)} done)",
        f"commands: {values('command')}",
        f"matrices: {values('matrix')}",
        f"devices: {values('device')}; torch {values('torch_version')}; Python {values('python_version')}",
        f"code versions: {values('code_version')}",
        f"runs finished between {done['finished_at'].min()} and {done['finished_at'].max()}",
        f"epochs: {values('epochs')}; rounds per configuration: {values('rounds')}; pairs: {values('pairs')}",
    ]


def answer_lines(effect_frame: pd.DataFrame, metric: str = "test_error") -> list[str]:
    """One line per ablation factor's change: its paired effect with the 95 % interval."""
    lines = []
    for factor in FACTORS:
        for _, row in effect_frame[effect_frame["factor"] == factor].iterrows():
            significant = not pd.isna(row.get("p_adjusted")) and row["p_adjusted"] < 0.05
            verdict = (("lowers " if row["effect"] < 0 else "raises ") + metric_words(metric) if significant
                       else "no detectable effect")
            lines.append(
                f"**{DECLARED[factor].meta.titled(factor)}** ({row['change'].replace('->', '→')}): "
                f"{row['effect']:+.2f} pp {_interval(row['ci_low'], row['ci_high'])}, p (BH) {_p(row.get('p_adjusted'))}: "
                f"{verdict} ({row['pairs']} matched pairs over {row['rounds']} rounds)"
            )
    return lines


def interaction_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Conditional effects that differ from the effect at the other factor's baseline level."""
    if frame.empty:
        return frame
    compared = frame[frame["difference"].notna()]
    at_base = frame[frame["difference"].isna()].set_index(["factor", "change", "condition"])
    base = [at_base.loc[(r.factor, r.change, r.condition)] for r in compared.itertuples()]
    return pd.DataFrame({
        "factor": compared["factor"],
        "change": compared["change"],
        "given": compared["given"],
        "effect there (pp)": _with_intervals(compared["effect"], compared["ci_low"], compared["ci_high"]),
        "effect at its baseline (pp)": [f"{b['effect']:+.2f} ({b['given'].split(' = ')[1]})" for b in base],
        "difference (pp)": _with_intervals(compared["difference"], compared["diff_low"], compared["diff_high"]),
        "p (BH)": compared["p_difference_adjusted"].map(_p),
        "differs": compared["p_difference_adjusted"].map(lambda v: "yes" if not pd.isna(v) and v < 0.05 else ""),
    })


def results_json(summary: pd.DataFrame, effect_frame: pd.DataFrame, interaction_frame: pd.DataFrame,
                 runs: pd.DataFrame, store_path: str) -> str:
    """Every table as records, for machines; NaN as null."""
    def records(frame: pd.DataFrame) -> list[dict]:
        return json.loads(frame.to_json(orient="records")) if not frame.empty else []

    run_columns = ["config_id", "round", "name", "status", "train_error", "test_error", "validation_error",
                   "test_predicted_share", "train_chance_error", "params", "seconds", "device", "code_version",
                   "torch_version", "execution"]
    document = {
        "store": store_path,
        "configurations": records(summary),
        "effects": records(effect_frame),
        "interactions": records(interaction_frame),
        "runs": records(runs[[c for c in run_columns if c in runs]]),
        "provenance": provenance_lines(runs, store_path),
    }
    return json.dumps(document, indent=1, sort_keys=False)


def results_report(
    runs: pd.DataFrame,
    *,
    store_path: str,
    plan: Plan | None = None,
    output_format: str = "markdown",
    sort: str = "matrix",
    figures: str | None = None,
    metric: str = "test_error",
) -> str:
    """What `harness table` prints, answers first: each ablation factor's effect in one line
    (with the forest plot from `figures`, a folder, when given), interactions, every effect,
    the reproductions beside the published figures, the configurations (folded in markdown),
    provenance. Markdown or LaTeX; CSV is the configurations alone; JSON every table."""
    runs = select(runs, plan)
    if runs.empty or not (runs["status"] == Status.DONE).any():
        raise ReportError(f"{store_path}: no finished runs" + (" of this matrix" if plan else "") + "; run `harness run` first")
    summary = order(summarize(runs), plan, sort)
    if output_format == "csv":
        columns = ["config_id", "name", *[k for k in FACTORS if k in summary], "params", "train_error_mean",
                   "train_error_std", "test_error_mean", "test_error_std", "test_digit_error_mean",
                   "test_digit_error_std", "validation_error_mean", "validation_error_std",
                   "validation_digit_error_mean", "validation_digit_error_std", "test_error_min", "test_error_max",
                   "rounds_done", "rounds", "rounds_failed", "rounds_degenerate", "seconds_per_run",
                   "reference_test_error", "reference_test_std", "reference_params", "verdict", "evidence"]
        buffer = io.StringIO()
        summary[[c for c in columns if c in summary]].to_csv(buffer, index=False, float_format="%.4g")
        return buffer.getvalue().rstrip("\n")
    reproductions = summary[summary["report"].notna()] if "report" in summary else summary.iloc[0:0]
    ablations = summary.drop(reproductions.index)
    ablation_runs = runs[runs["config_id"].isin(ablations["config_id"])]
    effect_frame = effects(ablation_runs, metric=metric) if not ablations.empty else pd.DataFrame()
    interaction_frame = interactions(ablation_runs, metric=metric) if not ablations.empty else pd.DataFrame()
    words = metric_words(metric)
    figures = figures if metric == "test_error" else None  # the forest plot shows test error
    if output_format == "json":
        return results_json(summary, effect_frame, interaction_frame, runs, store_path)
    form = FORMATS[output_format]
    parts = [form.preamble, ""] if form.preamble else []
    answers = answer_lines(effect_frame, metric) if not effect_frame.empty else []
    if answers:
        parts += [form.heading("Answers"), "", form.paragraph(
            f"Each factor's paired effect on {words} (percentage points, 95% interval over rounds, "
            "Benjamini–Hochberg adjusted p), every other setting and the round held equal."), "",
            form.items(answers), ""]
        if figures and output_format == "markdown":
            parts += [f"![Paired effects on test error with 95% intervals]({figures}/effects_forest.svg)", ""]
        if figures and output_format == "html":
            parts += [_inline_svg(Path(figures) / "effects_forest.svg"), ""]
    rows = interaction_rows(interaction_frame)
    if not rows.empty:
        parts += [form.heading("Interactions"), "", form.paragraph(
            "A factor's effect at each other level of a second factor, against its effect at that factor's "
            "baseline; the difference is paired on the rounds; differs: p (BH) < 0.05 across every comparison."), "",
            form.table(rows), ""]
    if not effect_frame.empty:
        parts += [form.heading("Effects"), "",
                  form.paragraph(
                      f"Change in {words} (percentage points) when a factor leaves its baseline, paired on every "
                      "other setting and on the round; 95% CI and p from a t-test over rounds; p (BH): "
                      "Benjamini–Hochberg adjusted across the rows."), "",
                  form.table(effect_rows(effect_frame, metric)), ""]
    if not reproductions.empty:
        parts += [form.heading("Reproductions of the reports"), "",
                  form.paragraph(
                      "Ours beside the published figures (test error in %, mean ± std). Verdict: reproduced when "
                      "|ours − published| ≤ 2 × max(our std, the published std) and no round of ours is degenerate "
                      f"({DEGENERATE}: every test pair given one answer, or a train error at chance); otherwise by "
                      "how much ours is better or worse. Evidence: the matrix whose results show why the preset "
                      "reads its report as it does, or what the gap comes from."), "",
                  form.table(configuration_rows(reproductions, with_reference=True)), ""]
    if not ablations.empty:
        table = form.table(configuration_rows(ablations, with_reference=False))
        if output_format in ("markdown", "html"):
            table = f"<details><summary>{len(ablations)} configurations</summary>\n\n{table}\n\n</details>"
        parts += [form.heading("Configurations"), "",
                  form.paragraph(
                      "Errors in %, mean ± std over rounds; range: the lowest and highest test error of a round; "
                      f"{DEGENERATE}: rounds that learned nothing (every test pair given one answer, or a train "
                      "error at chance), counted in the note."), "",
                  table, ""]
    if figures and output_format == "html":
        others = sorted(p for p in Path(figures).glob("*.svg") if p.name != "effects_forest.svg")
        if others:
            parts += [form.heading("Figures"), "", *(_inline_svg(path) for path in others), ""]
    parts += [form.heading("Provenance"), "", form.items(provenance_lines(runs, store_path))]
    text = "\n".join(parts).rstrip("\n")
    if output_format == "html":
        text = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>harness results</title>'
                f"<style>{HTML_STYLE}</style></head><body>\n<h1>harness results</h1>\n{text}\n</body></html>")
    return text


def _inline_svg(path: Path) -> str:
    """An SVG file as a figure inside the page (its XML prolog and doctype dropped)."""
    if not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8")
    start = text.find("<svg")
    return f"<figure>{text[start:] if start >= 0 else text}</figure>"


SECTIONS = {"Configurations": False, "Reproductions of the reports": True}  # heading -> reproduces a report


def _committed_rows(document: str) -> dict[bool, dict[str, int]]:
    """Configuration name -> parameter count in each table section of a `harness table` file."""
    rows: dict[bool, dict[str, int]] = {}
    section = None
    for line in document.splitlines():
        if line.startswith("## "):
            section = SECTIONS.get(line[3:].strip())
            continue
        cells = _cells(line)
        if section is not None and line.startswith("|") and len(cells) >= 2 and cells[1].replace(",", "").isdigit():
            rows.setdefault(section, {})[cells[0]] = int(cells[1].replace(",", ""))
    return rows


def _parts(document: str) -> list[str]:
    """A results file may hold several `harness table` outputs, each under a `# ` heading."""
    parts, current = [], []
    for line in document.splitlines():
        if line.startswith("# ") and current:
            parts.append("\n".join(current))
            current = []
        current.append(line)
    return [*parts, "\n".join(current)]


def check_against(document: str, runs: pd.DataFrame, *, plan: Plan | None, source: str) -> list[str]:
    """Differences in configurations and parameter counts between a committed results file and
    the store, section by section for the sections the store has runs for (errors are not
    compared: a smoke run cannot match a full one). In a file of several `harness table`
    outputs, the one sharing the most configuration names with the store is compared."""
    summary = summarize(select(runs, plan))
    names = set(summary["name"]) if not summary.empty else set()
    candidates = [rows for rows in map(_committed_rows, _parts(document)) if rows]
    if not candidates:
        raise ReportError(f"{source}: no configuration rows found (expected `harness table` markdown)")
    committed = max(candidates, key=lambda rows: sum(len(names & set(part)) for part in rows.values()))
    reproduces = summary["report"].notna() if "report" in summary else pd.Series(False, index=summary.index)
    problems = []
    for is_reproduction in (False, True):
        part = summary[reproduces == is_reproduction]
        if part.empty:
            continue
        ours = {name: int(params) for name, params in zip(part["name"], part["params"]) if not pd.isna(params)}
        theirs = committed.get(is_reproduction, {})
        for name, params in theirs.items():
            if name not in ours:
                problems.append(f"{name}: in {source} but not in the store")
            elif ours[name] != params:
                problems.append(f"{name}: {params:,} parameters in {source}, {ours[name]:,} now")
        problems += [f"{name}: in the store but not in {source}" for name in ours if name not in theirs]
    return problems


def _timing_table(timings, baseline: str, peak_gflops: float | None) -> str:
    reference = next((t for t in timings if t.path == baseline), None)
    rows = [
        {
            "path": t.path,
            "runs": t.runs,
            "seconds": f"{t.seconds:.1f}",
            "runs/s": f"{t.runs_per_second:.3f}",
            f"vs {baseline}": "–" if reference is None else f"{t.runs_per_second / reference.runs_per_second:.2f}x",
            "GFLOP per run": f"{t.flops_per_run / 1e9:.3g}",
            "GFLOP/s": f"{t.gflops:.1f}",
            **({"of peak": f"{t.gflops / peak_gflops:.0%}"} if peak_gflops else {}),
            "mean test error %": f"{100 * t.test_error:.2f}",
            "peak memory MB": f"{t.peak_memory_mb:.0f}",
        }
        for t in timings
    ]
    return _render(pd.DataFrame(rows), "markdown")


def bench_report(timings, *, machine: str, command: str, projection: tuple[str, float, int] | None,
                 peak_gflops: float | None = None, frameworks=None, launches=None) -> str:
    """`harness bench` output: runs per second of each path, its ratio to the plain loop, the
    GFLOP/s its counted work achieved and, given the machine's measured peak, the fraction.
    `frameworks`: the disk task's network trained by minidl and by torch.nn, a second table.
    `launches`: each path's operator launches per run (harness.bench.Launches), a third."""
    lines = [f"machine: {machine}", f"command: {command}"]
    if peak_gflops:
        lines.append(f"peak: {peak_gflops:.0f} GFLOP/s (float32 matrix products on every thread, measured now)")
    lines += ["", _timing_table(timings, "plain", peak_gflops)]
    plain = next((t for t in timings if t.path == "plain"), None)
    for timing in timings:
        if timing.path == "plain" or not plain or not timing.steady_seconds_per_run:
            continue
        lines += ["", f"{timing.path}: the median run took {timing.steady_seconds_per_run * timing.side_by_side:.2f} s "
                  f"with {timing.side_by_side} side by side, {timing.steady_seconds_per_run:.2f} s of wall time a run "
                  f"against the plain loop's {plain.steady_seconds_per_run:.2f} s: "
                  f"{plain.steady_seconds_per_run / timing.steady_seconds_per_run:.2f}x once started; "
                  f"{timing.outside_runs:.1f} s of its {timing.seconds:.1f} s were outside any run (process start-up: "
                  f"each worker imports torch; the end: waiting on the last run)"]
    if projection:
        matrix, seconds, runs = projection
        lines += ["", f"projected time for {matrix} ({runs} runs) on the fastest harness path: "
                  f"{seconds:.0f} s ({seconds / 60:.1f} min)"]
    if launches:
        lines += ["", "operator launches per run (a kernel each on a GPU, where launches rather than arithmetic bound "
                  "runs this small; counted on runs of 1 and 2 epochs, a batched group's shared out per round):", "",
                  _markdown_table(pd.DataFrame({
                      "path": [c.path for c in launches],
                      "launches per run": [f"{c.kernels:,.0f}" for c in launches],
                      "per training step": [f"{c.per_step:,.1f}" for c in launches],
                      "reads to the host per run": [f"{c.host_reads:,.0f}" for c in launches],
                  }))]
    if frameworks:
        lines += ["", "disk task, report 002's network (2-25-25-25-1, SGD on the summed MSE, batch 50, 50 epochs a "
                  "run), one process: the from-scratch framework against torch.nn with autograd", "",
                  _timing_table(frameworks, "torch.nn", peak_gflops)]
    return "\n".join(lines)


def compare_report(frame: pd.DataFrame, *, before: str, after: str, threshold: float, output_format: str = "markdown",
                   effect_frame: pd.DataFrame | None = None) -> str:
    """`harness compare` output: a row per configuration present in both result sets, then each
    factor's effect in both (stats.compare_effects) where both hold the settings. JSON: an
    object with "configurations" and "effects" records."""
    effect_frame = pd.DataFrame() if effect_frame is None else effect_frame
    if output_format == "json":
        return json.dumps({name: json.loads(table.to_json(orient="records")) if not table.empty else []
                           for name, table in (("configurations", frame), ("effects", effect_frame))}, indent=1)
    rows = pd.DataFrame({
        "configuration": frame["name"],
        "rounds": frame["rounds"],
        "before %": frame["before_mean"].map(lambda v: f"{v:.2f}"),
        "after %": frame["after_mean"].map(lambda v: f"{v:.2f}"),
        "Δ (pp)": _with_intervals(frame["effect"], frame["ci_low"], frame["ci_high"]),
        "p (BH)": frame["p_adjusted"].map(_p),
        "verdict": [("DETERMINISM FAILURE: " if bad else "") + verdict
                    for bad, verdict in zip(frame["determinism_failure"], frame["verdict"])],
    })
    counts = frame["verdict"].value_counts()
    lines = [
        f"`{after}` against `{before}`: {len(frame)} configurations in both, paired by configuration id and round; "
        f"Δ = after − before in test error; threshold {threshold:g} pp.",
        "",
        _markdown_table(rows),
        "",
        ", ".join(f"{count} {verdict}" for verdict, count in counts.items()),
    ]
    apart = ~frame["same_execution"] & frame["execution_recorded"]
    if apart.any():
        lines.append(f"{int(apart.sum())} configurations trained under different execution policies on the two sides "
                     "(threads, batched rounds, memory layout): compared for quality, not held to equality")
    unrecorded = ~frame["same_execution"] & ~frame["execution_recorded"]
    if unrecorded.any():
        lines.append(f"{int(unrecorded.sum())} configurations have no execution policy recorded on one side (an older "
                     "store or baseline): compared for quality, not held to equality")
    failures = int(frame["determinism_failure"].sum())
    if failures:
        lines.append(f"{failures} configurations differ although both sides ran the same code on the CPU the same way: "
                     "a determinism failure, not a change in quality")
    if not effect_frame.empty:
        agree = effect_frame["agree"]
        lines += ["", "Each factor's effect in both, on the runs both hold (paired by round within each set; "
                  "agree: the two 95 % intervals overlap):", "",
                  _markdown_table(pd.DataFrame({
                      "factor": effect_frame["factor"],
                      "change": effect_frame["change"],
                      **{f"{side} Δ (pp)": _with_intervals(effect_frame[f"effect_{side}"], effect_frame[f"ci_low_{side}"],
                                                           effect_frame[f"ci_high_{side}"]) for side in ("before", "after")},
                      "agree": agree.map(lambda v: "–" if v is None else "yes" if v else "NO"),
                  })), "",
                  f"{int((agree == True).sum())} of {int(agree.notna().sum())} effects agree"]  # noqa: E712 - None is neither
    return "\n".join(lines)

