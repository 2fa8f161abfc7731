"""The disk task's figure: the decision boundary of each configuration, read from its runs'
stored `artifacts` (the predicted class on a grid over the square), so drawing it builds no
model."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from harness.files import save_figure
from harness.tasks.disk.data import CENTRE, radius

PER_FIGURE = 12  # panels a figure holds


def boundaries(runs) -> list[tuple]:
    """(name, decision grid text, disk size, round, test error) of each configuration's first
    finished round that stored a grid."""
    with_grid = runs[runs["artifacts"].notna() & (runs["status"] == "done")]
    rows = []
    for _, group in with_grid.groupby("config_id", sort=False):
        first = group.sort_values("round").iloc[0]
        artifacts = json.loads(first["artifacts"])
        if "decision_grid" in artifacts:
            config = json.loads(first["config"])
            rows.append((first["name"], artifacts["decision_grid"], config.get("disk_size", "area"), first["round"],
                         first["test_error"]))
    return rows


def draw_panel(axis, plt, name: str, grid_text: str, disk_size: str, round_index: int, test_error: float) -> None:
    """One configuration's predicted class over the square, the true circle, the run's test error."""
    import numpy as np

    size = int(round(len(grid_text) ** 0.5))
    grid = np.array([int(c) for c in grid_text], dtype=float).reshape(size, size)
    axis.imshow(grid, origin="lower", extent=(0, 1, 0, 1), cmap="RdYlGn", vmin=-0.5, vmax=1.5, alpha=0.8)
    axis.add_patch(plt.Circle(CENTRE, radius(disk_size), fill=False, color="black", linewidth=1.2))
    title = "\n".join(textwrap.wrap(name, 42))
    axis.set_title(f"{title}\nround {round_index}: test error {100 * test_error:.1f} %", fontsize=8)
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_aspect("equal")
    axis.tick_params(labelsize=7)


def figures(runs, epochs, out_dir: Path) -> list[Path]:
    """One decision-boundary panel per disk configuration (its first stored round), twelve a
    figure, as PNG and SVG; the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = boundaries(runs) if not runs.empty and "artifacts" in runs else []
    written = []
    for start in range(0, len(rows), PER_FIGURE):
        chunk = rows[start : start + PER_FIGURE]
        columns = min(4, len(chunk))
        lines = -(-len(chunk) // columns)
        figure, axes = plt.subplots(lines, columns, figsize=(3.2 * columns, 3.4 * lines), squeeze=False)
        for axis in axes.flat[len(chunk):]:
            axis.set_visible(False)
        for axis, row in zip(axes.flat, chunk):
            draw_panel(axis, plt, *row)
        figure.suptitle("disk task: predicted inside (green) / outside (red); the true disk in black", fontsize=9)
        figure.tight_layout()
        for suffix in ("png", "svg"):
            path = Path(out_dir) / f"disk_decision_boundary_{start // PER_FIGURE + 1}.{suffix}"
            save_figure(figure, path, dpi=110)
            written.append(path)
        plt.close(figure)
    return written
