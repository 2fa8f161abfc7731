"""Figures from the store: box plots of test error, learning curves, a forest plot of effects.

Presentation only: it reads DataFrames from harness.store / harness.stats and writes PNG and SVG.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from harness.results import Stage, Status
from harness.settings import FACTORS

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
    """Train and test error per epoch, mean ± 1 std over rounds (clipped to [0, 100] %), per
    configuration, every stage: a transfer variant's pretraining epochs come first (dashed line
    where the pair stage starts), so the rule variants, which train no pair stage, have curves
    too. Panels follow the ablation factors' order, so a factor's with/without variants sit
    side by side."""
    plt = _pyplot()
    names = runs.drop_duplicates("config_id").set_index("config_id")["name"]
    curves = epochs[epochs["test_error"].notna()].copy()
    curves = curves.merge(runs[runs["status"] == Status.DONE][["config_id", "round"]], on=["config_id", "round"])
    pretrain = epochs[epochs["stage"] == Stage.PRETRAIN].groupby("config_id")["epoch"].max()
    # one epoch axis across the stages: the pair stage continues after the pretraining epochs
    offset = curves["config_id"].map(pretrain).fillna(0)
    curves["step"] = curves["epoch"] + offset.where(curves["stage"] == Stage.PAIRS, 0)
    ids = panel_order(runs, curves["config_id"].unique())
    paths = []
    for page, start in enumerate(range(0, len(ids), CURVES_PER_PAGE), 1):
        chunk = ids[start : start + CURVES_PER_PAGE]
        columns = min(4, len(chunk))
        rows = math.ceil(len(chunk) / columns)
        figure, grid = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.6 * rows), squeeze=False, sharey=True)
        top = 0.0
        for axes, config_id in zip(grid.flat, chunk):
            frame = curves[curves["config_id"] == config_id]
            for column, colour in (("train_error", "tab:blue"), ("test_error", "tab:red")):
                stats = frame.groupby("step")[column].agg(["mean", "std"]).fillna(0) * 100
                low, high = (stats["mean"] - stats["std"]).clip(0, 100), (stats["mean"] + stats["std"]).clip(0, 100)
                top = max(top, float(high.max()))
                axes.plot(stats.index, stats["mean"], color=colour, marker="o", markersize=2, label=column.replace("_", " "))
                axes.fill_between(stats.index, low, high, color=colour, alpha=0.2)
            if config_id in pretrain and (frame["stage"] == Stage.PAIRS).any():
                axes.axvline(pretrain[config_id] + 0.5, color="grey", linestyle="--", linewidth=0.8)
            axes.set_title(names.get(config_id, config_id), fontsize=8)
            axes.set_xlabel("epoch (pretraining first)" if config_id in pretrain else "epoch", fontsize=7)
            axes.set_ylabel("error (%)", fontsize=7)
            axes.tick_params(labelsize=7)
            axes.grid(alpha=0.3)
        for axes in list(grid.flat)[len(chunk) :]:
            axes.set_visible(False)
        grid.flat[0].set_ylim(0, min(100.0, top * 1.05 + 1))  # shared by the page's panels
        grid.flat[0].legend(fontsize=7)
        figure.suptitle("Learning curves: mean ± 1 std over rounds")
        figure.tight_layout()
        paths += _save(figure, directory, f"learning_curves_{page}")
        plt.close(figure)
    return paths


def panel_order(runs: pd.DataFrame, ids) -> list[str]:
    """Configuration ids sorted by the ablation factors in declaration order, the last factor
    varying fastest: variants that differ in one factor end up next to each other."""
    settings = runs.drop_duplicates("config_id").set_index("config_id")
    columns = [c for c in FACTORS if c in settings]
    key = lambda i: tuple(str(settings.at[i, c]) for c in columns) + (str(settings.at[i, "name"]),)  # noqa: E731
    return sorted(ids, key=key)


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
    # the numbers beside each interval; * where the BH-adjusted p is below 0.05
    adjusted = frame["p_adjusted"] if "p_adjusted" in frame else pd.Series(float("nan"), index=frame.index)
    for position, (effect, low, high, p) in enumerate(zip(frame["effect"], frame["ci_low"], frame["ci_high"], adjusted)):
        mark = " *" if not pd.isna(p) and p < 0.05 else ""
        interval = "" if pd.isna(low) else f" [{low:+.2f}, {high:+.2f}]"
        axes.annotate(f"{effect:+.2f}{interval}{mark}", (1.01, position), xycoords=("axes fraction", "data"),
                      va="center", fontsize=7)
    axes.set_xlabel("change in test error (percentage points), 95% CI")
    axes.set_title("Effect of each factor (paired on everything else and the round; * p (BH) < 0.05)")
    axes.grid(axis="x", alpha=0.3)
    paths = _save(figure, directory, "effects_forest")
    plt.close(figure)
    return paths
