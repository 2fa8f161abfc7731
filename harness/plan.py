"""What a plan will cost: parameter counts without training, and a measured time estimate."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from harness.config import Plan, RunConfig
from harness.results import Status
from harness.tasks import get_task

if TYPE_CHECKING:
    import pandas as pd


def parameter_count(config: RunConfig) -> int | None:
    """The configuration's parameter count, from its task (None when the task cannot tell)."""
    count = get_task(config.task).resolve("parameter_count")
    return count(config) if count else None


def seconds_per_run(config: RunConfig) -> float | None:
    """An estimate of one run's seconds, from its task (None when the task has none)."""
    estimate = get_task(config.task).resolve("seconds_per_run")
    return estimate(config) if estimate else None


def pairs_parameter_count(config: RunConfig) -> int:
    from architectures import build, count_parameters

    return count_parameters(build(config.encoder, config.model_options())) * config.ensemble  # every member


def pairs_seconds_per_run(config: RunConfig, steps: int = 3) -> float:
    """Time a few training steps on random data (CPU, one thread) and scale to the whole run.

    Evaluation passes are counted as a third of a training step each, as a forward pass is.
    """
    import torch

    from architectures import build
    from harness.training.protocol import comparison_loss, make_optimizer, stages
    from harness.training.sequential import use_channels_last

    torch.manual_seed(0)
    model = build(config.encoder, config.model_options())
    use_channels_last(model)  # as CPU runs do
    optimizer = make_optimizer(config, model.parameters())
    train_pairs = (config.pairs - config.validation) * (2 if config.swap_augment else 1)
    batch_size = min(config.batch_size, train_pairs)  # no minibatch is larger than the training set
    batch = torch.randn(batch_size, 2, 14, 14)
    target = torch.randint(0, 2, (batch_size,))
    model.train()
    timings = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        loss = comparison_loss(model(batch).comparison, target, config.loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        timings.append(time.perf_counter() - started)
    step = min(timings[1:])
    epochs = sum(stage.epochs for stage in stages(config))  # the protocol's stages and epochs
    steps_per_epoch = -(-train_pairs // batch_size)
    eval_steps = (config.pairs * 2) / batch_size / 3
    models = config.ensemble + config.distill_teachers  # every model a run trains
    return step * (steps_per_epoch + eval_steps / max(1, config.eval_every)) * epochs * models


def plan_frame(plan: Plan, *, estimate: bool = True, stored: pd.DataFrame | None = None) -> pd.DataFrame:
    """A row per configuration. `stored`: the store's runs; their mean seconds replace the
    timed-step estimate, and their count is shown as rounds done."""
    import pandas as pd

    done = stored[stored["status"] == Status.DONE] if stored is not None and not stored.empty else None
    rows = []
    for config in plan.configs:
        row = {"id": config.config_id[:10], "name": config.name, **config.__dict__}
        row["params"] = parameter_count(config)
        measured = done[done["config_id"] == config.config_id] if done is not None else None
        if done is not None:
            row["done"] = int(measured["round"].lt(config.rounds).sum())
        if estimate:
            if measured is not None and len(measured):
                row["s/run"], row["timing"] = round(float(measured["seconds"].mean()), 2), "stored"
            else:
                estimate = seconds_per_run(config)
                row["s/run"] = round(estimate, 2) if estimate is not None else None
                row["timing"] = "timed steps" if estimate is not None else "no estimate"
        rows.append(row)
    return pd.DataFrame(rows)
