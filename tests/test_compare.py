"""`harness compare`: did a change make things worse? Paired on configuration id and round."""

import json
import shutil
import sqlite3

import pandas as pd
import pytest
from click.testing import CliRunner
from fixtures import TINY

from harness.cli import main
from harness.config import expand, load_matrix
from harness.device import policy_for
from harness.runner import run_plan
from harness.store import Store

pytestmark = pytest.mark.slow  # the baseline store is trained once for the module


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, synthetic_mnist):
    directory, checksums = synthetic_mnist
    folder = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("harness.mnist.MNIST_SHA256", checksums)
        patch.setenv("HARNESS_DATA_DIR", str(directory))
        (folder / "tiny.toml").write_text(TINY)
        plan = expand(load_matrix(folder / "tiny.toml"), None, {"rounds": 4})
        with Store(folder / "base.sqlite") as store:
            run_plan(plan, store, policy=policy_for("cpu", workers=1))
    return folder / "base.sqlite"


def compare(*arguments):
    return CliRunner().invoke(main, ["compare", *map(str, arguments)])


def planted(baseline, path, *, worse_by: float, code_version: str | None):
    """A copy of the baseline where one configuration lost `worse_by` pp of test error in every
    round (a little noise on top), as if a change had made it train worse."""
    shutil.copy(baseline, path)
    with sqlite3.connect(path) as connection:
        victim = connection.execute("SELECT config_id FROM runs ORDER BY config_id LIMIT 1").fetchone()[0]
        for round_index, noise in enumerate((0.0, 0.5, -0.5, 0.25)):
            connection.execute("UPDATE runs SET test_error = test_error + ? WHERE config_id = ? AND round = ?",
                               ((worse_by + noise) / 100, victim, round_index))
        if code_version:
            connection.execute("UPDATE runs SET code_version = ?", (code_version,))
    return path


def test_identical_stores_compare_equal_and_pass(baseline):
    result = compare(baseline, baseline)
    assert result.exit_code == 0, result.output
    assert "4 no detectable change" in result.output and "DETERMINISM" not in result.output


def test_a_planted_regression_is_found_and_fails(baseline, tmp_path):
    after = planted(baseline, tmp_path / "after.sqlite", worse_by=5.0, code_version="0000000later")
    result = compare(baseline, after, "--threshold", "1")
    assert result.exit_code == 1, result.output
    assert "1 worse" in result.output and "3 no detectable change" in result.output
    assert "+5.06 [" in result.output and "DETERMINISM" not in result.output
    assert compare(baseline, after, "--threshold", "10").exit_code == 0  # smaller than the threshold
    assert compare(baseline, after, "--fail-on", "never").exit_code == 0


def test_any_difference_from_the_same_code_on_the_cpu_is_a_determinism_failure(baseline, tmp_path):
    after = planted(baseline, tmp_path / "after.sqlite", worse_by=0.1, code_version=None)
    result = compare(baseline, after, "--fail-on", "never")
    assert "DETERMINISM FAILURE" in result.output and "a determinism failure" in result.output


def test_a_json_baseline_from_harness_table_compares_like_its_store(baseline, tmp_path):
    exported = CliRunner().invoke(main, ["table", "--store", str(baseline), "--format", "json"])
    assert exported.exit_code == 0, exported.output
    (tmp_path / "baseline.json").write_text(exported.output)
    result = compare(tmp_path / "baseline.json", baseline)
    assert result.exit_code == 0 and "4 no detectable change" in result.output, result.output
    (tmp_path / "broken.json").write_text("{}")
    broken = compare(tmp_path / "broken.json", baseline)
    assert broken.exit_code == 2 and "not a baseline written by `harness table --format json`" in broken.output


