"""Throughput of the training paths on one reference configuration, measured in one process.

Paths:
- plain: the loop a student writes around the same model: built as is (NCHW), torch's default
  thread count, Adam, minibatches in a fixed order (`narrow`), one evaluation at the end and no
  learning curves, one run after another;
- workers: the harness's CPU path with its defaults (learning curves on: the test set scored
  after every epoch, the train error from the epoch's own training steps, both sets scored
  after the last), process workers with one thread each;
- batched: the harness's vectorised path, all rounds as one model in this process.

Each path's work is counted with torch's FLOP counter (training steps, and the evaluations the
path does), so that its achieved GFLOP/s can be set against the machine's measured peak.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from harness.config import Plan, expand, load_matrix, make_config
from harness.device import DevicePolicy
from harness.settings import RunConfig
from harness.tasks.pairs.settings import model_options

REFERENCE = {"encoder": "cnn", "pairing": "siamese", "weight_sharing": True, "aux_loss": True,
             "pairs": 1000, "epochs": 25, "batch_size": 100}  # every other setting: the defaults
PATHS = ("plain", "workers", "batched")


@dataclass
class Timing:
    path: str
    runs: int
    seconds: float
    test_error: float  # mean over the runs, a check that every path learns
    peak_memory_mb: float  # resident set (CPU) or allocated device memory (CUDA), largest process
    flops_per_run: float = 0.0  # the work one run does on this path (FLOP counter)
    run_seconds: tuple[float, ...] = ()  # each run's own time, as the path measured it
    side_by_side: int = 1  # runs trained at the same time (worker processes)

    @property
    def steady_seconds_per_run(self) -> float | None:
        """The median run's time over the runs trained side by side: throughput once the
        processes are started and warm (None without per-run times)."""
        return statistics.median(self.run_seconds) / self.side_by_side if self.run_seconds else None

    @property
    def outside_runs(self) -> float:
        """Wall seconds not spent inside a run's training (process start-up, waiting on the
        slowest process at the end), on average per process."""
        return self.seconds - sum(self.run_seconds) / self.side_by_side if self.run_seconds else 0.0

    @property
    def runs_per_second(self) -> float:
        return self.runs / self.seconds

    @property
    def gflops(self) -> float:
        return self.flops_per_run * self.runs / self.seconds / 1e9


def run_flops(config: RunConfig) -> tuple[float, float]:
    """(training FLOPs of one run, FLOPs of scoring the train and test sets once), counted by
    torch.utils.flop_counter on one minibatch step and one forward pass."""
    from torch.utils.flop_counter import FlopCounterMode

    from architectures import build

    model = build(config.encoder, model_options(config))
    batch = torch.randn(config.batch_size, 2, 14, 14)
    target = torch.randint(0, 2, (config.batch_size,))
    classes = torch.randint(0, 10, (config.batch_size, 2))
    with FlopCounterMode(display=False) as counter:
        output = model(batch)
        loss = F.cross_entropy(output.comparison, target)
        if config.aux_loss:
            loss = loss + F.cross_entropy(output.digits.reshape(-1, 10), classes.reshape(-1))
        loss.backward()
    train = counter.get_total_flops() / config.batch_size * config.pairs * config.epochs  # linear in the batch
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(config.pairs, 2, 14, 14))
    return train, 2 * counter.get_total_flops()


ALLOCATIONS = frozenset({"empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided", "scalar_tensor"})


class LaunchCounter(TorchDispatchMode):
    """Counts the operators torch dispatches while active, as a GPU would launch them: every
    operator that computes or copies data is at least one kernel launch; views, bare
    allocations and the profiler's markers (`record_function`, around every optimiser step)
    launch none; a read of a tensor's value into Python (`.item()`, `.tolist()`)
    is counted apart, as on a GPU it waits for every kernel before it (on the CPU all tensors
    are the host's: optimiser step counters, which a GPU keeps on the host too, count here)."""

    def __init__(self):
        super().__init__()
        self.kernels = 0
        self.host_reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name == "_local_scalar_dense":
            self.host_reads += 1
        elif not (func.is_view or name in ALLOCATIONS or func.namespace == "profiler"):
            self.kernels += 1
        return func(*args, **(kwargs or {}))


@dataclass(frozen=True)
class StepCost:
    """A vectorised group's training step at one pair per member (HOST_PAIRS), in µs: the whole
    step of `members` (group_us), split by timing the same step with the fewest members the
    path has (one round: 1 member batched, 2 packed) into what each member adds (member_us: its
    arithmetic, which at this batch is mostly parameter-sized, Adam's and the weight gradients)
    and what stays whatever the members (fixed_us: the host's Python, dispatcher, vmap batching
    rules and autograd engine, one per operation). On a GPU the members' arithmetic runs
    asynchronously and fixed_us is what the host costs each step; on a CPU every kernel runs
    on the host, so group_us bounds the host's cost from above and fixed_us estimates it.
    Without a second member count (one round) there is no split: fixed_us and member_us None."""

    members: int
    group_us: float
    fixed_us: float | None = None
    member_us: float | None = None


@dataclass(frozen=True)
class Launches:
    """One run's operator launches on a path (a batched group's shared out per round), at the
    reference's epochs, and its training steps; for a vectorised path (batched, packed), its
    group's step cost (StepCost)."""

    path: str
    kernels: float
    host_reads: float
    steps: int
    step: StepCost | None = None

    @property
    def per_step(self) -> float:
        """Launches per training step, the evaluations' share included."""
        return self.kernels / self.steps

    @property
    def members(self) -> int:
        return self.step.members if self.step else 1

    @property
    def host_us_per_launch(self) -> float | None:
        """The fixed part of a group-step over the group-step's launches (a round's share of
        them times the members): the host's µs per operation it dispatches."""
        if self.step is None or self.step.fixed_us is None:
            return None
        return self.step.fixed_us / (self.per_step * self.members)


def pack_jobs(path: str, config: RunConfig, rounds: int) -> list[tuple[RunConfig, int]]:
    """The (configuration, round) jobs of one vectorised group on `path`: the rounds, and for a
    pack the configuration with and without its aux loss (the reference's pack partner)."""
    jobs = [(config, r) for r in range(rounds)]
    if path == "packed":
        jobs += [(config.replace(aux_loss=not config.aux_loss), r) for r in range(rounds)]
    return jobs


def count_launches(path: str, config: RunConfig, rounds: int, source, policy: DevicePolicy, *,
                   host: bool = True) -> Launches:
    """A run's launches on `path` (plain, workers, batched, or packed: the configuration with
    and without its aux loss as one vectorised model, shared out per run), the proxy for GPU
    time where launches, not arithmetic, bound it. Counted on runs of one and two epochs in
    this process: the fixed part (building, the final scoring) plus the reference's epochs
    times the second epoch's. `host`: a vectorised path's step cost too (step_cost)."""
    from harness.tasks.pairs.batched import train_pack
    from harness.tasks.pairs.sequential import train_run

    vectorised = path in ("batched", "packed")

    def counted(epochs: int) -> tuple[float, float]:
        short = config.replace(epochs=epochs)
        jobs = pack_jobs(path, short, rounds)
        with LaunchCounter() as counter:
            if path == "plain":
                plain_run(short, 0, source, policy.device)
            elif vectorised:
                train_pack(jobs, source, policy)
            else:
                train_run(short, 0, source, policy)
        share = len(jobs) if vectorised else 1
        return counter.kernels / share, counter.host_reads / share

    (kernels_1, reads_1), (kernels_2, reads_2) = counted(1), counted(2)
    epochs = config.epochs
    steps = epochs * -(-config.pairs // config.batch_size)
    return Launches(path, kernels_1 + (epochs - 1) * (kernels_2 - kernels_1),
                    reads_1 + (epochs - 1) * (reads_2 - reads_1), steps,
                    step_cost(path, config, rounds, source, policy) if vectorised and host else None)


HOST_PAIRS = 100  # pairs per member in the step-cost runs: 100 steps an epoch at one pair a step


def group_step_microseconds(path: str, config: RunConfig, rounds: int, source, policy: DevicePolicy) -> float:
    """Microseconds per training step of a whole vectorised group (`rounds` members; a pack:
    the configuration with and without its aux loss, twice as many) at one pair per member per
    step, where the kernels are as small as they get. Timed on runs of 1 and 3 epochs (no
    evaluation between), the best of two each, the difference over the 2 epochs' steps."""
    from harness.tasks.pairs.batched import train_pack

    tiny = config.replace(pairs=HOST_PAIRS, batch_size=1, eval_every=1000)

    def timed(epochs: int) -> float:
        jobs = pack_jobs(path, tiny.replace(epochs=epochs), rounds)
        start = time.perf_counter()
        train_pack(jobs, source, policy)
        if policy.is_cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    timed(1)  # warm: first calls build vmap's and autograd's caches
    one, three = min(timed(1) for _ in range(2)), min(timed(3) for _ in range(2))
    return max(0.0, three - one) / (2 * HOST_PAIRS) * 1e6


def step_cost(path: str, config: RunConfig, rounds: int, source, policy: DevicePolicy) -> StepCost:
    """The group-step of `rounds` rounds on `path`, and its split into a fixed part and a part
    per member (StepCost), from the same step timed with one round: a straight line through
    the two member counts."""
    per_round = 2 if path == "packed" else 1
    group = group_step_microseconds(path, config, rounds, source, policy)
    if rounds == 1:
        return StepCost(per_round, group)
    fewest = group_step_microseconds(path, config, 1, source, policy)
    member = max(0.0, (group - fewest) / ((rounds - 1) * per_round))
    return StepCost(rounds * per_round, group, max(0.0, fewest - per_round * member), member)


def peak_gflops(policy: DevicePolicy, seconds: float = 1.0) -> float:
    """The machine's float32 peak as this process measures it: large matrix products on every
    thread torch uses (or on the GPU), the best of a few repeats."""
    size = 2048 if not policy.is_cuda else 8192
    a = torch.randn(size, size, device=policy.torch_device())
    b = torch.randn(size, size, device=policy.torch_device())
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or best == 0.0:
        started = time.perf_counter()
        torch.mm(a, b)
        if policy.is_cuda:
            torch.cuda.synchronize()
        best = max(best, 2 * size**3 / (time.perf_counter() - started) / 1e9)
    return best


def reference_config(**overrides) -> RunConfig:
    return make_config({**REFERENCE, **overrides}, "the reference configuration")


def _rss_mb(who=resource.RUSAGE_SELF) -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(who).ru_maxrss * scale / 2**20


def plain_run(config: RunConfig, round_index: int, source, device) -> float:
    """One run the reports' way: build, train with Adam on `narrow` minibatches, evaluate the
    test set once; its test error."""
    from architectures import build

    sets = source.pairs(config.pairs, round_index)
    mean, std = sets.train_input.mean(), sets.train_input.std()
    train_input = ((sets.train_input - mean) / std).to(device)
    test_input = ((sets.test_input - mean) / std).to(device)
    train_target, train_classes = sets.train_target.to(device), sets.train_classes.to(device)
    torch.manual_seed(round_index)
    model = build(config.encoder, model_options(config)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    for _ in range(config.epochs):
        model.train()
        for start in range(0, config.pairs, config.batch_size):
            output = model(train_input.narrow(0, start, config.batch_size))
            loss = F.cross_entropy(output.comparison, train_target.narrow(0, start, config.batch_size))
            digits = output.digits.reshape(-1, 10)
            loss = loss + 2 * F.cross_entropy(digits, train_classes.narrow(0, start, config.batch_size).reshape(-1))
            model.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = model(test_input).comparison.argmax(1).cpu()
    return (predicted != sets.test_target).float().mean().item()


def plain_loop(config: RunConfig, rounds: int, data_dir, policy: DevicePolicy) -> Timing:
    """The reports' way (plain_run), one run after another in this process, from the MNIST
    files on disk as a student's script starts (the harness's paths read them in their time
    too); its first run imports torch._dynamo, at the first Adam step, as a fresh process does."""
    from harness.mnist import load_mnist
    from harness.tasks.pairs.data import PairSource

    errors, run_seconds = [], []
    started = time.perf_counter()
    source = PairSource(load_mnist(data_dir))
    for round_index in range(rounds):
        run_started = time.perf_counter()
        errors.append(plain_run(config, round_index, source, policy.device))
        run_seconds.append(time.perf_counter() - run_started)
    seconds = time.perf_counter() - started
    train, scoring = run_flops(config)
    return Timing("plain", rounds, seconds, sum(errors) / rounds, _peak(policy), train + scoring / 2,  # test set once
                  tuple(run_seconds))


def _peak(policy: DevicePolicy) -> float:
    if policy.is_cuda:
        return torch.cuda.max_memory_allocated() / 2**20
    return _rss_mb()


def harness_path(config: RunConfig, rounds: int, policy: DevicePolicy, *, batched: bool, data_dir) -> Timing:
    """The harness's own runner on a temporary matrix and store: what `harness run` does."""
    from harness.runner import run_plan
    from harness.store import Store

    plan = Plan.from_configs([config.replace(rounds=rounds)], source="harness bench (reference)")
    with tempfile.TemporaryDirectory() as folder:
        if policy.is_cuda:
            torch.cuda.reset_peak_memory_stats()
        with Store(Path(folder) / "bench.sqlite") as store:
            started = time.perf_counter()
            summary = run_plan(plan, store, policy=dataclasses.replace(policy, batched=batched), data_dir=data_dir)
            seconds = time.perf_counter() - started
            runs = store.runs()
    if summary.failed:
        raise RuntimeError(f"benchmark runs failed: {summary.failed[0]}")
    peak = max(_peak(policy), _rss_mb(resource.RUSAGE_CHILDREN) if not policy.is_cuda else 0.0)
    from harness.results import Stage
    from harness.tasks.pairs.training import stages
    from harness.training.protocol import evaluates

    train, scoring = run_flops(config)
    # the learning curve's evaluations, on the protocol's own schedule: the train and test sets
    # (scoring) after the last epoch, and before it the test set alone when the curve's train
    # error is the running one (curve_train_error = "running"), both sets otherwise
    pair_stages = [stage for stage in stages(config) if stage.name is Stage.MAIN]
    evaluated = sum(evaluates(config, stage, epoch) for stage in pair_stages for epoch in range(stage.epochs - 1))
    per_evaluation = scoring / 2 if config.curve_train_error == "running" else scoring
    work = train + evaluated * per_evaluation + len(pair_stages) * scoring
    # tasks (a run each, or a batched group of rounds) trained at the same time; a batched run's
    # seconds are its group's wall time shared out among the group's rounds
    from harness.runner import make_tasks

    side_by_side = min(policy.workers, len(make_tasks(plan.jobs, batched, policy.workers)))
    return Timing("batched" if batched else "workers", rounds, seconds, float(runs["test_error"].mean()), peak, work,
                  tuple(float(s) for s in runs["seconds"]), side_by_side)


def projected_seconds(matrix_path: str, reference: RunConfig, seconds_per_reference_run: float) -> tuple[float, int]:
    """Time for a whole matrix at the measured rate: each configuration's run costs its timed
    training steps (harness.estimate.seconds_per_run) relative to the reference's."""
    from harness.estimate import seconds_per_run

    plan = expand(load_matrix(matrix_path))
    unit = seconds_per_run(reference)
    total = sum(config.rounds * seconds_per_run(config) / unit for config in plan.configs)
    return total * seconds_per_reference_run, len(plan.jobs)


def measure(paths, rounds: int, policy: DevicePolicy, data_dir, epochs: int | None = None) -> list[Timing]:
    config = reference_config(**({"epochs": epochs} if epochs else {}))
    timings = []
    for path in paths:
        if path == "plain":
            timings.append(plain_loop(config, rounds, data_dir, policy))
        else:
            timings.append(harness_path(config, rounds, policy, batched=path == "batched", data_dir=data_dir))
    return timings


def measure_launches(paths, rounds: int, policy: DevicePolicy, data_dir, epochs: int | None = None) -> list[Launches]:
    """Each path's launches per run of the reference configuration (count_launches); with the
    batched path, a pack's too (the reference with and without its aux loss, `--pack`)."""
    from harness.mnist import load_mnist
    from harness.tasks.pairs.data import PairSource

    config = reference_config(**({"epochs": epochs} if epochs else {}))
    source = PairSource(load_mnist(data_dir))
    counted = [*paths, "packed"] if "batched" in paths else list(paths)
    return [count_launches(path, config, rounds, source, policy) for path in counted]


DISK_REFERENCE = {"task": "disk", "optimizer": "sgd", "loss": "mse_linear", "loss_reduction": "sum", "lr": 5e-3,
                  "batch_size": 50, "epochs": 50, "activations": "relu,tanh,relu,tanh"}  # matrices/reports-p2.toml's


def framework_timings(rounds: int, epochs: int | None = None) -> list[Timing]:
    """The disk task's reference network trained `rounds` times by minidl (manual backward)
    and by torch.nn (autograd), each run through the task's own trainer, on the CPU."""
    from torch.utils.flop_counter import FlopCounterMode

    from harness.tasks.disk.data import DiskSource
    from harness.tasks.disk.training import build_minidl, to_torch, train_run

    timings = []
    for framework, path in (("minidl", "minidl"), ("torch", "torch.nn")):
        settings = {**DISK_REFERENCE, "framework": framework, **({"epochs": epochs} if epochs else {})}
        config = make_config(settings, "harness bench")
        started = time.perf_counter()
        results = [train_run(config, round_index, DiskSource()) for round_index in range(rounds)]
        seconds = time.perf_counter() - started
        failed = [r.reason for r in results if r.reason]
        if failed:
            raise RuntimeError(f"benchmark runs failed: {failed[0]}")
        network = to_torch(build_minidl(config, torch.Generator().manual_seed(0)))
        with FlopCounterMode(display=False) as counter:
            network(torch.rand(config.batch_size, 2)).pow(2).mean().backward()
        steps = -(-config.points // config.batch_size) * config.epochs
        mean_error = sum(r.metrics["test_error"] for r in results) / rounds
        timings.append(Timing(path, rounds, seconds, mean_error, _rss_mb(), counter.get_total_flops() * steps))
    return timings


def describe_machine(policy: DevicePolicy) -> str:
    if policy.is_cuda:
        return f"{torch.cuda.get_device_name(policy.torch_device())}, torch {torch.__version__}"
    return f"{os.cpu_count()} CPU cores ({_cpu_name()}), torch {torch.__version__}, {torch.get_num_threads()} threads by default"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def benchmark(paths: list[str], *, device: str = "auto", rounds: int = 10, epochs: int | None = None,
              workers: int | None = None, project_matrix: str | None = "ablations.toml", frameworks: bool = True,
              launches: bool = True, data_dir=None, command: str = "harness bench"):
    """`harness bench`: each path timed on the reference configuration (and, with `launches`,
    its operator launches counted; with `frameworks`, the disk task's frameworks timed), the
    fastest harness path projected onto `project_matrix`; a harness.report.formats.Document.
    ConfigError for an unknown path or matrix before anything is measured."""
    from harness.device import resolve
    from harness.errors import ConfigError
    from harness.report.bench import bench_document

    unknown = [path for path in paths if path not in PATHS]
    if unknown or not paths:
        raise ConfigError(f"--paths {','.join(paths)}: unknown path {', '.join(unknown) or '(none)'}; "
                          f"choose from {', '.join(PATHS)}")
    if project_matrix:
        load_matrix(project_matrix)  # a bad path fails now, not after minutes of measuring
    policy = resolve(device, workers=workers)
    peak = peak_gflops(policy)
    timings = measure(paths, rounds, policy, data_dir, epochs)
    framework_rows = framework_timings(rounds) if frameworks else None
    launch_rows = measure_launches(paths, rounds, policy, data_dir, epochs) if launches else None
    fastest = max((t for t in timings if t.path != "plain"), key=lambda t: t.runs_per_second, default=None)
    projection = None
    if project_matrix and fastest and epochs is None:
        seconds, runs = projected_seconds(project_matrix, reference_config(), 1 / fastest.runs_per_second)
        projection = (project_matrix, seconds, runs)
    return bench_document(timings, machine=describe_machine(policy), command=command, projection=projection,
                          peak_gflops=peak, frameworks=framework_rows, launches=launch_rows)
