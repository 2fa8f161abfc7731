"""What a plan costs before it trains (harness.estimate): parameter counts and time estimates,
each from its configuration's task, or from the runs a store holds."""

import pytest
from fixtures import fill, run_config

from harness.config import Plan
from harness.estimate import cost_frame
from harness.store import Store
from harness.tasks import TASKS, TaskSpec, register_task


@pytest.fixture
def task_without_estimates():
    register_task(TaskSpec(name="unestimated", help="a task that cannot tell its cost", loader=dict, trainer=print))
    yield
    TASKS.unregister("unestimated")
@pytest.mark.slow
def test_a_configuration_without_an_estimate_leaves_the_next_ones_theirs(task_without_estimates):
    """A configuration whose task has no estimate once switched the estimates of every later
    configuration off (the flag was reused as a loop variable)."""
    disk = {"task": "disk", "framework": "torch", "epochs": 2, "points": 200}
    plan = Plan.from_configs([{"task": "unestimated"}, disk, {**disk, "hidden_units": 10}], source="m.toml")
    frame = cost_frame(plan)
    assert list(frame["timing"]) == ["no estimate", "timed steps", "timed steps"]
    assert frame["s/run"].isna().tolist() == [True, False, False]
    assert frame["params"].isna().tolist() == [True, False, False]
    assert list(frame["params"].iloc[1:]) == [1401, 2 * 10 + 10 + 2 * 110 + 11]
@pytest.mark.slow
def test_stored_runs_replace_the_estimate_and_count_as_done(tmp_path):
    stored, fresh = run_config(encoder="mlp", rounds=3), run_config(encoder="linear", rounds=3)
    with Store(tmp_path / "s.sqlite") as store:
        fill(store, stored, [0.1, 0.2])  # 1.5 s a run
        runs = store.runs()
    frame = cost_frame(Plan.from_configs([stored, fresh], source="m.toml"), stored=runs).set_index("name")
    assert frame.loc["mlp siamese ws", ["s/run", "timing", "done"]].tolist() == [1.5, "stored", 2]
    assert frame.loc["linear siamese ws", "timing"] == "timed steps" and frame.loc["linear siamese ws", "done"] == 0
    assert frame.loc["mlp siamese ws", "params"] == 85356  # counted from the model, not the runs' made-up 1,000


@pytest.mark.slow
def test_run_says_what_it_will_cost_before_its_first_run(fake_mnist, tmp_path, monkeypatch):
    """`harness run` gives its estimate before training (timed steps, then the store's timings
    on a rerun) and, when it is long, the way to a first answer sooner."""
    from click.testing import CliRunner

    from harness.cli import main

    path = tmp_path / "m.toml"
    path.write_text('[defaults]\nepochs = 1\nrounds = 2\npairs = 100\n[matrix]\nencoder = ["mlp", "linear"]\n'
                    '[profiles.smoke]\nrounds = 1\n')
    store = str(tmp_path / "s.sqlite")
    first = CliRunner().invoke(main, ["run", "--matrix", str(path), "--store", store, "--workers", "1"])
    assert first.exit_code == 0, first.output
    lines = first.output.splitlines()
    assert lines[1].startswith("estimated time: about ") and "for the 4 runs to do with 1 worker(s) (2 configurations " \
        "from a few timed training steps: a lower bound" in lines[1]
    assert lines.index("0 done, 4 to run") > 1  # said before training starts
    monkeypatch.setattr("harness.report.plan.LONG_START", 0.0)
    again = CliRunner().invoke(main, ["run", "--matrix", str(path), "--store", store, "--set", "rounds=3"])
    assert "for the 2 runs to do with" in again.output and "(2 configurations timed from their stored runs)" in again.output
    assert f"a first answer sooner: harness run --matrix {path} --profile smoke" in again.output
