"""Where runs train, decided once: the device and its policy (workers, threads, batching,
memory layout), resolved at the edge (the CLI, `harness bench`, the Python API) and passed down
as one `DevicePolicy`. Nothing below re-reads a device string.

torch is imported only to check what this machine has.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from harness.errors import ConfigError

KINDS = ("cpu", "cuda", "mps")


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, e.g. a container's share)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class DevicePolicy:
    """How runs use a device. Picklable: workers receive it with their context.

    device: 'cpu', 'cuda', 'cuda:N' or 'mps'. workers: processes (or backend tasks at once).
    threads: torch threads per run on CPU (1, so numbers do not depend on --workers).
    batched: a configuration's rounds train as one vectorised model. channels_last: 2-D
    convolutions in NHWC layout. flush_denormal: on CPU, subnormal floats are flushed to zero
    (torch.set_flush_denormal): the NHWC convolution and ReLU kernels slow down by up to ~3x on
    the subnormal values a siamese CNN produces, and flushing them left every checked run's
    numbers bit-identical. retain_freed_memory: on Linux, glibc keeps the memory a run frees
    for its next allocations (`retain_freed_memory()`), instead of returning each large block
    to the kernel and faulting fresh zeroed pages in at the next step: two one-thread workers
    spent a quarter of their time in those page faults. pack: with batched, configurations
    that differ only in what the pair loss reads (aux_weight, and aux_loss where the model
    family declares it loss-only) train their rounds together as one vectorised model.
    tf32: float32 matrix products and convolutions on CUDA may run in TF32 (10-bit mantissa) on
    tensor cores; off by default, so that a GPU run keeps float32's fidelity (torch's own default
    lets cuDNN convolutions use TF32). deterministic: on CUDA, cuDNN picks deterministic kernels
    and torch.use_deterministic_algorithms is on (warning, not failing, where an operation has no
    deterministic kernel) with cuBLAS's fixed workspace, so reruns and resumes give the same
    numbers; on the CPU the kernels used here are deterministic and TF32 does not exist, so
    both are recorded as the float32, deterministic run it is. Every run records the policy it
    trained under (`execution`); `tag` names the policies that keep a store of their own."""

    device: str = "cpu"
    workers: int = 1
    threads: int = 1
    batched: bool = False
    channels_last: bool = True
    flush_denormal: bool = True
    retain_freed_memory: bool = True
    pack: bool = False
    tf32: bool = False
    deterministic: bool = True

    def execution(self) -> dict:
        """What of the policy can change a run's floats, as its stored record says it (where
        memory comes from cannot: `retain_freed_memory` is left out): the precision ("float32",
        or "tf32" where allowed on CUDA) and determinism always; `pack` only when on, so that the
        records of runs trained before it existed keep their form (records from before the
        precision was recorded read as float32 and deterministic: execution_record)."""
        record = {"threads": self.threads, "batched": self.batched, "channels_last": self.channels_last,
                  "flush_denormal": self.flush_denormal and self.kind == "cpu", "precision": self.precision,
                  "deterministic": self.deterministic or self.kind == "cpu"}
        return {**record, "pack": True} if self.pack else record

    @property
    def precision(self) -> str:
        return "tf32" if self.tf32 and self.kind == "cuda" else "float32"

    @property
    def tag(self) -> str:
        """The policy in a store's name: "" for the CPU's default (sequential, float32), else
        what differs from it, e.g. "cuda", "cuda-packed", "batched", "cuda-tf32" (default_store
        keeps a store per tag, so runs of two policies never pool unless asked)."""
        return policy_tag(self.device, self.execution())

    def apply_precision(self) -> None:
        """Set torch's precision and determinism switches for this policy in this process (a
        worker, before its first CUDA call: cuBLAS reads its workspace setting when it starts)."""
        import torch

        torch.set_float32_matmul_precision("high" if self.precision == "tf32" else "highest")
        if self.kind != "cuda":
            return
        torch.backends.cuda.matmul.allow_tf32 = self.precision == "tf32"
        torch.backends.cudnn.allow_tf32 = self.precision == "tf32"
        torch.backends.cudnn.deterministic = self.deterministic
        torch.backends.cudnn.benchmark = not self.deterministic
        if self.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(self.deterministic, warn_only=True)

    @property
    def kind(self) -> str:
        return self.device.partition(":")[0]

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    def torch_device(self):
        import torch

        return torch.device(self.device)

    def rng_devices(self) -> list:
        """The devices whose random state a run forks (torch.random.fork_rng)."""
        return [self.torch_device()] if self.is_cuda else []


CPU = DevicePolicy()

LEGACY_EXECUTION = {"precision": "float32", "deterministic": True}  # what runs recorded before these keys had


def execution_record(text) -> dict:
    """A stored execution record (JSON text) as a dict, with the keys records from before them
    lack filled as those runs ran (every such run trained on the CPU: float32, deterministic);
    {} where none is recorded."""
    import json

    if not isinstance(text, str) or not text:
        return {}
    try:
        record = json.loads(text)
    except ValueError:
        return {}
    return {**LEGACY_EXECUTION, **record} if isinstance(record, dict) else {}


def policy_name(tag: str) -> str:
    """A policy tag as lines and tables say it ("" is the CPU's default)."""
    return tag or "cpu (sequential, float32)"


def policy_tag(device: str, execution: dict) -> str:
    """The name of a run's policy (DevicePolicy.tag) from its device and execution record."""
    kind = str(device or "cpu").partition(":")[0]
    record = {**LEGACY_EXECUTION, **(execution or {})}
    parts = [kind] if kind != "cpu" else []
    batched = bool(record.get("batched", False))
    if batched != (kind == "cuda"):  # each device's default batching goes unsaid
        parts.append("batched" if batched else "sequential")
    if record.get("pack"):
        parts.append("packed")
    if record.get("precision", "float32") != "float32":
        parts.append(str(record["precision"]))
    if not record.get("deterministic", True):
        parts.append("nondeterministic")
    return "-".join(parts)

MALLOPT_TRIM_THRESHOLD, MALLOPT_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's largest on 64-bit: bigger blocks still come from mmap


def retain_freed_memory() -> bool:
    """Make this process's malloc (glibc) keep freed memory for reuse: blocks up to 32 MiB
    come from the heap, not from fresh mmaps, and the heap is never trimmed back to the kernel,
    so a training loop that frees and reallocates the same activations every step stops page
    faulting. A process-wide allocation policy: it changes no value computed. Returns whether
    it applied (False off glibc, e.g. macOS or musl)."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(MALLOPT_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(MALLOPT_TRIM_THRESHOLD, 2**31 - 1))


def policy_for(device: str, *, workers: int | None = None, batched: bool | None = None, pack: bool = False,
               tf32: bool = False, deterministic: bool = True) -> DevicePolicy:
    """The policy for a device already known to exist (see `resolve`), with the defaults:
    - workers: on an accelerator one process by default, or the processes asked for, each
      training its own groups on the one device (runs this small leave it idle while the host
      dispatches a step: several in flight hide that; `harness bench` measures the host's
      microseconds per step), at most the usable cores; on CPU the request (default: every
      usable core) capped at the usable cores, as more would only share them;
    - batched: on CUDA, where one small run leaves the GPU idle between kernel launches; on CPU
      one-thread process workers measured faster (docs/performance.md, `harness bench`);
      `pack` implies it (packs are vectorised models);
    - channels_last: on CPU, where a siamese CNN trained ~1.6x faster in NHWC on a 2-core x86."""
    kind = device.partition(":")[0]
    if kind not in KINDS:
        raise ConfigError(f"--device {device}: unknown device; use auto, cpu, cuda, cuda:N or mps")
    if pack and batched is False:
        raise ConfigError("--pack trains vectorised models: it cannot go with --no-batch-rounds")
    count = max(1, min(workers or (1 if kind != "cpu" else usable_cores()), usable_cores()))
    return DevicePolicy(
        device=device,
        workers=count,
        threads=1,
        batched=pack or ((kind == "cuda") if batched is None else batched),
        channels_last=kind == "cpu",
        flush_denormal=kind == "cpu",
        retain_freed_memory=kind == "cpu",
        pack=pack,
        tf32=tf32 and kind == "cuda",
        deterministic=deterministic or kind == "cpu",
    )


def resolve(requested: str, *, workers: int | None = None, batched: bool | None = None, pack: bool = False,
            tf32: bool = False, deterministic: bool = True, elsewhere: str | None = None) -> DevicePolicy:
    """'auto', 'cpu', 'cuda', 'cuda:N' or 'mps' -> the policy for a device that exists here,
    else ConfigError saying what to use instead. `elsewhere`: the device the runs will find on
    machines that are not this one (a backend's workers elsewhere: Backend.remote_device),
    which is not looked for here."""
    device = elsewhere if elsewhere is not None else available(requested)
    return policy_for(device, workers=workers, batched=batched, pack=pack, tf32=tf32, deterministic=deterministic)


def available(requested: str) -> str:
    """The device `requested` names, checked against this machine ('auto': the best one here)."""
    import torch

    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    if requested == "cpu":
        return "cpu"
    if requested == "cuda" or requested.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {requested}: CUDA is not available on this machine; use --device cpu or auto")
        index = requested.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ConfigError(f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return requested
    if requested == "mps":
        if not mps:
            raise ConfigError("--device mps: MPS is not available on this machine; use --device cpu or auto")
        return "mps"
    raise ConfigError(f"--device {requested}: unknown device; use auto, cpu, cuda, cuda:N or mps")
