"""What a pairs configuration costs before it trains: its parameter count and a timed estimate
of one run (`harness plan`)."""

from __future__ import annotations

import time

from harness.settings import RunConfig
from harness.tasks.pairs.settings import model_options


def parameter_count(config: RunConfig) -> int:
    """Every parameter a run trains and counts: its model's, times its ensemble's members."""
    from architectures import build, count_parameters

    return count_parameters(build(config.encoder, model_options(config))) * config.ensemble


def seconds_per_run(config: RunConfig, steps: int = 3) -> float:
    """Time a few training steps on random data (CPU, one thread) and scale to the whole run.

    Evaluation passes are counted as a third of a training step each, as a forward pass is.
    """
    import torch

    from harness.device import CPU
    from harness.tasks.pairs.sequential import build_model
    from harness.tasks.pairs.training import stages
    from harness.training.protocol import decision_loss, make_optimizer

    torch.manual_seed(0)
    model = build_model(config, CPU)  # in the layout CPU runs use
    optimizer = make_optimizer(config, model.parameters(), config.lr_schedule)
    train_pairs = (config.pairs - config.validation) * (2 if config.swap_augment else 1)
    batch_size = min(config.batch_size, train_pairs)  # no minibatch is larger than the training set
    batch = torch.randn(batch_size, 2, 14, 14)
    target = torch.randint(0, 2, (batch_size,))
    model.train()
    timings = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        loss = decision_loss(model(batch).comparison, target, config.loss)
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
