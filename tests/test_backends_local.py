"""Backends (harness.backends): the registry and their options; the local backend's worker
processes: deaths noticed and retried, setup failures fatal."""

import time

import backend_work
import pytest

from harness.backends import BACKENDS, TaskFailed, WorkerSetupError, create
from harness.backends.base import BackendError
from harness.backends.local import LocalBackend, LocalOptions

pytestmark = pytest.mark.slow  # every test here spawns worker processes, or could


def launch(tasks, work, folder, workers=2, setup=backend_work.setup_nothing, max_retries=3):
    backend = LocalBackend(LocalOptions(max_retries=max_retries), workers=workers)
    try:
        return dict(backend.launch(tasks, work, str(folder), setup))
    finally:
        backend.close()


def test_every_task_runs_once_across_workers(tmp_path):
    tasks = [(f"t{i}", 0.05) for i in range(6)]
    outcomes = launch(tasks, backend_work.square, tmp_path)
    assert set(outcomes) == set(tasks)
    pids = {value.rsplit(" ", 1)[1] for value in outcomes.values()}
    assert len(pids) == 2  # both workers took part


def test_a_killed_worker_is_noticed_and_its_task_retried(tmp_path):
    tasks = [("victim", 1.0), ("bystander", 1.0), ("later", 0.1)]
    started = time.monotonic()
    outcomes = launch(tasks, backend_work.dies_once, tmp_path)
    assert time.monotonic() - started < 60  # bounded: never the hang of a pool that missed the death
    assert all(isinstance(value, str) and value.startswith(name) for (name, _), value in outcomes.items()), outcomes
    assert (tmp_path / "died-victim").exists()


def test_a_task_that_always_kills_its_worker_fails_alone_after_its_retries(tmp_path):
    tasks = [("killer", 0.4), ("innocent", 0.4), ("other", 0.1)]
    outcomes = launch(tasks, backend_work.always_dies, tmp_path, max_retries=2)
    failed = outcomes[("killer", 0.4)]
    assert isinstance(failed, TaskFailed)
    assert "died 3 times" in failed.reason and "SIGKILL" in failed.reason, failed.reason
    assert len(list(tmp_path.glob("attempt-killer-*"))) == 3  # the first try and 2 retries
    # the task that shared the pool with it when it first died was rerun alone and finished
    assert outcomes[("innocent", 0.4)].startswith("innocent ok")
    assert outcomes[("other", 0.1)].startswith("other ok")


def test_a_task_that_raises_is_failed_with_its_reason_and_the_rest_finish(tmp_path):
    tasks = [("bad", 0.0), ("good", 0.0), ("fine", 0.0)]
    for workers in (1, 2):
        outcomes = launch(tasks, backend_work.raises, tmp_path, workers=workers)
        assert outcomes[("bad", 0.0)] == TaskFailed("ValueError: this task breaks on purpose")
        assert outcomes[("good", 0.0)].startswith("good ok")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_setup_that_fails_ends_the_launch_once_without_respawning(tmp_path, workers):
    tasks = [(f"t{i}", 0.0) for i in range(8)]
    started = time.monotonic()
    with pytest.raises(WorkerSetupError, match="^RuntimeError: this worker cannot start$"):
        launch(tasks, backend_work.square, tmp_path, workers=workers, setup=backend_work.setup_fails)
    assert time.monotonic() - started < 60
    assert len(list(tmp_path.glob("setup-*"))) <= workers  # no worker started again and again


def test_unknown_backend_names_the_known_ones():
    with pytest.raises(BackendError, match="unknown backend 'rey'; did you mean 'ray'.*known backends: local, ray"):
        create("rey")


def test_a_backend_receives_its_own_options_checked_against_their_declaration():
    local = create("local", {"max_retries": 5})
    assert isinstance(local, LocalBackend) and local.max_retries == 5
    with pytest.raises(BackendError, match=r"^--backend-option max_retry=5: the local backend has no option "
                                           r"'max_retry'; did you mean 'max_retries'\? \(its options: max_retries\)$"):
        create("local", {"max_retry": 5})
    with pytest.raises(BackendError, match="^--backend-option max_retries=many: must be int, got 'many'$"):
        create("local", {"max_retries": "many"})
    ray = create("ray", {"address": "auto", "gpus_per_job": 1, "cpus_per_job": 2})  # an int where a float is asked
    assert (ray.options.address, ray.options.gpus_per_job, ray.options.cpus_per_job) == ("auto", 1.0, 2.0)
    assert ray.remote_device("auto") == "cuda" and ray.remote_device("cpu") is None
    assert create("ray").remote_device("auto") is None  # no GPU reserved: this machine's kind decides
    assert BACKENDS.builtin_names() == ["local", "ray", "slurm"]


