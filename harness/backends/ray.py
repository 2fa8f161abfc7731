"""The Ray backend: each task is a Ray task, on a local Ray or a cluster (`pip install '.[ray]'`).

The context (MNIST, downsampled) reaches the cluster once, as one object; each worker process
reads it and runs `setup` on its first task, and keeps both for its next tasks. Ray reruns a
task whose worker died (`max_retries`), then it is yielded as TaskFailed; a task that raises is
yielded as TaskFailed with its reason, not retried. Ctrl-C, SIGTERM or any exception in the
driver cancels what is still outstanding.
"""

from __future__ import annotations

import os
import pickle
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.backends.base import (
    MAX_RETRIES,
    BackendError,
    BackendLost,
    TaskFailed,
    WorkerSetupError,
    check_gpu_request,
    cluster_device,
    first_line,
    guarded,
)

RAY_MISSING = "--backend ray needs Ray, an optional extra: pip install -e '.[ray]'"
CONNECT_TIMEOUT = 10.0  # seconds for a cluster address to answer
HEARTBEAT = 2.0  # seconds between checks that the cluster still answers, while tasks are out
LOST_AFTER = 3  # checks in a row without an answer: the cluster is gone (Ray's own driver ends after 60 s)


@dataclass(frozen=True)
class RayOptions:
    """address: None starts a local Ray sized to this machine, "auto" joins a running cluster,
    or a cluster address (host:port). cpus_per_job / gpus_per_job: the resources of each task
    (fractional GPUs pack several small tasks onto one GPU)."""

    address: str | None = None
    cpus_per_job: float = 1.0
    gpus_per_job: float = 0.0
    max_retries: int = MAX_RETRIES


def require_ray():
    try:
        import ray
    except ImportError:
        raise BackendError(RAY_MISSING) from None
    return ray


def check(options: RayOptions, device: str) -> None:
    """BackendError for options that cannot work, before anything starts."""
    require_ray()
    if options.cpus_per_job <= 0 or options.gpus_per_job < 0:
        raise BackendError("cpus_per_job must be greater than 0 and gpus_per_job not negative")
    check_gpu_request(device, options.gpus_per_job, "ray",
                      "gpus_per_job (--gpus-per-job, e.g. 0.25 packs four jobs a GPU)")


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + empty SETTINGS
HTTP2_SETTINGS = 4


def _check_reachable(address: str) -> None:
    """A `host:port` where no Ray head answers within CONNECT_TIMEOUT fails now: `ray.init`
    itself waits without end on an address that accepts connections but is not Ray's. The
    head's GCS is a gRPC server, so it answers an HTTP/2 connection preface with a SETTINGS
    frame; anything else (nothing listening, silence, another protocol) is refused here."""
    host, _, port = address.rpartition(":")
    if address.startswith("ray://") or not host or not port.isdigit():
        return  # ray.init validates other forms itself
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT) as connection:
            connection.sendall(HTTP2_PREFACE)
            header = connection.recv(9)  # length (3), type (1), flags (1), stream (4)
    except OSError as error:
        raise BackendError(
            f"--address {address}: no Ray cluster answers there ({error.strerror or error}); "
            "start one with `ray start --head` or check the address"
        ) from None
    if len(header) < 4 or header[3] != HTTP2_SETTINGS:
        raise BackendError(
            f"--address {address}: something listens there but it is not a Ray head (no gRPC answer "
            f"within {CONNECT_TIMEOUT:.0f} s); check the address and port (the head's, 6379 by default)"
        )


def _local_cluster_address() -> str:
    """What `--address auto` means, read the way Ray documents it and then checked like any
    address (within CONNECT_TIMEOUT): RAY_ADDRESS, else the cluster that the last `ray start`
    on this machine wrote to <temp>/ray/ray_current_cluster. Ray's own `auto` also adopts any
    Ray process it finds on the machine (another user's included) and retries a dead one for
    minutes; here no such cluster is one line instead."""
    import tempfile

    given = os.environ.get("RAY_ADDRESS", "").strip()
    if given and given != "auto":
        return given
    record = Path(tempfile.gettempdir(), "ray", "ray_current_cluster")
    try:
        address = record.read_text().strip()
    except OSError:
        address = ""
    if not address:
        raise BackendError("--address auto: no Ray cluster was started on this machine (no RAY_ADDRESS, nothing in "
                           f"{record}); start one with `ray start --head`, or leave --address out to start a local Ray")
    return address


