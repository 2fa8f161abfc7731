"""How numbers read in every table: a mean with its std, an estimate with its 95 % interval, a
p-value (percentages and percentage points, as the tables give them)."""

from __future__ import annotations

import pandas as pd


def mean_std(mean: float, std: float) -> str:
    if pd.isna(mean):
        return "–"
    return f"{mean:.2f} ± {std:.2f}" if not pd.isna(std) else f"{mean:.2f}"


def interval(low: float, high: float) -> str:
    return "–" if pd.isna(low) else f"[{low:+.2f}, {high:+.2f}]"


def with_intervals(estimates, lows, highs) -> list[str]:
    """Cells "+1.23 [+0.40, +2.06]": each estimate with its interval (pp)."""
    return [f"{value:+.2f} {interval(low, high)}" for value, low, high in zip(estimates, lows, highs)]


def p_value(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.2g}"


def duration(seconds: float) -> str:
    """A time as people read it: seconds under 2 min, minutes under 2 h, then hours."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
