"""What a run produced, as every layer sees it (no torch here: the store and reports type it),
and the one table of the metrics a run records."""

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
    """A training stage as learning curves record it; its value is what the store holds."""

    PRETRAIN = "pretrain"  # a preliminary stage (a transfer variant's digit encoder on the single digits)
    # the main stage, of every task: stored as "pairs" since the pairs task was the only one
    MAIN = "pairs"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Metric:
    """A number a run records (errors are fractions in [0, 1]): a column of the store, and what
    the summaries, effects, learning curves and machine-readable outputs do with it."""

    name: str
    help: str
    summarized: bool = False  # mean and std over rounds (in %) in summaries, tables, CSV and JSON
    extremes: bool = False  # summarized with its lowest and highest round too
    curve: bool = False  # recorded after each evaluated epoch (learning curves)
    effect: bool = False  # effects can be measured on it (`harness table --metric`)


METRICS = (
    Metric("train_error", "error on the training examples (a scoring pass after the last epoch)", summarized=True,
           curve=True),
    Metric("test_error", "error on the test set", summarized=True, extremes=True, curve=True, effect=True),
    Metric("validation_error", "error on the validation examples held out of training", summarized=True, curve=True,
           effect=True),
    Metric("train_digit_error", "error of the digit predictions on the training digits, where trained on digits"),
    Metric("test_digit_error", "error of the digit predictions on the test digits", summarized=True, effect=True),
    Metric("validation_digit_error", "error of the digit predictions on the validation digits", summarized=True,
           effect=True),
    Metric("train_loss", "the last epoch's training loss (its mean over the training examples)", curve=True),
    Metric("test_predicted_share", "share of test examples predicted 1 (0 or 1: a single class)"),
    Metric("train_chance_error", "train error of always answering the training set's majority class"),
)
METRIC_NAMES = tuple(metric.name for metric in METRICS)
SUMMARIZED = tuple(metric.name for metric in METRICS if metric.summarized)
CURVE_METRICS = tuple(metric.name for metric in METRICS if metric.curve)
EFFECT_METRICS = tuple(metric.name for metric in METRICS if metric.effect)


def metric_words(metric: str) -> str:
    """How tables name a metric: "test error", "validation digit error"."""
    return metric.replace("_", " ")


@dataclass
class RunResult:
    """What a run produced: its metrics by the names of METRICS (errors are fractions)."""

    config_id: str
    round: int
    data_seed: int
    model_seed: int
    status: str  # a Status
    reason: str | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    epochs: list[dict[str, Any]] = field(default_factory=list)  # stage, epoch and the CURVE_METRICS measured
    params: int | None = None
    seconds: float = 0.0
    device: str = "cpu"
    artifacts: dict[str, Any] = field(default_factory=dict)  # a task's small JSON outputs (its figures read them)
    # how this run executed where it differs from the plan's device policy (the memory layout
    # its model trained in), merged into the stored execution record
    execution: dict[str, Any] = field(default_factory=dict)
