"""The accuracy recipe's options: richer digit augmentation, mixed digits and ensembles, each
checked against what its help promises, and neutral where it is off."""

import math

import pytest
import torch

from harness.config import resolve
from harness.data import PairSource, load_mnist
from harness.settings import ConfigError, RunConfig
from harness.training import protocol, train_rounds, train_run
from harness.training.protocol import (
    augment_digits,
    averaged_forward,
    ensemble_outcome,
    mix_digits,
    random_affine,
    random_displacement,
    random_erasing,
)


@pytest.fixture
def source(fake_mnist):
    return PairSource(load_mnist())


def digits(count=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(count, 1, 14, 14, generator=generator)
    images[..., :2, :] = images[..., :, :2] = 0.0  # a background to find
    return images


def test_the_affine_maps_of_shift_and_rotation_are_the_draws_they_were():
    """Scale and shear draw after shift and angle: without them the maps are unchanged."""
    config = RunConfig(augment_shift=2, augment_rotate=15.0)
    theta = random_affine(50, config, torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    shift = torch.randint(-2, 3, (50, 2), generator=generator)
    angle = (torch.rand(50, generator=generator) * 2 - 1) * math.radians(15.0)
    assert torch.equal(theta[:, 0, 0], angle.cos()) and torch.equal(theta[:, 1, 0], angle.sin())
    assert torch.equal(theta[:, :, 2], shift.float() * 2 / 14)


def test_scale_and_shear_stay_within_their_ranges():
    config = RunConfig(augment_scale=0.2, augment_shear=20.0)
    theta = random_affine(2000, config, torch.Generator().manual_seed(0))
    linear = theta[:, :, :2]
    # no rotation: the map is (1/s) [[1, tan(shear)], [0, 1]]
    scale = 1 / linear[:, 1, 1]
    shear = torch.rad2deg(torch.atan(linear[:, 0, 1] * scale))
    assert torch.allclose(linear[:, 0, 0], linear[:, 1, 1]) and torch.equal(linear[:, 1, 0], torch.zeros(2000))
    assert scale.min() >= 0.8 - 1e-6 and scale.max() <= 1.2 + 1e-6 and scale.std() > 0.1
    assert shear.abs().max() <= 20.0 + 1e-4 and shear.std() > 8


def test_elastic_displacement_has_the_asked_rms_and_is_smooth():
    config = RunConfig(augment_elastic=0.7)
    field = random_displacement(40, config, torch.Generator().manual_seed(1)) * 14 / 2  # pixels
    rms = field.pow(2).mean((1, 2, 3)).sqrt()
    assert torch.allclose(rms, torch.full_like(rms, 0.7), rtol=1e-4)
    neighbour = (field[:, 1:] - field[:, :-1]).abs().mean()
    assert neighbour < 0.5 * field.abs().mean()  # neighbouring pixels move together (white noise: ~1.1)


def test_erasing_sets_a_rectangle_to_the_background_with_its_probability():
    never = random_erasing(100, RunConfig(augment_erase=0.0), torch.Generator().manual_seed(0))
    assert not never.any()
    always = random_erasing(500, RunConfig(augment_erase=1.0), torch.Generator().manual_seed(0))
    area = always.sum((1, 2)).float() / 196
    assert area.min() > 0 and area.max() <= 0.26  # 2-20 % of the image, after rounding the sides
    for mask in always[:20]:  # each one rectangle
        rows, columns = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert mask.sum() == len(rows) * len(columns)
        assert (rows.diff() == 1).all() and (columns.diff() == 1).all()
    images = digits()
    erased = augment_digits(images, RunConfig(augment_erase=1.0), [torch.Generator().manual_seed(2)])
    changed = erased != images
    assert changed.any() and (erased[changed] == 0.0).all()  # the background of these digits is 0


def test_mixup_blends_each_digit_with_its_partner_by_the_weight():
    images = digits(8)
    config = resolve({"transfer": "rule", "digit_mix": "mixup", "mix_alpha": 0.4}, "t")
    mixed, partner, weight = mix_digits(images, config, [torch.Generator().manual_seed(0)])
    assert 0 < float(weight) < 1 and sorted(partner.tolist()) == list(range(8))
    assert torch.allclose(mixed, weight * images + (1 - weight) * images[partner])


def test_cutmix_pastes_a_square_of_the_partner_and_weights_by_area():
    images = torch.rand(8, 1, 14, 14, generator=torch.Generator().manual_seed(9))  # no two pixels alike
    config = resolve({"transfer": "rule", "digit_mix": "cutmix"}, "t")
    for seed in range(5):
        mixed, partner, weight = mix_digits(images, config, [torch.Generator().manual_seed(seed)])
        moved = partner != torch.arange(8)
        taken = (mixed == images[partner])[moved, 0]  # (m, 14, 14): pixels from the partner
        assert (taken == taken[0]).all()  # one rectangle for the batch
        region = taken[0]
        rows, columns = region.any(1).nonzero().flatten(), region.any(0).nonzero().flatten()
        assert region.sum() == len(rows) * len(columns) and len(rows) == len(columns)  # a square
        assert math.isclose(float(weight), 1 - region.sum().item() / 196, abs_tol=1e-6)
        assert torch.equal(mixed, torch.where(region, images[partner], images))


def test_digit_mix_needs_a_single_digit_stage():
    with pytest.raises(ConfigError, match="digit_mix.*transfer"):
        resolve({"digit_mix": "mixup"}, "matrix.toml")


def test_an_ensemble_averages_its_members_probabilities():
    config = RunConfig()
    logits = [torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]])]
    digit_logits = [torch.randn(1, 2, 10), torch.randn(1, 2, 10)]
    forwards = [lambda pairs, i=i: (logits[i], digit_logits[i]) for i in range(2)]
    comparison, digit_out = averaged_forward(config, forwards)(None)
    expected = (logits[0].softmax(-1) + logits[1].softmax(-1)) / 2
    assert torch.allclose(comparison.exp(), expected)
    assert torch.allclose(digit_out.exp(), (digit_logits[0].softmax(-1) + digit_logits[1].softmax(-1)) / 2)
    single = [lambda pairs: (torch.tensor([[0.3]]), None)] * 2  # one score: the logit of the mean sigmoid
    assert torch.allclose(averaged_forward(config, single)(None)[0], torch.tensor([[0.3]]), atol=1e-6)


