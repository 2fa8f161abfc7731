"""The Ray backend on a local Ray instance (skipped without the `ray` extra)."""

import os
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixtures import TINY
from fixtures import stored_results as stored

from harness.cli import main
from harness.config import expand, load_matrix
from harness.device import CPU, policy_for
from harness.mnist import load_mnist
from harness.runner import make_tasks, run_plan
from harness.store import Store
from harness.tasks.pairs.data import PairSource


def test_ray_backend_without_ray_fails_in_one_line(fake_mnist, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    (tmp_path / "m.toml").write_text(TINY)
    store = tmp_path / "s.sqlite"
    result = CliRunner().invoke(main, ["run", "--matrix", str(tmp_path / "m.toml"), "--backend", "ray", "--store", str(store)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == ["error: --backend ray needs Ray, an optional extra: pip install -e '.[ray]'"]
    assert not store.exists()


pytestmark = pytest.mark.slow  # Ray starts processes of its own

ray = pytest.importorskip("ray", reason="the Ray backend tests need the extra: pip install -e '.[ray]'")

from harness.backends import TaskFailed  # noqa: E402
from harness.backends.ray import RayBackend, RayOptions  # noqa: E402
from harness.runner import WorkerContext, execute, prepare_worker  # noqa: E402


@pytest.mark.timeout(60)
def test_address_auto_reads_only_this_machines_last_cluster_and_checks_it_in_bounded_time(fake_mnist, tmp_path,
                                                                                          monkeypatch):
    """`--address auto` never adopts a Ray it merely finds on the machine (another user's, a
    dead one): without a cluster started here it is one line at once; a recorded address that
    does not answer is refused within the 10 s of any address."""
    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # where `ray start` would record its cluster
    (tmp_path / "m.toml").write_text(TINY)
    store = tmp_path / "s.sqlite"
    arguments = ["run", "--matrix", str(tmp_path / "m.toml"), "--backend", "ray", "--address", "auto", "--store", str(store)]
    result = CliRunner().invoke(main, arguments, env={"RAY_ADDRESS": None})
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"error: --address auto: no Ray cluster was started on this machine (no RAY_ADDRESS, nothing in "
        f"{tmp_path / 'ray' / 'ray_current_cluster'}); start one with `ray start --head`, or leave --address out "
        "to start a local Ray"]
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("127.0.0.1:1\n")  # a cluster long gone
    result = CliRunner().invoke(main, arguments, env={"RAY_ADDRESS": None})
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().startswith("error: --address 127.0.0.1:1: no Ray cluster answers there")
    assert not list(tmp_path.glob("s.sqlite*"))


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    # Workers inherit this environment: they import this module by name to run the work
    # functions defined here, and find the folder where die_once leaves its markers.
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), previous]))
    os.environ["HARNESS_TEST_MARKERS"] = str(tmp_path_factory.mktemp("markers"))
    ray.init(num_cpus=2, include_dashboard=False, logging_level="error", log_to_driver=False)
    yield
    ray.shutdown()
    os.environ.pop("HARNESS_TEST_MARKERS")
    if previous is None:
        os.environ.pop("PYTHONPATH")
    else:
        os.environ["PYTHONPATH"] = previous


@pytest.fixture
def tiny(fake_mnist, tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return expand(load_matrix(path))


def ray_matches_local(plan, folder, workers=1):
    """Run `plan` on local workers and on Ray into two stores; Ray's summary, after checking that
    both stores hold the same numbers."""
    with Store(folder / "local.sqlite") as store:
        run_plan(plan, store, policy=policy_for("cpu", workers=workers))
    with Store(folder / "ray.sqlite") as store:
        summary = run_plan(plan, store, backend=RayBackend(RayOptions()))
    assert stored(folder / "ray.sqlite").equals(stored(folder / "local.sqlite"))
    return summary


def test_ray_gives_the_numbers_of_the_local_backend(local_ray, tiny, tmp_path):
    summary = ray_matches_local(tiny, tmp_path)
    assert summary.finished == 8 and not summary.failed
    with Store(tmp_path / "ray.sqlite") as store:  # resume: nothing left to run
        assert run_plan(tiny, store, backend=RayBackend(RayOptions())).already_done == 8


def launch(options, tasks, work):
    context = WorkerContext({"pairs": PairSource(load_mnist())}, CPU)
    return list(RayBackend(options).launch(tasks, work, context, prepare_worker))


def raise_for_mlp(task, context):
    if task.config.encoder == "mlp":
        raise ValueError("this task breaks on purpose")
    return execute(task, context)


def test_a_task_that_raises_is_recorded_failed_and_the_rest_finish(local_ray, tiny):
    outcomes = launch(RayOptions(), make_tasks(tiny.jobs, False), raise_for_mlp)
    assert len(outcomes) == 8
    for task, outcome in outcomes:
        if task.config.encoder == "mlp":
            assert isinstance(outcome, TaskFailed) and "this task breaks on purpose" in outcome.reason
        else:
            assert [result.status for _, result in outcome] == ["done"]


def die_once(task, context):
    marker = Path(os.environ["HARNESS_TEST_MARKERS"]) / f"{task.config.config_id}-{task.rounds[0]}"
    if not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)  # the worker is lost mid-task
    return execute(task, context)