def test_runs_trained_another_way_are_compared_for_quality_not_held_to_equality(baseline, tmp_path):
    """The same code on the CPU with the rounds batched (vmap: another float summation order,
    other dropout masks) need not give the same numbers: no determinism failure, said so."""
    after = planted(baseline, tmp_path / "after.sqlite", worse_by=0.1, code_version=None)
    with sqlite3.connect(after) as connection:
        connection.execute("UPDATE runs SET execution = ?",
                           ('{"threads": 1, "batched": true, "channels_last": true, "flush_denormal": true}',))
    result = compare(baseline, after)
    assert result.exit_code == 0, result.output
    assert "DETERMINISM" not in result.output
    assert "4 configurations trained under different execution policies" in result.output
    # the same policy written with its keys in another order is the same policy
    with sqlite3.connect(after) as connection:
        recorded = connection.execute("SELECT execution FROM runs LIMIT 1").fetchone()[0]
    with sqlite3.connect(baseline) as connection:
        assert connection.execute("SELECT count(DISTINCT execution) FROM runs").fetchone()[0] == 1
        original = json.loads(connection.execute("SELECT execution FROM runs LIMIT 1").fetchone()[0])
    assert json.loads(recorded) != original
    reordered = planted(baseline, tmp_path / "reordered.sqlite", worse_by=0.1, code_version=None)
    with sqlite3.connect(reordered) as connection:
        connection.execute("UPDATE runs SET execution = ?", (json.dumps(dict(reversed(original.items()))),))
    assert "DETERMINISM FAILURE" in compare(baseline, reordered, "--fail-on", "never").output


