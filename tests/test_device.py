"""The device policy (harness.device), resolved once at the edge, and backends added by
registration with options of their own."""

import dataclasses

import pytest
from fixtures import stored_results as results

from harness import backends
from harness.device import CPU, DevicePolicy, policy_for, resolve, usable_cores
from harness.errors import ConfigError
from harness.runner import run_plan
from harness.store import Store


def test_cpu_policy_defaults():
    policy = resolve("cpu")
    assert policy == DevicePolicy("cpu", usable_cores(), 1, False, True)
    assert resolve("cpu", workers=10_000).workers == usable_cores()  # more would only share cores
    assert resolve("cpu", workers=1, batched=True).batched
    assert policy.rng_devices() == [] and not policy.is_cuda


def test_accelerator_policies_own_the_device_with_one_worker_and_batch_by_default():
    cuda = policy_for("cuda:1", workers=8)
    assert (cuda.kind, cuda.workers, cuda.batched, cuda.channels_last) == ("cuda", 1, True, False)
    assert policy_for("mps").batched is False


@pytest.mark.parametrize(
    ("requested", "message"),
    [("cuda", "CUDA is not available on this machine; use --device cpu or auto"),
     ("tpu", "unknown device; use auto, cpu, cuda, cuda:N or mps")],
)
def test_devices_this_machine_lacks_are_refused_in_one_line(requested, message):
    import torch

    if requested == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match=message):
        resolve(requested)


def test_a_remote_backend_resolves_devices_it_owns_not_this_machine():
    ray = backends.create("ray", {"gpus_per_job": 0.25})
    assert resolve("auto", elsewhere=ray.remote_device("auto")).device == "cuda"  # the cluster's GPUs, not checked here
    assert resolve("auto", elsewhere=backends.create("ray").remote_device("auto")).device == "cpu"


def test_pack_trains_vectorised_models_and_refuses_no_batching():
    assert policy_for("cpu", pack=True).batched
    with pytest.raises(ConfigError, match="--pack trains vectorised models: it cannot go with --no-batch-rounds"):
        policy_for("cpu", pack=True, batched=False)


@pytest.mark.slow
def test_a_new_backend_is_one_module_and_its_registration(fake_mnist, tmp_path):
    from fixtures import TINY

    from harness import api
    from harness.config import expand, load_matrix

    backends.BACKENDS.register("inline", "inline_backend:InlineBackend")
    try:
        backend = backends.create("inline", {"note": "one of its own", "reversed": True})
        assert backend.options.note == "one of its own" and backend.options.reversed
        path = tmp_path / "tiny.toml"
        path.write_text(TINY)
        plan = expand(load_matrix(path))
        with Store(tmp_path / "inline.sqlite") as store:
            summary = run_plan(plan, store, backend=backend)
        assert summary.finished == 8 and not summary.failed and len(backend.launched) == 8
        assert backend.launched[0].rounds == (1,)  # its own option: the tasks last to first
        api.run(plan, tmp_path / "api.sqlite", backend="inline", backend_options=["note=through the command line"])
    finally:
        backends.BACKENDS.unregister("inline")
    with Store(tmp_path / "local.sqlite") as store:
        run_plan(plan, store, policy=dataclasses.replace(CPU, workers=1))
    assert results(tmp_path / "inline.sqlite").equals(results(tmp_path / "local.sqlite"))
    assert results(tmp_path / "api.sqlite").equals(results(tmp_path / "local.sqlite"))


@pytest.mark.slow
def test_cpu_runs_flush_denormals_and_record_the_policy_they_trained_under(fake_mnist, tmp_path):
    import json

    from harness import api
    from harness.device import policy_for
    from harness.store import Store

    policy = policy_for("cpu", workers=1)
    assert policy.flush_denormal and policy.execution() == {
        "threads": 1, "batched": False, "channels_last": True, "flush_denormal": True}
    assert not policy_for("cuda").execution()["flush_denormal"]  # a CPU-only switch
    plan = api.plan(configs=[{"encoder": "linear", "epochs": 1, "rounds": 1, "pairs": 100}])
    api.run(plan, tmp_path / "s.sqlite", device="cpu", workers=1)
    with Store.open_readonly(tmp_path / "s.sqlite") as store:
        recorded = json.loads(store.runs()["execution"].iloc[0])
    assert recorded == policy.execution()
