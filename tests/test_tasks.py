"""Tasks as an extension point: the disk task end to end through the command line, a user's
own task from a plugin file, and the checks that keep each task's settings to itself."""

import json
import textwrap

import pytest
import torch
from click.testing import CliRunner

from harness.cli import main
from harness.config import ConfigError, expand, load_matrix, resolve
from harness.settings import settings_table
from harness.store import Store
from harness.tasks import REGISTRY, TaskSpec, UnknownTaskError, get_task, register_task, task_names
from harness.tasks.disk import DiskSource, radius

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

# A task written against the documented contract only (harness.tasks), as a user would.
XOR_TASK = """
    import time

    import torch

    from harness.results import RunResult
    from harness.tasks import TaskSpec, register_task


    class Source:
        def __init__(self, data_dir=None):
            pass


    def train_run(config, round_index, source, policy):
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(config.seed + round_index)
        points = torch.rand(400, 2, generator=generator) - 0.5
        target = ((points[:, 0] > 0) ^ (points[:, 1] > 0)).long()
        guess = ((points[:, 0] * points[:, 1]) < 0).long()  # the rule itself: no error
        result = RunResult(config.config_id, round_index, config.seed + round_index, 0, "done")
        result.metrics = {"train_error": 0.0, "test_error": float((guess != target).float().mean()),
                          "train_loss": 0.0, "test_predicted_share": float(guess.float().mean()),
                          "train_chance_error": 0.5}
        result.params = 0
        result.seconds = time.perf_counter() - started
        return result


    register_task(TaskSpec(name="xor", help="the sign of x times y", loader=Source, trainer=train_run,
                           size_setting="points"))
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_an_unknown_task_is_refused_with_the_known_names_and_a_close_match():
    with pytest.raises(ConfigError, match="'task' = 'dsik': must be one of pairs, disk.*did you mean 'disk'"):
        resolve({"task": "dsik"}, "study.toml")
    with pytest.raises(UnknownTaskError, match="known tasks are pairs, disk"):
        get_task("xorr")
    assert task_names()[:2] == ["pairs", "disk"]


def test_a_task_keeps_its_settings_and_refuses_the_others():
    with pytest.raises(ConfigError, match="'aux_loss' is a setting of the pairs task.*task is 'disk'"):
        resolve({"task": "disk", "aux_loss": True}, "m.toml")
    with pytest.raises(ConfigError, match="'hidden_units' is a setting of the disk task"):
        resolve({"hidden_units": 10}, "m.toml")
    with pytest.raises(ConfigError, match="'validation' = 400 must be below 'points' = 300"):
        resolve({"task": "disk", "points": 300, "validation": 400}, "m.toml")
    config = resolve({"task": "disk", "activations": "tanh,relu"}, "m.toml")
    assert "one per linear layer (4 with hidden_layers = 3)" in get_task("disk").resolve("check")(config)
    minidl_adam = resolve({"task": "disk", "optimizer": "adam", "loss": "mse_linear"}, "m.toml")
    assert "minidl implements SGD only" in get_task("disk").resolve("check")(minidl_adam)
    # a pairs configuration keeps its id: the disk settings are neutral at their defaults
    assert resolve({}, "m.toml").config_id == "1c869e89c8294a1ecf3ecc4c150dec42fa6c20a6b0f41033f0d87d87090c7e58"


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


def test_the_disk_task_runs_and_reports_through_every_command(tmp_path):
    matrix = write(tmp_path, "disk.toml", DISK_STUDY)
    store = tmp_path / "disk.sqlite"
    runner = CliRunner()
    result = runner.invoke(main, ["run", "--matrix", str(matrix), "--store", str(store), "--device", "cpu", "--workers", "2"])
    assert result.exit_code == 0, result.output
    with Store.open_readonly(store) as opened:
        runs = opened.runs()
        epochs = opened.epochs()
    assert len(runs) == 6 and (runs["status"] == "done").all() and set(runs["task"]) == {"disk"}
    assert set(runs["params"]) == {1401} and runs["test_digit_error"].isna().all() and set(runs["device"]) == {"cpu"}
    grid = json.loads(runs["artifacts"].iloc[0])["decision_grid"]
    assert len(grid) == 64 * 64 and set(grid) <= {"0", "1"}
    assert len(epochs) == 6 * 6 and epochs["test_error"].notna().all()

    table = runner.invoke(main, ["table", "--store", str(store), "--matrix", str(matrix)])
    assert table.exit_code == 0, table.output
    assert "disk minidl tanh,relu,relu,tanh summed-loss" in table.output and "digit" not in table.output
    assert "| framework" in table.output  # the framework's paired effect, minidl -> torch

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


@pytest.fixture
def forget_xor():
    yield
    REGISTRY.pop("xor", None)  # the other tests see the package's tasks only


def test_a_users_own_task_registers_from_a_plugin_file_and_runs_in_worker_processes(tmp_path, forget_xor):
    write(tmp_path, "xor_task.py", XOR_TASK)
    matrix = write(tmp_path, "xor.toml", """
        plugins = ["xor_task.py"]

        [defaults]
        task = "xor"
        rounds = 3

        [matrix]
        seed = [0, 1]
    """)
    plan = expand(load_matrix(matrix))
    assert [c.task for c in plan.configs] == ["xor", "xor"] and plan.configs[0].name.startswith("xor")
    assert "`pairs`, `disk` |" in settings_table() and "xor" not in settings_table()  # built-in tasks listed
    result = CliRunner().invoke(main, ["run", "--matrix", str(matrix), "--store", str(tmp_path / "x.sqlite"),
                                       "--device", "cpu", "--workers", "2"])
    assert result.exit_code == 0, result.output
    with Store.open_readonly(tmp_path / "x.sqlite") as opened:
        runs = opened.runs()
    assert len(runs) == 6 and (runs["test_error"] == 0).all()
    assert json.loads(runs["plugins"].iloc[0])[0]["path"].endswith("xor_task.py")


def test_a_task_name_must_be_a_word():
    with pytest.raises(ValueError, match="use letters, digits and underscores"):
        register_task(TaskSpec(name="no spaces", help="", loader=dict, trainer=print))
