"""A user's model is the likeliest fault: whatever it does (an exit, KeyboardInterrupt of its
own, os._exit, a crash in native code, being killed as the out-of-memory killer does, a hang,
a hang deaf to signals) is that run's failure, stored with its reason, and the matrix goes on.
Each test proves that the sound configurations of the same matrix are stored with the numbers
an undisturbed run gives; and that `harness plan` never runs such code unbounded in the driver."""

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from harness import api
from harness.config import expand, load_matrix
from harness.device import policy_for
from harness.runner import run_plan
from harness.store import Store

pytestmark = [pytest.mark.slow,  # every test here trains in processes of its own
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals, /proc and os.fork semantics")]

FAULTY = '''
import ctypes, os, signal, sys, time
from torch import nn


class Faulty(nn.Module):
    """A small joint CNN that misbehaves once its batches are a run's (the plan's check passes)."""

    def __init__(self, fault="none"):
        super().__init__()
        self.fault = fault
        self.body = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 12 * 12, 2))

    def forward(self, x):
        if x.shape[0] >= 20 and self.training:
            fault = self.fault
            if fault == "exit0": sys.exit(0)
            if fault == "exit3": sys.exit(3)
            if fault == "interrupt": raise KeyboardInterrupt
            if fault == "os_exit": os._exit(0)
            if fault == "segfault": ctypes.string_at(0)
            if fault == "killed": os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer does
            if fault == "hang": time.sleep(10 ** 6)
            if fault == "deaf":  # a hang that no signal of its own interrupts
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
                time.sleep(10 ** 6)
        return self.body(x)
'''

REASONS = {  # what each fault's runs are stored with
    "exit0": "the run's code called sys.exit(0)",
    "exit3": "the run's code called sys.exit(3)",
    "interrupt": "the run's code raised KeyboardInterrupt itself",
    "os_exit": "exit codes {EXIT(0)}: it ended itself, as os._exit does",
    "segfault": "Fatal Python error: Segmentation fault, in forward (faulty.py:",
    "killed": "SIGKILL(-9)}: killed, as the kernel's out-of-memory killer does",
    "hang": "exceeded run_timeout = 3 s",
    "deaf": "ran past its time limit of 3 s and did not stop; its worker was killed",
}


def study_matrix(folder, faults, rounds=1) -> str:
    (folder / "faulty.py").write_text(FAULTY)
    matrix = folder / "m.toml"
    listed = ", ".join(f'"{fault}"' for fault in ["none", *faults])
    matrix.write_text(f'[defaults]\nencoder = "faulty:Faulty"\nepochs = 2\nrounds = {rounds}\npairs = 100\n'
                      f'batch_size = 20\nrun_timeout = 3\n[matrix]\nmodel_args.fault = [{listed}]\n')
    return str(matrix)


def harness(arguments, checksums, directory, **options):
    """The `harness` command (its console entry) in a process of its own."""
    script = textwrap.dedent(f"""
        import sys
        import harness.mnist
        harness.mnist.MNIST_SHA256 = {checksums!r}
        from harness.cli import entry
        sys.argv = ["harness", *{list(arguments)!r}]
        entry()
    """)
    env = {**os.environ, "HARNESS_DATA_DIR": str(directory), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600,
                          **options)


def stored(store):
    with sqlite3.connect(store) as connection:
        rows = connection.execute("SELECT config, round, status, reason, test_error, train_error FROM runs").fetchall()
    return {(config, round_index): (status, reason, test, train) for config, round_index, status, reason, test, train in rows}


def undisturbed(folder, matrix, monkeypatch, checksums, directory):
    """The numbers of the matrix's sound configuration ("none") run alone, in this process."""
    monkeypatch.setattr("harness.mnist.MNIST_SHA256", checksums)
    monkeypatch.setenv("HARNESS_DATA_DIR", str(directory))
    plan = expand(load_matrix(matrix), only={"model_args.fault": "none"})
    with Store(folder / "reference.sqlite") as store:
        assert not run_plan(plan, store, policy=policy_for("cpu", workers=1)).failed
    return stored(folder / "reference.sqlite")


@pytest.mark.timeout(600)  # each death costs a fresh worker (torch imported again), twice: minutes on a loaded machine
def test_whatever_a_model_does_fails_its_own_runs_and_the_sound_ones_match(tmp_path, synthetic_mnist, monkeypatch):
    """One worker, the default wherever one core is usable: the user's code still runs in a
    worker process, so no fault reaches the driver, and the command ends with one line per
    failed run and exit 1. (A SIGKILL is a death like os._exit's, and a hang deaf to its limit
    is tested in test_backends_local with a short grace: both are left out here for time.)"""
    directory, checksums = synthetic_mnist
    faults = [fault for fault in REASONS if fault not in ("killed", "deaf")]
    matrix = study_matrix(tmp_path, faults)
    store = tmp_path / "s.sqlite"
    started = time.monotonic()
    result = harness(["run", "--matrix", matrix, "--store", str(store), "--workers", "1"], checksums, directory)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert elapsed < 500, elapsed
    runs = stored(store)
    assert len(runs) == len(faults) + 1
    by_fault = {}
    for (config, _), (status, reason, *_) in runs.items():
        fault = json.loads(config)["model_args"]["fault"]
        by_fault[fault] = (status, reason)
    for fault in faults:
        status, reason = by_fault[fault]
        expected = REASONS[fault]
        assert status == "failed" and expected in reason, (fault, reason)
        assert f"fault={fault} round 0: " in result.stderr  # its one line
    assert by_fault["none"][0] == "done"
    assert "Traceback" not in result.stderr and "Fatal Python error" not in result.stderr.replace(REASONS["segfault"], "")
    assert len(result.stderr.strip().splitlines()) == len(faults)  # nothing streamed besides the failures' lines
    reference = undisturbed(tmp_path, matrix, monkeypatch, checksums, directory)
    sound = {key: value for key, value in runs.items() if json.loads(key[0])["model_args"]["fault"] == "none"}
    assert sound == reference


def test_a_model_that_exits_with_several_workers_is_its_runs_failure(tmp_path, synthetic_mnist):
    directory, checksums = synthetic_mnist
    matrix = study_matrix(tmp_path, ["exit0"], rounds=2)
    result = harness(["run", "--matrix", matrix, "--store", str(tmp_path / "s.sqlite"), "--workers", "2"],
                     checksums, directory)
    assert result.returncode == 1, result.stderr
    statuses = sorted(status for status, *_ in stored(tmp_path / "s.sqlite").values())
    assert statuses == ["done", "done", "failed", "failed"]
    assert "2 runs finished, 2 failed" in result.stdout


def test_plan_times_a_users_model_in_a_worker_and_bounds_it(tmp_path, synthetic_mnist, monkeypatch):
    """`harness plan` trains a few steps of each configuration for its estimate: a user's code
    does so in a worker process, within a time limit, so that an exit, a crash or a hang
    costs that configuration its estimate, said why, and never the plan."""
    monkeypatch.setattr("harness.estimate.TIMING_SECONDS", 2.0)
    matrix = study_matrix(tmp_path, ["os_exit", "segfault", "hang", "exit3"])
    started = time.monotonic()
    frame = api.costs(api.plan(matrix))
    assert time.monotonic() - started < 60
    timing = dict(zip(frame["name"].str.rsplit("=", n=1).str[1], frame["timing"]))
    assert timing["none"] == "timed steps"
    assert "EXIT(0)" in timing["os_exit"] and "Segmentation fault" in timing["segfault"]
    assert "timing its steps took over 2 s" in timing["hang"]
    assert "sys.exit(3)" in timing["exit3"]
    directory, checksums = synthetic_mnist
    crashing = study_matrix(tmp_path, ["os_exit", "segfault"])  # the command itself, exit 0
    result = harness(["plan", "--matrix", crashing], checksums, directory)
    assert result.returncode == 0, result.stderr
    assert "2 configurations have no estimate, left out of that time:" in result.stdout


def test_run_piped_into_head_trains_and_stores_everything(tmp_path, synthetic_mnist):
    """`harness run ... | head -1`: the reader goes away after a line; printing stops, the runs
    go on and are stored, and the command ends as if it had been read to the end."""
    directory, checksums = synthetic_mnist
    matrix = tmp_path / "m.toml"
    matrix.write_text("[defaults]\nepochs = 1\nrounds = 3\npairs = 100\n[matrix]\nencoder = [\"mlp\", \"linear\"]\n")
    store = tmp_path / "s.sqlite"
    result = subprocess.run(f"{sys.executable} -c \"$SCRIPT\" | head -1; exit ${{PIPESTATUS[0]}}", shell=True,
                            executable="/bin/bash", capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HARNESS_DATA_DIR": str(directory), "SCRIPT": textwrap.dedent(f"""
                                import sys
                                import harness.mnist
                                harness.mnist.MNIST_SHA256 = {checksums!r}
                                from harness.cli import entry
                                sys.argv = ["harness", "run", "--matrix", {str(matrix)!r}, "--store", {str(store)!r}]
                                entry()
                            """)})
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 and result.stderr == ""
    assert sorted(status for status, *_ in stored(store).values()) == ["done"] * 6
