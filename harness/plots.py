"""Figures from the store: box plots of test error, learning curves, a forest plot of effects.

Presentation only: it reads DataFrames from harness.store / harness.stats and writes PNG and SVG.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from harness.results import Stage, Status

CURVES_PER_PAGE = 24


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, directory: Path, stem: str) -> list[Path]:
    paths = []
    for suffix in ("png", "svg"):
        path = directory / f"{stem}.{suffix}"
        figure.savefig(path, dpi=110, bbox_inches="tight")
        paths.append(path)
    return paths


def box_plot(runs: pd.DataFrame, directory: Path) -> list[Path]:
    """Test error per configuration over rounds, sorted by median, best at the top."""
    plt = _pyplot()
    done = runs[runs["status"] == Status.DONE]
    # one box per configuration id: configurations that share a name are never pooled
    groups = {key: 100 * frame["test_error"].to_numpy() for key, frame in done.groupby("config_id")}
    label = done.drop_duplicates("config_id").set_index("config_id")["name"]
    keys = sorted(groups, key=lambda k: pd.Series(groups[k]).median(), reverse=True)
    names = [label[k] for k in keys]
    figure, axes = plt.subplots(figsize=(9, max(3, 0.22 * len(names) + 1)))
    try:
        axes.boxplot([groups[k] for k in keys], orientation="horizontal", tick_labels=names, showmeans=True)
    except TypeError:  # matplotlib < 3.10
        axes.boxplot([groups[k] for k in keys], vert=False, labels=names, showmeans=True)
    axes.set_xlabel("test error (%)")
    axes.set_title(f"Test error over rounds, {len(names)} configurations (▲ mean)")
    axes.tick_params(axis="y", labelsize=7)
    axes.grid(axis="x", alpha=0.3)
    paths = _save(figure, directory, "test_error_boxplot")
    plt.close(figure)
    return paths


def learning_curves(runs: pd.DataFrame, epochs: pd.DataFrame, directory: Path) -> list[Path]:
    """Train and test error per epoch of the pair stage, mean ± 1 std over rounds, per configuration."""
    plt = _pyplot()
    names = runs.drop_duplicates("config_id").set_index("config_id")["name"]
    curves = epochs[(epochs["stage"] == Stage.PAIRS) & epochs["test_error"].notna()]
    curves = curves.merge(runs[runs["status"] == Status.DONE][["config_id", "round"]], on=["config_id", "round"])
    ids = sorted(curves["config_id"].unique(), key=lambda i: names.get(i, i))
    paths = []
    for page, start in enumerate(range(0, len(ids), CURVES_PER_PAGE), 1):
        chunk = ids[start : start + CURVES_PER_PAGE]
        columns = min(4, len(chunk))
        rows = math.ceil(len(chunk) / columns)
        figure, grid = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.6 * rows), squeeze=False, sharey=True)
        for axes, config_id in zip(grid.flat, chunk):
            frame = curves[curves["config_id"] == config_id]
            for column, colour in (("train_error", "tab:blue"), ("test_error", "tab:red")):
                stats = frame.groupby("epoch")[column].agg(["mean", "std"]).fillna(0) * 100
                axes.plot(stats.index, stats["mean"], color=colour, marker="o", markersize=2, label=column.replace("_", " "))
                axes.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"], color=colour, alpha=0.2)
            axes.set_title(names.get(config_id, config_id), fontsize=8)
            axes.set_xlabel("epoch", fontsize=7)
            axes.set_ylabel("error (%)", fontsize=7)
            axes.tick_params(labelsize=7)
            axes.grid(alpha=0.3)
        for axes in list(grid.flat)[len(chunk) :]:
            axes.set_visible(False)
        grid.flat[0].legend(fontsize=7)
        figure.suptitle("Learning curves: mean ± 1 std over rounds")
        figure.tight_layout()
        paths += _save(figure, directory, f"learning_curves_{page}")
        plt.close(figure)
    return paths


def forest_plot(effect_frame: pd.DataFrame, directory: Path) -> list[Path]:
    """Each factor's paired effect on test error with its 95% interval."""
    if effect_frame.empty:
        return []
    plt = _pyplot()
    frame = effect_frame.iloc[::-1]
    labels = [f"{f}: {c}" for f, c in zip(frame["factor"], frame["change"])]
    figure, axes = plt.subplots(figsize=(7, 0.4 * len(frame) + 1.2))
    positions = range(len(frame))
    errors = [frame["effect"] - frame["ci_low"], frame["ci_high"] - frame["effect"]]
    axes.errorbar(frame["effect"], positions, xerr=errors, fmt="o", capsize=3)
    axes.axvline(0, color="grey", linewidth=1)
    axes.set_yticks(list(positions), labels)
    axes.set_xlabel("change in test error (percentage points), 95% CI")
    axes.set_title("Effect of each factor (paired on everything else and the round)")
    axes.grid(axis="x", alpha=0.3)
    paths = _save(figure, directory, "effects_forest")
    plt.close(figure)
    return paths
