"""The pairs task's training (harness.tasks.pairs.training, sequential.py): learning curves,
ensembles, self-distillation, options that are neutral when off; each checked against what its
help promises."""

import pytest
import torch
from fixtures import run_config

from harness.device import CPU, retain_freed_memory
from harness.errors import ConfigError
from harness.mnist import load_mnist
from harness.tasks.pairs import training
from harness.tasks.pairs.augment import augments
from harness.tasks.pairs.batched import train_rounds
from harness.tasks.pairs.data import PairSource
from harness.tasks.pairs.losses import distillation_loss
from harness.tasks.pairs.sequential import train_run
from harness.training import protocol


@pytest.fixture
def source(fake_mnist):
    return PairSource(load_mnist())


SMALL = {"epochs": 2, "pairs": 100, "batch_size": 25, "pretrain_epochs": 2, "encoder": "cnn", "batch_norm": True,
         "transfer": "rule"}


def test_digit_mix_needs_a_single_digit_stage():
    with pytest.raises(ConfigError, match="digit_mix.*transfer"):
        run_config(**{"digit_mix": "mixup"})


def test_an_ensemble_averages_its_members_probabilities():
    config = run_config()
    logits = [torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]])]
    digit_logits = [torch.randn(1, 2, 10), torch.randn(1, 2, 10)]
    forwards = [lambda pairs, i=i: (logits[i], digit_logits[i]) for i in range(2)]
    comparison, digit_out = training.averaged_forward(config, forwards)(None)
    expected = (logits[0].softmax(-1) + logits[1].softmax(-1)) / 2
    assert torch.allclose(comparison.exp(), expected)
    assert torch.allclose(digit_out.exp(), (digit_logits[0].softmax(-1) + digit_logits[1].softmax(-1)) / 2)
    single = [lambda pairs: (torch.tensor([[0.3]]), None)] * 2  # one score: the logit of the mean sigmoid
    assert torch.allclose(training.averaged_forward(config, single)(None)[0], torch.tensor([[0.3]]), atol=1e-6)


def test_an_ensembles_curve_is_its_members_mean():
    rows = lambda loss, error: [{"stage": "pairs", "epoch": 1, "train_loss": loss, "test_error": error}]  # noqa: E731
    outcomes = [protocol.Outcome([rows(1.0, 0.2)], [None]), protocol.Outcome([rows(3.0, 0.4)], [None])]
    merged = training.ensemble_outcome(outcomes, {"test": []})
    assert merged.curves == [[{"stage": "pairs", "epoch": 1, "train_loss": 2.0, "test_error": pytest.approx(0.3)}]]
    assert merged.latest == {"test": []} and merged.alive(0)
@pytest.mark.slow
def test_an_ensemble_of_one_is_the_single_model_and_more_count_every_member(source):
    one = train_run(run_config(**{**SMALL, "ensemble": 1}), 0, source)
    plain = train_run(run_config(**SMALL), 0, source)
    assert one.metrics == plain.metrics and one.epochs == plain.epochs
    two = train_run(run_config(**{**SMALL, "ensemble": 2, "width": 0.8}), 0, source)
    assert two.status == "done", two.reason
    narrow = train_run(run_config(**{**SMALL, "width": 0.8}), 0, source)
    assert two.params == 2 * narrow.params
    assert two.metrics != narrow.metrics  # the second member changes the answer somewhere
    # the batched driver runs an ensemble as its sequential runs
    assert train_rounds(run_config(**{**SMALL, "ensemble": 2, "width": 0.8}), [0], source)[0].metrics == two.metrics


def test_new_options_are_neutral_when_off():
    config = run_config()
    assert not augments(config) and config.digit_mix == "none" and config.ensemble == 1
    for key in ("augment_scale", "augment_shear", "augment_elastic", "augment_erase", "digit_mix", "mix_alpha",
                "ensemble"):
        assert key not in config.identity()


def test_the_plan_counts_and_times_every_member():
    from harness.estimate import parameter_count

    one = run_config(**{**SMALL, "width": 0.8})
    two = run_config(**{**SMALL, "width": 0.8, "ensemble": 2})
    assert parameter_count(two) == 2 * parameter_count(one) == 94_258


