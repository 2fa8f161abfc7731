"""The rounds of one pairs configuration trained as one vectorised model (torch.func): a short
driver over the protocol.

Each round is a member: its own data (the round's data seed), its own initial weights (built
under its model seed exactly as a sequential run builds them) and its own minibatch order and
augmentation (drawn from its own generator in the sequential order). The members' parameters
are stacked along a leading dimension; one `vmap` of `functional_call` runs them all, and
one optimiser steps the stacked tensors. Adam, AdamW and SGD are elementwise, so the stacked
step is each member's own step; nothing couples the members (no global gradient norm), and a
member whose loss goes non-finite fails alone.

What differs from the sequential path: dropout masks (drawn by vmap from one generator seeded
by the members' seeds, independent per member) and float summation order (so errors agree
within a tolerance). Convolutions keep the NCHW layout: the stacked weights are not modules.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import time

import torch
from torch.func import functional_call, stack_module_state, vmap

from harness.device import CPU, DevicePolicy
from harness.results import RunResult, Stage
from harness.settings import RunConfig, declare
from harness.tasks.pairs import training
from harness.tasks.pairs.augment import augment_digits, mix_digits
from harness.tasks.pairs.data import prepare_data
from harness.tasks.pairs.settings import MODEL_OPTIONS, PairsSettings, model_options
from harness.tasks.pairs.training import PairsStage
from harness.training import protocol


def _outputs(output) -> tuple[torch.Tensor, ...]:
    """A model's output as vmap can return it: the tensors of a PairOutput, None left out."""
    return (output,) if isinstance(output, torch.Tensor) else tuple(o for o in output if o is not None)


def tied_names(model: torch.nn.Module) -> dict[str, str]:
    """A tensor `model` holds under several names (tied weights): each further name -> the first,
    the one named_parameters / named_buffers keep, and so stack_module_state. Read on the model
    itself: moving a copy to the meta device unties it."""
    aliases = {}
    for named in (model.named_parameters, model.named_buffers):
        first: dict[int, str] = {}  # a tensor's id -> its first name
        for name, tensor in named(remove_duplicate=False):
            if first.setdefault(id(tensor), name) != name:
                aliases[name] = first[id(tensor)]
    return aliases


