"""What a pairs configuration costs before it trains: its parameter count and a timed estimate
of one run (`harness plan`)."""

from __future__ import annotations

import functools
import time

from harness.settings import RunConfig
from harness.tasks.pairs.settings import model_options


@functools.lru_cache(maxsize=4096)
def _model_parameters(encoder: str, options) -> int:
    from architectures import build, count_parameters

    return count_parameters(build(encoder, options))


def parameter_count(config: RunConfig) -> int:
    """Every parameter a run trains and counts: its model's, times its ensemble's members
    (each model built once per plan, however many configurations share it; a user's model
    counted by its plan-time check, in a process of its own, never built here)."""
    from harness.tasks.pairs.rules import checked_model

    probe = checked_model(config)
    parameters = probe.parameters if probe is not None else _model_parameters(config.encoder, model_options(config))
    return parameters * config.ensemble


def _train_pairs(config: RunConfig) -> int:
    return (config.pairs - config.validation) * (2 if config.swap_augment else 1)


def _step_key(config: RunConfig) -> tuple:
    """What one timed training step depends on: the model, its layout and the update."""
    batch_size = min(config.batch_size, _train_pairs(config))  # no minibatch is larger than the training set
    return (config.encoder, model_options(config), config.layout, batch_size, config.optimizer, config.lr_schedule,
            config.loss, config.momentum, config.weight_decay)


_STEPS: dict[tuple, float | BaseException] = {}  # step key -> seconds of one training step, or what failed


def step_seconds(config: RunConfig, steps: int = 3) -> float:
    """The fastest of a few training steps on random data (CPU, one thread, as a worker), timed
    once for all configurations that share the model, its layout and its update (a failure,
    a time limit's included, is raised again for each of them, never timed twice)."""
    key = _step_key(config)
    if key not in _STEPS:
        try:
            _STEPS[key] = _timed_step(config, key[3], steps)
        except KeyboardInterrupt:  # the user's Ctrl-C says nothing of the model
            raise
        except BaseException as error:  # noqa: B036 - kept, and raised again at once
            _STEPS[key] = error
            raise
    found = _STEPS[key]
    if isinstance(found, BaseException):
        raise found
    return found


def _timed_step(config: RunConfig, batch_size: int, steps: int) -> float:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each CPU worker trains
    try:
        return _fastest_step(config, batch_size, steps)
    finally:
        torch.set_num_threads(threads)


def _fastest_step(config: RunConfig, batch_size: int, steps: int) -> float:
    import torch

    from harness.device import CPU
    from harness.tasks.pairs.sequential import build_model
    from harness.training.protocol import decision_loss, make_optimizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(config, CPU)  # in the layout CPU runs use
        optimizer = make_optimizer(config, model.parameters(), config.lr_schedule)
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
    return min(timings[1:])


def seconds_per_run(config: RunConfig, steps: int = 3) -> float:
    """Time a few training steps on random data (CPU, one thread) and scale to the whole run.

    Evaluation passes are counted as a third of a training step each, as a forward pass is.
    """
    from harness.tasks.pairs.training import stages

    step = step_seconds(config, steps)
    train_pairs = _train_pairs(config)
    batch_size = min(config.batch_size, train_pairs)
    epochs = sum(stage.epochs for stage in stages(config))  # the protocol's stages and epochs
    steps_per_epoch = -(-train_pairs // batch_size)
    eval_steps = (config.pairs * 2) / batch_size / 3
    models = config.ensemble + config.distill_teachers  # every model a run trains
    return step * (steps_per_epoch + eval_steps / max(1, config.eval_every)) * epochs * models
