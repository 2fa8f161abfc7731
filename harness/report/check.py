"""`harness table --check`: a committed results file (RESULTS.md) against a store, section by
section: the same configurations with the same parameter counts (errors are not compared: a
smoke run cannot match a full one)."""

from __future__ import annotations

import pandas as pd

from harness.config import Plan
from harness.report.results import ReportError, select
from harness.stats import summarize


def _cells(line: str) -> list[str]:
    """The cells of a markdown table row, '\\|' read back as '|'."""
    marker = "\0"
    parts = line.strip().replace("\\|", marker).strip("|").split("|")
    return [cell.strip().replace(marker, "|") for cell in parts]


SECTIONS = {"Configurations": False, "Reproductions of the reports": True}  # heading -> reproduces a report


def committed_rows(document: str) -> dict[bool, dict[str, int]]:
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


def document_parts(document: str) -> list[str]:
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
    candidates = [rows for rows in map(committed_rows, document_parts(document)) if rows]
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
