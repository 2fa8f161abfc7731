"""Tasks as an extension point (harness.tasks): the registry, a user's own task with settings of
its own from a plugin file (validated, flattened into its ids, kept from other tasks' and run in
worker processes), an installed task found through its entry point."""

import importlib.metadata
import json
import sys
import textwrap

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.config import expand, load_matrix
from harness.errors import ConfigError
from harness.registry import UnknownName
from harness.store import Store
from harness.tasks import TASKS, TaskSpec, declared, get_task, register_task, settings_table

# A task written against the documented contract only (harness.tasks), as a user would: its own
# settings (one of them a name the disk task uses too), its data, its trainer.
XOR_TASK = """
    import time
    from dataclasses import dataclass

    import torch

    from harness.results import RunResult
    from harness.settings import FROM_BASELINE, setting
    from harness.tasks import TaskSpec, register_task


    @dataclass(frozen=True)
    class XorSettings:
        points: float = setting(400.0, "points per set", above=0)
        rule: str = setting("product", "how the label is guessed", choices=("product", "first"), tag="{}",
                            effect=FROM_BASELINE, baseline="product")


    class Source:
        def __init__(self, data_dir=None):
            pass


    def train_run(config, round_index, source, policy):
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(config.seed + round_index)
        points = torch.rand(int(config.points), 2, generator=generator) - 0.5
        target = ((points[:, 0] > 0) ^ (points[:, 1] > 0)).long()
        if config.rule == "product":
            guess = ((points[:, 0] * points[:, 1]) < 0).long()  # the rule itself: no error
        else:
            guess = (points[:, 0] > 0).long()
        result = RunResult(config.config_id, round_index, config.seed + round_index, 0, "done")
        result.metrics = {"train_error": 0.0, "test_error": float((guess != target).float().mean()),
                          "train_loss": 0.0, "test_predicted_share": float(guess.float().mean()),
                          "train_chance_error": 0.5}
        result.params = 0
        result.seconds = time.perf_counter() - started
        return result


    register_task(TaskSpec(name="xor", help="the sign of x times y", settings=XorSettings, size_setting="points",
                           loader=Source, trainer=train_run))
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def forget_xor():
    yield
    TASKS.unregister("xor")  # the other tests see the package's tasks only


def test_an_unknown_task_is_refused_with_the_known_names_and_a_close_match():
    with pytest.raises(UnknownName, match="unknown task 'xorr'.*known tasks: pairs, disk"):
        get_task("xorr")
    assert TASKS.names()[:2] == ["pairs", "disk"] and TASKS.builtin_names() == ["pairs", "disk"]


def test_a_task_is_checked_when_registered():
    with pytest.raises(ValueError, match="use letters, digits and underscores"):
        register_task(TaskSpec(name="no spaces", help="", loader=dict, trainer=print))
    from dataclasses import dataclass

    from harness.settings import setting

    @dataclass(frozen=True)
    class Clashing:
        epochs: int = setting(3, "a common setting's name")

    with pytest.raises(ValueError, match="declares 'epochs', a common setting"):
        register_task(TaskSpec(name="clash", help="", loader=dict, trainer=print, settings=Clashing))
    with pytest.raises(ValueError, match="size_setting 'points' is none of its settings"):
        register_task(TaskSpec(name="sizeless", help="", loader=dict, trainer=print, size_setting="points"))
    assert "clash" not in TASKS and "sizeless" not in TASKS


@pytest.mark.slow
def test_a_users_own_task_with_its_own_settings_runs_in_worker_processes(tmp_path, forget_xor):
    write(tmp_path, "xor_task.py", XOR_TASK)
    matrix = write(tmp_path, "xor.toml", """
        plugins = ["xor_task.py"]

        [defaults]
        task = "xor"
        rounds = 3
        points = 300.5

        [matrix]
        rule = ["product", "first"]
    """)
    plan = expand(load_matrix(matrix))
    assert [c.task for c in plan.configs] == ["xor", "xor"] and [c.name for c in plan.configs] == ["xor", "xor first"]
    assert plan.configs[0].points == 300.5  # a float, though the disk task's `points` is an integer
    assert plan.configs[0].identity()["rule"] == "product" and "encoder" not in plan.configs[0].identity()
    assert declared()["rule"].task == "xor"
    assert "`pairs`, `disk` |" in settings_table() and "xor" not in settings_table()  # built-in tasks listed
    with pytest.raises(ConfigError, match="'rule' = 'sum': must be one of product, first"):
        expand(load_matrix(matrix), overrides={"rule": "sum"})
    other = write(tmp_path, "mixed.toml", 'plugins = ["xor_task.py"]\n[defaults]\ntask = "disk"\nrule = "first"\n')
    with pytest.raises(ConfigError, match="'rule' is a setting of the xor task, and this configuration's task is 'disk'"):
        expand(load_matrix(other))
    result = CliRunner().invoke(main, ["run", "--matrix", str(matrix), "--store", str(tmp_path / "x.sqlite"),
                                       "--device", "cpu", "--workers", "2"])
    assert result.exit_code == 0, result.output
    with Store.open_readonly(tmp_path / "x.sqlite") as opened:
        runs = opened.runs()
    assert len(runs) == 6 and set(runs.groupby("rule")["test_error"].max()) == {0.0, runs["test_error"].max()}
    assert json.loads(runs["plugins"].iloc[0])[0]["path"].endswith("xor_task.py")
    table = CliRunner().invoke(main, ["table", "--store", str(tmp_path / "x.sqlite"), "--matrix", str(matrix)])
    assert table.exit_code == 0, table.output
    assert "| rule" in table.output and "product -> first" in table.output  # its own setting's effect


def test_an_installed_task_is_found_through_its_entry_point(tmp_path, monkeypatch, forget_xor):
    package = tmp_path / "installed_xor.py"
    package.write_text(textwrap.dedent(XOR_TASK).replace("register_task(TaskSpec(", "TASK = (TaskSpec("))
    monkeypatch.syspath_prepend(str(tmp_path))
    point = importlib.metadata.EntryPoint(name="xor", value="installed_xor:TASK", group="harness.tasks")
    original = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: [point] if kw.get("group") == "harness.tasks" else original(**kw))
    assert "xor" in TASKS and "xor" in TASKS.names()
    matrix = write(tmp_path, "installed.toml", '[defaults]\ntask = "xor"\nrule = "first"\n')
    plan = expand(load_matrix(matrix))  # the task named by the file is loaded before its settings are checked
    assert plan.configs[0].rule == "first" and get_task("xor").settings.__name__ == "XorSettings"
    sys.modules.pop("installed_xor", None)
