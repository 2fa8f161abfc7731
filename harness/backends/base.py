"""What every backend is: a place that runs a work function over a list of tasks.

A backend knows nothing of training, stores or plans (Hydra's launcher receives its task
function the same way). It declares its own options as a dataclass (`Options`), which
`--backend-option key=value` fills (`parse_options`), and is built from them.
`launch(tasks, work, context, setup)` ships `context` to each of its
workers once, calls `setup(context)` once in each worker, then `work(task, context)` for each
task, and yields `(task, value)` as tasks finish, in any order; a task that cannot finish
(its worker died too often, or `work` raised) is yielded as `(task, TaskFailed(reason))`, so
the caller records it and the other tasks go on. `isolate` (the default): the work may run a
user's code, so it runs in another process, where nothing it does (an exit, a crash, a hang,
running out of memory) ends the launch; False: the harness's own code alone, which a backend
may run in this process. `limit(task)`: the seconds a task may take (None: no limit); the work
enforces it itself, and a backend that can stops a task still running well past it, as that
task's failure. A `setup` that fails ends the whole launch
with WorkerSetupError: it would fail in every worker. `start()` connects to whatever the
backend needs before anything is written (a bad address fails there, in one line), given the
device policy the runs will train under; `close()` stops whatever is still running, and is safe
to call at any time, twice too. `remote_device(requested)` says which device the runs will find
where they run, when that is not this machine (None: this machine's devices decide).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from harness.registry import suggest

Task = TypeVar("Task")

MAX_RETRIES = 3  # reruns of a task whose worker died, before it is recorded failed
LIMIT_GRACE = 10.0  # seconds beyond twice a task's limit before its backend stops it (allowance)


class BackendError(Exception):
    """A backend that cannot start or run; the message says what, where and how to fix it."""


class BackendLost(BackendError):
    """The place the runs train went away mid-launch (a cluster stopped, its head lost): the
    runs that finished are stored, the others were not run; the command exits 3, apart from
    bad input (2) and a run that failed (1)."""


class WorkerSetupError(BackendError):
    """A worker could not prepare itself (setup raised): every worker would fail the same way."""


@dataclass(frozen=True)
class TaskFailed:
    """The outcome of a task that could not finish; `reason` is one line."""

    reason: str


class Backend(Protocol):
    name: str
    Options: type  # the dataclass of its options (--backend-option key=value)
    workers: int  # tasks that run at once, as far as the driver knows (splits batched rounds)
    threads_per_task: int  # torch threads each task may use on a CPU

    def remote_device(self, requested: str) -> str | None: ...

    def start(self, policy) -> None: ...

    def launch(
        self,
        tasks: Sequence[Task],
        work: Callable[[Task, Any], Any],
        context: Any,
        setup: Callable[[Any], None],
        *,
        isolate: bool = True,
        limit: Callable[[Task], float | None] | None = None,
    ) -> Iterator[tuple[Task, Any]]: ...

    def close(self) -> None: ...


class RunAborted(Exception):
    """The work's code ended its run with what is no exception: SystemExit (`sys.exit`),
    KeyboardInterrupt raised by the code itself, GeneratorExit."""


def guarded(work: Callable, task: Any, context: Any) -> Any:
    """`work(task, context)` in a worker process, where whatever the run's code raises is that
    task's failure: SystemExit and the like become RunAborted (an Exception the backend
    records), since a worker ignores SIGINT and any KeyboardInterrupt there is the code's own."""
    try:
        return work(task, context)
    except Exception:
        raise
    except BaseException as error:  # noqa: B036 - the run's failure, never the worker's exit
        raise RunAborted(aborted(error)) from None


def aborted(error: BaseException) -> str:
    """What a run's code did, in words, for a BaseException that is no Exception."""
    if isinstance(error, SystemExit):
        return f"the run's code called sys.exit({error.code!r})"
    if isinstance(error, KeyboardInterrupt):
        return "the run's code raised KeyboardInterrupt itself (no signal: workers ignore Ctrl-C)"
    return f"the run's code raised {first_line(error)}"


def first_line(error: BaseException, limit: int = 300) -> str:
    """`Type: first non-empty line of the message`, at most `limit` characters."""
    text = str(error)
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return f"{type(error).__name__}: {line}"[:limit] if line else type(error).__name__


def allowance(limit: float) -> float:
    """The seconds a task with a time limit of `limit` may run before its backend stops it, as
    that task's failure: twice the limit plus LIMIT_GRACE, so the work's own limit acts first."""
    return 2 * limit + LIMIT_GRACE


def cluster_device(requested: str, gpus_per_job: float) -> str | None:
    """The device a cluster backend's tasks will find, for Backend.remote_device: `auto` means
    CUDA when tasks reserve GPUs, CUDA is not looked for on this machine, and a CPU (or MPS) is
    this machine's kind (None)."""
    if requested == "auto":
        return "cuda" if gpus_per_job > 0 else None
    return requested if requested.partition(":")[0] == "cuda" else None


def check_gpu_request(device: str, gpus_per_job: float, backend: str, needed: str) -> None:
    """BackendError for a cluster backend's GPU request that does not fit the device: CUDA
    without GPUs reserved (`needed` says how to ask), GPUs reserved for CPU runs, and `cuda:N`
    that no task can see (each sees only the GPUs it reserves, numbered from 0, as the
    scheduler sets CUDA_VISIBLE_DEVICES)."""
    if device.startswith("cuda") and gpus_per_job <= 0:
        raise BackendError(f"--device {device} with --backend {backend} needs {needed}")
    if device == "cpu" and gpus_per_job > 0:
        raise BackendError("gpus_per_job with --device cpu reserves GPUs that no job uses; use --device cuda")
    index = device.partition(":")[2] if device.startswith("cuda:") else ""
    visible = max(1, math.ceil(gpus_per_job))
    if index.isdigit() and int(index) >= visible:
        raise BackendError(f"--device {device} with --backend {backend}: each task sees only the {visible} GPU(s) it "
                           f"reserves (gpus_per_job = {gpus_per_job:g}), numbered from cuda:0; use --device cuda")


def parse_options(options_class: type, given: Mapping[str, Any], backend: str):
    """A backend's options dataclass from a mapping (`--backend-option key=value`, read by the
    command line), each value checked against the field's type; BackendError in one line for an
    unknown key (with the known ones and the closest) or a value of the wrong type."""
    fields = {field.name: field for field in dataclasses.fields(options_class)}
    hints = typing.get_type_hints(options_class)
    values = {}
    for key, value in given.items():
        where = f"--backend-option {key}={value}"
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise BackendError(f"{where}: the {backend} backend has no option '{key}'{suggest(key, fields)} "
                               f"(its options: {known})")
        values[key] = _coerced(value, hints[key], where)
    return options_class(**values)


def _coerced(value: Any, hint: Any, where: str) -> Any:
    """`value` as the option's type (an int where a float is asked is a float); BackendError otherwise."""
    optional = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    kinds = [kind for kind in typing.get_args(hint) if kind is not type(None)] if optional else [hint]
    if value is None or (optional and value in ("none", "None")):
        if optional:
            return None
        raise BackendError(f"{where}: a value is needed")
    for kind in kinds:
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind is str:
            return str(value)
    names = " or ".join(getattr(kind, "__name__", str(kind)) for kind in kinds)
    raise BackendError(f"{where}: must be {names}, got {value!r}")