def test_an_ensembles_curve_is_its_members_mean():
    rows = lambda loss, error: [{"stage": "pairs", "epoch": 1, "train_loss": loss, "test_error": error}]  # noqa: E731
    outcomes = [protocol.Outcome([rows(1.0, 0.2)], [None]), protocol.Outcome([rows(3.0, 0.4)], [None])]
    merged = ensemble_outcome(outcomes, {"test": []})
    assert merged.curves == [[{"stage": "pairs", "epoch": 1, "train_loss": 2.0, "test_error": pytest.approx(0.3)}]]
    assert merged.latest == {"test": []} and merged.alive(0)


SMALL = {"epochs": 2, "pairs": 100, "batch_size": 25, "pretrain_epochs": 2, "encoder": "cnn", "batch_norm": True,
         "transfer": "rule"}


def test_an_ensemble_of_one_is_the_single_model_and_more_count_every_member(source):
    one = train_run(resolve({**SMALL, "ensemble": 1}, "t"), 0, source)
    plain = train_run(resolve(SMALL, "t"), 0, source)
    assert one.metrics == plain.metrics and one.epochs == plain.epochs
    two = train_run(resolve({**SMALL, "ensemble": 2, "width": 0.8}, "t"), 0, source)
    assert two.status == "done", two.reason
    narrow = train_run(resolve({**SMALL, "width": 0.8}, "t"), 0, source)
    assert two.params == 2 * narrow.params
    assert two.metrics != narrow.metrics  # the second member changes the answer somewhere
    # the batched driver runs an ensemble as its sequential runs
    assert train_rounds(resolve({**SMALL, "ensemble": 2, "width": 0.8}, "t"), [0], source)[0].metrics == two.metrics


def test_new_options_are_neutral_when_off():
    config = RunConfig()
    assert not protocol.augments(config) and config.digit_mix == "none" and config.ensemble == 1
    for key in ("augment_scale", "augment_shear", "augment_elastic", "augment_erase", "digit_mix", "mix_alpha",
                "ensemble"):
        assert key not in config.identity()


def test_the_plan_counts_and_times_every_member():
    from harness.plan import parameter_count

    one = resolve({**SMALL, "width": 0.8}, "t")
    two = resolve({**SMALL, "width": 0.8, "ensemble": 2}, "t")
    assert parameter_count(two) == 2 * parameter_count(one) == 94_258


def test_progress_shows_the_validation_error_of_a_run_that_holds_pairs_out(capsys):
    from harness.config import Job
    from harness.progress import Progress

    config = resolve({"validation": 200}, "t")
    result = protocol.new_result(config, 0, "cpu")
    result.status, result.seconds = "done", 1.0
    result.metrics = {"test_error": 0.0123, "validation_error": 0.045}
    progress = Progress(force_plain=True)
    progress.start(0, 2)
    progress.result(Job(config, 0), result)
    result.metrics = {"test_error": 0.0123, "validation_error": None}
    progress.result(Job(config, 1), result)
    lines = capsys.readouterr().out.splitlines()
    assert "validation error 4.5%" in lines[1] and "test error" not in lines[1]
    assert "test error 1.2%" in lines[2]


def test_distillation_pulls_towards_the_teachers_softened_average():
    config = resolve({"transfer": "rule", "distill_teachers": 2, "distill_temperature": 3.0}, "t")
    encoders = [torch.nn.Linear(196, 10), torch.nn.Linear(196, 10)]
    flat = [torch.nn.Sequential(torch.nn.Flatten(), e) for e in encoders]
    teach = protocol.teachers_forward(config, flat)
    images = torch.randn(5, 1, 14, 14)
    target = teach(images)
    expected = sum((f(images) / 3.0).softmax(-1) for f in flat) / 2
    assert torch.allclose(target, expected) and not target.requires_grad
    assert all(not f.training for f in flat)
    # the loss is zero where the model's softened prediction is the target, positive elsewhere
    matching = (target.log() * 3.0).requires_grad_()
    assert protocol.distillation_loss(config, matching, target).abs() < 1e-5
    assert protocol.distillation_loss(config, torch.zeros(5, 10), target) > 0


