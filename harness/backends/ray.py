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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.backends.base import (
    MAX_RETRIES,
    BackendError,
    TaskFailed,
    WorkerSetupError,
    first_line,
    guarded,
)

RAY_MISSING = "--backend ray needs Ray, an optional extra: pip install -e '.[ray]'"
CONNECT_TIMEOUT = 10.0  # seconds for a cluster address to answer


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
    if device.startswith("cuda") and options.gpus_per_job <= 0:
        raise BackendError(f"--device {device} with --backend ray needs gpus_per_job (--gpus-per-job, e.g. 0.25 packs "
                           "four jobs a GPU)")
    if device == "cpu" and options.gpus_per_job > 0:
        raise BackendError("gpus_per_job with --device cpu reserves GPUs that no job uses; use --device cuda")


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


class RayBackend:
    name = "ray"
    Options = RayOptions
    workers = 1  # the cluster's size is its own: tasks are not split to fit it

    def __init__(self, options: RayOptions | None = None):
        self.options = options or RayOptions()
        self.threads_per_task = max(1, int(self.options.cpus_per_job))
        self._started_here = False

    def remote_device(self, requested: str) -> str | None:
        """The cluster's devices are not this machine's: `auto` means CUDA when tasks reserve
        GPUs, and CUDA is not looked for here; a CPU (or MPS) is this machine's kind."""
        if requested == "auto":
            return "cuda" if self.options.gpus_per_job > 0 else None
        return requested if requested.partition(":")[0] == "cuda" else None

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
            return
        try:
            ray.init(address=address, include_dashboard=False, logging_level="warning", log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            where = f"--address {address}" if address else "a local Ray"
            raise BackendError(
                f"{where}: cannot connect ({first_line(error)}); start a cluster with `ray start --head`, "
                "or leave --address out to start a local Ray"
            ) from None
        self._started_here = True

    def close(self) -> None:
        if self._started_here:
            require_ray().shutdown()
            self._started_here = False

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
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
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