def test_distillation_pulls_towards_the_teachers_softened_average():
    config = run_config(**{"transfer": "rule", "distill_teachers": 2, "distill_temperature": 3.0})
    encoders = [torch.nn.Linear(196, 10), torch.nn.Linear(196, 10)]
    flat = [torch.nn.Sequential(torch.nn.Flatten(), e) for e in encoders]
    teach = training.teachers_forward(config, flat)
    images = torch.randn(5, 1, 14, 14)
    target = teach(images)
    expected = sum((f(images) / 3.0).softmax(-1) for f in flat) / 2
    assert torch.allclose(target, expected) and not target.requires_grad
    assert all(not f.training for f in flat)
    # the loss is zero where the model's softened prediction is the target, positive elsewhere
    matching = (target.log() * 3.0).requires_grad_()
    assert distillation_loss(config, matching, target).abs() < 1e-5
    assert distillation_loss(config, torch.zeros(5, 10), target) > 0
@pytest.mark.slow
def test_distillation_counts_the_student_alone_and_needs_a_digit_stage(source):
    with pytest.raises(ConfigError, match="distill_teachers.*transfer"):
        run_config(**{"distill_teachers": 1})
    config = run_config(**{**SMALL, "distill_teachers": 1})
    taught = train_run(config, 0, source)
    alone = train_run(run_config(**SMALL), 0, source)
    assert taught.status == "done" and taught.params == alone.params  # the teacher is not used at test time
    assert taught.epochs[0]["train_loss"] != alone.epochs[0]["train_loss"]  # another loss from the first epoch
    assert train_rounds(config, [0], source)[0].metrics == taught.metrics


@pytest.mark.parametrize("settings", [
    {"encoder": "mlp", "aux_loss": True},
    {"encoder": "cnn", "swap_augment": True, "validation": 20, "eval_every": 2, "dropout": 0.2},
])
@pytest.mark.slow
def test_running_curves_leave_the_final_metrics_and_the_last_epoch_unchanged(source, settings):
    base = run_config(pairs=100, epochs=4, batch_size=25, **settings)
    passed = train_run(base.replace(curve_train_error="pass"), 0, source)
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
@pytest.mark.slow
def test_the_batched_driver_keeps_running_curves_too(source):
    config = run_config(encoder="mlp", pairs=100, epochs=3, batch_size=25)
    results = train_rounds(config, [0, 1], source)
    assert all(r.status == "done" for r in results)
    assert all(0 <= row["train_error"] <= 1 for r in results for row in r.epochs)
@pytest.mark.slow
def test_retaining_freed_memory_is_a_policy_of_the_cpu_and_changes_no_number(source):
    import sys

    assert CPU.retain_freed_memory and "retain_freed_memory" not in CPU.execution()
    applied = retain_freed_memory()
    assert applied == sys.platform.startswith("linux")
    config = run_config(encoder="mlp", pairs=100, epochs=2, batch_size=25)
    assert train_run(config, 1, source).metrics == train_run(config, 1, source).metrics


@pytest.mark.slow
def test_training_learns_the_synthetic_digits(source):
    result = train_run(run_config(encoder="cnn", aux_loss=True, epochs=8, pairs=200, batch_size=20), 0, source)
    assert result.status == "done", result.reason
    assert result.metrics["test_error"] < 0.25
    assert result.metrics["test_digit_error"] < 0.3
    assert [row["epoch"] for row in result.epochs] == list(range(1, 9))
@pytest.mark.slow
def test_validation_split_is_carved_from_training_pairs(source):
    result = train_run(run_config(encoder="mlp", epochs=1, pairs=100, validation=20), 0, source)
    assert result.metrics["validation_error"] is not None
    assert "validation_error" in result.epochs[-1]
@pytest.mark.slow
def test_frozen_transfer_leaves_the_encoder_untouched(source, monkeypatch):
    snapshots = {}
    original = protocol.train_stage

    def spy(config, stage, learner, outcome):
        if stage.name != "pairs":
            return original(config, stage, learner, outcome)
        model = learner.model
        snapshots["before"] = [p.detach().clone() for p in model.digit_encoder.parameters()]
        original(config, stage, learner, outcome)
        snapshots["after"] = [p.detach().clone() for p in model.digit_encoder.parameters()]
        snapshots["head_grads"] = [p.grad is not None for p in model.head.parameters()]
        snapshots["encoder_grads"] = [p.grad is None for p in model.digit_encoder.parameters()]

    monkeypatch.setattr(protocol, "train_stage", spy)
    result = train_run(run_config(transfer="frozen", batch_norm=True, epochs=2, pairs=100), 0, source)
    assert result.status == "done", result.reason
    assert all(torch.equal(a, b) for a, b in zip(snapshots["before"], snapshots["after"]))
    assert all(snapshots["head_grads"]) and all(snapshots["encoder_grads"])
    assert [row["stage"] for row in result.epochs] == ["pretrain", "pretrain", "pairs", "pairs"]
