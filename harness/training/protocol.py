"""The training protocol, decided once: what a run does, whatever its task and whoever drives it.

A task's drivers (one model a run, or R stacked members trained as one vectorised model)
implement `Learner`: the few things that differ between one model and R members, and what the
task's loss and scores are. Everything else is decided here: seeds, the record of a run, the
minibatch order, the optimiser and its schedule, weight averaging, the epoch loop, when to
evaluate, the divergence rule, the learning curves and the final metrics.

Shapes: a driver's tensors carry an optional leading member dimension, written (R, ...) here;
a one-model driver has none. Every function below works on both.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import get_ema_multi_avg_fn

from harness.results import RunResult, Stage, Status
from harness.settings import RunConfig
from harness.training.optim import FunctionalOptimizer


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def diverged_reason(value: float, stage: Stage, epoch: int) -> str:
    return f"non-finite loss ({value}) in {stage.value} epoch {epoch + 1}"


# --------------------------------------------------------------------------- seeds and records


def seeds(config: RunConfig, round_index: int) -> tuple[int, int]:
    """(data seed, model seed). Data: base seed + round, shared by every configuration of a
    round (a paired design). Model (initialisation, dropout, minibatch order): derived from the
    base seed, the round and the configuration id."""
    text = f"{config.seed}:{round_index}:{config.config_id}"
    model_seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "big")
    return config.seed + round_index, model_seed


def member_seed(model_seed: int, member: int) -> int:
    """The model seed of a run's further model (an ensemble member, say): the run's own for the
    first (so that a run of one model is what it was before ensembles), a derived one otherwise."""
    if member == 0:
        return model_seed
    return int.from_bytes(hashlib.sha256(f"{model_seed}:member {member}".encode()).digest()[:7], "big")


def new_result(config: RunConfig, round_index: int, device: str) -> RunResult:
    """A run's record before training: failed until the protocol says it is done."""
    data_seed, model_seed = seeds(config, round_index)
    return RunResult(config.config_id, round_index, data_seed, model_seed, Status.FAILED.value, device=device)


def failed_result(config: RunConfig, round_index: int, reason: str, device: str) -> RunResult:
    """The record of a run that could not train at all (its worker was lost, say)."""
    result = new_result(config, round_index, device)
    result.reason = reason
    return result


def minibatches(count: int, batch_size: int, generator: torch.Generator, device) -> list[torch.Tensor]:
    """One epoch's minibatch indices: a permutation drawn from the run's generator, cut in order."""
    order = torch.randperm(count, generator=generator).to(device)
    return [order[start : start + batch_size] for start in range(0, count, batch_size)]


# --------------------------------------------------------------------------- decisions and their loss


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0, *,
                  vectorised: bool = False) -> torch.Tensor:
    """F.cross_entropy, the mean over the examples: logits (B, K), target (B,) long.

    `vectorised`: the call runs under torch.func.vmap, on one member's tensors of a vectorised
    model. There vmap takes F.cross_entropy apart through torch's Python decomposition of
    nll_loss: a Python call and a dozen operations in the forward (the ignored-index masks and
    their count), about as many again in the backward, every step. Without smoothing the loss
    is written here as what that decomposition computes when no index is ignored: the negated
    log-probability of each target, summed, over the examples' count; each of these operations
    vmap batches natively, and the numbers are the decomposition's, bit for bit, forward and
    backward (tests/test_pairs_batched.py holds them to it). Outside vmap F.cross_entropy's own kernel
    runs, whose sum takes another order."""
    if vectorised and smoothing == 0.0:
        picked = -logits.log_softmax(-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (B,)
        return picked.sum() / target.shape[-1]
    return F.cross_entropy(logits, target, label_smoothing=smoothing)


def decision_loss(logits: torch.Tensor, target: torch.Tensor, kind: str, smoothing: float = 0.0, *,
                  vectorised: bool = False) -> torch.Tensor:
    """The loss of a yes/no decision: logits (B, 2) or (B, 1); target (B,) long in {0, 1};
    `kind` a configuration's `loss`. `smoothing` applies to cross-entropy; `vectorised`: see
    cross_entropy."""
    if logits.shape[1] == 1:
        score = logits.squeeze(1)
        if kind == "cross_entropy":
            return F.binary_cross_entropy_with_logits(score, target.float() * (1 - smoothing) + smoothing / 2)
        if kind == "mse":
            return F.mse_loss(torch.sigmoid(score), target.float())
        return F.mse_loss(score, target.float())
    if kind == "cross_entropy":
        return cross_entropy(logits, target, smoothing, vectorised=vectorised)
    one_hot = F.one_hot(target, 2).float()
    return F.mse_loss(logits.softmax(1) if kind == "mse" else logits, one_hot)


def predict(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """The decision (...,): 1 where the logits (..., 2) or (..., 1) say yes; `kind` a
    configuration's `loss` (a raw regressed output says yes above 0.5)."""
    if logits.shape[-1] == 1:
        return (logits[..., 0] > (0.5 if kind == "mse_linear" else 0.0)).long()
    return logits.argmax(-1)


# --------------------------------------------------------------------------- optimisation


@dataclass(frozen=True)
class TrainingStage:
    """One stage of a run as the protocol trains it. A task may add what its drivers read."""

    name: Stage  # what its learning-curve rows are stored under
    epochs: int
    lr_schedule: str = "constant"  # per step: constant, onecycle (peak = lr) or cosine decay from lr
    # the learning curve's train error before the stage's last epoch comes from the epoch's own
    # steps (no scoring pass over the training examples)
    running_train_error: bool = False


def make_optimizer(config: RunConfig, parameters, lr_schedule: str = "constant") -> FunctionalOptimizer | torch.optim.Optimizer:
    """The configuration's optimiser: `step()` and `zero_grad()`.
    `foreach=True`: the multi-tensor implementation, which torch picks by itself on CUDA only;
    on CPU it steps in 2/3 of the time with bit-identical results (the fused kernels are
    faster still, but round differently, so they are not used). With a constant learning rate
    it is torch.optim's own update without a torch.optim.Optimizer (harness.training.optim:
    the same numbers, without importing torch._dynamo in every worker); a schedule drives a
    torch.optim optimiser, which torch's schedulers require."""
    parameters = [p for p in parameters if p.requires_grad]
    momentum = config.momentum if config.optimizer == "sgd" else 0.0
    if lr_schedule == "constant":
        return FunctionalOptimizer(config.optimizer, parameters, lr=config.lr, weight_decay=config.weight_decay,
                                   momentum=momentum, foreach=True)
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.lr, momentum=momentum, weight_decay=config.weight_decay,
                               foreach=True)
    optimizer = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return optimizer(parameters, lr=config.lr, weight_decay=config.weight_decay, foreach=True)


def make_schedule(config: RunConfig, optimizer, stage: TrainingStage, steps_per_epoch: int):
    """The per-step learning-rate schedule of one stage, or None for a constant rate."""
    total = max(1, stage.epochs * steps_per_epoch)
    if stage.lr_schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total)
    if stage.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return None


