"""The local backend: worker processes on this machine (loky), or this process alone.

Worker processes come from loky, joblib's process pool, which notices a worker that dies (a
`kill -9`, the OOM killer, a crash in native code) and names its exit code: the pool is
then broken, every task that was in flight is lost with it, and a new pool is started. A lost
task is a suspect; suspects are rerun one at a time, alone in the pool, so that a death can be
blamed on the task that caused it and a task that merely shared the pool with it is not
charged. A task whose worker died more than `max_retries` times, the last time alone, is
yielded as TaskFailed with the exit codes; every other task goes on.

Workers ignore SIGINT and SIGTERM (sent to the whole process group by Ctrl-C, `timeout` or a
CI cancel, they are the driver's to handle; it stops the workers) and, on Linux, die with the
driver, so a `kill -9` of `harness run` leaves no orphans training on.
"""

from __future__ import annotations

import concurrent.futures
import os
import pickle
import re
import signal
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from harness.backends.base import MAX_RETRIES, TaskFailed, WorkerSetupError, first_line

BROKEN_POOL_TIMEOUT = 60.0  # seconds to wait for the other tasks in flight of a broken pool


@dataclass(frozen=True)
class LocalOptions:
    """The local backend's options (--backend-option key=value); its worker processes are the
    device policy's (--workers)."""

    max_retries: int = MAX_RETRIES  # reruns of a task whose worker died, before it is recorded failed


class LocalBackend:
    """Worker processes with one torch thread each, as many as the device policy's workers;
    one runs every task in this process."""

    name = "local"
    Options = LocalOptions
    threads_per_task = 1

    def __init__(self, options: LocalOptions | None = None, workers: int = 1):
        self.options = options or LocalOptions()
        self.workers = max(1, workers)
        self.max_retries = self.options.max_retries
        self._executor = None

    def remote_device(self, requested: str) -> str | None:
        """Its workers are this machine's processes: this machine's devices decide."""
        return None

    def start(self, policy) -> None:
        """Nothing to connect to: as many workers as the policy's."""
        self.workers = max(1, policy.workers)

    def close(self) -> None:
        self._stop_pool()

    def launch(self, tasks: Sequence, work: Callable, context: Any, setup: Callable) -> Iterator[tuple[Any, Any]]:
        if self.workers <= 1 or len(tasks) <= 1:
            yield from self._in_process(tasks, work, context, setup)
        else:
            yield from self._pooled(tasks, work, context, setup, min(self.workers, len(tasks)))

    # ----------------------------------------------------------------------- this process

    @staticmethod
    def _in_process(tasks, work, context, setup):
        try:
            setup(context)
        except Exception as error:
            raise WorkerSetupError(first_line(error)) from None
        for task in tasks:
            try:
                value = work(task, context)
            except Exception as error:  # recorded; the other tasks go on
                value = TaskFailed(first_line(error))
            yield task, value

    # ----------------------------------------------------------------------- worker processes

    def _start_pool(self, workers: int, context, setup) -> None:
        import cloudpickle  # loky's own pickler for functions and classes
        from loky import ProcessPoolExecutor

        quiet_resource_tracker()
        # The context goes over as bytes: a child reads bytes before it imports anything, so
        # the next child is spawned at once and all import torch side by side. Sent as objects,
        # each child had to import torch to unpickle them before the pool spawned the next one
        # (loky writes a child's start-up data while the child reads it): two workers took
        # 5 s to start instead of 2.7 on a 2-core machine.
        payload = cloudpickle.dumps(context)
        self._executor = ProcessPoolExecutor(
            max_workers=workers, initializer=_start_worker, initargs=(setup, payload, os.getpid())
        )

    def _stop_pool(self) -> None:
        """Kill the workers (they may be mid-task) without waiting for loky's manager thread:
        if it fails, the workers still die with this process (see _die_with_parent)."""
        if self._executor is not None:
            executor, self._executor = self._executor, None
            executor.shutdown(wait=False, kill_workers=True)

    def _pooled(self, tasks, work, context, setup, workers: int):
        from loky import BrokenProcessPool

        waiting = deque(range(len(tasks)))  # positions in `tasks` not yet run
        suspects: deque[int] = deque()  # lost with a broken pool: rerun alone
        deaths: Counter[int] = Counter()
        in_flight: dict[concurrent.futures.Future, int] = {}

        def submit(queue: deque, limit: int) -> None:
            while queue and len(in_flight) < limit:
                position = queue.popleft()
                try:
                    in_flight[self._executor.submit(_call, work, tasks[position])] = position
                except BrokenProcessPool:  # a worker died between tasks: its pool is of no use
                    queue.appendleft(position)
                    return

        try:
            while waiting or suspects or in_flight:
                if self._executor is None:
                    self._start_pool(workers, context, setup)
                if suspects:
                    submit(suspects, 1)  # alone, once the pool is empty
                else:
                    submit(waiting, workers)
                if not in_flight:  # nothing could be submitted: the pool broke while idle
                    self._stop_pool()
                    continue
                done, _ = concurrent.futures.wait(in_flight, return_when=concurrent.futures.FIRST_COMPLETED)
                outcomes = {future: _outcome(future) for future in done}
                broken = next((o for o in outcomes.values() if isinstance(o, BrokenProcessPool)), None)
                if broken is not None:
                    # every other task in flight is lost too, unless it finished just before
                    rest, _ = concurrent.futures.wait(in_flight, timeout=BROKEN_POOL_TIMEOUT)
                    outcomes = {future: _outcome(future) if future in rest else broken for future in in_flight}
                lost = []
                for future, outcome in outcomes.items():
                    position = in_flight.pop(future)
                    if isinstance(outcome, BrokenProcessPool):
                        lost.append(position)
                    else:
                        yield tasks[position], outcome
                if broken is None:
                    continue
                self._stop_pool()
                for position in lost:
                    deaths[position] += 1
                    if len(lost) == 1 and deaths[position] > self.max_retries:
                        reason = f"its worker process died {deaths[position]} times ({_exit_codes(broken)})"
                        yield tasks[position], TaskFailed(reason)
                    else:
                        suspects.append(position)
        finally:
            for future in in_flight:
                future.cancel()
            self._stop_pool()


