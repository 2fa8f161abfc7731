"""The disk task (harness.tasks.disk): its data as the course and report 002 word them, its
perceptron in both frameworks trained through the protocol, and every command on its runs."""

import json
import textwrap

import pytest
import torch
from click.testing import CliRunner
from fixtures import run_config

from harness.cli import main
from harness.results import Stage
from harness.store import Store
from harness.tasks import get_task
from harness.tasks.disk import training
from harness.tasks.disk.data import DiskSource, radius
from harness.training import protocol

DISK_STUDY = """
    [defaults]
    task = "disk"
    points = 300
    optimizer = "sgd"
    loss = "mse_linear"
    loss_reduction = "sum"
    lr = 5e-3
    batch_size = 50
    epochs = 6
    rounds = 3
    activations = "tanh,relu,relu,tanh"

    [matrix]
    framework = ["minidl", "torch"]
"""


def disk_config(**settings):
    base = {"task": "disk", "optimizer": "sgd", "loss": "mse_linear", "lr": 5e-3, "weight_decay": 1e-6,
            "batch_size": 50, "epochs": 40, "activations": "tanh,relu,relu,tanh", "loss_reduction": "sum"}
    return run_config(**{**base, **settings})


def test_disk_data_follow_the_course_and_the_reports_reading():
    source = DiskSource()
    sets = source.sets(4000, seed=5)
    assert sets.train_input.shape == (4000, 2) and 0 <= sets.train_input.min() and sets.train_input.max() <= 1
    assert 0.47 < sets.train_target.float().mean() < 0.53  # area 1/2: the classes balance
    again = source.sets(4000, seed=5)
    assert torch.equal(again.train_input, sets.train_input) and not torch.equal(sets.train_input, sets.test_input)
    inside = ((sets.test_input - 0.5).pow(2).sum(1) < 1 / (2 * torch.pi)).long()
    assert torch.equal(inside, sets.test_target)
    assert radius("diameter") == pytest.approx(radius("area") / 2)
    small = source.sets(4000, seed=5, sampling="normal", disk_size="diameter")
    assert small.train_input.min() < -1 and small.train_target.float().mean() < 0.05


def test_the_disk_tasks_rules_drop_what_means_nothing():
    check = get_task("disk").hook("check")
    assert "one per linear layer (4 with hidden_layers = 3)" in check(run_config(task="disk", activations="tanh,relu"))
    assert "minidl implements SGD only" in check(run_config(task="disk", optimizer="adam", loss="mse_linear"))
    assert check(disk_config()) is None
@pytest.mark.slow
def test_a_minidl_network_and_its_torch_nn_twin_follow_the_same_loss_curve():
    """Same initial weights (the torch.nn twin copies them), same minibatches, each stepped the
    way the protocol steps a learner: the two frameworks' losses agree step by step to float
    precision over 800 steps."""
    sets = DiskSource().sets(1000, seed=0)
    curves = {}
    for framework in ("minidl", "torch"):
        chosen = disk_config(framework=framework)
        learner = training.make_learner(chosen, sets.train_input, sets.train_target, {}, torch.Generator().manual_seed(11))
        stage = protocol.TrainingStage(Stage.MAIN, chosen.epochs)
        optimizer, loss_of = learner.optimizer(stage), learner.objective(stage, None)
        losses = []
        for _ in range(chosen.epochs):
            for index in learner.batches(1000):
                value = loss_of(index)
                optimizer.zero_grad()
                learner.backward(value)
                optimizer.step()
                losses.append(float(value.detach()))
        curves[framework] = torch.tensor(losses)
    assert len(curves["minidl"]) == 800
    assert curves["minidl"][0] == curves["torch"][0]  # the first step is the same computation
    torch.testing.assert_close(curves["minidl"], curves["torch"], rtol=1e-4, atol=1e-6)
    assert curves["minidl"][-100:].mean() < 0.5 * curves["minidl"][:100].mean()  # and it learns


