"""`harness compare`: did a change make things worse? Paired on configuration id and round."""

import shutil
import sqlite3

import pytest
from click.testing import CliRunner
from test_runner import TINY

from harness.cli import main
from harness.config import expand, load_matrix
from harness.runner import run_plan
from harness.store import Store


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, synthetic_mnist):
    directory, checksums = synthetic_mnist
    folder = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("harness.data.MNIST_SHA256", checksums)
        patch.setenv("HARNESS_DATA_DIR", str(directory))
        (folder / "tiny.toml").write_text(TINY)
        plan = expand(load_matrix(folder / "tiny.toml"), None, {"rounds": 4})
        with Store(folder / "base.sqlite") as store:
            run_plan(plan, store, workers=1)
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
