"""Running a plan (harness.runner): what is missing trained, stored run by run, resumed; the
same numbers with any number of workers; a failed run recorded and the others going on; the
code version every run records."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from fixtures import TINY
from fixtures import stored_results as results

from harness.config import expand, load_matrix
from harness.device import policy_for
from harness.runner import run_plan
from harness.store import Store

ONE = policy_for("cpu", workers=1)  # runs in this process


@pytest.fixture
def tiny_plan(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return expand(load_matrix(path))


@pytest.mark.slow
def test_same_command_twice_gives_identical_numbers(fake_mnist, tiny_plan, tmp_path):
    for name in ("a", "b"):
        with Store(tmp_path / f"{name}.sqlite") as store:
            summary = run_plan(tiny_plan, store, policy=ONE)
        assert summary.finished == 8 and not summary.failed
    first, second = results(tmp_path / "a.sqlite"), results(tmp_path / "b.sqlite")
    assert (first["status"] == "done").all()
    assert first.equals(second)


@pytest.mark.slow
def test_two_workers_give_the_numbers_of_one(fake_mnist, tiny_plan, tmp_path):
    with Store(tmp_path / "one.sqlite") as store:
        run_plan(tiny_plan, store, policy=ONE)
    with Store(tmp_path / "two.sqlite") as store:
        run_plan(tiny_plan, store, policy=policy_for("cpu", workers=2))
    assert results(tmp_path / "one.sqlite").equals(results(tmp_path / "two.sqlite"))


@pytest.mark.slow
def test_rounds_pair_data_across_configurations(fake_mnist, tiny_plan, tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        run_plan(tiny_plan, store, policy=ONE)
        frame = store.runs()
    assert frame.groupby("round")["data_seed"].nunique().eq(1).all()
    assert frame["model_seed"].nunique() == len(frame)
    assert {"torch_version", "code_version", "device", "seconds", "params", "config"} <= set(frame.columns)
    assert frame["torch_version"].eq(torch.__version__).all()


@pytest.mark.slow
def test_resume_after_interruption_runs_only_what_is_missing(fake_mnist, tiny_plan, tmp_path):
    seen = []

    def interrupt_after_three(job, result):
        seen.append(job.key)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with Store(tmp_path / "s.sqlite") as store, pytest.raises(KeyboardInterrupt):
        run_plan(tiny_plan, store, policy=ONE, on_result=interrupt_after_three)
    assert len(results(tmp_path / "s.sqlite")) == 3
    starts = []
    with Store(tmp_path / "s.sqlite") as store:
        summary = run_plan(tiny_plan, store, policy=ONE, on_start=lambda done, todo: starts.append((done, todo)))
    assert starts == [(3, 5)] and summary.finished == 5
    assert len(results(tmp_path / "s.sqlite")) == 8


@pytest.mark.slow
def test_kill_9_leaves_no_partial_run(fake_mnist, tmp_path, synthetic_mnist):
    _, checksums = synthetic_mnist
    matrix = tmp_path / "m.toml"
    matrix.write_text(TINY.replace("epochs = 2", "epochs = 6").replace("rounds = 2", "rounds = 20"))
    store_path = tmp_path / "s.sqlite"
    script = textwrap.dedent(f"""
        import sys
        import harness.mnist
        harness.mnist.MNIST_SHA256 = {checksums!r}
        from harness.cli import main
        sys.argv = ["harness", "run", "--matrix", {str(matrix)!r}, "--store", {str(store_path)!r}, "--workers", "1"]
        main()
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until some runs are stored, then kill mid-run
        time.sleep(0.5)
        if store_path.exists():
            try:
                count = sqlite3.connect(store_path).execute("SELECT COUNT(*) FROM runs").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if count >= 3:
                break
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    connection = sqlite3.connect(store_path)
    runs = connection.execute("SELECT config_id, round, status FROM runs").fetchall()
    assert 3 <= len(runs) < 80
    for config_id, round_index, status in runs:
        epochs = connection.execute(
            "SELECT COUNT(*) FROM epochs WHERE config_id = ? AND round = ?", (config_id, round_index)
        ).fetchone()[0]
        assert status == "done" and epochs == 6  # every stored run is whole
    orphans = connection.execute(
        "SELECT COUNT(*) FROM epochs e LEFT JOIN runs r USING (config_id, round) WHERE r.config_id IS NULL"
    ).fetchone()[0]
    assert orphans == 0