def test_the_twin_starts_from_the_same_weights():
    chosen = disk_config()
    network = training.build_minidl(chosen, torch.Generator().manual_seed(12))
    twin = training.to_torch(network)
    for (mine, _), theirs in zip(network.param(), twin.parameters()):
        assert torch.equal(mine, theirs.detach())
    x = torch.rand(8, 2)
    assert torch.equal(network.forward(x), twin(x).detach())
    learner = training.make_learner(chosen, x, torch.zeros(8, dtype=torch.long), {}, torch.Generator().manual_seed(12))
    assert learner.params == training.parameter_count(chosen) == 2 * 25 + 25 + 2 * (25 * 25 + 25) + 26
@pytest.mark.slow
def test_a_disk_run_is_the_protocols_curve_and_metrics():
    chosen = disk_config(epochs=5, eval_every=2, validation=100, points=400)
    result = training.train_run(chosen, 0, DiskSource())
    assert result.status == "done", result.reason
    assert [row["epoch"] for row in result.epochs] == [1, 2, 3, 4, 5] and {row["stage"] for row in result.epochs} == {"pairs"}
    assert "test_error" in result.epochs[1] and "test_error" not in result.epochs[0]  # every 2 epochs, and the last
    assert {"train_error", "test_error", "validation_error", "test_predicted_share", "train_chance_error",
            "train_loss"} <= set(result.metrics) and result.metrics["train_loss"] == result.epochs[-1]["train_loss"]
    assert result.params == 1401 and len(result.artifacts["decision_grid"]) == 64 * 64
    again = training.train_run(chosen, 0, DiskSource())
    assert again.metrics == result.metrics and again.epochs == result.epochs  # the same numbers twice
    diverging = training.train_run(disk_config(lr=5.0, epochs=3, activations="relu"), 0, DiskSource())
    assert diverging.status == "failed" and diverging.reason.startswith("TrainingDiverged: non-finite loss")


@pytest.mark.slow
def test_the_disk_task_runs_and_reports_through_every_command(tmp_path):
    matrix = tmp_path / "disk.toml"
    matrix.write_text(textwrap.dedent(DISK_STUDY))
    store = tmp_path / "disk.sqlite"
    runner = CliRunner()
    result = runner.invoke(main, ["run", "--matrix", str(matrix), "--store", str(store), "--device", "cpu", "--workers", "2"])
    assert result.exit_code == 0, result.output
    with Store.open_readonly(store) as opened:
        runs = opened.runs()
        epochs = opened.epochs()
    assert len(runs) == 6 and (runs["status"] == "done").all() and set(runs["task"]) == {"disk"}
    assert set(runs["params"]) == {1401} and runs["test_digit_error"].isna().all() and set(runs["device"]) == {"cpu"}
    stored = json.loads(runs["config"].iloc[0])
    assert stored["framework"] in ("minidl", "torch") and "encoder" not in stored  # its own settings and the common ones
    grid = json.loads(runs["artifacts"].iloc[0])["decision_grid"]
    assert len(grid) == 64 * 64 and set(grid) <= {"0", "1"}
    assert len(epochs) == 6 * 6 and epochs["test_error"].notna().all()

    table = runner.invoke(main, ["table", "--store", str(store), "--matrix", str(matrix)])
    assert table.exit_code == 0, table.output
    assert "disk minidl tanh,relu,relu,tanh summed-loss" in table.output and "digit" not in table.output
    assert "| framework" in table.output  # the framework's paired effect, minidl -> torch
    assert "points: 300" in table.output  # its size setting in the provenance

    plots = runner.invoke(main, ["plot", "--store", str(store), "--out", str(tmp_path / "figures")])
    assert plots.exit_code == 0, plots.output
    assert (tmp_path / "figures" / "disk_decision_boundary_1.png").stat().st_size > 10_000

    html = runner.invoke(main, ["report", "--store", str(store), "--html", str(tmp_path / "page")])
    assert html.exit_code == 0, html.output
    assert "disk minidl" in (tmp_path / "page" / "index.html").read_text()

    same = runner.invoke(main, ["compare", str(store), str(store)])
    assert same.exit_code == 0, same.output

    plan = runner.invoke(main, ["plan", "--matrix", str(matrix)])
    assert plan.exit_code == 0 and "1401" in plan.output

    shown = runner.invoke(main, ["show", runs["config_id"].iloc[0][:12], "--store", str(store)])
    assert shown.exit_code == 0, shown.output
    assert '"framework"' in shown.output and '"encoder"' not in shown.output  # its task's settings only
