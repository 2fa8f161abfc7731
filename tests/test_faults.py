"""Faults at random moments: a worker or the driver killed, SIGTERM, two runs on one store,
--fresh after a kill or beside another run. Each test proves that nothing is lost by comparing
every stored run's numbers with those of an uninterrupted run of the same matrix."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixtures import stored_results as results

from harness.cli import main
from harness.config import expand, load_matrix
from harness.device import policy_for
from harness.runner import run_plan
from harness.store import Store

pytestmark = [pytest.mark.slow,  # every test here runs `harness run` in processes of its own
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the workers")]

MATRIX = """
[defaults]
epochs = 4
rounds = 6
pairs = 120
batch_size = 20
[matrix]
encoder = ["mlp", "cnn"]
aux_loss = [false, true]
"""
RUNS = 24


@pytest.fixture(scope="module")
def study(tmp_path_factory, synthetic_mnist):
    """The matrix file and a store of its uninterrupted run (one process, as the reference)."""
    folder = tmp_path_factory.mktemp("study")
    matrix = folder / "m.toml"
    matrix.write_text(MATRIX)
    directory, checksums = synthetic_mnist
    patch = pytest.MonkeyPatch()
    patch.setattr("harness.mnist.MNIST_SHA256", checksums)
    patch.setenv("HARNESS_DATA_DIR", str(directory))
    try:
        with Store(folder / "reference.sqlite") as store:
            summary = run_plan(expand(load_matrix(matrix)), store, policy=policy_for("cpu", workers=1))
    finally:
        patch.undo()
    assert summary.finished == RUNS and not summary.failed
    return matrix, results(folder / "reference.sqlite"), checksums, directory


def start(study, store, *args):
    """`harness run` of the study's matrix in a process of its own, its output piped."""
    matrix, _, checksums, directory = study
    script = textwrap.dedent(f"""
        import sys
        import harness.mnist
        harness.mnist.MNIST_SHA256 = {checksums!r}
        from harness.cli import main
        sys.argv = ["harness", "run", "--matrix", {str(matrix)!r}, "--store", {str(store)!r}, *{list(args)!r}]
        main()
    """)
    env = {**os.environ, "HARNESS_DATA_DIR": str(directory), "PYTHONUNBUFFERED": "1"}
    # a process group of its own, as a shell gives a command: signals can reach all of it
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)


def stored_count(store) -> int:
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as connection:
            return connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    except sqlite3.Error:
        return 0