class WeightAverage:
    """An exponential moving average of weights, kept exactly as
    torch.optim.swa_utils.AveragedModel(use_buffers=True, multi_avg_fn=get_ema_multi_avg_fn)
    keeps it: the first update copies, later ones apply torch's EMA update to each dtype group.
    `averaged` and `current`: matching tensors (a model's and its copy's, or stacked members')."""

    def __init__(self, decay: float, averaged: list[torch.Tensor], current: list[torch.Tensor]):
        self.averaged, self.current = averaged, current
        self.update_fn = get_ema_multi_avg_fn(decay)
        self.updates = 0
        self.groups: dict[torch.dtype, tuple[list, list]] = {}  # by dtype, as AveragedModel groups them
        for average, now in zip(averaged, current):
            pair = self.groups.setdefault(average.dtype, ([], []))
            pair[0].append(average)
            pair[1].append(now.detach())  # a view of the same storage: it follows the training updates

    @torch.no_grad()
    def update(self) -> None:
        if self.updates == 0:
            for average, now in zip(self.averaged, self.current):
                average.copy_(now)
        else:
            for averages, nows in self.groups.values():
                self.update_fn(averages, nows, self.updates)
        self.updates += 1


def evaluates(config: RunConfig, stage: TrainingStage, epoch: int) -> bool:
    """Whether the learning curve is measured after `epoch` (0-based): every `eval_every`
    epochs, and always after a stage's last."""
    return epoch + 1 == stage.epochs or (epoch + 1) % config.eval_every == 0


# --------------------------------------------------------------------------- the driver interface

# set name (train / validation / test) -> per member: "error" (a fraction), "predicted_share" and
# "chance_error" (test and train sets), and any further error of the task ("digit_error")
Scores = dict[str, list[dict[str, float | None]]]
NOT_METRICS = ("predicted_share", "chance_error")  # per-set scores that are no `{set}_{key}` metric


class Learner(Protocol):
    """What a driver supplies: one model, or R stacked members, of a task."""

    members: int
    fail_fast: bool  # stop at the first non-finite loss (one model) or let the others go on

    def examples(self, stage: TrainingStage) -> int: ...  # training examples of the stage

    def optimizer(self, stage: TrainingStage): ...  # steps the stage's trainable tensors: zero_grad(), step()

    def train_mode(self, stage: TrainingStage) -> None: ...

    def batches(self, count: int) -> list[torch.Tensor]: ...  # indices (R?, b) per step

    def objective(self, stage: TrainingStage, tally: Tally | None) -> Callable[[torch.Tensor], torch.Tensor]: ...
    # index (R?, b) -> the loss of each member (R?,); `tally` counts misclassified examples

    def backward(self, losses: torch.Tensor) -> None: ...  # each member's gradient of its own loss

    def after_step(self) -> None: ...

    def evaluate(self, skip: tuple[str, ...] = ()) -> Scores: ...  # every eval set but those skipped