def _outcome(future: concurrent.futures.Future):
    """The future's value; TaskFailed for an exception of the work; the BrokenProcessPool
    itself when the worker was lost; WorkerSetupError is raised (it ends the launch)."""
    from loky import BrokenProcessPool

    try:
        return future.result()
    except WorkerSetupError:
        raise
    except BrokenProcessPool as error:
        return error
    except Exception as error:
        return TaskFailed(first_line(error))


def _exit_codes(error: BaseException) -> str:
    match = re.search(r"exit codes of the workers are (\{[^}]*\})", str(error))
    return f"exit codes {match.group(1)}" if match else first_line(error)


# --------------------------------------------------------------------------- in each worker

_CONTEXT: Any = None
_SETUP_ERROR: str | None = None


def _start_worker(setup: Callable, payload: bytes, driver: int) -> None:
    """loky's initializer: `payload` is the pickled context. It never raises: a failure is
    kept and reported by the first task, so the driver ends the launch with one line instead
    of a pool that respawns and fails."""
    global _CONTEXT, _SETUP_ERROR
    # Ctrl-C, `timeout` and CI cancels signal the whole process group: the driver alone
    # handles them, and stops its workers (SIGKILL) after storing what has finished
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent(driver)
    try:
        context = pickle.loads(payload)
        setup(context)
        _CONTEXT = context
    except BaseException as error:  # noqa: B036 - reported to the driver, never swallowed
        _SETUP_ERROR = first_line(error)


def _call(work: Callable, task: Any):
    if _SETUP_ERROR is not None:
        raise WorkerSetupError(_SETUP_ERROR)
    return work(task, _CONTEXT)


def _die_with_parent(driver: int) -> None:
    """On Linux, ask the kernel to SIGKILL this worker when the driver process dies."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != driver:  # the driver died before the request was made
        os._exit(1)


# loky's resource tracker, a helper process the pool starts, inherits this environment. When a
# signal to the process group kills workers that hold semaphores, it removes them at shutdown and
# warns about each ("resource_tracker: There appear to be 1 leaked semlock objects to clean up")
# on stderr: nothing is lost, and the warning would break the one-line report of the signal.
TRACKER_WARNINGS = "ignore:resource_tracker:UserWarning"


def quiet_resource_tracker() -> None:
    """Silence the resource tracker's clean-up warnings in the processes started from here."""
    current = os.environ.get("PYTHONWARNINGS", "")
    if TRACKER_WARNINGS not in current.split(","):
        os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [current, TRACKER_WARNINGS]))
