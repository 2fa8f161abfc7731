"""The disk task (the course's Project 2): points in the unit square, label 1 inside a disk.

Data: `points` training and `points` test points drawn for each round from its data seed;
uniform in [0, 1]^2 and the disk of radius 1/sqrt(2 pi) centred at (0.5, 0.5) (area 1/2, so
the classes balance), as the course specifies. Report 002 words the draw as "normal" and the
1/sqrt(2 pi) as a diameter: `disk_sampling = "normal"` and `disk_size = "diameter"` are that
reading. The model (harness/training/disk.py) is a perceptron in minidl or torch.nn.

Its figure: the decision boundary, read from each run's stored `artifacts` (the predicted class
on a grid over the square), so drawing it builds no model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CENTRE = (0.5, 0.5)
GRID = 64  # the decision-boundary grid stored with every run: GRID x GRID cell centres


def radius(disk_size: str) -> float:
    """The disk's radius: 1/sqrt(2 pi) (`area`: area 1/2) or half of it (`diameter`)."""
    full = 1 / math.sqrt(2 * math.pi)
    return full if disk_size == "area" else full / 2


def label(points, disk_size: str):
    """1 where a point (..., 2) lies inside the disk, else 0 (int64)."""
    centre = points.new_tensor(CENTRE)
    return ((points - centre).pow(2).sum(-1) < radius(disk_size) ** 2).long()


def draw(n: int, sampling: str, generator):
    """n points (n, 2): uniform in [0, 1]^2, or each coordinate N(0, 1) (`normal`)."""
    import torch

    points = torch.empty(n, 2)
    return points.normal_(0.0, 1.0, generator=generator) if sampling == "normal" else points.uniform_(0.0, 1.0, generator=generator)


def grid_points(size: int = GRID):
    """The centres of a size x size grid over [0, 1]^2, row by row from y = 0: (size^2, 2)."""
    import torch

    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack((x.flatten(), y.flatten()), 1)


@dataclass
class DiskSets:
    train_input: Any  # (n, 2) float32
    train_target: Any  # (n,) int64
    test_input: Any
    test_target: Any


class DiskSource:
    """The task's data source: nothing to read, every set is drawn from its seed."""

    def __init__(self, data_dir=None):
        self.data_dir = data_dir  # unused: the points are generated

    def sets(self, n: int, seed: int, sampling: str = "uniform", disk_size: str = "area") -> DiskSets:
        import torch

        generator = torch.Generator().manual_seed(seed)
        train = draw(n, sampling, generator)
        test = draw(n, sampling, generator)
        return DiskSets(train, label(train, disk_size), test, label(test, disk_size))


def listed_activations(config) -> list[str]:
    """The names the `activations` setting lists, as given (one, or one per linear layer)."""
    return [name.strip() for name in config.activations.split(",")]


def layer_activations(config) -> list[str]:
    """One activation name per linear layer (hidden layers, then the output)."""
    names = listed_activations(config)
    if len(names) == 1:
        return names * config.hidden_layers + ["none"]
    return names


def why_meaningless(config) -> str | None:
    """The disk task's check on a configuration (it is dropped from the plan when not None)."""
    layers = config.hidden_layers + 1
    names = listed_activations(config)
    if len(names) not in (1, layers):
        return (f"activations lists {len(names)} names: give one, or one per linear layer "
                f"({layers} with hidden_layers = {config.hidden_layers})")
    if config.framework == "minidl":
        if config.optimizer != "sgd":
            return "minidl implements SGD only: use optimizer = \"sgd\" or framework = \"torch\""
        if config.loss != "mse_linear":
            return "minidl implements the MSE criterion on the network's output only: use loss = \"mse_linear\""
        if config.momentum:
            return "minidl's SGD has no momentum"
    if config.loss != "mse_linear" and layer_activations(config)[-1] != "none":
        return f"loss {config.loss} takes a logit: the output layer's activation must be none"
    return None


def figures(runs, epochs, out_dir: Path) -> list[Path]:
    """One decision-boundary panel per disk configuration (its first stored round): the
    predicted class over the square, the true circle, the run's test error."""
    import json
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if runs.empty or "artifacts" not in runs:
        return []
    with_grid = runs[runs["artifacts"].notna() & (runs["status"] == "done")]
    rows = []
    for _, group in with_grid.groupby("config_id", sort=False):
        first = group.sort_values("round").iloc[0]
        artifacts = json.loads(first["artifacts"])
        if "decision_grid" not in artifacts:
            continue
        config = json.loads(first["config"])
        rows.append((first["name"], artifacts["decision_grid"], config.get("disk_size", "area"),
                     first["round"], first["test_error"]))
    if not rows:
        return []
    written = []
    per_figure = 12
    for start in range(0, len(rows), per_figure):
        chunk = rows[start : start + per_figure]
        columns = min(4, len(chunk))
        lines = -(-len(chunk) // columns)
        figure, axes = plt.subplots(lines, columns, figsize=(3.2 * columns, 3.4 * lines), squeeze=False)
        for axis in axes.flat[len(chunk):]:
            axis.set_visible(False)
        for axis, (name, grid_text, disk_size, round_index, test_error) in zip(axes.flat, chunk):
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
        figure.suptitle("disk task: predicted inside (green) / outside (red); the true disk in black", fontsize=9)
        figure.tight_layout()
        index = start // per_figure + 1
        for suffix in ("png", "svg"):
            path = Path(out_dir) / f"disk_decision_boundary_{index}.{suffix}"
            figure.savefig(path, dpi=110)
            written.append(path)
        plt.close(figure)
    return written
