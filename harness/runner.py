"""Run a plan's missing jobs on one machine and store each result as it finishes.

On CPU every run uses one torch thread, whatever the number of worker processes, so a run's
numbers do not depend on --workers (thread count changes float summation order).
"""

from __future__ import annotations

import functools
import hashlib
import pickle
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.backends import Backend, TaskFailed
from harness.config import Job, Plan
from harness.device import DevicePolicy, policy_for, retain_freed_memory
from harness.errors import DataError
from harness.results import Status
from harness.settings import RunConfig
from harness.store import Store
from harness.tasks import get_task
from harness.tasks import runs_user_code as config_runs_user_code


@dataclass
class Summary:
    total: int
    already_done: int
    finished: int = 0
    failed: list[tuple[str, int, str]] = field(default_factory=list)
    seconds: float = 0.0


CODE_FOLDERS = ("harness", "architectures", "minidl")  # where a new untracked file changes what runs


def code_version(root: Path | None = None) -> str:
    """The git commit of the code (with '+dirty' for local changes), else the package version.

    Only a checkout of this project counts: the package installed inside some other git
    repository (a virtual environment within one, say) reports its version, not that
    repository's commit."""
    from harness import __version__

    root = (root or Path(__file__).resolve().parent.parent).resolve()

    def git(*arguments: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *arguments], capture_output=True, text=True, timeout=5
        ).stdout.strip()

    try:
        toplevel = git("rev-parse", "--show-toplevel")
        if not toplevel or Path(toplevel).resolve() != root or not git("ls-files", "harness/runner.py"):
            return __version__
        commit = git("rev-parse", "--short=12", "HEAD")
        # local changes to tracked files, or new source files in the packages: the code differs
        dirty = git("status", "--porcelain", "--untracked-files=no") or git(
            "ls-files", "--others", "--exclude-standard", "--", *CODE_FOLDERS
        )
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{commit}{'+dirty' if dirty else ''}" if commit else __version__


def code_diff(root: Path | None = None) -> str | None:
    """What differs from the commit when the code is dirty, as a patch `git apply` takes:
    `git diff HEAD`, plus new source files in the packages; None for a clean checkout."""
    root = (root or Path(__file__).resolve().parent.parent).resolve()
    if "+dirty" not in code_version(root):
        return None

    def git(*arguments: str) -> str:
        return subprocess.run(["git", "-C", str(root), *arguments], capture_output=True, text=True, timeout=10).stdout

    try:
        patch = git("diff", "HEAD")
        for path in git("ls-files", "--others", "--exclude-standard", "--", *CODE_FOLDERS).splitlines():
            patch += git("diff", "--no-index", "--", "/dev/null", path)  # a new file, as a patch
    except (OSError, subprocess.SubprocessError):
        return None
    return patch or None


@dataclass(frozen=True)
class Provenance:
    """What every run of a plan records (`columns`) and the source texts it refers to."""

    columns: dict[str, str | None]
    sources: list[tuple[str, str, str | None, str]]  # (sha256, kind, name, text)


def provenance(plan: Plan, policy=None) -> Provenance:
    import json

    import torch

    version = code_version()
    used = user_code(plan)
    sources = [(p.sha256, p.kind, p.path, p.text) for p in used if p.sha256 and p.text is not None]
    diff = code_diff()
    diff_sha = hashlib.sha256(diff.encode()).hexdigest() if diff else None
    if diff:
        sources.append((diff_sha, "diff", version.replace("+dirty", ""), diff))
    plugins = [{"spec": p.spec, "path": p.path, "sha256": p.sha256, **({"kind": p.kind} if p.kind != "plugin" else {})}
               for p in used]
    columns = {
        "torch_version": torch.__version__,
        "code_version": version,
        "python_version": platform.python_version(),
        "matrix": plan.matrix.describe(plan.profile),
        "command": " ".join(["harness", *sys.argv[1:]]) if sys.argv else "",
        "plugins": json.dumps(plugins) if plugins else None,
        "code_diff": diff_sha,
        "execution": json.dumps(policy.execution(), sort_keys=True) if policy is not None else None,
    }
    return Provenance(columns, sources)


