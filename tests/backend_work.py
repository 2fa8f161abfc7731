"""Work and setup functions for the backend tests, importable by worker processes by name.

A task is `(name, seconds)`; the context is a folder where markers are left, so a function can
behave differently on its first try (the marker files survive the worker that made them).
"""

import os
import signal
import time
from pathlib import Path


def setup_nothing(folder):
    pass


def setup_fails(folder):
    Path(folder, f"setup-{os.getpid()}").touch()  # counts the workers that tried
    raise RuntimeError("this worker cannot start")


def square(task, folder):
    name, seconds = task
    time.sleep(seconds)
    return f"{name} ok in {os.getpid()}"


def die_midway(seconds):
    time.sleep(seconds / 2)
    os.kill(os.getpid(), signal.SIGKILL)


def dies_once(task, folder):
    """The worker running `victim` dies (SIGKILL) the first time, mid-task."""
    name, seconds = task
    marker = Path(folder, f"died-{name}")
    if name.startswith("victim") and not marker.exists():
        marker.touch()
        die_midway(seconds)
    return square(task, folder)


def always_dies(task, folder):
    """`killer` kills its worker every time; every other task sleeps and finishes."""
    name, seconds = task
    if name == "killer":
        Path(folder, f"attempt-{name}-{time.monotonic_ns()}").touch()
        die_midway(seconds)
    return square(task, folder)


def raises(task, folder):
    name, seconds = task
    if name == "bad":
        raise ValueError("this task breaks on purpose")
    return square(task, folder)


def exits(task, folder):
    """`quitter` ends its run with sys.exit; the others finish."""
    name, seconds = task
    if name == "quitter":
        raise SystemExit(4)
    return square(task, folder)


def crashes(task, folder):
    """`crasher` dies in native code (a segmentation fault) every time."""
    import ctypes

    name, seconds = task
    if name == "crasher":
        ctypes.string_at(0)
    return square(task, folder)


def deaf_sleeper(task, folder):
    """`sleeper` blocks every signal that could stop it and sleeps for good."""
    name, seconds = task
    if name == "sleeper":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(10**6)
    return square(task, folder)


def slurm_mix(task, folder):
    """`killer` kills its job every time, `quitter` calls sys.exit, `bad` raises; others finish."""
    name, seconds = task
    if name == "killer":
        return always_dies(task, folder)
    if name == "quitter":
        return exits(task, folder)
    return raises(task, folder)
