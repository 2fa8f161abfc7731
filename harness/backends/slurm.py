"""The Slurm backend: tasks as Slurm job arrays, through submitit (`pip install '.[slurm]'`).

From a login node, the tasks go out as job arrays (`sbatch`), several tasks per array element;
inside an allocation (`salloc`, or an sbatch script that runs the harness), each element is a
job step (`srun`) of the allocation instead. The context (MNIST, downsampled, and the user's
sources) is written once to the launch's folder, which compute nodes must see (a shared
filesystem: the default is `./harness-slurm` under the current folder); each element reads it,
runs `setup`, then its tasks one by one, writing each task's outcome to the folder as it ends,
so the driver stores every run as it finishes, and a job that dies keeps what it finished.

A job that ends without finishing its tasks (killed, pre-empted, out of memory, past Slurm's
time limit, its node lost) is resubmitted: the task it was running, alone, as that task's retry
(`max_retries`, then it is yielded failed with Slurm's state); the tasks it had not started,
together, without counting against them. A task that raises is failed with its reason, never
retried. Ctrl-C, SIGTERM or any exception in the driver cancels what it submitted (`scancel`).
"""

from __future__ import annotations

import math
import os
import pickle
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
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
    allowance,
    check_gpu_request,
    cluster_device,
    first_line,
    guarded,
)
from harness.registry import suggest

SUBMITIT_MISSING = "--backend slurm needs submitit, an optional extra: pip install -e '.[slurm]'"
COMMAND_TIMEOUT = 30.0  # seconds for a Slurm command (sinfo, sbatch, scancel) to answer
RESULT_POLL = 0.5  # seconds between looks at the launch's folder for finished tasks
LOST_AFTER = 3  # state checks in a row that Slurm does not answer: the cluster is gone
SETUP_ALLOWANCE_S = 600  # a job's time limit, beyond its tasks': starting Python, torch, the context
DEFAULT_TIME_MIN = 60  # a job's time limit when a task has no run_timeout
LOCAL_TIME_MIN = 7 * 24 * 60  # a job step's or local job's: the allocation's limit is the one that counts
# Slurm states in which a job may still finish its tasks; any other state is an end
UNDERWAY = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
            "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "STOPPED", "READY", "UNKNOWN"}
JOB_NAME = "harness-runs"  # what squeue shows of the jobs and steps
WATCHDOG_EXIT = 70  # a job's exit code when its watchdog stopped a task past its limit


