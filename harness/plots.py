"""Figures from the store: box plots of test error, learning curves, a forest plot of effects,
and each task's own figures (the disk task's decision boundaries).

Presentation only: it reads DataFrames from harness.store / harness.stats and writes PNG and SVG.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from harness.files import output_folder, save_figure
from harness.results import Stage, Status
from harness.stats import labels
from harness.tasks import TASKS, factors

CURVES_PER_PAGE = 24


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    # labels are the user's text, drawn as written: "$x$" in a label is no formula to typeset
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def _save(figure, directory: Path, stem: str) -> list[Path]:
    return [save_figure(figure, directory / f"{stem}.{suffix}", dpi=110, bbox_inches="tight") for suffix in ("png", "svg")]


BOXES_PER_PANEL = 25


def box_groups(done: pd.DataFrame) -> dict[str, list[str]]:
    """Configuration ids in readable panels: reproductions by report, the others by encoder and
    pairing, at most BOXES_PER_PANEL each (a larger group is split in parts)."""
    settings = done.drop_duplicates("config_id").set_index("config_id")
    reports = settings["report"] if "report" in settings else pd.Series(None, index=settings.index, dtype=object)
    groups: dict[str, list[str]] = {}
    for config_id in panel_order(done, settings.index):
        report = reports.get(config_id)
        title = f"report {report}" if isinstance(report, str) else " ".join(
            str(settings.at[config_id, c]) for c in ("encoder", "pairing") if c in settings)
        groups.setdefault(title, []).append(config_id)
    panels = {}
    for title, ids in groups.items():
        parts = math.ceil(len(ids) / BOXES_PER_PANEL)
        size = math.ceil(len(ids) / parts)  # balanced parts: 60 boxes are 3 x 20, not 25 + 25 + 10
        for part in range(parts):
            chunk = ids[part * size : (part + 1) * size]
            panels[title + (f" ({part + 1}/{parts})" if parts > 1 else "")] = chunk
    return panels


def box_plot(runs: pd.DataFrame, directory: Path) -> list[Path]:
    """Test error over rounds, one box per configuration id (configurations sharing a name are
    never pooled), in panels of at most 25 (see box_groups), best at the top of each; the
    published figure (◆) beside a configuration that reproduces a report. One file per panel:
    test_error_boxplot_N.png and .svg."""
    plt = _pyplot()
    done = runs[runs["status"] == Status.DONE]
    errors = {key: 100 * frame["test_error"].to_numpy() for key, frame in done.groupby("config_id")}
    settings = done.drop_duplicates("config_id").set_index("config_id")
    label = labels(done)  # two configurations of one name are told apart, as tables tell them
    published = settings["reference_test_error"] if "reference_test_error" in settings else pd.Series(dtype=float)
    paths = []
    for number, (title, ids) in enumerate(box_groups(done).items(), 1):
        keys = sorted(ids, key=lambda k: pd.Series(errors[k]).median(), reverse=True)
        names = [label.get(k, k) for k in keys]
        figure, axes = plt.subplots(figsize=(9, 0.28 * len(keys) + 1.2))
        try:
            axes.boxplot([errors[k] for k in keys], orientation="horizontal", tick_labels=names, showmeans=True)
        except TypeError:  # matplotlib < 3.10
            axes.boxplot([errors[k] for k in keys], vert=False, labels=names, showmeans=True)
        marks = [(position, published.get(k)) for position, k in enumerate(keys, 1) if not pd.isna(published.get(k))]
        if marks:
            axes.scatter([m[1] for m in marks], [m[0] for m in marks], marker="D", color="tab:purple", zorder=3,
                         label="published")
            axes.legend(fontsize=8, loc="lower right")
        axes.set_title(f"Test error over rounds: {title}, {len(keys)} configurations (▲ mean)", fontsize=10)
        axes.set_xlabel("test error (%)")
        axes.tick_params(axis="y", labelsize=8)
        axes.grid(axis="x", alpha=0.3)
        paths += _save(figure, directory, f"test_error_boxplot_{number}")
        plt.close(figure)
    return paths


def learning_curves(runs: pd.DataFrame, epochs: pd.DataFrame, directory: Path) -> list[Path]:
    """Train and test error per epoch, mean ± 1 std over rounds (clipped to [0, 100] %), per
    configuration, every stage: a transfer variant's pretraining epochs come first (dashed line
    where the pair stage starts), so the rule variants, which train no pair stage, have curves
    too. Panels follow the ablation factors' order, so a factor's with/without variants sit
    side by side."""
    plt = _pyplot()
    names = labels(runs[runs["status"] == Status.DONE])
    curves = epochs[epochs["test_error"].notna()].copy()
    curves = curves.merge(runs[runs["status"] == Status.DONE][["config_id", "round"]], on=["config_id", "round"])
    pretrain = epochs[epochs["stage"] == Stage.PRETRAIN].groupby("config_id")["epoch"].max()
    # one epoch axis across the stages: the pair stage continues after the pretraining epochs
    offset = curves["config_id"].map(pretrain).fillna(0)
    curves["step"] = curves["epoch"] + offset.where(curves["stage"] == Stage.MAIN, 0)
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
            if config_id in pretrain and (frame["stage"] == Stage.MAIN).any():
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
    columns = [c for c in factors() if c in settings]
    key = lambda i: tuple(str(settings.at[i, c]) for c in columns) + (str(settings.at[i, "name"]),)  # noqa: E731
    return sorted(ids, key=key)


def forest_plot(effect_frame: pd.DataFrame, directory: Path) -> list[Path]:
    """Each factor's paired effect on test error with its 95% interval."""
    if effect_frame.empty:
        return []
    plt = _pyplot()
    frame = effect_frame.iloc[::-1]
    contexts = frame["context"] if "context" in frame else pd.Series("", index=frame.index)
    labels = [f"{f}: {c}" + (f" ({at})" if at else "") for f, c, at in zip(frame["factor"], frame["change"], contexts)]
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


def draw(runs: pd.DataFrame, directory: Path, epochs: pd.DataFrame | None = None) -> list[Path]:
    """The figures of the finished runs among `runs`: the forest plot of the ablations' effects
    (reproductions left out), the box plots and, given the epochs, the learning curves; nothing
    (an empty list) without a finished run. ImportError without matplotlib, before anything is
    written."""
    from harness.stats import split_effects

    _pyplot()  # fails here, not halfway through
    done = runs[runs["status"] == Status.DONE] if not runs.empty else runs
    if done.empty:
        return []
    output_folder(directory, "--out")
    ablations = done[done["report"].isna()] if "report" in done else done
    written = box_plot(done, directory)
    if epochs is not None:
        written += learning_curves(done, epochs, directory)
    written += forest_plot(split_effects(ablations), directory)  # as the table's answers: never pooled across epochs
    return written + task_figures(done, epochs, directory)


def task_figures(done: pd.DataFrame, epochs: pd.DataFrame | None, directory: Path) -> list[Path]:
    """Each task's own figures (a registered task's `figures`), drawn from its runs' rows."""
    if done.empty or "task" not in done:
        return []
    written = []
    for name, runs in done.groupby("task", sort=False):
        figures = TASKS.get(name).hook("figures") if name in TASKS else None
        if figures is not None:
            written += figures(runs, epochs, directory)
    return written