class Members:
    """PairsLearner for the stacked state of R members of one configuration (or of a pack)."""

    fail_fast = False  # one member's divergence must not stop the others
    vectorised = True  # per_member: each loss under vmap

    def __init__(self, jobs: list[tuple[RunConfig, int]], source, device: torch.device):
        """`jobs`: (configuration, round) per member; the configurations share a pack_key."""
        from architectures import build, count_parameters

        self.configs = [config for config, _ in jobs]
        self.config, self.device = self.configs[0], device  # the structure and schedule all share
        self.results: list[RunResult] = []
        self.generators: list[torch.Generator] = []
        models, datasets = [], []
        for config, round_index in jobs:
            result = protocol.new_result(config, round_index, str(device))
            result.execution = {"channels_last": False}  # the stacked weights are not modules: NCHW
            self.results.append(result)
            datasets.append(prepare_data(config, source.pairs(config.pairs, result.data_seed), device))
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(result.model_seed)  # the initialisation a sequential run gets
                models.append(build(config.encoder, model_options(config)).to(device))
            self.generators.append(torch.Generator().manual_seed(result.model_seed))
        self.params_count = count_parameters(models[0])
        self.member_rows = torch.arange(len(jobs), device=device)[:, None]  # (R, 1): each member's own rows in take
        self.params, self.buffers = stack_module_state(models)  # name -> (R, ...)
        self.base = copy.deepcopy(models[0]).to("meta")  # the code; the weights are stacked
        stack = lambda name: torch.stack([getattr(d, name) for d in datasets])  # noqa: E731
        self.data = {
            "train_input": stack("train_input"),  # (R, N, 2, 14, 14)
            "train_target": stack("train_target"),  # (R, N)
            "train_classes": stack("train_classes"),  # (R, N, 2)
            "digits": stack("digits"),  # (R, 2N', 1, 14, 14)
            "digit_classes": stack("digit_classes"),  # (R, 2N')
        }
        self.eval_sets = {
            name: tuple(torch.stack([d.eval_sets[name][i] for d in datasets]) for i in range(3))
            for name in datasets[0].eval_sets
        }
        self.averaged = self.average = None
        if config.ema_decay:
            state = {**self.params, **self.buffers}
            self.averaged = {name: tensor.detach().clone() for name, tensor in state.items()}
            self.average = protocol.WeightAverage(config.ema_decay, list(self.averaged.values()), list(state.values()))
        encoder = getattr(self.base, "digit_encoder", None)
        self.encoder_prefix = next((name + "." for name, module in self.base.named_modules() if module is encoder), None)
        self.run_model = self.vmapped(self.base, tied_names(models[0]))
        self.run_encoder = None if encoder is None else self.vmapped(encoder, tied_names(models[0].digit_encoder))

    @property
    def members(self) -> int:
        return len(self.results)

    def mixing_seed(self) -> int:
        """A seed for the randomness vmap draws (dropout), fixed by the members' own seeds."""
        text = ":".join(str(r.model_seed) for r in self.results)
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "big")

    def encoder_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k[len(self.encoder_prefix) :]: v for k, v in state.items() if k.startswith(self.encoder_prefix)}

    @staticmethod
    def vmapped(module, aliases: dict[str, str]):
        """module's forward over members: (params (R, ...), buffers, inputs (R, ...)) -> its outputs (R, ...).
        `aliases` (tied_names of the model module was copied from): every further name of a tied
        tensor gets its first name's stacked tensor, so the names stay one tensor (and one
        gradient); functional_call's own search for ties, a walk over the modules at every
        call, is not needed (and would find none on the meta copy, which is untied)."""
        def run(params, buffers, inputs):
            if aliases:  # a parameter's further names are parameters' (a buffer's, buffers')
                params = {**params, **{name: params[first] for name, first in aliases.items() if first in params}}
                buffers = {**buffers, **{name: buffers[first] for name, first in aliases.items() if first in buffers}}
            return _outputs(functional_call(module, (params, buffers), (inputs,), tie_weights=False))

        return vmap(run, randomness="different")

    # training.PairsLearner

    def examples(self, stage: PairsStage) -> int:
        return self.data["digits" if stage.name is Stage.PRETRAIN else "train_input"].shape[1]

    def trainable(self, stage: PairsStage):
        if stage.name is Stage.PRETRAIN:
            return self.encoder_state(self.params).values()
        trainable = dict(self.params)
        if stage.frozen_encoder:
            for name in [k for k in trainable if k.startswith(self.encoder_prefix)]:
                trainable.pop(name).requires_grad_(False)
        return trainable.values()

    def optimizer(self, stage: PairsStage):
        return protocol.make_optimizer(self.config, self.trainable(stage), stage.lr_schedule)

    def train_mode(self, stage: PairsStage) -> None:
        training.train_mode(self.base, stage)

    def objective(self, stage: PairsStage, tally: protocol.Tally | None):
        return training.objective(self.config, stage, self, tally)

    def backward(self, losses: torch.Tensor) -> None:
        losses.sum().backward()

    def batches(self, count: int) -> list[torch.Tensor]:
        """The epoch's minibatch indices (R, b) per step, each member drawing from its generator."""
        orders = [protocol.minibatches(count, self.config.batch_size, g, "cpu") for g in self.generators]
        return [torch.stack(step).to(self.device) for step in zip(*orders)]

    def take(self, name: str, index: torch.Tensor) -> torch.Tensor:
        """data[name] (R, N, ...) at index (R, b) -> (R, b, ...)."""
        return self.data[name][self.member_rows, index]

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        return augment_digits(images, self.config, self.generators)

    def mix(self, images: torch.Tensor):
        return mix_digits(images, self.config, self.generators)

    def teach(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("self-distillation trains its models one after the other: train_rounds runs it "
                                  "as sequential runs")

    def forward_pairs(self, pairs: torch.Tensor):
        outputs = self.run_model(self.params, self.buffers, pairs)
        return outputs[0], (outputs[1] if len(outputs) > 1 else None)

    def forward_digits(self, images: torch.Tensor) -> torch.Tensor:
        params, buffers = self.encoder_state(self.params), self.encoder_state(self.buffers)
        return self.run_encoder(params, buffers, images)[0]  # (R, b, 10)

    def per_member(self, loss):
        return vmap(loss)

    def loss_groups(self) -> list[tuple[RunConfig, slice]]:
        """Runs of consecutive members with one configuration: (it, their slice)."""
        groups, start = [], 0
        for _, run in itertools.groupby(self.configs, key=lambda config: config.config_id):
            members = list(run)
            groups.append((members[0], slice(start, start + len(members))))
            start += len(members)
        return groups

    def after_step(self) -> None:
        if self.average is not None:
            self.average.update()

    def evaluate(self, skip: tuple[str, ...] = ()) -> protocol.Scores:
        training.scoring_mode(self.config, self.base)
        params, buffers = self.params, self.buffers
        if self.averaged is not None:
            params = {k: self.averaged[k] for k in self.params}
            buffers = {k: self.averaged[k] for k in self.buffers}

        def forward(pairs):
            outputs = self.run_model(params, buffers, pairs)
            return outputs[0], (outputs[1] if len(outputs) > 1 else None)

        return training.score(self.config, forward, self.eval_sets, self.members, skip)


def pack_key(config: RunConfig) -> str:
    """Configurations with one key build the same model and train it on the same schedule:
    they differ only in settings the pair loss alone reads (declared `loss_only`: aux_weight,
    and aux_loss where the model family declares it loss-only too, Family.loss_only), so their
    rounds can train as one vectorised model (train_pack). An ensemble or a distilled run
    trains its models one after the other: its key is its own configuration's."""
    from architectures import family

    if config.ensemble > 1 or config.distill_teachers:
        return config.config_id
    family_loss_only = family(config.encoder).loss_only
    free = {name: declared.default for name, declared in declare(PairsSettings).items()
            if declared.meta.loss_only and (name not in MODEL_OPTIONS or name in family_loss_only)}
    return config.replace(**free).config_id  # the id with those settings at their defaults


@functools.lru_cache(maxsize=64)
def _why_not_vectorised(encoder: str, options) -> str | None:
    from architectures import build

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        models = [build(encoder, options) for _ in range(2)]
        params, buffers = stack_module_state(models)
        base = copy.deepcopy(models[0]).to("meta")
        base.train()
        try:
            outputs = Members.vmapped(base, tied_names(models[0]))(params, buffers, torch.randn(2, 4, 2, 14, 14))
            sum(output.sum() for output in outputs).backward()
        except Exception as error:  # noqa: BLE001 - whatever the user's code does under vmap
            text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
            return f"{type(error).__name__}: {text}"[:300]
    return None


def why_not_vectorised(config: RunConfig) -> str | None:
    """Why a user's model cannot train as one vectorised model (its code does what torch.func's
    vmap cannot: data-dependent control flow, `.item()`, ...), found by trying two members on
    a small batch once per process; None for a built-in family, or a model that can. Such a
    model's rounds train one after the other instead."""
    from architectures import family

    if not family(config.encoder).user:
        return None
    return _why_not_vectorised(config.encoder, model_options(config))


def train_rounds(config: RunConfig, rounds: list[int], source, policy: DevicePolicy = CPU) -> list[RunResult]:
    """Train `rounds` of one configuration together; one RunResult per round, in order.

    Never raises for a failed training: every member is recorded failed with the reason.
    """
    return train_pack([(config, round_index) for round_index in rounds], source, policy)


def train_pack(jobs: list[tuple[RunConfig, int]], source, policy: DevicePolicy = CPU) -> list[RunResult]:
    """Train (configuration, round) jobs whose configurations share a pack_key as one
    vectorised model; one RunResult per job, in order. Never raises for a failed training."""
    if len({pack_key(config) for config, _ in jobs}) > 1:
        raise ValueError("train_pack: the configurations differ in more than the pair loss reads")
    config = jobs[0][0]
    unvectorised = None if config.ensemble > 1 or config.distill_teachers else why_not_vectorised(config)
    if config.ensemble > 1 or config.distill_teachers or unvectorised:  # one model after the other
        from harness.tasks.pairs.sequential import train_run

        results = [train_run(job_config, round_index, source, policy) for job_config, round_index in jobs]
        for result in results if unvectorised else []:  # its record says how it trained, and why
            result.execution.update(batched=False, unbatched_because=unvectorised)
        return results
    device = policy.torch_device()
    started = time.perf_counter()
    try:
        members = Members(jobs, source, device)
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
        return [protocol.failed_result(job_config, round_index, reason, policy.device) for job_config, round_index in jobs]
    try:
        with torch.random.fork_rng(devices=policy.rng_devices()):
            torch.manual_seed(members.mixing_seed())
            outcome = protocol.train(config, training.stages(config), members)
        training.finish(members.configs, outcome, members.results)
    except Exception as error:
        for result in members.results:
            result.reason = result.reason or f"{type(error).__name__}: {error}"
    seconds = (time.perf_counter() - started) / members.members  # the group's wall time, shared
    for result in members.results:
        result.params, result.seconds = members.params_count, seconds
    return members.results