def always_die(task, context):
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_lost_worker_is_retried_and_the_store_is_complete(local_ray, tiny):
    markers = Path(os.environ["HARNESS_TEST_MARKERS"])
    outcomes = launch(RayOptions(max_retries=2), make_tasks(tiny.jobs[:2], False), die_once)
    assert [[r.status for _, r in outcome] for _, outcome in outcomes] == [["done"], ["done"]], outcomes
    assert len(list(markers.glob("*-*"))) == 2  # each task did die once


def test_a_worker_lost_past_its_retries_is_recorded_failed(local_ray, tiny):
    outcomes = launch(RayOptions(max_retries=1), make_tasks(tiny.jobs[:1], False), always_die)
    assert len(outcomes) == 1 and isinstance(outcomes[0][1], TaskFailed)
    reason = outcomes[0][1].reason
    assert "Worker" in reason or "died" in reason.lower(), reason


def failing_setup(context):
    raise RuntimeError("this worker cannot start")


def test_a_worker_that_cannot_set_up_ends_the_launch_in_one_line(local_ray, tiny):
    from harness.backends import WorkerSetupError

    backend = RayBackend(RayOptions())
    with pytest.raises(WorkerSetupError, match="RuntimeError: this worker cannot start"):
        list(backend.launch(make_tasks(tiny.jobs[:2], False), execute, None, failing_setup))


