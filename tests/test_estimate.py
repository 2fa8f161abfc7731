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