def test_distillation_counts_the_student_alone_and_needs_a_digit_stage(source):
    with pytest.raises(ConfigError, match="distill_teachers.*transfer"):
        resolve({"distill_teachers": 1}, "matrix.toml")
    config = resolve({**SMALL, "distill_teachers": 1}, "t")
    taught = train_run(config, 0, source)
    alone = train_run(resolve(SMALL, "t"), 0, source)
    assert taught.status == "done" and taught.params == alone.params  # the teacher is not used at test time
    assert taught.epochs[0]["train_loss"] != alone.epochs[0]["train_loss"]  # another loss from the first epoch
    assert train_rounds(config, [0], source)[0].metrics == taught.metrics


def test_the_table_shows_the_validation_digit_error_choices_are_made_on(tmp_path):
    from harness.report import results_report
    from harness.store import Store

    config = resolve({"validation": 200, "transfer": "rule", "rounds": 2}, "t")
    with Store(tmp_path / "s.sqlite") as store:
        for round_index, (pair_error, digit_error) in enumerate(((0.01, 0.02), (0.03, 0.04))):
            result = protocol.new_result(config, round_index, "cpu")
            result.status, result.seconds, result.params = "done", 1.0, 10
            result.metrics = {"train_error": 0.0, "test_error": 0.02, "validation_error": pair_error,
                              "validation_digit_error": digit_error, "test_digit_error": 0.03}
            store.write(result, config, {})
        runs = store.runs()
    text = results_report(runs, store_path=str(tmp_path / "s.sqlite"))
    header = next(line for line in text.splitlines() if line.startswith("| configuration"))
    assert "| validation error % | validation digit error % |" in header.replace("  ", " ").replace("  ", " ")
    assert "3.00 ± 1.41" in text  # the digit error's mean ± std, in %


def test_effects_can_be_measured_on_the_validation_error(tmp_path):
    from harness.report import results_report
    from harness.stats import effects
    from harness.store import Store

    with Store(tmp_path / "s.sqlite") as store:
        for elastic in (0.0, 0.5):
            config = resolve({"validation": 200, "transfer": "rule", "rounds": 3, "augment_elastic": elastic}, "t")
            for round_index in range(3):
                result = protocol.new_result(config, round_index, "cpu")
                result.status, result.seconds, result.params = "done", 1.0, 10
                result.metrics = {"train_error": 0.0, "test_error": 0.02, "test_digit_error": 0.03,  # no effect on test
                                  "validation_error": 0.03 - elastic * 0.02 + round_index * 0.001,
                                  "validation_digit_error": 0.04 - elastic * 0.04}
                store.write(result, config, {})
        runs = store.runs()
    on_test = effects(runs).set_index("factor").loc["augment_elastic"]
    on_validation = effects(runs, metric="validation_error").set_index("factor").loc["augment_elastic"]
    assert on_test["effect"] == 0 and on_validation["effect"] == pytest.approx(-1.0)
    text = results_report(runs, store_path="s", metric="validation_digit_error")
    assert "Δ validation digit error (pp)" in text and "-2.00" in text


def test_a_matrix_names_its_configurations_whatever_label_they_were_stored_under(tmp_path):
    from harness.config import Plan
    from harness.report import results_report
    from harness.store import Store

    stored = resolve({"transfer": "rule", "aux_loss": True, "rounds": 1, "label": "best"}, "t")
    with Store(tmp_path / "s.sqlite") as store:
        result = protocol.new_result(stored, 0, "cpu")
        result.status, result.seconds, result.params = "done", 1.0, 10
        result.metrics = {"train_error": 0.0, "test_error": 0.02}
        store.write(result, stored, {})
        runs = store.runs()
    renamed = resolve({"transfer": "rule", "aux_loss": True, "rounds": 1, "label": "the first search's recipe"}, "t")
    assert renamed.config_id == stored.config_id  # a label is presentation
    text = results_report(runs, store_path="s", plan=Plan.from_configs([renamed], source="m.toml"))
    assert "| the first search's recipe" in text and "| best" not in text


def test_a_numeric_factor_is_measured_from_its_smallest_level_whatever_its_type():
    import numpy as np
    import pandas as pd

    from harness.stats import effects

    rows = [{"config_id": f"c{epochs}", "round": r, "status": "done", "pretrain_epochs": np.int64(epochs),
             "transfer": "rule", "test_error": 0.02 - (epochs == 120) * 0.005} for epochs in (60, 120) for r in range(3)]
    row = effects(pd.DataFrame(rows)).set_index("factor").loc["pretrain_epochs"]
    assert row["change"] == "60 -> 120" and row["effect"] == pytest.approx(-0.5)