def test_each_factors_effect_is_set_beside_its_effect_in_the_other_set(baseline, tmp_path):
    result = compare(baseline, baseline)
    section = result.output.split("Each factor's effect in both", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| encoder") or line.startswith("| aux_loss")]
    assert len(rows) == 2 and all(line.rstrip(" |").endswith("yes") for line in rows), section
    assert "2 of 2 effects agree" in section
    # the aux loss made 40 pp worse in every round: the sets disagree on its effect alone
    after = tmp_path / "after.sqlite"
    shutil.copy(baseline, after)
    with sqlite3.connect(after) as connection:
        connection.execute("UPDATE runs SET test_error = test_error + 0.4, code_version = 'later' "
                           "WHERE json_extract(config, '$.aux_loss') = 1")
    section = compare(baseline, after, "--fail-on", "never").output.split("Each factor's effect in both", 1)[1]
    aux = next(line for line in section.splitlines() if line.startswith("| aux_loss"))
    encoder = next(line for line in section.splitlines() if line.startswith("| encoder"))
    assert aux.rstrip(" |").endswith("NO") and encoder.rstrip(" |").endswith("yes"), section
    assert "1 of 2 effects agree" in section
    # JSON: both tables as records
    document = json.loads(compare(baseline, after, "--fail-on", "never", "--format", "json").output)
    assert len(document["configurations"]) == 4 and {e["factor"] for e in document["effects"]} == {"encoder", "aux_loss"}


def test_a_baseline_file_without_settings_compares_its_configurations_only(baseline, tmp_path):
    exported = CliRunner().invoke(main, ["table", "--store", str(baseline), "--format", "json"])
    (tmp_path / "baseline.json").write_text(exported.output)
    result = compare(tmp_path / "baseline.json", baseline, "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert len(document["configurations"]) == 4 and document["effects"] == []
    # the baseline carries each run's execution policy: runs of the same code compare as equal
    assert all(run["execution"] for run in json.loads(exported.output)["runs"])


def test_rounds_that_all_differ_alike_are_judged_by_the_sign_test():
    from harness.stats import t_summary

    assert t_summary(pd.Series([0.5, 0.5]))["p"] == 0.5  # two rounds alike: no evidence
    assert t_summary(pd.Series([1.5] * 6))["p"] == pytest.approx(2 * 0.5**6)
    # equal up to float rounding (differences of fractions of the test set) is no spread either
    rounded = pd.Series([100 * (0.4175 - 0.4025), 100 * (0.4325 - 0.4175)])
    assert rounded.std() > 0 and t_summary(rounded)["p"] == 0.5
    assert t_summary(pd.Series([0.0, 0.0]))["p"] == 1.0
    assert t_summary(pd.Series([1.0, 2.0, 1.5]))["p"] == pytest.approx(0.0351, abs=1e-4)  # a spread: the t test


def test_a_baseline_without_execution_records_is_named_as_such(baseline, tmp_path):
    """An older baseline records no execution policy: its runs are not held to equality with a
    store's, and the report says why (not that the policies differ)."""
    exported = json.loads(CliRunner().invoke(main, ["table", "--store", str(baseline), "--format", "json"]).output)
    for run in exported["runs"]:
        del run["execution"]
    (tmp_path / "old.json").write_text(json.dumps(exported))
    result = compare(tmp_path / "old.json", baseline)
    assert result.exit_code == 0, result.output
    assert "4 configurations have no execution policy recorded on one side" in result.output
    assert "different execution policies" not in result.output


@pytest.mark.parametrize("spoil, said", [
    (lambda runs: [dict(run, test_error=None) for run in runs], "is done but its test_error is None, not a number"),
    (lambda runs: [dict(run, train_error="0.1") for run in runs], "is done but its train_error is '0.1', not a number"),
    (lambda runs: runs + runs[:1], "round 0 is given twice (also runs[0])"),
    (lambda runs: [dict(run, status=None) for run in runs], "runs[0]: status must be a str, got None"),
    (lambda runs: [{key: value for key, value in run.items() if key != "round"} for run in runs],
     "runs[0]: round must be a int, got None"),
    (lambda runs: {"not": "a list"}, "no list of runs under \"runs\""),
])
def test_a_baseline_with_missing_odd_or_repeated_runs_is_refused_in_one_line(baseline, tmp_path, spoil, said):
    """No comparison from no data: a baseline whose runs lack their numbers, carry text where
    numbers go, or repeat a run (which would count a round twice) is refused, naming the run."""
    exported = json.loads(CliRunner().invoke(main, ["table", "--store", str(baseline), "--format", "json"]).output)
    exported["runs"] = spoil(exported["runs"])
    (tmp_path / "spoiled.json").write_text(json.dumps(exported))
    result = compare(tmp_path / "spoiled.json", baseline)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and said in lines[0] and "p (BH)" not in result.output, lines


def test_gpu_runs_are_held_to_equality_only_on_one_gpu_model_with_deterministic_kernels():
    """On CUDA, two sides must be equal when both ran the same code on the same GPU model with
    deterministic kernels (the record says both; TF32 too is deterministic then); with
    nondeterministic kernels, or on two GPU models, a difference is quality, not a determinism
    failure."""
    import json

    import pandas as pd

    from harness.stats import compare

    def side(errors, **execution):
        record = {"threads": 1, "batched": True, "channels_last": False, "flush_denormal": False,
                  "precision": "float32", "deterministic": True, "gpu": "NVIDIA H200", **execution}
        return pd.DataFrame({"config_id": "c", "round": range(len(errors)), "name": "n", "status": "done",
                             "test_error": errors, "code_version": "abc", "torch_version": "2.x", "device": "cuda",
                             "execution": json.dumps(record)})

    errors = [0.10, 0.11, 0.12]
    moved = [0.10, 0.11, 0.13]
    assert compare(side(errors), side(moved)).loc[0, "determinism_failure"]
    assert not compare(side(errors), side(errors)).loc[0, "determinism_failure"]
    assert compare(side(errors, precision="tf32"), side(moved, precision="tf32")).loc[0, "determinism_failure"]
    for change in ({"deterministic": False}, {"gpu": "NVIDIA H100"}):
        frame = compare(side(errors, **change), side(moved, **change) if "gpu" not in change else side(moved))
        assert not frame.loc[0, "determinism_failure"], change
    frame = compare(side(errors), side(moved))
    assert frame.loc[0, "policy_before"] == frame.loc[0, "policy_after"] == "cuda"