class AsideRayThreads:
    """A console stream (sys.stdout or sys.stderr) whose writes from Ray's own background
    threads (named "ray_...": the driver's error listener prints a lost raylet's log tail, with
    terminal colours, and a worker's death at every retry) go to a file instead, as does
    everything while `everything` is set (ray.shutdown flushes the messages Ray held back to
    deduplicate them, from the main thread); every other write goes to the stream."""

    def __init__(self, stream, aside):
        self._stream, self._aside = stream, aside
        self.everything = False

    def write(self, text):
        if self.everything or threading.current_thread().name.startswith("ray_"):
            self._aside.write(text)
            self._aside.flush()
            return len(text)
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def ray_messages_file() -> Path:
    """Where the Ray backend keeps Ray's own console messages (AsideRayThreads)."""
    import tempfile

    return Path(tempfile.gettempdir(), "ray", "harness-driver-messages.log")


class RayBackend:
    name = "ray"
    Options = RayOptions
    workers = 1  # the cluster's size is its own: tasks are not split to fit it

    def __init__(self, options: RayOptions | None = None):
        self.options = options or RayOptions()
        self.threads_per_task = max(1, int(self.options.cpus_per_job))
        self._started_here = False
        self._consoles: tuple | None = None  # sys.stdout and sys.stderr as they were, while Ray's are set aside

    def remote_device(self, requested: str) -> str | None:
        """The cluster's devices are not this machine's: `auto` means CUDA when tasks reserve
        GPUs, and CUDA is not looked for here; a CPU (or MPS) is this machine's kind."""
        return cluster_device(requested, self.options.gpus_per_job)

    def start(self, policy=None) -> None:
        """Check the options against the policy's device, then connect (or start a local Ray)."""
        if policy is not None:
            check(self.options, policy.device)
        ray = require_ray()
        address = self.options.address
        if address == "auto":
            address = _local_cluster_address()
        if address:
            _check_reachable(address)
        if ray.is_initialized():
            self._check_fits(ray)
            return
        import signal

        main = threading.current_thread() is threading.main_thread()
        handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)} if main else {}
        try:
            ray.init(address=address, include_dashboard=False, logging_level="error", log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            where = f"--address {address}" if address else "a local Ray"
            raise BackendError(
                f"{where}: cannot connect ({first_line(error)}); start a cluster with `ray start --head`, "
                "or leave --address out to start a local Ray"
            ) from None
        finally:
            # ray.init installs its own SIGTERM handler (a C++ abort): the harness's (one line, exit
            # 143, finished runs kept) is the one a SIGTERM must reach
            for number, handler in handlers.items():
                if handler is not None:
                    signal.signal(number, handler)
        self._started_here = True
        self._set_ray_messages_aside()
        self._check_fits(ray)

    def _set_ray_messages_aside(self) -> None:
        path = ray_messages_file()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            aside = path.open("a", encoding="utf-8")
        except OSError:
            return  # nowhere to put them: they stay on the console
        self._consoles = (sys.stdout, sys.stderr, aside)
        sys.stdout, sys.stderr = AsideRayThreads(sys.stdout, aside), AsideRayThreads(sys.stderr, aside)

    def _check_fits(self, ray) -> None:
        """A task no node can hold would wait forever: refused now, with the largest node's."""
        nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
        for option, resource, asked in (("cpus_per_job", "CPU", self.options.cpus_per_job),
                                        ("gpus_per_job", "GPU", self.options.gpus_per_job)):
            largest = max((node.get(resource, 0.0) for node in nodes), default=0.0)
            if asked > largest and not largest:
                raise BackendError(f"{option} = {asked:g}: the Ray cluster has no {resource} ({len(nodes)} node(s)), so "
                                   "the runs would wait forever; use --device cpu, or add a node that has one")
            if asked > largest:
                raise BackendError(
                    f"{option} = {asked:g}: no node of the Ray cluster has {asked:g} {resource}s (the largest has "
                    f"{largest:g}; {len(nodes)} node(s)), so the runs would wait forever; ask for at most {largest:g}, "
                    "or add a node that has them")

    def _cluster_answers(self, ray) -> bool:
        """Whether the cluster's control service (GCS) still accepts a connection."""
        try:
            gcs = ray.get_runtime_context().gcs_address
        except Exception:  # noqa: BLE001 - a driver that lost its cluster may fail in any way here
            return False
        host, _, port = str(gcs).rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=HEARTBEAT):
                return True
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        if self._started_here:
            for stream in (sys.stdout, sys.stderr):
                if isinstance(stream, AsideRayThreads):
                    stream.everything = True
            require_ray().shutdown()
            self._started_here = False
        if self._consoles is not None:
            sys.stdout, sys.stderr, aside = self._consoles
            self._consoles = None
            aside.close()

    def launch(self, tasks: Sequence, work: Callable, context: Any, setup: Callable, *, isolate: bool = True,
               limit: Callable[[Any], float | None] | None = None) -> Iterator[tuple[Any, Any]]:
        """Every task runs in a Ray worker (`isolate` holds by construction); the work enforces
        `limit` itself."""
        import cloudpickle  # Ray's own pickler of functions and classes

        ray = require_ray()
        self.start()
        box = [ray.put(context)]  # in a list, so that Ray does not fetch it for every task
        remote = ray.remote(_body).options(
            num_cpus=self.options.cpus_per_job,
            num_gpus=self.options.gpus_per_job,
            max_retries=self.options.max_retries,
            retry_exceptions=False,  # a task that raises has a reason worth recording, not retrying
        )
        # each task as bytes, read after `setup` in the worker: a task may hold instances of a
        # plugin's classes (a task's settings), which only exist once setup imported the plugins
        pending = {remote.remote(work, setup, box, cloudpickle.dumps(task)): task for task in tasks}
        silent = 0
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=HEARTBEAT)
                if not ready:
                    silent = 0 if self._cluster_answers(ray) else silent + 1
                    if silent >= LOST_AFTER:
                        raise BackendLost(
                            f"the Ray cluster stopped answering ({len(pending)} tasks still out; the runs that finished "
                            "are stored): restart it (`ray start --head`) and run the same command again to resume "
                            f"(Ray's own messages: {ray_messages_file()})")
                    continue
                task = pending.pop(ready[0])
                try:
                    value = ray.get(ready[0])
                except ray.exceptions.RayTaskError as error:
                    cause = getattr(error, "cause", None)
                    if isinstance(cause, WorkerSetupError):
                        raise WorkerSetupError(str(cause)) from None
                    value = TaskFailed(first_line(cause or error))
                except ray.exceptions.RayError as error:  # the worker was lost past its retries
                    value = TaskFailed(first_line(error))
                yield task, value
        finally:
            if not isinstance(sys.exc_info()[1], BackendLost):  # a lost cluster has nothing left to cancel
                for ref in pending:
                    ray.cancel(ref, force=True)


_PREPARED: dict[str, Any] = {}  # in each worker process: context object id -> its prepared context


def _body(work: Callable, setup: Callable, box: list, task: bytes):
    """One Ray task: the context read and set up on this worker's first task, then the work."""
    import ray

    key = box[0].hex()
    if key not in _PREPARED:
        context = ray.get(box[0])
        try:
            setup(context)
        except Exception as error:
            raise WorkerSetupError(first_line(error)) from None
        _PREPARED.clear()
        _PREPARED[key] = context
    return guarded(work, pickle.loads(task), _PREPARED[key])