def test_options_from_the_command_line_are_read_as_toml_values(tmp_path):
    from harness import api
    from harness.errors import ConfigError

    plan = api.plan(configs=[{"encoder": "linear", "epochs": 1, "rounds": 1, "pairs": 100}])
    with pytest.raises(ConfigError, match=r"^--backend-option max_retries: not key=value \(e.g. address=auto"):
        api.run(plan, tmp_path / "s.sqlite", backend_options=["max_retries"])
    with pytest.raises(BackendError, match="^--backend-option retries=2: the local backend has no option"):
        api.run(plan, tmp_path / "s.sqlite", backend_options=["retries=2"])
    assert not (tmp_path / "s.sqlite").exists()  # refused before anything was written


def test_the_pools_resource_tracker_does_not_print_its_clean_up_warnings(tmp_path, monkeypatch):
    """A signal that kills workers holding semaphores makes loky's tracker warn as it removes
    them; that must not add lines to the one-line report of the signal."""
    import os
    import subprocess
    import sys

    monkeypatch.setenv("PYTHONWARNINGS", "default")
    launch([("t0", 0.0), ("t1", 0.0)], backend_work.square, tmp_path)  # a pool starts: its tracker too
    assert os.environ["PYTHONWARNINGS"].split(",") == ["default", "ignore:resource_tracker:UserWarning"]
    warn = ("import warnings; warnings.warn('resource_tracker: There appear to be 1 leaked semlock objects'); "
            "warnings.warn('something else')")
    child = subprocess.run([sys.executable, "-c", warn], capture_output=True, text=True, env=os.environ.copy())
    assert "leaked semlock" not in child.stderr and "something else" in child.stderr


def test_work_that_exits_fails_its_task_alone_with_one_or_more_workers(tmp_path):
    tasks = [("quitter", 0.0), ("good", 0.0)]
    for workers in (1, 2):
        outcomes = launch(tasks, backend_work.exits, tmp_path, workers=workers)
        assert outcomes[("quitter", 0.0)] == TaskFailed("RunAborted: the run's code called sys.exit(4)")
        assert outcomes[("good", 0.0)].startswith("good ok")


def test_a_crash_repeated_alone_fails_its_task_with_the_crash_summarised(tmp_path, capfd):
    tasks = [("crasher", 0.1), ("fine", 0.1), ("other", 0.1)]
    outcomes = launch(tasks, backend_work.crashes, tmp_path, max_retries=1)
    failed = outcomes[("crasher", 0.1)]
    assert isinstance(failed, TaskFailed) and "died 2 times" in failed.reason and "SIGSEGV" in failed.reason
    assert "Fatal Python error: Segmentation fault, in crashes (backend_work.py:" in failed.reason, failed.reason
    assert outcomes[("fine", 0.1)].startswith("fine ok") and outcomes[("other", 0.1)].startswith("other ok")
    assert "Fatal Python error" not in capfd.readouterr().err  # summarised, not streamed


def test_one_worker_runs_a_users_work_in_a_process_of_its_own(tmp_path):
    import os

    backend = LocalBackend(workers=1)
    try:
        isolated = dict(backend.launch([("a", 0.0)], backend_work.square, str(tmp_path), backend_work.setup_nothing))
        inside = dict(backend.launch([("a", 0.0)], backend_work.square, str(tmp_path), backend_work.setup_nothing,
                                     isolate=False))
    finally:
        backend.close()
    assert not isolated[("a", 0.0)].endswith(f" {os.getpid()}")
    assert inside[("a", 0.0)].endswith(f" {os.getpid()}")


def test_a_task_deaf_to_its_time_limit_has_its_worker_killed_and_the_rest_go_on(tmp_path, monkeypatch):
    monkeypatch.setattr("harness.backends.base.LIMIT_GRACE", 0.5)
    monkeypatch.setattr("harness.backends.local.STARTUP_ALLOWANCE", 10.0)
    tasks = [("sleeper", 0.0), ("fine", 0.2), ("other", 0.2)]
    backend = LocalBackend(workers=2)
    started = time.monotonic()
    try:
        outcomes = dict(backend.launch(tasks, backend_work.deaf_sleeper, str(tmp_path), backend_work.setup_nothing,
                                       limit=lambda task: 1.0))
    finally:
        backend.close()
    assert time.monotonic() - started < 40
    assert outcomes[("sleeper", 0.0)] == TaskFailed("ran past its time limit of 1 s and did not stop; its worker was killed")
    assert outcomes[("fine", 0.2)].startswith("fine ok") and outcomes[("other", 0.2)].startswith("other ok")