def wait_for_runs(process, store, count, limit=120.0) -> int:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        stored = stored_count(store)
        if stored >= count:
            return stored
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} runs stored after {limit} s")


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid`, with their command lines."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append((int(entry.name), command))
    return found


def workers_of(pid: int) -> list[int]:
    return [child for child, command in children(pid) if "popen_loky" in command]


def start_with_workers(study, store, runs: int):
    """`harness run --workers 2`, once `runs` runs are stored; the process and its workers."""
    process = start(study, store, "--workers", "2")
    wait_for_runs(process, store, runs)
    return process, workers_of(process.pid)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def finish(process, limit=180.0):
    try:
        out, err = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"the run did not end within {limit} s: it hangs") from None
    return process.returncode, out, err


def assert_same_numbers(store, reference, runs=RUNS):
    ours = results(store)
    assert len(ours) == runs and (ours["status"] == "done").all()
    assert ours.equals(reference.loc[ours.index])


def test_a_killed_worker_is_retried_and_every_number_matches(study, tmp_path):
    store = tmp_path / "s.sqlite"
    process, workers = start_with_workers(study, store, 3)
    assert len(workers) == 2, children(process.pid)
    os.kill(workers[0], signal.SIGKILL)
    code, out, err = finish(process)
    assert code == 0, err
    assert f"{RUNS} runs finished, 0 failed" in out
    assert_same_numbers(store, study[1])


@pytest.mark.parametrize(
    "signal_number,code,what,driver_first",
    [
        (signal.SIGTERM, 143, "terminated (SIGTERM)", False),  # a CI cancel, `kill -TERM -PGID`
        (signal.SIGTERM, 143, "terminated (SIGTERM)", True),  # `timeout`: the command, then its group
        (signal.SIGINT, 130, "interrupted", False),  # Ctrl-C at a terminal
    ],
)
def test_a_signal_to_the_process_group_stops_cleanly_and_resume_matches(
    study, tmp_path, signal_number, code, what, driver_first
):
    """The signal reaches the driver, its workers and any helper process it has started, as
    a terminal, `timeout` or a CI runner send it."""
    store = tmp_path / "s.sqlite"
    process, workers = start_with_workers(study, store, 3)
    if driver_first:
        process.send_signal(signal_number)
        time.sleep(0.05)  # the driver is stopping its workers when the group's signal comes
    os.killpg(process.pid, signal_number)
    returncode, out, err = finish(process, 60)
    assert returncode == code
    assert err.strip().splitlines() == [
        f"error: {what}; finished runs are stored in {store}: run the same command again to resume"
    ]  # one line: no worker, pool or helper traceback
    time.sleep(0.5)
    assert not [pid for pid in workers if alive(pid)]  # no orphan trains on
    assert not Path(f"{store}-wal").exists() or Path(f"{store}-wal").stat().st_size == 0  # checkpointed
    kept = stored_count(store)
    assert 3 <= kept < RUNS
    returncode, out, err = finish(start(study, store, "--workers", "2"))
    assert returncode == 0, err
    assert f"{kept} done, {RUNS - kept} to run" in out
    assert_same_numbers(store, study[1])


def test_killing_the_driver_takes_its_workers_along(study, tmp_path):
    store = tmp_path / "s.sqlite"
    process, workers = start_with_workers(study, store, 2)
    assert workers
    process.kill()
    process.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(pid) for pid in workers):
        time.sleep(0.1)
    assert not [pid for pid in workers if alive(pid)]


def test_a_second_run_on_a_store_in_use_is_refused_and_the_first_loses_nothing(study, tmp_path):
    store = tmp_path / "s.sqlite"
    first = start(study, store, "--workers", "1")
    wait_for_runs(first, store, 1)
    # held mid-run, so that what is tested is the lock it holds, not how fast it finishes
    os.kill(first.pid, signal.SIGSTOP)
    try:
        assert first.poll() is None
        for extra in ([], ["--fresh"]):
            second = CliRunner().invoke(main, ["run", "--matrix", str(study[0]), "--store", str(store), *extra])
            assert second.exit_code == 2
            lines = second.output.strip().splitlines()
            assert len(lines) == 1 and f"in use by another harness process (pid {first.pid} " in lines[0], lines
    finally:
        os.kill(first.pid, signal.SIGCONT)
    code, out, err = finish(first)
    assert code == 0, err
    assert f"{RUNS} runs finished" in out
    assert_same_numbers(store, study[1])
    assert not list(tmp_path.glob("*.bak"))


def test_fresh_after_a_kill_keeps_every_finished_run_in_its_backup(study, tmp_path, fake_mnist):
    store = tmp_path / "s.sqlite"
    process = start(study, store, "--workers", "2")
    wait_for_runs(process, store, 4)
    process.kill()  # no checkpoint: the finished runs are still in the -wal file
    process.wait()
    kept = stored_count(store)
    assert kept >= 4 and Path(f"{store}-wal").exists()
    fresh = CliRunner().invoke(main, ["run", "--matrix", str(study[0]), "--store", str(store), "--fresh", "--workers", "1"])
    assert fresh.exit_code == 0, fresh.output
    (backup,) = tmp_path.glob("s.sqlite.*.bak")
    assert f"previous runs kept in {backup}" in fresh.output
    saved = results(backup)
    assert len(saved) == kept
    assert saved.equals(study[1].loc[saved.index])  # whole runs, the numbers of an uninterrupted run
    assert_same_numbers(store, study[1])


def test_two_fresh_starts_in_one_second_keep_two_backups(tmp_path, fake_mnist, study):
    store = tmp_path / "s.sqlite"
    plan = expand(load_matrix(study[0]), overrides={"rounds": 1})
    backups = []
    for _ in range(2):
        with Store(store) as opened:
            run_plan(plan, opened, policy=policy_for("cpu", workers=1))
            backups.append(opened.start_fresh())
    assert backups[0] != backups[1] and all(path.exists() for path in backups)
    for path in backups:
        assert len(results(path)) == 4
