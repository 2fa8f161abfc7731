"""What every backend is: a place that runs a work function over a list of tasks.

A backend knows nothing of training, stores or plans (Hydra's launcher receives its task
function the same way). `launch(tasks, work, context, setup)` ships `context` to each of its
workers once, calls `setup(context)` once in each worker, then `work(task, context)` for each
task, and yields `(task, value)` as tasks finish, in any order; a task that cannot finish
(its worker died too often, or `work` raised) is yielded as `(task, TaskFailed(reason))`, so
the caller records it and the other tasks go on. A `setup` that fails ends the whole launch
with WorkerSetupError: it would fail in every worker. `start()` connects to whatever the
backend needs before anything is written (a bad address fails there, in one line);
`close()` stops whatever is still running, and is safe to call at any time, twice too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

Task = TypeVar("Task")

MAX_RETRIES = 3  # reruns of a task whose worker died, before it is recorded failed


class BackendError(Exception):
    """A backend that cannot start or run; the message says what, where and how to fix it."""


class WorkerSetupError(BackendError):
    """A worker could not prepare itself (setup raised): every worker would fail the same way."""


@dataclass(frozen=True)
class TaskFailed:
    """The outcome of a task that could not finish; `reason` is one line."""

    reason: str


class Backend(Protocol):
    name: str
    workers: int  # tasks that run at once, as far as the driver knows (splits batched rounds)
    threads_per_task: int  # torch threads each task may use on a CPU

    def start(self) -> None: ...

    def launch(
        self,
        tasks: Sequence[Task],
        work: Callable[[Task, Any], Any],
        context: Any,
        setup: Callable[[Any], None],
    ) -> Iterator[tuple[Task, Any]]: ...

    def close(self) -> None: ...


def first_line(error: BaseException, limit: int = 300) -> str:
    """`Type: first non-empty line of the message`, at most `limit` characters."""
    text = str(error)
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return f"{type(error).__name__}: {line}"[:limit] if line else type(error).__name__