@dataclass(frozen=True)
class SlurmOptions:
    """partition, account, qos: as sbatch's. time_min: each job's time limit in minutes (None:
    from the runs' run_timeout, else 60). cpus_per_job / gpus_per_job / mem_gb: what each job
    (array element or job step) asks for. tasks_per_job: tasks run one after another in one job
    (None: spread over array_parallelism jobs). array_parallelism: jobs of an array running at
    once. sbatch: more sbatch options, as on its command line ("--constraint=a100
    --mail-type=END"). folder: where the launch's context, results and job logs go, seen by
    every node. allocation: "auto" runs job steps inside an allocation when SLURM_JOB_ID is
    set, "yes"/"no" force it. cluster: "slurm", or "local" for submitit's local executor (no
    Slurm: tests, a laptop). poll_s: seconds between checks of the jobs' states."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_min: int | None = None
    cpus_per_job: float = 1.0
    gpus_per_job: float = 0.0
    mem_gb: float | None = None
    tasks_per_job: int | None = None
    array_parallelism: int = 32
    sbatch: str | None = None
    folder: str = "harness-slurm"
    allocation: str = "auto"
    cluster: str = "slurm"
    max_retries: int = MAX_RETRIES
    poll_s: float = 10.0


def require_submitit():
    try:
        import submitit
    except ImportError:
        raise BackendError(SUBMITIT_MISSING) from None
    return submitit


def check(options: SlurmOptions, device: str | None) -> None:
    """BackendError for options that cannot work, before anything starts."""
    for name in ("cpus_per_job", "gpus_per_job"):
        value = getattr(options, name)
        if value < 0 or value != int(value):
            raise BackendError(f"{name} = {value:g}: Slurm allocates whole CPUs and GPUs; give a whole number "
                               "(several small runs share a GPU through --batch-rounds or --pack)")
    if options.cpus_per_job < 1:
        raise BackendError("cpus_per_job must be at least 1")
    for name in ("array_parallelism", "tasks_per_job", "time_min"):
        value = getattr(options, name)
        if value is not None and value < 1:
            raise BackendError(f"{name} = {value}: must be at least 1")
    if options.mem_gb is not None and options.mem_gb <= 0:
        raise BackendError(f"mem_gb = {options.mem_gb:g}: must be greater than 0")
    if options.max_retries < 0 or options.poll_s <= 0:
        raise BackendError("max_retries must not be negative, poll_s must be greater than 0")
    for name, value, known in (("allocation", options.allocation, ("auto", "yes", "no")),
                               ("cluster", options.cluster, ("slurm", "local"))):
        if value not in known:
            raise BackendError(f"{name} = {value!r}: one of {', '.join(known)}{suggest(value, known)}")
    extra_sbatch(options.sbatch)
    if device is None:
        return
    check_gpu_request(device, options.gpus_per_job, "slurm", "a GPU per job (--gpus-per-job 1)")


def extra_sbatch(text: str | None) -> dict[str, Any]:
    """`--key=value --flag` (sbatch's own spelling) as a mapping with underscores for dashes,
    as submitit's additional_parameters and sbatch_options name them."""
    extra: dict[str, Any] = {}
    for word in shlex.split(text or ""):
        key, equals, value = word.partition("=")
        if not key.startswith("--") or len(key) < 3:
            raise BackendError(f"--backend-option sbatch={text!r}: '{word}' is not an sbatch option; write them as on "
                               "sbatch's command line, e.g. sbatch='--constraint=a100 --mail-type=END'")
        extra[key[2:].replace("-", "_")] = value if equals else True
    return extra


def slurm_command(*words: str, what: str) -> str:
    """A Slurm client command's output; BackendError in one line when it is missing, fails or hangs."""
    try:
        done = subprocess.run(list(words), capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    except FileNotFoundError:
        raise BackendError(f"{what}: `{words[0]}` is not on PATH, so this is no Slurm login node; run on one, or "
                           "use --backend local (or --backend-option cluster=local)") from None
    except subprocess.TimeoutExpired:
        raise BackendError(f"{what}: `{' '.join(words)}` did not answer within {COMMAND_TIMEOUT:.0f} s; is the Slurm "
                           "controller up? (`scontrol ping`)") from None
    if done.returncode != 0:
        said = slurm_error(done.stderr or done.stdout)
        raise BackendError(f"{what}: `{' '.join(words)}` failed: {said}")
    return done.stdout


def slurm_error(text: str) -> str:
    """The line of a Slurm command's output that says what went wrong."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    wanted = [line for line in lines if "error" in line.lower()] or lines
    return (wanted[-1] if wanted else "no message")[:300]


@dataclass(frozen=True)
class NodeKind:
    cpus: int
    memory_mb: int
    gpus: int


def node_kinds(partition: str | None) -> tuple[dict[str, list[NodeKind]], str | None]:
    """Each partition's kinds of node, read from sinfo, and the default partition (the one sinfo
    marks '*'); BackendError when sinfo fails or knows no such partition."""
    table = slurm_command("sinfo", "-h", "-o", "%P|%c|%m|%G", what="--backend slurm")
    kinds: dict[str, list[NodeKind]] = {}
    default = None
    for line in table.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 4:
            continue
        name, cpus, memory, gres = fields
        if name.endswith("*"):
            name = default = name.rstrip("*")
        kinds.setdefault(name, []).append(NodeKind(_leading_int(cpus), _leading_int(memory), _gpus_in(gres)))
    if partition is not None and partition not in kinds:
        raise BackendError(f"partition {partition!r} is not one of this cluster's ({', '.join(kinds) or 'none'})"
                           f"{suggest(partition, kinds)}; see `sinfo`")
    return kinds, default


def _leading_int(text: str) -> int:
    digits = ""
    for char in text.strip():
        if not char.isdigit():
            break
        digits += char
    return int(digits or 0)


def _gpus_in(gres: str) -> int:
    """The GPUs of a node's generic resources, e.g. `gpu:a100:4(S:0-1),shard:8` -> 4."""
    total = 0
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == "gpu" and parts[-1].isdigit():
            total += int(parts[-1])
    return total


def check_fits(options: SlurmOptions) -> None:
    """A job no node of the partition can hold would wait forever: refused now, with the largest."""
    kinds, default = node_kinds(options.partition)
    partition = options.partition or default
    nodes = kinds.get(partition or "", [])
    if not nodes:
        return  # no default partition: sbatch --test-only says what the cluster makes of it
    largest = NodeKind(max(node.cpus for node in nodes), max(node.memory_mb for node in nodes),
                       max(node.gpus for node in nodes))
    for option, asked, has, shown in (
        ("cpus_per_job", options.cpus_per_job, largest.cpus, f"{largest.cpus} CPUs"),
        ("gpus_per_job", options.gpus_per_job, largest.gpus, f"{largest.gpus} GPUs"),
        ("mem_gb", (options.mem_gb or 0) * 1024, largest.memory_mb, f"{largest.memory_mb / 1024:.1f} GB of memory"),
    ):
        if asked > has:
            raise BackendError(f"{option} = {getattr(options, option):g}: no node of partition {partition} has that "
                               f"much (the largest has {shown}), so the jobs would never start; ask for less, or "
                               "choose another partition (--backend-option partition=...)")


def sbatch_options(options: SlurmOptions, minutes: int) -> dict[str, Any]:
    """What each job asks of sbatch, by sbatch's option names (underscores for dashes), the
    `sbatch` option's extra ones included."""
    asked: dict[str, Any] = {"job_name": JOB_NAME, "time": minutes, "cpus_per_task": int(options.cpus_per_job)}
    if options.gpus_per_job:
        asked["gpus_per_task"] = int(options.gpus_per_job)
    if options.mem_gb is not None:
        asked["mem"] = _megabytes(options.mem_gb)
    for key in ("partition", "account", "qos"):
        if getattr(options, key) is not None:
            asked[key] = getattr(options, key)
    return {**asked, **extra_sbatch(options.sbatch)}


def check_submission(options: SlurmOptions) -> None:
    """`sbatch --test-only` of a job as the launch will ask for it: whatever the cluster would
    refuse (a feature, an account, a time above the partition's) is refused now, before any store."""
    minutes = options.time_min or DEFAULT_TIME_MIN
    flags = [f"--{key.replace('_', '-')}" if value is True else f"--{key.replace('_', '-')}={value}"
             for key, value in sbatch_options(options, minutes).items()]
    try:
        slurm_command("sbatch", "--test-only", *flags, "--wrap=true", what="--backend slurm")
    except BackendError as error:
        said = str(error).rpartition("failed: ")[2]
        raise BackendError(f"Slurm would refuse the jobs: {said} (asked: {' '.join(flags)}; see `sinfo` and "
                           "`scontrol show partition` for what the cluster offers)") from None


class SlurmBackend:
    name = "slurm"
    Options = SlurmOptions

    def __init__(self, options: SlurmOptions | None = None):
        self.options = options or SlurmOptions()
        check(self.options, None)
        self.workers = self.options.array_parallelism
        self.threads_per_task = int(self.options.cpus_per_job)
        self._started = False
        self._inside = False
        self._cancel: Callable[[], None] = _nothing

    def remote_device(self, requested: str) -> str | None:
        """The jobs' devices are the cluster's: `auto` means CUDA when jobs ask for GPUs."""
        return cluster_device(requested, self.options.gpus_per_job)

    def start(self, policy=None) -> None:
        """Check the options against the policy's device and against the cluster's nodes."""
        check(self.options, getattr(policy, "device", None))
        require_submitit()
        if self.options.cluster == "local":
            self.workers = min(self.options.array_parallelism, max(1, (os.cpu_count() or 1) // int(self.options.cpus_per_job)))
            self._started = True
            return
        self._inside = self.options.allocation == "yes" or (
            self.options.allocation == "auto" and bool(os.environ.get("SLURM_JOB_ID")))
        if self._inside:
            if not os.environ.get("SLURM_JOB_ID"):
                raise BackendError("allocation = yes: no allocation here (no SLURM_JOB_ID); start one with "
                                   "`salloc`, or leave allocation out to submit job arrays")
            slurm_command("srun", "--version", what="--backend slurm inside an allocation")
            self.workers = min(self.options.array_parallelism, _allocation_slots(self.options))
        else:
            check_fits(self.options)
            check_submission(self.options)
        self._started = True

    def close(self) -> None:
        self._cancel()
        self._cancel = _nothing

    def launch(self, tasks: Sequence, work: Callable, context: Any, setup: Callable, *, isolate: bool = True,
               limit: Callable[[Any], float | None] | None = None) -> Iterator[tuple[Any, Any]]:
        """Every task runs in a Slurm job (`isolate` holds by construction); the work enforces
        `limit` itself, and a job's watchdog ends a task still running well past it."""
        import cloudpickle

        if not self._started:
            self.start()
        if not tasks:
            return
        launch = _LaunchFolder.create(Path(self.options.folder))
        launch.write("context.pkl", cloudpickle.dumps(context))
        launch.write("tasks.pkl", cloudpickle.dumps(list(tasks)))
        limits = [limit(task) if limit else None for task in tasks]
        submitter = _Submitter(self.options, launch, work, setup, limits, self._inside)
        self._cancel = submitter.cancel_all
        waiting = set(range(len(tasks)))
        tries: Counter[int] = Counter()
        kept_logs = False
        try:
            submitter.submit(_spread(sorted(waiting), self.options.tasks_per_job, self.workers))
            while waiting:
                for index in launch.finished(waiting):
                    waiting.discard(index)
                    yield tasks[index], launch.outcome(index)
                problem = launch.setup_error()
                if problem is not None:
                    raise WorkerSetupError(problem)
                again: list[list[int]] = []
                for job, chunk, state in submitter.ended():
                    left = [index for index in chunk if index in waiting and not launch.has_outcome(index)]
                    if not left:
                        continue
                    kept_logs = True
                    started = [index for index in left if launch.started(index)]
                    # the task a job was running when it died is the suspect, retried alone; a job
                    # that died before any task began blames them all, and retries them together
                    blamed = started or left
                    for index in blamed:
                        tries[index] += 1
                        if tries[index] > self.options.max_retries:
                            waiting.discard(index)
                            yield tasks[index], TaskFailed(
                                f"{submitter.ending(job, state)}, {tries[index]} times in all (log: {job.paths.stderr})")
                    if started:
                        again += [[index] for index in started if index in waiting]
                    again += _spread([index for index in left if index in waiting and index not in started],
                                     None, 1)
                if again:
                    submitter.submit(again)
                if waiting:
                    time.sleep(RESULT_POLL)
        finally:
            submitter.cancel_all(unfinished=waiting)  # a job whose tasks all ended may still be exiting: left be
            self._cancel = _nothing
            launch.tidy(keep_logs=kept_logs or bool(waiting))


def _nothing() -> None:
    return None


def _spread(indices: list[int], per_job: int | None, jobs: int) -> list[list[int]]:
    """The tasks split into consecutive chunks: `per_job` each, else as even as `jobs` chunks allow."""
    if not indices:
        return []
    size = per_job or max(1, math.ceil(len(indices) / jobs))
    return [indices[start:start + size] for start in range(0, len(indices), size)]


def _allocation_slots(options: SlurmOptions) -> int:
    """How many job steps of `options`' size the allocation holds at once (at least one), from
    the CPUs Slurm gave it (SLURM_JOB_CPUS_PER_NODE, e.g. "4(x2),2") and its GPUs where known."""
    nodes = int(os.environ.get("SLURM_JOB_NUM_NODES") or os.environ.get("SLURM_NNODES") or 1)
    cpus = 0
    for group in os.environ.get("SLURM_JOB_CPUS_PER_NODE", "").split(","):
        count, _, times = group.partition("(x")
        cpus += _leading_int(count) * (_leading_int(times) if times else 1)
    cpus = cpus or _leading_int(os.environ.get("SLURM_CPUS_ON_NODE", "1")) * nodes
    slots = max(1, cpus // int(options.cpus_per_job))
    gpus = _leading_int(os.environ.get("SLURM_GPUS_ON_NODE", "0")) * nodes
    if options.gpus_per_job and gpus:
        slots = min(slots, max(1, gpus // int(options.gpus_per_job)))
    return slots


class _LaunchFolder:
    """One launch's folder: context.pkl and tasks.pkl from the driver; for each task, a
    `started/<i>` marker and then `outcomes/<i>.pkl` from the job that ran it; `setup-error`
    when a job could not prepare itself; `jobs/`, submitit's pickles and logs."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def create(cls, root: Path) -> _LaunchFolder:
        path = root.resolve() / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        try:
            for part in ("outcomes", "started", "jobs"):
                (path / part).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise BackendError(f"--backend-option folder={root}: cannot create {path} ({error.strerror or error}); "
                               "give a folder on a filesystem the compute nodes share") from None
        return cls(path)

    def write(self, name: str, data: bytes) -> None:
        _write_atomically(self.path / name, data)

    def finished(self, waiting: set[int]) -> list[int]:
        done = []
        for entry in os.scandir(self.path / "outcomes"):
            stem = entry.name.removesuffix(".pkl")
            if stem.isdigit() and int(stem) in waiting and entry.name.endswith(".pkl"):
                done.append(int(stem))
        return sorted(done)

    def _outcome_path(self, index: int) -> Path:
        return self.path / "outcomes" / f"{index}.pkl"

    def has_outcome(self, index: int) -> bool:
        return self._outcome_path(index).exists()

    def write_outcome(self, index: int, value: Any) -> None:
        """In the job: a task's outcome, whole or not at all (the driver reads it as it appears)."""
        _write_atomically(self._outcome_path(index), pickle.dumps(value))

    def outcome(self, index: int) -> Any:
        try:
            return pickle.loads(self._outcome_path(index).read_bytes())
        except Exception as error:  # noqa: BLE001 - a result this process cannot read is that task's failure
            return TaskFailed(f"its result could not be read here ({first_line(error)})")

    def mark_started(self, index: int) -> None:
        """In the job: the task it begins now, the suspect if the job dies before its outcome."""
        (self.path / "started" / str(index)).touch()

    def started(self, index: int) -> bool:
        return (self.path / "started" / str(index)).exists()

    def setup_error(self) -> str | None:
        try:
            return (self.path / "setup-error").read_text(encoding="utf-8").strip() or "setup failed"
        except OSError:
            return None

    def tidy(self, *, keep_logs: bool) -> None:
        """The launch's pickles removed (the context holds the data); its job logs kept when a
        job ended before finishing its tasks, to read why."""
        if keep_logs:
            for name in ("context.pkl", "tasks.pkl"):
                (self.path / name).unlink(missing_ok=True)
            shutil.rmtree(self.path / "outcomes", ignore_errors=True)
        else:
            shutil.rmtree(self.path, ignore_errors=True)
            try:
                self.path.parent.rmdir()  # the folder itself, when nothing else is in it
            except OSError:
                pass


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


class _Submitter:
    """Chunks of task indices submitted as one job array each (or one job step each, inside an
    allocation), their jobs watched, and cancelled on the way out."""

    def __init__(self, options: SlurmOptions, launch: _LaunchFolder, work: Callable, setup: Callable,
                 limits: list[float | None], inside: bool):
        self.options, self.launch, self.work, self.setup, self.limits = options, launch, work, setup, limits
        self.inside = inside
        self.local = options.cluster == "local" or inside
        self.jobs: dict[Any, list[int]] = {}
        self.silent = 0
        self.checked = 0.0

    def _time_min(self, chunks: list[list[int]]) -> int:
        if self.options.time_min is not None:
            return self.options.time_min
        if self.local:  # a step of an allocation, or a local process: the allocation's own limit bounds it
            return LOCAL_TIME_MIN
        if any(self.limits[index] is None for chunk in chunks for index in chunk):
            return DEFAULT_TIME_MIN
        seconds = max(sum(allowance(self.limits[index]) for index in chunk) for chunk in chunks)
        return math.ceil((seconds + SETUP_ALLOWANCE_S) / 60)

    def _executor(self, chunks: list[list[int]]):
        submitit = require_submitit()
        folder = self.launch.path / "jobs" / "%j"
        minutes = self._time_min(chunks)
        if self.local:
            executor = _step_executor_class()(folder=folder) if self.inside else submitit.LocalExecutor(folder=folder)
            if self.inside:
                executor.step_options = self.options
            executor.update_parameters(timeout_min=minutes, gpus_per_node=int(self.options.gpus_per_job))
            return executor
        executor = submitit.SlurmExecutor(folder=folder)
        extra = extra_sbatch(self.options.sbatch)
        parameters = {key: value for key, value in sbatch_options(self.options, minutes).items() if key not in extra}
        executor.update_parameters(**parameters, array_parallelism=self.options.array_parallelism, signal_delay_s=30,
                                   **({"additional_parameters": extra} if extra else {}))
        return executor

    def submit(self, chunks: list[list[int]]) -> None:
        from submitit.core.utils import FailedJobError

        executor = self._executor(chunks)
        # each task's limit and the seconds its job's watchdog allows it (reckoned here, in the driver)
        limits = [[(self.limits[index], None if self.limits[index] is None else allowance(self.limits[index]))
                   for index in chunk] for chunk in chunks]
        arguments = [(str(self.launch.path), chunk, limit, self.work, self.setup) for chunk, limit in zip(chunks, limits)]
        try:
            jobs = executor.map_array(run_job, *zip(*arguments))
        except FailedJobError as error:
            raise BackendError(f"Slurm refused the jobs: {slurm_error(error)} (see `sinfo` for the partitions and "
                               "their limits)") from None
        except OSError as error:
            raise BackendError(f"cannot submit to Slurm ({first_line(error)})") from None
        self.jobs.update(zip(jobs, chunks))

    def ended(self) -> list[tuple[Any, list[int], str]]:
        """The jobs that ended since the last call, each with its chunk and its state in words."""
        if not self.jobs:
            return []
        if not self.local:
            now = time.monotonic()
            if now - self.checked < self.options.poll_s:
                return []
            self.checked = now
            if not self._cluster_answers():
                self.silent += 1
                if self.silent >= LOST_AFTER:
                    arrays = " ".join(sorted({job.job_id.split("_")[0] for job in self.jobs}))
                    self.jobs = {}  # nothing can be cancelled now
                    raise BackendLost(
                        f"the Slurm controller stopped answering (`scontrol ping`); the runs that finished are "
                        f"stored: once it is back, `scancel {arrays}` if they still run, and run the same command "
                        "again to resume")
                return []
            self.silent = 0
            type(next(iter(self.jobs))).watcher.update()
        over = []
        for job, chunk in list(self.jobs.items()):
            state = self._state(job)
            if state is not None:
                del self.jobs[job]
                over.append((job, chunk, state))
        if over and not self.local:
            # a pre-empted job that Slurm requeues would run beside its resubmission
            _scancel([job.job_id for job, _, state in over if state == "PREEMPTED"])
        return over

    def _state(self, job) -> str | None:
        """None while `job` may still finish its tasks, else its end in words."""
        if self.local:
            return None if not job.done() else job.state
        state = job.watcher.get_state(job.job_id, mode="cache").split()[0].upper()
        return None if state in UNDERWAY else state

    def ending(self, job, state: str) -> str:
        """How `job` ended before finishing its task, in words."""
        if self.local and not self.inside:
            return f"its job (local process {job.job_id}) ended before finishing it"
        return f"its Slurm job {job.job_id} ended {state}"

    def _cluster_answers(self) -> bool:
        """Whether the Slurm controller answers (`scontrol ping`: exit status 0 when it is up)."""
        try:
            return subprocess.run(["scontrol", "ping"], capture_output=True, timeout=COMMAND_TIMEOUT).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def cancel_all(self, unfinished: set[int] | None = None) -> None:
        """Cancel every job still out (with a task of `unfinished`, when given): one scancel for
        Slurm's, a signal for local ones."""
        jobs = [job for job, chunk in self.jobs.items() if unfinished is None or unfinished.intersection(chunk)]
        self.jobs = {}
        if self.local:
            for job in jobs:
                job.cancel(check=False)
        else:
            _scancel([job.job_id for job in jobs])


def _scancel(job_ids: list[str]) -> None:
    """One scancel of exactly these jobs (array elements by their own ids: `4812_3`)."""
    if job_ids:
        try:
            subprocess.run(["scancel", *job_ids], capture_output=True, timeout=COMMAND_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired):
            print(f"warning: could not cancel Slurm jobs {' '.join(job_ids)}; cancel them with scancel",
                  file=sys.stderr)


def _megabytes(gigabytes: float) -> str:
    return f"{math.ceil(gigabytes * 1024)}M"


def _step_executor_class():
    submitit = require_submitit()

    class StepExecutor(submitit.LocalExecutor):
        """submitit's local executor whose every job is a step of the current allocation:
        `srun` gives it its CPUs and GPUs, and waits while the allocation is full."""

        step_options: SlurmOptions = SlurmOptions()

        @property
        def _submitit_command_str(self) -> str:
            options = self.step_options
            words = ["srun", "--ntasks=1", "--nodes=1", "--exact", f"--cpus-per-task={int(options.cpus_per_job)}",
                     f"--job-name={JOB_NAME}"]
            if options.gpus_per_job:
                words.append(f"--gpus-per-task={int(options.gpus_per_job)}")
            if options.mem_gb is not None:
                words.append(f"--mem={_megabytes(options.mem_gb)}")
            return " ".join([*map(shlex.quote, words), super()._submitit_command_str])

    return StepExecutor


# ---- in the job -------------------------------------------------------------------------------

def run_job(folder: str, chunk: list[int], limits: list[tuple[float | None, float | None]], work: Callable,
            setup: Callable) -> int:
    """One job: the launch's context read and set up, then each task of `chunk` that has no
    outcome yet (a requeued job resumes), its outcome written as it ends; `limits`: each task's
    time limit and the seconds after which the job's watchdog ends it (None: no limit). A setup
    that fails is written for the driver (WorkerSetupError there). Returns the tasks run."""
    from submitit.core.utils import UncompletedJobError

    launch = _LaunchFolder(Path(folder))
    todo = [(index, limit) for index, limit in zip(chunk, limits) if not launch.has_outcome(index)]
    if not todo:
        return 0
    context = pickle.loads((launch.path / "context.pkl").read_bytes())
    try:
        setup(context)
    except Exception as error:
        launch.write("setup-error", first_line(error).encode())
        raise WorkerSetupError(first_line(error)) from None
    tasks = pickle.loads((launch.path / "tasks.pkl").read_bytes())
    watchdog = _Watchdog(launch)
    for index, (seconds, allowed) in todo:
        launch.mark_started(index)
        watchdog.watch(index, seconds, allowed)
        try:
            value = guarded(work, tasks[index], context)
        except UncompletedJobError:
            raise  # submitit's word that the job hit its time limit: the job's end, not the task's failure
        except Exception as error:  # noqa: BLE001 - the task's failure, recorded with its reason
            value = TaskFailed(first_line(error))
        finally:
            watchdog.watch(None, None, None)
        launch.write_outcome(index, value)
    return len(todo)


class _Watchdog:
    """A thread that ends this job when a task runs past its allowance (base.allowance), its
    code deaf to the work's own limit: that task's outcome is written failed
    first, so the driver resubmits only the others."""

    def __init__(self, launch: _LaunchFolder):
        self.launch = launch
        self.current: tuple[int, float, float] | None = None  # task, its limit, its deadline
        self.lock = threading.Lock()
        threading.Thread(target=self._run, name="harness-watchdog", daemon=True).start()

    def watch(self, index: int | None, seconds: float | None, allowed: float | None) -> None:
        with self.lock:
            self.current = None if index is None or seconds is None or allowed is None else (
                index, seconds, time.monotonic() + allowed)

    def _run(self) -> None:
        while True:
            time.sleep(0.5)
            with self.lock:
                current = self.current
                if current is None or time.monotonic() < current[2]:
                    continue
                index, seconds, _ = current
                reason = f"ran past its time limit of {seconds:g} s and did not stop; its Slurm job was ended"
                self.launch.write_outcome(index, TaskFailed(reason))
                os._exit(WATCHDOG_EXIT)
