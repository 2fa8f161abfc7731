"""The disk task's data: `points` training and `points` test points drawn for each round from
its data seed; uniform in [0, 1]^2 and the disk of radius 1/sqrt(2 pi) centred at (0.5, 0.5)
(area 1/2, so the classes balance), as the course specifies. Report 002 words the draw as
"normal" and the 1/sqrt(2 pi) as a diameter: `disk_sampling = "normal"` and `disk_size =
"diameter"` are that reading."""

from __future__ import annotations

import math
from dataclasses import dataclass
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
