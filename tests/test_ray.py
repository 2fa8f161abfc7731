"""The Ray backend on a local Ray instance (skipped without the `ray` extra)."""

import os
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_runner import TINY
from test_runner import results as stored

from harness.cli import main
from harness.config import expand, load_matrix
from harness.data import PairSource, load_mnist
from harness.runner import make_tasks, run_plan
from harness.store import Store


def test_ray_backend_without_ray_fails_in_one_line(fake_mnist, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    (tmp_path / "m.toml").write_text(TINY)
    store = tmp_path / "s.sqlite"
    result = CliRunner().invoke(main, ["run", "--matrix", str(tmp_path / "m.toml"), "--backend", "ray", "--store", str(store)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == ["error: --backend ray needs Ray, an optional extra: pip install -e '.[ray]'"]
    assert not store.exists()


ray = pytest.importorskip("ray", reason="the Ray backend tests need the extra: pip install -e '.[ray]'")

from harness.ray_backend import RayOptions, ray_results, run_remote  # noqa: E402


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    # Workers inherit this environment: they import this module by name to run the task bodies
    # defined here, and find the folder where die_once leaves its markers.
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


def test_ray_gives_the_numbers_of_the_local_backend(local_ray, tiny, tmp_path):
    with Store(tmp_path / "local.sqlite") as store:
        run_plan(tiny, store, workers=1)
    with Store(tmp_path / "ray.sqlite") as store:
        summary = run_plan(tiny, store, ray_options=RayOptions())
    assert summary.finished == 8 and not summary.failed
    assert stored(tmp_path / "ray.sqlite").equals(stored(tmp_path / "local.sqlite"))
    with Store(tmp_path / "ray.sqlite") as store:  # resume: nothing left to run
        assert run_plan(tiny, store, ray_options=RayOptions()).already_done == 8


def raise_for_mlp(task, data_box, device, threads):
    if task.config.encoder == "mlp":
        raise ValueError("this task breaks on purpose")
    return run_remote(task, data_box, device, threads)


def test_a_task_that_raises_is_recorded_failed_and_the_rest_finish(local_ray, tiny):
    source = PairSource(load_mnist())
    results = list(ray_results(make_tasks(tiny.jobs, False), source, "cpu", RayOptions(), body=raise_for_mlp))
    assert len(results) == 8
    for job, result in results:
        if job.config.encoder == "mlp":
            assert result.status == "failed" and "this task breaks on purpose" in result.reason
        else:
            assert result.status == "done", result.reason


def die_once(task, data_box, device, threads):
    marker = Path(os.environ["HARNESS_TEST_MARKERS"]) / f"{task.config.config_id}-{task.rounds[0]}"
    if not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)  # the worker is lost mid-task
    return run_remote(task, data_box, device, threads)


def always_die(task, data_box, device, threads):
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_lost_worker_is_retried_and_the_store_is_complete(local_ray, tiny, tmp_path):
    markers = Path(os.environ["HARNESS_TEST_MARKERS"])
    source = PairSource(load_mnist())
    jobs = tiny.jobs[:2]
    results = list(ray_results(make_tasks(jobs, False), source, "cpu", RayOptions(max_retries=2), body=die_once))
    assert [r.status for _, r in results] == ["done", "done"], [r.reason for _, r in results]
    assert len(list(markers.glob("*-*"))) == 2  # each task did die once


def test_a_worker_lost_past_its_retries_is_recorded_failed(local_ray, tiny):
    source = PairSource(load_mnist())
    results = list(ray_results(make_tasks(tiny.jobs[:1], False), source, "cpu", RayOptions(max_retries=1), body=always_die))
    assert [r.status for _, r in results] == ["failed"]
    assert "Worker" in results[0][1].reason or "died" in results[0][1].reason.lower(), results[0][1].reason
