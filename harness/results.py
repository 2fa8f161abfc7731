"""What a run produced, as every layer sees it (no torch here: the store and reports type it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Status(str, Enum):
    """A stored run's status. A str, so it compares equal to the text the store holds."""

    DONE = "done"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


class Stage(str, Enum):
    """A training stage; its value is what learning curves record."""

    PRETRAIN = "pretrain"  # the digit encoder alone, on the single training digits (transfer)
    PAIRS = "pairs"  # the whole model on the pairs

    def __str__(self) -> str:
        return self.value


@dataclass
class RunResult:
    """What a run produced. Errors are fractions in [0, 1]."""

    config_id: str
    round: int
    data_seed: int
    model_seed: int
    status: str  # a Status
    reason: str | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    params: int | None = None
    seconds: float = 0.0
    device: str = "cpu"
    artifacts: dict[str, Any] = field(default_factory=dict)  # a task's small JSON outputs (its figures read them)
