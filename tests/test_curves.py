"""The learning curve's train error from the epochs' own training steps (the default) instead of
a scoring pass: the final metrics and the last epoch are the same, only earlier points differ;
and the CPU choices that must not change a number (malloc policy; the optimisers: tests/test_optim.py)."""

import dataclasses

import pytest

from harness.config import RunConfig
from harness.data import PairSource, load_mnist
from harness.device import CPU, retain_freed_memory
from harness.training import train_rounds, train_run


@pytest.fixture(scope="module")
def source(synthetic_mnist):
    directory, checksums = synthetic_mnist
    return PairSource(load_mnist(directory, download=False, checksums=checksums))


@pytest.mark.parametrize("settings", [
    {"encoder": "mlp", "aux_loss": True},
    {"encoder": "cnn", "swap_augment": True, "validation": 20, "eval_every": 2, "dropout": 0.2},
])
def test_running_curves_leave_the_final_metrics_and_the_last_epoch_unchanged(source, settings):
    base = RunConfig(pairs=100, epochs=4, batch_size=25, **settings)
    passed = train_run(dataclasses.replace(base, curve_train_error="pass"), 0, source)
    running = train_run(base, 0, source)
    assert base.curve_train_error == "running" and passed.status == running.status == "done"
    assert running.metrics == passed.metrics
    assert running.epochs[-1] == passed.epochs[-1]
    evaluated = [row for row in running.epochs[:-1] if "test_error" in row]
    assert evaluated, "the schedule scores some epochs before the last"
    for mine, theirs in zip(running.epochs[:-1], passed.epochs[:-1]):
        assert mine["train_loss"] == theirs["train_loss"] and mine.get("test_error") == theirs.get("test_error")
        assert ("train_error" in mine) == ("train_error" in theirs)
        if "train_error" in mine:
            examples = (100 - base.validation) * (2 if base.swap_augment else 1)
            assert (mine["train_error"] * examples) == pytest.approx(round(mine["train_error"] * examples))


def test_the_batched_driver_keeps_running_curves_too(source):
    config = RunConfig(encoder="mlp", pairs=100, epochs=3, batch_size=25)
    results = train_rounds(config, [0, 1], source)
    assert all(r.status == "done" for r in results)
    assert all(0 <= row["train_error"] <= 1 for r in results for row in r.epochs)


def test_retaining_freed_memory_is_a_policy_of_the_cpu_and_changes_no_number(source):
    import sys

    assert CPU.retain_freed_memory and "retain_freed_memory" not in CPU.execution()
    applied = retain_freed_memory()
    assert applied == sys.platform.startswith("linux")
    config = RunConfig(encoder="mlp", pairs=100, epochs=2, batch_size=25)
    assert train_run(config, 1, source).metrics == train_run(config, 1, source).metrics
