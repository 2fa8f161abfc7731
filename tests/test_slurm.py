"""The Slurm backend: its options and refusals, its job logic on submitit's local executor (no
Slurm needed), and the whole harness on a real Slurm cluster when one answers here (CI starts a
single-node cluster on loopback: `eval "$(bash .ci/slurm/start)"`; elsewhere those tests skip)."""

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixtures import TINY
from fixtures import stored_results as stored

from harness.backends import BackendError, TaskFailed, WorkerSetupError, create
from harness.cli import main

submitit = pytest.importorskip("submitit", reason="the Slurm backend tests need the extra: pip install -e '.[slurm]'")

from harness.backends.slurm import SlurmBackend, SlurmOptions, extra_sbatch  # noqa: E402

TESTS = Path(__file__).parent
REPOSITORY = TESTS.parent


@pytest.fixture
def importable_work(monkeypatch):
    """Jobs run in processes of their own: they import backend_work (this folder) by name."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    sys.path.insert(0, str(TESTS))
    import backend_work

    yield backend_work
    sys.path.remove(str(TESTS))


@pytest.mark.parametrize(("options", "message"), [
    ({"cpus_per_job": 0.5}, "cpus_per_job = 0.5: Slurm allocates whole CPUs and GPUs"),
    ({"gpus_per_job": 0.25}, "gpus_per_job = 0.25: Slurm allocates whole CPUs and GPUs"),
    ({"allocation": "maybe"}, "allocation = 'maybe': one of auto, yes, no"),
    ({"cluster": "slrum"}, "cluster = 'slrum': one of slurm, local; did you mean 'slurm'?"),
    ({"array_parallelism": 0}, "array_parallelism = 0: must be at least 1"),
    ({"sbatch": "constraint=a100"}, "'constraint=a100' is not an sbatch option"),
    ({"partiton": "gpu"}, "the slurm backend has no option 'partiton'; did you mean 'partition'?"),
])
def test_options_that_cannot_work_are_refused_in_one_line(options, message):
    with pytest.raises(BackendError, match=message.replace("(", r"\(").replace("?", r"\?")) as raised:
        create("slurm", options)
    assert "\n" not in str(raised.value)


def test_extra_sbatch_options_are_read_as_on_sbatch_command_line():
    assert extra_sbatch("--constraint=a100 --mail-type=END --exclusive") == {
        "constraint": "a100", "mail_type": "END", "exclusive": True}


def test_a_device_without_the_resources_it_needs_is_refused_before_anything_starts():
    from types import SimpleNamespace

    with pytest.raises(BackendError, match="needs a GPU per job"):
        SlurmBackend(SlurmOptions(cluster="local")).start(SimpleNamespace(device="cuda"))
    with pytest.raises(BackendError, match="reserves GPUs that no job uses"):
        SlurmBackend(SlurmOptions(cluster="local", gpus_per_job=1)).start(SimpleNamespace(device="cpu"))
    with pytest.raises(BackendError, match=r"^--device cuda:1 with --backend slurm: each task sees only the 1 GPU\(s\) "
                                           r"it reserves \(gpus_per_job = 1\), numbered from cuda:0; use --device cuda$"):
        SlurmBackend(SlurmOptions(cluster="local", gpus_per_job=1)).start(SimpleNamespace(device="cuda:1"))
    SlurmBackend(SlurmOptions(cluster="local", gpus_per_job=2)).start(SimpleNamespace(device="cuda:1"))  # sees two


def outcomes_of(backend, tasks, work, context, setup):
    return {task[0]: value for task, value in backend.launch(tasks, work, context, setup)}


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_local_jobs_finish_each_task_once_and_a_dying_task_alone_is_failed_with_its_jobs_state(importable_work,
                                                                                              tmp_path):
    """Three tasks per job: the one that raises, and the one that calls sys.exit, fail with their
    reasons and are never retried; the one that kills its job every time is retried alone, then
    failed with the job's end; the others (its job's included) finish."""
    work = importable_work
    backend = SlurmBackend(SlurmOptions(cluster="local", folder=str(tmp_path / "jobs"), max_retries=1,
                                        tasks_per_job=3, poll_s=0.5))
    tasks = [("a", 0.1), ("bad", 0), ("killer", 0.4), ("b", 0.1), ("quitter", 0), ("c", 0.1)]
    outcomes = outcomes_of(backend, tasks, work.slurm_mix, str(tmp_path), work.setup_nothing)
    assert sorted(outcomes) == sorted(name for name, _ in tasks)
    assert outcomes["bad"] == TaskFailed("ValueError: this task breaks on purpose")
    assert outcomes["quitter"] == TaskFailed("RunAborted: the run's code called sys.exit(4)")
    killed = outcomes["killer"]
    assert isinstance(killed, TaskFailed), killed
    assert "ended before finishing it, 2 times in all" in killed.reason, killed
    assert len(list(tmp_path.glob("attempt-killer-*"))) == 2  # its first try and one retry
    assert all(outcomes[name].startswith(f"{name} ok") for name in "abc")
    log = Path(killed.reason.rpartition("(log: ")[2].rstrip(")"))
    assert log.exists()  # kept to read why


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_job_lost_mid_task_is_resubmitted_and_nothing_is_lost(importable_work, tmp_path):
    backend = SlurmBackend(SlurmOptions(cluster="local", folder=str(tmp_path / "jobs"), tasks_per_job=4))
    tasks = [("first", 0.1), ("victim", 0.4), ("third", 0.1), ("fourth", 0.1)]
    outcomes = outcomes_of(backend, tasks, importable_work.dies_once, str(tmp_path), importable_work.setup_nothing)
    assert all(value.startswith(f"{name} ok") for name, value in outcomes.items()), outcomes
    assert (tmp_path / "died-victim").exists()
    # the dead job's logs are kept, to read why; the launch's data is not
    assert list((tmp_path / "jobs").rglob("*_log.err")) and not list((tmp_path / "jobs").rglob("context.pkl"))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_task_deaf_to_its_limit_is_ended_by_its_jobs_watchdog_and_the_others_finish(importable_work, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.setattr("harness.backends.base.LIMIT_GRACE", 1.0)
    backend = SlurmBackend(SlurmOptions(cluster="local", folder=str(tmp_path / "jobs"), tasks_per_job=3))
    tasks = [("before", 0.1), ("sleeper", 0), ("after", 0.1)]
    started = time.monotonic()
    outcomes = {task[0]: value for task, value in backend.launch(
        tasks, importable_work.deaf_sleeper, str(tmp_path), importable_work.setup_nothing, limit=lambda task: 0.5)}
    assert time.monotonic() - started < 60
    assert outcomes["sleeper"] == TaskFailed("ran past its time limit of 0.5 s and did not stop; its Slurm job was ended")
    assert outcomes["before"].startswith("before ok") and outcomes["after"].startswith("after ok")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_job_that_cannot_set_up_ends_the_launch_in_one_line(importable_work, tmp_path):
    backend = SlurmBackend(SlurmOptions(cluster="local", folder=str(tmp_path / "jobs")))
    with pytest.raises(WorkerSetupError, match="^RuntimeError: this worker cannot start$"):
        list(backend.launch([("a", 0), ("b", 0)], importable_work.square, str(tmp_path), importable_work.setup_fails))


# ---- on a real Slurm cluster -------------------------------------------------------------------

def slurm_answers() -> str | None:
    """Why no Slurm cluster can be used here, or None when one answers."""
    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        return "no Slurm client commands here (CI installs and starts one: eval \"$(bash .ci/slurm/start)\")"
    done = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        said = next(iter((done.stdout + done.stderr).strip().splitlines()), "no answer")
        return f"no Slurm controller answers here ({said}); CI starts one: eval \"$(bash .ci/slurm/start)\""
    return None


@pytest.fixture(scope="module")
def slurm():
    reason = slurm_answers()
    if reason:
        pytest.skip(reason)


def our_jobs(name) -> list[str]:
    """`JOBID STATE` of this cluster's jobs named `name` that are not over."""
    listing = subprocess.run(["squeue", "-h", "-r", "-n", name, "-o", "%i %T"], capture_output=True, text=True)
    return [line for line in listing.stdout.splitlines() if line.split()[1] in ("PENDING", "RUNNING", "CONFIGURING")]