def test_ray_address_that_does_not_answer_fails_fast_in_one_line(fake_mnist, tmp_path):
    (tmp_path / "m.toml").write_text(TINY)
    store = tmp_path / "s.sqlite"
    # a port on this machine that nothing listens on: refused at once, never a hang
    result = CliRunner().invoke(main, ["run", "--matrix", str(tmp_path / "m.toml"), "--backend", "ray",
                                       "--address", "127.0.0.1:9", "--store", str(store)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --address 127.0.0.1:9: no Ray cluster answers there")
    assert not store.exists()


def test_ray_address_that_listens_but_stays_silent_fails_in_bounded_time(fake_mnist, tmp_path, monkeypatch):
    import socket
    import time

    import harness.backends.ray as ray_module

    monkeypatch.setattr(ray_module, "CONNECT_TIMEOUT", 1.0)
    (tmp_path / "m.toml").write_text(TINY)
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        result = CliRunner().invoke(main, ["run", "--matrix", str(tmp_path / "m.toml"), "--backend", "ray",
                                           "--address", address, "--store", str(tmp_path / "s.sqlite")])
        assert time.monotonic() - started < 30
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"error: --address {address}: no Ray cluster answers there (timed out); "
        "start one with `ray start --head` or check the address"
    ]
    assert not (tmp_path / "s.sqlite").exists()


def test_ray_tasks_import_the_plans_plugins_and_match_local_workers(local_ray, fake_mnist, tmp_path):
    import shutil

    examples = Path(__file__).resolve().parent.parent / "examples"
    for name in ("lenet_siamese.py", "dropout_study.toml"):
        shutil.copy(examples / name, tmp_path / name)
    plan = expand(load_matrix(tmp_path / "dropout_study.toml"), "smoke", {"pairs": 100, "epochs": 1},
                  only={"swap_augment": False, "dropout": 0.0})
    summary = ray_matches_local(plan, tmp_path, workers=2)
    assert summary.finished == 4 and not summary.failed


def test_ray_workers_train_the_users_text_the_driver_read_not_their_disks(local_ray, fake_mnist, tmp_path):
    from test_user_models import changed_after_planning, trains_the_recorded_text

    for remove in (False, True):
        folder = tmp_path / str(remove)
        folder.mkdir()
        plan = changed_after_planning(folder, remove=remove)
        with Store(folder / "ray.sqlite") as store:
            summary = run_plan(plan, store, backend=RayBackend(RayOptions()))
        assert summary.finished == 4 and not summary.failed, summary.failed
        trains_the_recorded_text(folder / "ray.sqlite")


def test_a_model_that_exits_or_hangs_fails_its_runs_on_ray_too(local_ray, fake_mnist, tmp_path):
    """Ray runs each task in a worker's main thread: run_timeout stops a hanging run there, and
    an exit of the model's is that run's failure, as on local workers."""
    from test_user_faults import FAULTY, REASONS

    (tmp_path / "faulty.py").write_text(FAULTY)
    (tmp_path / "m.toml").write_text('[defaults]\nencoder = "faulty:Faulty"\nepochs = 2\nrounds = 1\npairs = 100\n'
                                     'batch_size = 20\nrun_timeout = 3\n[matrix]\nmodel_args.fault = ["none", "exit3", "hang"]\n')
    plan = expand(load_matrix(tmp_path / "m.toml"))
    with Store(tmp_path / "ray.sqlite") as store:
        summary = run_plan(plan, store, backend=RayBackend(RayOptions()))
        runs = store.runs()
    assert summary.finished == 3 and len(summary.failed) == 2
    reasons = {name.rsplit("=", 1)[1]: reason for name, _, reason in summary.failed}
    assert REASONS["exit3"] in reasons["exit3"] and reasons["hang"] == REASONS["hang"], reasons
    assert list(runs[runs["status"] == "done"]["name"]) == ["faulty:Faulty fault=none"]


def sleep_a_while(task, context):
    import time

    time.sleep(5)
    return execute(task, context)


def test_a_request_no_node_can_hold_is_refused_before_anything_is_submitted(local_ray):
    from harness.backends import BackendError

    for options, fragment in ((RayOptions(cpus_per_job=64), "cpus_per_job = 64: no node of the Ray cluster has 64 CPUs"
                                                            " (the largest has 2; 1 node(s))"),
                              (RayOptions(gpus_per_job=1), "gpus_per_job = 1: the Ray cluster has no GPU")):
        with pytest.raises(BackendError, match=r"^" + fragment.replace("(", r"\(").replace(")", r"\)")):
            RayBackend(options).start(policy_for("cuda" if options.gpus_per_job else "cpu"))


@pytest.mark.timeout(60)
def test_a_cluster_that_stops_answering_ends_the_launch_in_bounded_time_with_its_own_error(local_ray, tiny,
                                                                                             monkeypatch):
    """No answer from the cluster's control service LOST_AFTER checks in a row: BackendLost
    (exit 3 on the command line), within seconds, not Ray's own 60 s and exit 1."""
    import time

    from harness.backends import BackendLost
    from harness.backends import ray as ray_backend

    monkeypatch.setattr(ray_backend, "HEARTBEAT", 0.2)
    monkeypatch.setattr(RayBackend, "_cluster_answers", lambda self, ray: False)
    start = time.monotonic()
    with pytest.raises(BackendLost, match="the Ray cluster stopped answering .* run the same command again to resume"):
        launch(RayOptions(), make_tasks(tiny.jobs, False)[:2], sleep_a_while)
    assert time.monotonic() - start < 4


def test_the_cluster_answers_while_it_runs(local_ray):
    assert RayBackend()._cluster_answers(ray)


@pytest.mark.timeout(120)
def test_ray_init_leaves_the_harnesss_signal_handlers_in_place(tmp_path):
    """ray.init installs its own SIGTERM handler (a C++ abort, exit 134): the backend puts the
    one that was there back, so SIGTERM ends a run with the harness's line and exit 143."""
    import subprocess
    import sys

    script = tmp_path / "check.py"
    script.write_text(
        "import signal\n"
        "def mine(number, frame):\n    pass\n"
        "signal.signal(signal.SIGTERM, mine)\n"
        "from harness.backends.ray import RayBackend, RayOptions\n"
        "backend = RayBackend(RayOptions())\n"
        "backend.start()\n"
        "print('kept' if signal.getsignal(signal.SIGTERM) is mine else 'replaced')\n"
        "backend.close()\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=110,
                            env={**os.environ, "RAY_ADDRESS": ""})
    assert result.stdout.strip().splitlines()[-1] == "kept", result.stdout + result.stderr


def test_rays_own_thread_messages_go_aside_and_everything_while_it_shuts_down(tmp_path):
    import io
    import threading

    from harness.backends.ray import AsideRayThreads

    console, aside = io.StringIO(), io.StringIO()
    stream = AsideRayThreads(console, aside)
    stream.write("ours\n")
    worker = threading.Thread(target=stream.write, args=("(raylet) noise\n",), name="ray_listen_error_messages")
    worker.start()
    worker.join()
    assert console.getvalue() == "ours\n" and aside.getvalue() == "(raylet) noise\n"
    stream.everything = True
    stream.write("flushed at shutdown\n")
    assert console.getvalue() == "ours\n" and aside.getvalue().endswith("flushed at shutdown\n")
    assert stream.getvalue() == "ours\n"  # everything else is the console's


def test_a_gpu_index_that_no_ray_task_can_see_is_refused_before_anything_starts():
    """Ray gives each task only the GPUs it reserves, as cuda:0 (and up): `cuda:1` with a
    quarter of a GPU would fail in every task; it is refused instead, and `cuda:0` passes."""
    from harness.backends import BackendError
    from harness.backends.ray import check

    with pytest.raises(BackendError, match=r"^--device cuda:1 with --backend ray: each task sees only the 1 GPU\(s\) it "
                                           r"reserves \(gpus_per_job = 0.25\), numbered from cuda:0; use --device cuda$"):
        check(RayOptions(gpus_per_job=0.25), "cuda:1")
    check(RayOptions(gpus_per_job=0.25), "cuda:0")
    check(RayOptions(gpus_per_job=2), "cuda:1")
