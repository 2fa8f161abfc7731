"""Reproductions: degenerate runs flagged whatever the system, verdicts computed by the rule."""

from pathlib import Path

import pytest
import torch
from fixtures import PROVENANCE, run_config

from architectures import build
from harness import api
from harness.report.formats import write
from harness.report.results import results_document
from harness.results import RunResult
from harness.stats import summarize, verdict
from harness.store import Store
from harness.tasks import get_task
from harness.training.protocol import seeds


def results_report(runs, *, output_format="markdown", **options):
    return write(results_document(runs, **options), output_format)


def store_run(store, config, round_index, **metrics):
    data_seed, model_seed = seeds(config, round_index)
    result = RunResult(config.config_id, round_index, data_seed, model_seed, "done",
                       metrics={"train_loss": 0.1, **metrics}, params=1000, seconds=1.0)
    store.write(result, config, PROVENANCE)


def test_degenerate_rounds_are_counted_and_marked_in_every_table(tmp_path):
    config = run_config(encoder="mlp", rounds=4, label="sys", report="999", reference_test_error=20.0,
                       reference_test_std=1.0)
    plain = run_config(encoder="linear", rounds=2)
    with Store(tmp_path / "s.sqlite") as store:
        store_run(store, config, 0, train_error=0.05, test_error=0.20, test_predicted_share=0.55, train_chance_error=0.44)
        # every test pair answered "first <= second", although the train error looks learned
        store_run(store, config, 1, train_error=0.10, test_error=0.45, test_predicted_share=1.0, train_chance_error=0.44)
        # train error within 2 pp of always answering the majority class
        store_run(store, config, 2, train_error=0.43, test_error=0.40, test_predicted_share=0.3, train_chance_error=0.44)
        # a run stored before schema 3: measured against the pairs task's 45 %
        store_run(store, config, 3, train_error=get_task("pairs").chance_error - 0.01, test_error=0.46)
        for round_index in range(2):
            store_run(store, plain, round_index, train_error=0.46, test_error=0.5, test_predicted_share=0.0,
                      train_chance_error=0.46)
        runs = store.runs()
    summary = summarize(runs).set_index("name")
    assert summary.loc["sys", "rounds_degenerate"] == 3
    assert summary.loc["linear siamese ws", "rounds_degenerate"] == 2
    assert summary.loc["sys", "verdict"].endswith(", 3 degenerate rounds")
    text = results_report(runs, store_path="s.sqlite")
    reproduction = next(line for line in text.splitlines() if line.startswith("| sys "))
    assert "⚠" in reproduction and "3 degenerate" in reproduction
    configuration = next(line for line in text.splitlines() if line.startswith("| linear siamese ws "))
    assert "⚠" in configuration and "2 degenerate" in configuration
    csv = results_report(runs, store_path="s", output_format="csv")
    assert "rounds_degenerate" in csv.splitlines()[0]


@pytest.mark.parametrize("ours, our_std, published, published_std, degenerate, expected", [
    (21.0, 1.0, 20.0, 0.5, 0, "reproduced"),
    (22.0, 1.0, 20.0, 0.5, 0, "reproduced"),  # exactly 2 x max(std): still reproduced
    (22.01, 1.0, 20.0, 0.5, 0, "ours worse by 2.01 pp"),
    (17.0, 1.0, 20.0, 1.5, 0, "reproduced"),  # the published std is the larger
    (16.0, 1.0, 20.0, 1.5, 0, "ours better by 4.00 pp"),
    (20.5, 1.0, 20.0, None, 0, "reproduced"),  # no published std: ours alone
    (20.5, 5.0, 20.0, 1.0, 1, "ours worse by 0.50 pp, 1 degenerate round"),
    (20.5, 5.0, None, None, 0, None),
])
def test_verdict_follows_the_rule(ours, our_std, published, published_std, degenerate, expected):
    row = {"test_error_mean": ours, "test_error_std": our_std, "reference_test_error": published,
           "reference_test_std": published_std, "rounds_degenerate": degenerate}
    assert verdict(row) == expected


@pytest.mark.slow
def test_a_run_records_its_predicted_share_and_the_chance_error(fake_mnist, tmp_path):
    plan = api.plan(configs=[{"encoder": "linear", "epochs": 1, "rounds": 2, "pairs": 100}])
    api.run(plan, tmp_path / "s.sqlite", device="cpu", workers=1)
    with Store.open_readonly(tmp_path / "s.sqlite") as store:
        runs = store.runs()
    from harness.tasks.pairs.data import generate_pair_sets

    for row in runs.to_dict("records"):
        train_target = generate_pair_sets(100, row["data_seed"], fake_mnist)[1]
        ones = train_target.float().mean().item()
        assert row["train_chance_error"] == pytest.approx(min(ones, 1 - ones))
        assert 0.0 <= row["test_predicted_share"] <= 1.0


def test_the_linear_head_reading_of_report_003_has_no_activation_and_the_same_count():
    relu = build("gardoni_siamese", pairing="siamese", weight_sharing=True)
    linear = build("gardoni_siamese_linear", pairing="siamese", weight_sharing=True)
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    assert count(relu) == count(linear) == 73299
    assert any(isinstance(m, torch.nn.ReLU) for m in relu.head.modules())
    assert not any(isinstance(m, torch.nn.ReLU) for m in linear.head.modules())


@pytest.mark.slow
def test_scoring_in_train_mode_changes_only_models_with_dropout_or_batch_norm(fake_mnist, monkeypatch):
    from harness.mnist import load_mnist
    from harness.tasks.pairs.data import PairSource
    from harness.tasks.pairs.sequential import train_run
    from harness.training import protocol

    source = PairSource(load_mnist())
    # one initialisation for all: the model seed otherwise follows the configuration id
    monkeypatch.setattr(protocol, "seeds", lambda config, round_index: (config.seed + round_index, 12345))
    small = {"encoder": "mlp", "epochs": 2, "pairs": 100, "batch_size": 25}

    def errors(**settings):
        result = train_run(run_config(**small, **settings), 0, source)
        return result.metrics["train_error"], result.metrics["test_error"], result.epochs[-1]["train_loss"]

    assert errors() == errors(score_in_train_mode=True)  # nothing to switch: the same numbers
    # batch norm on batch statistics, not the running ones: other answers, the same training
    evaluated, in_train_mode = errors(batch_norm=True), errors(batch_norm=True, score_in_train_mode=True)
    assert evaluated[:2] != in_train_mode[:2] and evaluated[2] == in_train_mode[2]


ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", sorted((ROOT / "matrices").glob("*.toml")), ids=lambda p: p.name)
def test_every_committed_matrix_plans(path):
    """Each matrix under matrices/ loads, expands and names its configurations apart; the
    evidence matrices' systems carry their report's published figures for a verdict."""
    plan = api.plan(path)
    assert len({c.name for c in plan.configs}) == len(plan.configs)
    if path.name.startswith("repro-"):
        assert all(c.report and c.reference_test_error is not None for c in plan.configs)


def test_every_reproduction_that_is_not_plainly_the_report_points_to_its_evidence():
    plan = api.plan(ROOT / "matrices" / "reports.toml")
    for config in plan.configs:
        if config.evidence and config.evidence.startswith("matrices/"):
            assert (ROOT / config.evidence.split(":")[0]).is_file(), config.evidence