@pytest.mark.slow
def test_failed_run_is_recorded_and_others_go_on(fake_mnist, tmp_path):
    from architectures import FAMILIES, ModelOptions, family
    from architectures.registry import Family

    class Exploding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = family("cnn").builder(ModelOptions())

        def forward(self, pairs):
            output = self.inner(pairs)
            return output._replace(comparison=output.comparison * float("nan"))

    FAMILIES.register("exploding", Family("exploding", lambda o: Exploding(), lambda o: None))
    try:
        run_a_matrix_where_one_family_explodes(tmp_path)
    finally:
        FAMILIES.unregister("exploding")


def run_a_matrix_where_one_family_explodes(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(TINY.replace('encoder = ["mlp", "cnn"]', 'encoder = ["exploding", "mlp"]'))
    plan = expand(load_matrix(path))
    with Store(tmp_path / "s.sqlite") as store:
        summary = run_plan(plan, store, policy=ONE)
        frame = store.runs()
    assert len(summary.failed) == 4 and summary.finished == 8
    failed = frame[frame["status"] == "failed"]
    assert set(failed["encoder"]) == {"exploding"}
    assert failed["reason"].str.contains("non-finite loss").all()
    assert (frame[frame["encoder"] == "mlp"]["status"] == "done").all()
    # failed runs are tried again by the next run
    with Store(tmp_path / "s.sqlite") as store:
        assert run_plan(plan, store, policy=ONE).already_done == 4


@pytest.mark.slow
def test_code_version_is_this_checkout_or_the_package_version(tmp_path):
    from harness import __version__
    from harness.runner import code_version

    other = tmp_path / "unrelated"
    (other / "harness").mkdir(parents=True)
    (other / "notes.txt").write_text("not this project\n")
    for command in (["init", "-q"], ["add", "notes.txt"],
                    ["-c", "user.name=x", "-c", "user.email=x@y", "commit", "-q", "-m", "unrelated"]):
        subprocess.run(["git", "-C", str(other), *command], check=True, capture_output=True)
    # the package installed inside an unrelated repository reports its version, not that commit
    assert code_version(other) == __version__
    assert code_version(other / "harness") == __version__
    root = Path(__file__).resolve().parent.parent
    if (root / ".git").exists():
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
        assert code_version().split("+")[0] == head.stdout.strip()


@pytest.mark.slow
def test_a_dirty_checkout_records_a_diff_that_rebuilds_it(tmp_path):
    from harness.runner import code_diff, code_version

    repository = tmp_path / "checkout"
    (repository / "harness").mkdir(parents=True)
    (repository / "harness" / "runner.py").write_text("VALUE = 1\n")
    git = lambda *a, at=repository: subprocess.run(["git", "-C", str(at), *a], check=True, capture_output=True, text=True)  # noqa: E731
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=x", "-c", "user.email=x@y", "commit", "-q", "-m", "base")
    assert "+dirty" not in code_version(repository) and code_diff(repository) is None
    (repository / "harness" / "runner.py").write_text("VALUE = 2\n")
    (repository / "harness" / "extra.py").write_text("NEW = True\n")  # untracked, yet it runs
    assert code_version(repository).endswith("+dirty")
    patch = code_diff(repository)
    rebuilt = tmp_path / "rebuilt"
    git("clone", "-q", str(repository), str(rebuilt), at=tmp_path)
    (tmp_path / "patch.diff").write_text(patch)
    git("apply", str(tmp_path / "patch.diff"), at=rebuilt)
    for name in ("runner.py", "extra.py"):
        assert (rebuilt / "harness" / name).read_text() == (repository / "harness" / name).read_text()


@pytest.mark.slow
def test_what_a_worker_imports_leaves_pandas_out():
    """Each worker process imports the runner and the trainers: pandas (about 0.3 s a process)
    is the parent's alone (the store's frames)."""
    import subprocess
    import sys

    code = ("import sys, harness.runner, harness.tasks.pairs.sequential, harness.backends.local, architectures; "
            "print('pandas' in sys.modules)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False"