@dataclass
class Outcome:
    """What training left for each member: its learning curve, the last evaluation, whether it
    diverged (and why)."""

    curves: list[list[dict]]
    reasons: list[str | None]
    latest: Scores | None = None

    def alive(self, position: int) -> bool:
        return self.reasons[position] is None


@dataclass
class Tally:
    """The training examples an epoch's own steps misclassified, per member (R?,): the
    learning curve's running train error (TrainingStage.running_train_error)."""

    wrong: torch.Tensor | int = 0
    seen: int = 0

    def add(self, logits: torch.Tensor, target: torch.Tensor, kind: str) -> None:
        self.wrong = self.wrong + (predict(logits.detach(), kind) != target).sum(-1)
        self.seen += target.shape[-1]

    def errors(self) -> list[float]:
        return [w / self.seen for w in torch.as_tensor(self.wrong).reshape(-1).tolist()]


def train(config: RunConfig, stages: list[TrainingStage], learner: Learner) -> Outcome:
    """Train every stage through `learner`; raises for a failure that is not one member's
    divergence (a model without an output its loss needs, say)."""
    outcome = Outcome([[] for _ in range(learner.members)], [None] * learner.members)
    for stage in stages:
        train_stage(config, stage, learner, outcome)
    if outcome.latest is None:  # no epoch at all (a stage of 0 epochs)
        outcome.latest = learner.evaluate()
    return outcome


def train_stage(config: RunConfig, stage: TrainingStage, learner: Learner, outcome: Outcome) -> None:
    count = learner.examples(stage)
    optimizer = learner.optimizer(stage)
    schedule = make_schedule(config, optimizer, stage, math.ceil(count / config.batch_size))
    tally = Tally()
    loss_of = learner.objective(stage, tally if stage.running_train_error else None)
    for epoch in range(stage.epochs):
        learner.train_mode(stage)
        total = 0.0
        tally.wrong, tally.seen = 0, 0
        for index in learner.batches(count):  # (R?, b)
            losses = loss_of(index)  # (R?,)
            if learner.fail_fast:
                value = losses.item()
                if not math.isfinite(value):  # before the update: the weights stay finite
                    raise TrainingDiverged(diverged_reason(value, stage.name, epoch))
            optimizer.zero_grad()
            learner.backward(losses)  # members are independent: each gets its own gradient
            optimizer.step()
            if schedule:
                schedule.step()
            learner.after_step()
            total = total + losses.detach().double() * index.shape[-1]
        end_epoch(config, stage, epoch, (total / count).reshape(-1).tolist(), learner, outcome,
                  tally.errors() if stage.running_train_error else None)


def end_epoch(config: RunConfig, stage: TrainingStage, epoch: int, losses: list[float], learner: Learner,
              outcome: Outcome, running: list[float] | None = None) -> None:
    """A member whose epoch loss is not finite fails (its weights are not finite); the others'
    curves get the epoch's row, with the errors when the schedule evaluates. `running`: the
    epoch's running train errors, which replace a scoring pass over the training examples
    except after the stage's last epoch (whose scores are the run's final metrics)."""
    for position, value in enumerate(losses):
        if outcome.alive(position) and not math.isfinite(value):
            outcome.reasons[position] = f"TrainingDiverged: {diverged_reason(value, stage.name, epoch)}"
    evaluate = evaluates(config, stage, epoch)
    from_training = running is not None and epoch + 1 < stage.epochs
    scores = None
    if evaluate:
        scores = learner.evaluate(skip=("train",) if from_training else ())
        if not from_training:
            outcome.latest = scores
    for position, curve in enumerate(outcome.curves):
        if not outcome.alive(position):
            continue
        row = {"stage": stage.name.value, "epoch": epoch + 1, "train_loss": losses[position]}
        if evaluate:
            row.update({f"{name}_error": member[position]["error"] for name, member in scores.items()})
            if from_training:
                row["train_error"] = running[position]
        curve.append(row)


def finish(outcome: Outcome, results: list[RunResult]) -> None:
    """The members' final metrics and status into their results: each set's scores as
    `{set}_{score}` (`test_error`, `test_digit_error`), the test set's predicted share and the
    train set's chance error (which tell a degenerate run), the last epoch's loss. A diverged
    member is failed with no metrics: its weights are not finite, its errors meaningless."""
    for position, result in enumerate(results):
        result.epochs = outcome.curves[position]
        if not outcome.alive(position):
            result.status, result.reason = Status.FAILED.value, outcome.reasons[position]
            continue
        for name, scores in outcome.latest.items():
            result.metrics.update({f"{name}_{key}": value for key, value in scores[position].items()
                                   if key not in NOT_METRICS})
        result.metrics["test_predicted_share"] = outcome.latest["test"][position]["predicted_share"]
        result.metrics["train_chance_error"] = outcome.latest["train"][position]["chance_error"]
        result.metrics["train_loss"] = next((row["train_loss"] for row in reversed(result.epochs)), None)
        result.status = Status.DONE.value
