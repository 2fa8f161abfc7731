"""The device policy (harness.device), resolved once at the edge, and backends added by
registration with options of their own."""

import dataclasses
import os

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


def test_accelerator_policies_take_one_worker_and_batch_by_default_and_several_when_asked():
    cuda = policy_for("cuda:1")
    assert (cuda.kind, cuda.workers, cuda.batched, cuda.channels_last) == ("cuda", 1, True, False)
    assert policy_for("cuda", workers=2).workers == min(2, usable_cores())  # groups in flight on one GPU
    assert policy_for("cuda", workers=10_000).workers == usable_cores()
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
        "threads": 1, "batched": False, "channels_last": True, "flush_denormal": True, "precision": "float32",
        "deterministic": True}
    assert not policy_for("cuda").execution()["flush_denormal"]  # a CPU-only switch
    plan = api.plan(configs=[{"encoder": "linear", "epochs": 1, "rounds": 1, "pairs": 100}])
    api.run(plan, tmp_path / "s.sqlite", device="cpu", workers=1)
    with Store.open_readonly(tmp_path / "s.sqlite") as store:
        recorded = json.loads(store.runs()["execution"].iloc[0])
    assert recorded == policy.execution()


def test_the_precision_policy_is_float32_and_deterministic_unless_asked_and_recorded():
    """TF32 off and deterministic kernels on by default; --tf32 and --nondeterministic change
    them on CUDA only (the CPU has no TF32, and its kernels here are deterministic)."""
    from harness.device import policy_for

    cuda = policy_for("cuda")
    assert (cuda.execution()["precision"], cuda.execution()["deterministic"]) == ("float32", True)
    fast = policy_for("cuda", tf32=True, deterministic=False)
    assert (fast.execution()["precision"], fast.execution()["deterministic"]) == ("tf32", False)
    cpu = policy_for("cpu", tf32=True, deterministic=False)
    assert (cpu.execution()["precision"], cpu.execution()["deterministic"]) == ("float32", True)
    assert [policy.tag for policy in (policy_for("cpu"), cuda, fast, policy_for("cpu", batched=True),
                                      policy_for("cuda", pack=True), policy_for("cuda", batched=False))] == [
        "", "cuda", "cuda-tf32-nondeterministic", "batched", "cuda-packed", "cuda-sequential"]


def test_apply_precision_sets_torchs_switches(monkeypatch):
    import torch

    from harness.device import policy_for

    calls = {}
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda on, warn_only=False: calls.update(on=on, warn=warn_only))
    monkeypatch.setattr(torch, "set_float32_matmul_precision", lambda value: calls.update(matmul=value))
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
              torch.backends.cuda.matmul.allow_tf32)
    try:
        policy_for("cuda").apply_precision()
        assert calls == {"matmul": "highest", "on": True, "warn": True}
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        policy_for("cuda", tf32=True, deterministic=False).apply_precision()
        assert calls == {"matmul": "high", "on": False, "warn": True}
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    finally:
        (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
         torch.backends.cuda.matmul.allow_tf32) = before


def test_records_from_before_the_precision_read_as_float32_and_deterministic():
    from harness.device import execution_record, policy_tag

    old = '{"threads": 1, "batched": false, "channels_last": true, "flush_denormal": true}'
    assert execution_record(old) == {"threads": 1, "batched": False, "channels_last": True, "flush_denormal": True,
                                     "precision": "float32", "deterministic": True}
    assert execution_record(None) == {} and execution_record("not json") == {}
    assert policy_tag("cpu", execution_record(old)) == ""
    assert policy_tag("cuda:1", {"batched": True, "precision": "tf32"}) == "cuda-tf32"


def test_a_run_under_another_policy_never_pools_silently(tmp_path, monkeypatch):
    """A store holding CPU runs refuses a batched (or GPU) run in one line before anything is
    written; --mix-policies takes it; the default store is the policy's own; the table of a
    store that pools two policies says so."""
    from fixtures import invoke, one_line_exit_2

    from harness.store import Store

    (tmp_path / "m.toml").write_text("[defaults]\nencoder = \"linear\"\nepochs = 1\nrounds = 1\npairs = 100\n"
                                     "[matrix]\naux_loss = [false, true]\n")
    store = tmp_path / "s.sqlite"
    first = invoke("run", "--matrix", tmp_path / "m.toml", "--device", "cpu", "--store", store, "--workers", "1")
    assert first.exit_code == 0, first.output
    with Store.open_readonly(store) as opened:
        before = opened.runs()
        assert opened.policies() == {"": 2}
    refused = invoke("run", "--matrix", tmp_path / "m.toml", "--device", "cpu", "--store", store, "--batch-rounds",
                     "--rounds", "2")
    one_line_exit_2(refused, "holds 2 runs cpu (sequential, float32); this run trains batched")
    assert "results/harness-batched.sqlite" in refused.stderr and "--mix-policies" in refused.stderr
    with Store.open_readonly(store) as opened:
        assert opened.runs()[["config_id", "round", "finished_at"]].equals(before[["config_id", "round", "finished_at"]])
    mixed = invoke("run", "--matrix", tmp_path / "m.toml", "--device", "cpu", "--store", store, "--batch-rounds",
                   "--rounds", "2", "--mix-policies")
    assert mixed.exit_code == 0, mixed.output
    with Store.open_readonly(store) as opened:
        assert opened.policies() == {"": 2, "batched": 2}
    table = invoke("table", "--store", store)
    assert table.exit_code == 0, table.output
    assert "trained under 2 execution policies (cpu (sequential, float32): 2 runs; batched: 2 runs)" in table.stdout
    # the default store is the policy's own
    monkeypatch.chdir(tmp_path)
    own = invoke("run", "--matrix", tmp_path / "m.toml", "--device", "cpu", "--batch-rounds", "--workers", "1")
    assert own.exit_code == 0, own.output
    assert "results/harness-batched.sqlite" in own.stdout and (tmp_path / "results/harness-batched.sqlite").exists()
    assert not (tmp_path / "results/harness.sqlite").exists()