@pytest.fixture
def harness(fake_mnist):
    """The harness command in a process of its own, in this interpreter, with the synthetic
    MNIST accepted (its checksums, as fake_mnist gives them to this process)."""
    import harness.mnist

    return [sys.executable, "-c", f"import harness.mnist; harness.mnist.MNIST_SHA256 = {harness.mnist.MNIST_SHA256!r}; "
            "from harness.cli import entry; entry()"]


def run(harness, arguments, cwd):
    return subprocess.run([*harness, *arguments], cwd=cwd, capture_output=True, text=True, timeout=240)


@pytest.fixture
def plugin_matrix(fake_mnist, tmp_path):
    """TINY over a user's own model, from a file beside the matrix (shipped to the jobs)."""
    shutil.copy(REPOSITORY / "examples" / "lenet_siamese.py", tmp_path / "lenet_siamese.py")
    (tmp_path / "m.toml").write_text('plugins = ["lenet_siamese.py"]\n' + TINY.replace(
        'encoder = ["mlp", "cnn"]', 'encoder = ["mlp", "lenet_siamese"]'))
    return tmp_path / "m.toml"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_users_model_through_slurm_gives_the_numbers_of_the_local_backend(slurm, harness, plugin_matrix, tmp_path):
    local = run(harness, ["run", "--matrix", str(plugin_matrix), "--store", "local.sqlite"], tmp_path)
    assert local.returncode == 0, local.stderr
    through = run(harness, ["run", "--matrix", str(plugin_matrix), "--backend", "slurm", "--backend-option", "poll_s=1",
                            "--backend-option", "tasks_per_job=4", "--store", "slurm.sqlite"], tmp_path)
    assert through.returncode == 0, through.stderr
    assert "8 runs finished, 0 failed" in through.stdout
    assert stored(tmp_path / "slurm.sqlite").equals(stored(tmp_path / "local.sqlite"))
    compared = run(harness, ["compare", "local.sqlite", "slurm.sqlite"], tmp_path)
    assert "4 of 4 configurations identical in every round" in compared.stdout, compared.stdout
    assert not (tmp_path / "harness-slurm").exists()  # nothing left behind


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_inside_an_allocation_the_runs_are_its_job_steps(slurm, harness, plugin_matrix, tmp_path):
    local = run(harness, ["run", "--matrix", str(plugin_matrix), "--store", "local.sqlite"], tmp_path)
    assert local.returncode == 0, local.stderr
    script = (f"{shlex.join(harness)} run --matrix {plugin_matrix} --backend slurm --store steps.sqlite "
              "& while kill -0 $! 2>/dev/null; do squeue -s -h -o '%i %j'; sleep 0.3; done; wait $!")
    done = subprocess.run(["salloc", "-N1", "-n2", "-c1", "bash", "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "8 runs finished, 0 failed" in done.stdout
    steps = [line for line in done.stdout.splitlines() if line.endswith(" harness-runs")]
    assert steps and all("." in line.split()[0] for line in steps), done.stdout  # job steps, not jobs
    assert stored(tmp_path / "steps.sqlite").equals(stored(tmp_path / "local.sqlite"))


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_cancels_every_job_it_submitted(slurm, harness, tmp_path, signal_number):
    (tmp_path / "m.toml").write_text(TINY.replace("epochs = 2", "epochs = 400"))
    name = f"harness-test-{signal_number}"
    driver = subprocess.Popen(
        [*harness, "run", "--matrix", "m.toml", "--backend", "slurm", "--backend-option",
         "tasks_per_job=1", "--backend-option", "poll_s=1", "--backend-option", f"sbatch=--job-name={name}",
         "--store", "s.sqlite"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(our_jobs(name)) < 8 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert our_jobs(name), "no job was submitted"
    driver.send_signal(signal_number)
    out, err = driver.communicate(timeout=60)
    assert driver.returncode == 128 + signal_number, err
    word = "interrupted" if signal_number == signal.SIGINT else "terminated (SIGTERM)"
    assert err.strip().splitlines() == [f"error: {word}; finished runs are stored in s.sqlite: run the same command "
                                        "again to resume"]
    deadline = time.monotonic() + 30
    while our_jobs(name) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert our_jobs(name) == []


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_slurm_jobs_that_die_are_retried_then_failed_with_slurms_state(slurm, importable_work, tmp_path):
    backend = SlurmBackend(SlurmOptions(folder=str(tmp_path / "jobs"), max_retries=1, tasks_per_job=3, poll_s=0.5))
    backend.start()
    tasks = [("a", 0.1), ("bad", 0), ("killer", 0.4), ("b", 0.1), ("quitter", 0), ("c", 0.1)]
    outcomes = outcomes_of(backend, tasks, importable_work.slurm_mix, str(tmp_path), importable_work.setup_nothing)
    assert outcomes["bad"] == TaskFailed("ValueError: this task breaks on purpose")
    killed = outcomes["killer"]
    assert isinstance(killed, TaskFailed) and "ended FAILED, 2 times in all" in killed.reason, killed
    assert all(outcomes[name].startswith(f"{name} ok") for name in "abc")


@pytest.mark.slow
@pytest.mark.parametrize(("option", "message"), [
    ("partition=gpu", "error: partition 'gpu' is not one of this cluster's (debug)"),
    ("mem_gb=100000", "error: mem_gb = 100000: no node of partition debug has that much (the largest has "),
    ("cpus_per_job=512", "error: cpus_per_job = 512: no node of partition debug has that much (the largest has "),
    ("sbatch=--constraint=nonesuch", "error: Slurm would refuse the jobs: allocation failure: Invalid feature"),
])
def test_what_the_cluster_would_refuse_is_one_line_before_anything_is_written(slurm, fake_mnist, tmp_path, option,
                                                                              message):
    (tmp_path / "m.toml").write_text(TINY)
    result = CliRunner().invoke(main, ["run", "--matrix", str(tmp_path / "m.toml"), "--backend", "slurm",
                                       "--backend-option", option, "--store", str(tmp_path / "s.sqlite")])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines
    assert not list(tmp_path.glob("s.sqlite*")) and not (tmp_path / "harness-slurm").exists()


def own_cluster() -> str | None:
    """Why the controller may not be stopped here, or None: only the cluster .ci/slurm/start
    made (ClusterName=harness), as root, is ever stopped by a test."""
    conf = os.environ.get("SLURM_CONF", "")
    try:
        ours = "ClusterName=harness" in Path(conf).read_text()
    except OSError:
        ours = False
    if not ours or os.geteuid() != 0 or shutil.which("slurmctld") is None:
        return "stops the controller: only the test cluster of .ci/slurm/start, as root"
    return None


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_controller_that_stops_answering_ends_the_command_in_one_line_with_exit_3(slurm, harness, tmp_path):
    reason = own_cluster()
    if reason:
        pytest.skip(reason)
    (tmp_path / "m.toml").write_text(TINY.replace("epochs = 2", "epochs = 400"))
    name = "harness-test-lost"
    driver = subprocess.Popen(
        [*harness, "run", "--matrix", "m.toml", "--backend", "slurm", "--backend-option", "tasks_per_job=1",
         "--backend-option", "poll_s=1", "--backend-option", f"sbatch=--job-name={name}", "--store", "s.sqlite"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not our_jobs(name) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert our_jobs(name), "no job was submitted"
        arrays = sorted({line.split()[0].split("_")[0] for line in our_jobs(name)})
        subprocess.run(["pkill", "-x", "slurmctld"], check=True)
        stopped = time.monotonic()
        out, err = driver.communicate(timeout=60)
        assert time.monotonic() - stopped < 30
        assert driver.returncode == 3, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: the Slurm controller stopped answering"), lines
        assert f"`scancel {' '.join(arrays)}`" in lines[0]
    finally:
        driver.kill()
        subprocess.run(["slurmctld", "-i"], check=False)  # back, with the state it saved
        deadline = time.monotonic() + 30
        while subprocess.run(["scontrol", "ping"], capture_output=True).returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        subprocess.run(["scancel", "-n", name], capture_output=True)