def user_code(plan: Plan) -> list:
    """The user's code the plan's runs use (harness.plugins.PluginSource): the plan's plugins,
    then the modules of the user's this process ran (a `module:Class` model's, the modules a
    plugin imports from beside it), which its workers receive; another plan's plugins are not."""
    from harness.plugins import loaded_sources

    named = {p.module for p in plan.matrix.plugins if p.module}
    return [*plan.matrix.plugins, *(p for p in loaded_sources() if p.kind == "module" and p.module not in named)]


@functools.cache
def code_fingerprint(root: Path | None = None) -> str:
    """The SHA-256 of the harness's own source files (CODE_FOLDERS): equal where the same
    harness code runs, whatever its version says. A worker compares its own with the driver's."""
    root = (root or Path(__file__).resolve().parent.parent).resolve()
    digest = hashlib.sha256()
    for package in CODE_FOLDERS:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


# --------------------------------------------------------------------------- workers

@dataclass(frozen=True)
class Task:
    """One unit of work for a worker: one round of a configuration, or (batched) several rounds
    of one configuration trained together as one vectorised model, with (packed) further
    configurations' rounds in it (`others`)."""

    config: RunConfig
    rounds: tuple[int, ...]
    batched: bool = False
    others: tuple[Job, ...] = ()

    def jobs(self) -> list[Job]:
        return [Job(self.config, r) for r in self.rounds] + list(self.others)


def make_tasks(jobs: list[Job], batched: bool, workers: int = 1, pack: bool = False) -> list[Task]:
    """Jobs as tasks: one each, or batched, one per configuration holding its missing rounds
    (with `pack`, one per group of configurations whose task gives them one pack_key); with
    fewer groups than workers, a group's jobs are split so that every worker gets a share."""
    if not batched:
        return [Task(job.config, (job.round,)) for job in jobs]
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        key = job.config.config_id
        spec = get_task(job.config.task)
        if pack and spec.pack_key is not None and spec.packed_trainer is not None:
            key = f"{job.config.task}:{spec.hook('pack_key')(job.config)}"
        groups.setdefault(key, []).append(job)
    parts = max(1, -(-workers // len(groups)))
    tasks = []
    for members in groups.values():
        members = sorted(members, key=lambda job: (job.config.config_id, job.round))
        size = -(-len(members) // min(parts, len(members)))
        for chunk in (members[i : i + size] for i in range(0, len(members), size)):
            first = chunk[0].config
            rounds = tuple(job.round for job in chunk if job.config.config_id == first.config_id)
            others = tuple(job for job in chunk if job.config.config_id != first.config_id)
            tasks.append(Task(first, rounds, True, others))
    return tasks


def run_task(task: Task, source, policy: DevicePolicy) -> list[tuple[Job, object]]:
    """Train a task with its configuration's task's trainer (its source: what the task's loader
    gave); (job, RunResult) for each of its rounds. Never raises for a failed run."""
    spec = get_task(task.config.task)
    batched_trainer = spec.hook("batched_trainer")
    if task.others:
        jobs = task.jobs()
        results = spec.hook("packed_trainer")([(job.config, job.round) for job in jobs], source, policy)
    elif task.batched and batched_trainer is not None:
        results = batched_trainer(task.config, list(task.rounds), source, policy)
    else:
        trainer = spec.hook("trainer")
        results = [trainer(task.config, round_index, source, policy) for round_index in task.rounds]
    return list(zip(task.jobs(), results))


@dataclass
class WorkerContext:
    """What every worker holds for all its tasks: the tasks' verified data, the device policy,
    the user's code (the texts of the user's modules the driver ran, and the plugins to import
    from them) and the fingerprint of the driver's harness code. Sent to another process, the
    data travel as bytes, read only when a task first asks for them, after the worker imported
    the plugins: a plugin's task has a source of a class only its plugin defines. In this
    process nothing is copied."""

    sources: dict[str, object] | bytes  # {task name: its loader's source}, or those pickled
    policy: DevicePolicy
    plugins: tuple[str, ...] = ()  # module names (a plugin file's as it ran in the driver), imported in order
    texts: dict[str, tuple[str, str]] = field(default_factory=dict)  # user module name -> (path, text)
    code: str | None = None  # code_fingerprint() of the driver
    version: str = ""  # the driver's code_version(), for messages
    registrations: bytes = b""  # models and tasks the driver registered at run time (harness.registry)

    def __reduce__(self):
        sources = self.sources if isinstance(self.sources, bytes) else pickle.dumps(self.sources, pickle.HIGHEST_PROTOCOL)
        return (WorkerContext, (sources, self.policy, self.plugins, self.texts, self.code, self.version,
                                self.registrations))

    def source(self, task: str):
        """The task's source (unpickled once per process, kept on this context)."""
        if isinstance(self.sources, bytes):
            self.sources = pickle.loads(self.sources)
        return self.sources[task]


def worker_context(plan: Plan, sources: dict[str, object], policy: DevicePolicy) -> WorkerContext:
    """The context of the plan's workers: its data, the policy, and the user's code as this
    process ran it (plugins by the module names they ran as; an installed plugin module by its
    name, imported from the worker's environment; what a script registered, pickled)."""
    from harness.plugins import shipped_texts
    from harness.registry import runtime_registrations

    plugins = tuple(p.module or p.spec for p in plan.matrix.plugins)
    return WorkerContext(sources, policy, plugins, shipped_texts(), code_fingerprint(), code_version(),
                         runtime_registrations())


class OtherHarnessCode(RuntimeError):
    """A worker whose harness code is not the driver's: its numbers would not be the driver's code's."""


def prepare_worker(context: WorkerContext) -> None:
    """Once per worker: refuse to run other harness code than the driver's; the policy's torch
    threads per run on CPU (one: numbers do not depend on --workers, as thread count changes
    float summation order), its denormal flushing and its malloc policy; then the user's
    modules from the driver's texts, and the plan's plugins imported from them."""
    import torch

    from harness.plugins import install
    from harness.registry import restore_registrations

    if context.code is not None and code_fingerprint() != context.code:
        from harness import __version__

        raise OtherHarnessCode(
            f"the worker on {socket.gethostname()} runs other harness code than the driver (driver {context.version}, "
            f"worker {code_version()} / {__version__}; source fingerprints {context.code[:12]} and "
            f"{code_fingerprint()[:12]}): install the driver's harness on every node (pip install of the same commit)")
    context.policy.apply_precision()
    if context.policy.kind == "cpu":
        torch.set_num_threads(context.policy.threads)
        torch.set_flush_denormal(context.policy.flush_denormal)
        if context.policy.retain_freed_memory:
            retain_freed_memory()
    install(context.texts, context.plugins)  # the models and tasks the plan names, registered here too
    restore_registrations(context.registrations)  # and those a script or notebook registered in the driver


def task_time_limit(task: Task) -> float | None:
    """The seconds a task may take: its runs' run_timeout added up (a batched task trains R
    rounds together), None when any of them has none."""
    limits = [job.config.run_timeout for job in task.jobs()]
    return None if any(limit is None for limit in limits) else float(sum(limits))


def execute(task: Task, context: WorkerContext) -> list[tuple[Job, object]]:
    """The work function every backend runs: one task in, its rounds' results out. A task past
    its time limit stops where it is; each of its runs is failed with the limit as its reason."""
    from harness.plugins import TimeLimitExceeded, time_limit
    from harness.training.protocol import failed_result

    seconds = task_time_limit(task)
    runs = len(task.jobs())
    reason = f"exceeded run_timeout = {task.config.run_timeout:g} s" + (
        f" ({seconds:g} s for the {runs} runs trained together)" if runs > 1 else "") if seconds is not None else ""
    try:
        with time_limit(seconds, reason):
            results = run_task(task, context.source(task.config.task), context.policy)
        if context.policy.is_cuda:  # two GPU models may differ in their last bits: which one is part of the record
            import torch

            model = torch.cuda.get_device_name(context.policy.torch_device())
            for _, result in results:
                if isinstance(getattr(result, "execution", None), dict):
                    result.execution = {**result.execution, "gpu": model}
        return results
    except TimeLimitExceeded:
        return [(job, failed_result(job.config, job.round, reason, context.policy.device)) for job in task.jobs()]


def runs_user_code(plan: Plan) -> bool:
    """Whether any run of the plan executes code from outside the harness (plugins, a user's
    model, a task defined elsewhere) or has a time limit: such runs go to a worker process,
    where whatever the code does, and a limit's forced stop, end that run alone."""
    if user_code(plan) or any(config.run_timeout is not None for config in plan.configs):
        return True
    return any(config_runs_user_code(config) for config in plan.configs)


def launch(backend: Backend, tasks: list[Task], context: WorkerContext, *, isolate: bool):
    """The backend's launch of `execute` over the tasks, with `isolate` and each task's time
    limit where its `launch` takes them (a backend written before them takes neither)."""
    import inspect

    keywords = {"isolate": isolate, "limit": task_time_limit}
    try:
        parameters = inspect.signature(backend.launch).parameters
    except (TypeError, ValueError):
        parameters = {}
    if not any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()):
        keywords = {key: value for key, value in keywords.items() if key in parameters}
    return backend.launch(tasks, execute, context, prepare_worker, **keywords)


def load_sources(plan: Plan, data_dir=None) -> dict[str, object]:
    """Each task of the plan's data source, loaded once here, so that bad data fails before
    any work (DataError), and every configuration it cannot serve (more pairs than MNIST
    holds, say: the source's `check`) is refused too. Workers receive the sources from here and
    never read the files themselves."""
    sources = {}
    for name in dict.fromkeys(config.task for config in plan.configs):
        source = get_task(name).hook("loader")(data_dir)
        check = getattr(source, "check", None)
        for config in plan.configs:
            problem = check(config) if check is not None and config.task == name else None
            if problem:
                raise DataError(f"{config.name}: {problem}")
        sources[name] = source
    return sources


def run_plan(
    plan: Plan,
    store: Store,
    *,
    policy: DevicePolicy | None = None,
    sources: dict[str, object] | None = None,
    data_dir=None,
    on_start: Callable[[int, int], None] | None = None,
    on_result: Callable[[Job, object], None] | None = None,
    backend: Backend | None = None,
) -> Summary:
    """Train every job of `plan` that the store does not hold as done; store each as it ends.

    `policy`: where and how runs train (harness.device.resolve; default: this machine's CPU
    with its defaults). `sources`: each task's data, loaded and verified (`load_sources`; else
    loaded here from `data_dir`); workers receive them from here and never read the files
    themselves. Raises DataError before any work when data is missing or corrupt. `backend`:
    where the tasks run, started (default: local worker processes, `policy.workers` of them);
    the store is written here, by this process alone. A task whose worker was lost past its
    retries, or whose work raised, is stored as failed with the reason; WorkerSetupError and
    StoreError end the run, with every run finished before them stored.
    """
    from harness.training.protocol import failed_result

    sources = load_sources(plan, data_dir) if sources is None else sources

    finished = store.finished_keys()
    jobs = [job for job in plan.jobs if job.key not in finished]
    summary = Summary(total=len(plan.jobs), already_done=len(plan.jobs) - len(jobs))
    if on_start:
        on_start(summary.already_done, len(jobs))
    if not jobs:
        return summary
    policy = policy or policy_for("cpu")
    if backend is None:
        from harness.backends.local import LocalBackend

        backend = LocalBackend(workers=policy.workers)
    tasks = make_tasks(jobs, policy.batched, backend.workers, policy.pack)
    context = worker_context(plan, sources, replace(policy, threads=backend.threads_per_task))
    record = provenance(plan, context.policy)
    store.keep_sources(record.sources)
    started = time.perf_counter()
    outcomes = launch(backend, tasks, context, isolate=runs_user_code(plan))
    try:
        for task, outcome in outcomes:
            if isinstance(outcome, TaskFailed):
                outcome = [(job, failed_result(job.config, job.round, outcome.reason, policy.device)) for job in task.jobs()]
            for job, result in outcome:
                store.write(result, job.config, record.columns)
                summary.finished += 1
                if result.status != Status.DONE:
                    summary.failed.append((job.config.name, job.round, result.reason or "unknown"))
                if on_result:
                    on_result(job, result)
    finally:
        outcomes.close()  # stops the workers now, whatever ended the loop
    summary.seconds = time.perf_counter() - started
    return summary
