"""The pairs task's training, over the generic protocol (harness.training.protocol): its
stages (a transfer variant's single-digit pretraining, then the pairs), its objective (the
comparison loss, the aux loss, mixed and distilled digits), how a model is scored (the
comparison error, the digit error where digits were trained, test-time augmentation) and
ensembles. Its two drivers implement `PairsLearner`: sequential.py (one model) and batched.py
(a configuration's rounds, or a pack of configurations, as one vectorised model).

Shapes: (R?, ...) is an optional leading member dimension; the sequential driver has none.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from harness.results import RunResult, Stage
from harness.settings import RunConfig
from harness.tasks.pairs.augment import TEST_SHIFTS, shifted
from harness.tasks.pairs.losses import (
    digit_objective,
    distillation_loss,
    mixed_digit_objective,
    pair_objective,
    uses_aux,
)
from harness.training import protocol
from harness.training.protocol import Outcome, Scores, predict

EVAL_BATCH = 1000  # pairs per evaluation forward pass


# --------------------------------------------------------------------------- stages


@dataclass(frozen=True)
class PairsStage(protocol.TrainingStage):
    frozen_encoder: bool = False  # the pretrained encoder is not trained (nor its batch norm)


def stages(config: RunConfig) -> list[PairsStage]:
    """The stages a configuration trains, in order (the cost estimate reads them too): the
    single-digit stage when transfer is not none, the pairs when it is not the rule."""
    plan = []
    if config.transfer != "none":
        epochs = config.epochs if config.pretrain_epochs is None else config.pretrain_epochs
        plan.append(PairsStage(Stage.PRETRAIN, epochs, config.lr_schedule))
    if config.transfer != "rule":
        plan.append(PairsStage(Stage.MAIN, config.epochs, config.lr_schedule,
                               running_train_error=config.curve_train_error == "running",
                               frozen_encoder=config.transfer == "frozen"))
    return plan


def train_mode(model: torch.nn.Module, stage: PairsStage) -> None:
    """The modules' modes for a stage's epoch: the encoder alone when pretraining; the whole
    model otherwise, but a frozen encoder stays in eval mode (frozen batch-norm statistics too)."""
    if stage.name is Stage.PRETRAIN:
        model.digit_encoder.train()
        return
    model.train()
    if stage.frozen_encoder:
        model.digit_encoder.eval()


def scoring_mode(config: RunConfig, model: torch.nn.Module) -> None:
    """The modules' mode while scoring: eval, unless the configuration reproduces a loop that
    never calls model.eval() (then dropout stays on and batch norm uses batch statistics)."""
    model.train(config.score_in_train_mode)


def trained_on_digits(config: RunConfig) -> bool:
    """Whether the digit logits were trained, so that a digit error means something."""
    return config.aux_loss or config.transfer != "none"


# --------------------------------------------------------------------------- evaluation

Forward = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]


@torch.no_grad()
def score(config: RunConfig, forward: Forward, eval_sets, members: int, skip: tuple[str, ...] = ()) -> Scores:
    """Comparison error and, where the model has digit logits, digit error (fractions) of each
    member on each set. `forward`: pairs (R?, b, 2, 14, 14) -> (comparison (R?, b, K), digits
    (R?, b, 2, 10) or None). Test-time augmentation averages the logits of the shifted copies."""
    shifts = TEST_SHIFTS if config.test_time_augment else TEST_SHIFTS[:1]
    scores = {}
    for name, (pair_input, target, classes) in eval_sets.items():
        if name in skip:
            continue
        count = pair_input.shape[-4]
        wrong = digit_wrong = positive = 0
        has_digits = False
        for start in range(0, count, EVAL_BATCH):
            size = min(EVAL_BATCH, count - start)
            batch = pair_input.narrow(-4, start, size)  # (R?, b, 2, 14, 14)
            outputs = [forward(shifted(batch, dy, dx) if dy or dx else batch) for dy, dx in shifts]
            comparison = torch.stack([o[0] for o in outputs]).mean(0)  # (R?, b, K)
            predicted = predict(comparison, config.loss)  # (R?, b)
            wrong = wrong + (predicted != target.narrow(-1, start, size)).sum(-1)
            positive = positive + predicted.sum(-1)
            if outputs[0][1] is not None:
                has_digits = True
                digits = torch.stack([o[1] for o in outputs]).mean(0)  # (R?, b, 2, 10), or (R?, b, H, 2, 10)
                if digits.dim() == batch.dim():  # H auxiliary heads: their probabilities averaged
                    digits = digits.softmax(-1).mean(batch.dim() - 3)
                digit_wrong = digit_wrong + (digits.argmax(-1) != classes.narrow(-2, start, size)).sum((-2, -1))
        errors = [w / count for w in wrong.reshape(-1).tolist()]  # Python division: exact fractions
        digit_errors = [w / (2 * count) for w in digit_wrong.reshape(-1).tolist()] if has_digits else [None] * members
        shares = [p / count for p in positive.reshape(-1).tolist()]
        ones = target.sum(-1).reshape(-1).tolist()  # one set for all members, or one per member
        chances = [min(t, count - t) / count for t in ones] * (members if len(ones) == 1 else 1)
        scores[name] = [{"error": e, "digit_error": d, "predicted_share": p, "chance_error": c}
                        for e, d, p, c in zip(errors, digit_errors, shares, chances)]
    return scores


def averaged_forward(config: RunConfig, forwards: list[Forward]) -> Forward:
    """An ensemble's forward: its members' predicted probabilities averaged (softmax over the
    classes, or the sigmoid of a single score), returned as log-probabilities (a single score
    as the logit of the mean); outputs regressed as raw numbers (`mse_linear`) are averaged as
    they are."""

    def average(outputs: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(outputs)  # (M, ..., K)
        if config.loss == "mse_linear":
            return stacked.mean(0)
        if stacked.shape[-1] == 1:
            return torch.logit(torch.sigmoid(stacked).mean(0), eps=1e-7)
        return stacked.softmax(-1).mean(0).log()

    def forward(pairs):
        outputs = [member(pairs) for member in forwards]
        digits = None if outputs[0][1] is None else average([o[1] for o in outputs])
        return average([o[0] for o in outputs]), digits

    return forward


def teachers_forward(config: RunConfig, encoders: list[torch.nn.Module]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Self-distillation's target: single digits (b, 1, 14, 14) -> the trained teachers' digit
    probabilities at the distillation temperature, averaged (b, 10); no gradient, eval mode."""
    for encoder in encoders:
        encoder.eval()

    @torch.no_grad()
    def teach(images: torch.Tensor) -> torch.Tensor:
        return torch.stack([(encoder(images) / config.distill_temperature).softmax(-1) for encoder in encoders]).mean(0)

    return teach


def ensemble_outcome(outcomes: list[Outcome], scores: Scores) -> Outcome:
    """One run's outcome from its ensemble members' (one model each): the final scores are the
    ensemble's, the learning curve is the members' mean at each epoch (they train one after
    the other, so the ensemble itself is scored only at the end)."""
    curve = []
    for rows in zip(*(o.curves[0] for o in outcomes)):
        row = dict(rows[0])
        for key, value in rows[0].items():
            if key not in ("stage", "epoch") and value is not None:
                row[key] = sum(r[key] for r in rows) / len(rows)
        curve.append(row)
    reason = next((o.reasons[0] for o in outcomes if o.reasons[0] is not None), None)
    return Outcome([curve], [reason], scores)


# --------------------------------------------------------------------------- the driver interface


class PairsLearner(protocol.Learner, Protocol):
    """What the pairs objective asks of a driver besides the protocol's Learner."""

    def take(self, name: str, index: torch.Tensor) -> torch.Tensor: ...  # a RunData tensor's rows

    def augment(self, images: torch.Tensor) -> torch.Tensor: ...

    def mix(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...  # mix_digits

    def teach(self, images: torch.Tensor) -> torch.Tensor: ...  # the teachers' softened probabilities (R?, b, 10)

    def forward_pairs(self, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]: ...

    def forward_digits(self, images: torch.Tensor) -> torch.Tensor: ...

    def per_member(self, loss: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]: ...

    vectorised: bool  # per_member runs a loss under vmap, one member's tensors at a time

    # runs of members that share a configuration, in order: together, every member
    def loss_groups(self) -> list[tuple[RunConfig, slice]]: ...


def objective(config: RunConfig, stage: PairsStage, learner: PairsLearner,
              tally: protocol.Tally | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """index (R?, b) -> the stage's loss of each member (R?,); `tally` counts the pair
    stage's misclassified training examples as they go by."""
    vectorised = learner.vectorised  # its losses run under vmap (protocol.cross_entropy)
    if stage.name is Stage.PRETRAIN:
        digit_losses = learner.per_member(lambda x, labels: digit_objective(config, x, labels, vectorised=vectorised))
        mixed_losses = learner.per_member(lambda *tensors: mixed_digit_objective(config, *tensors, vectorised=vectorised))
        taught = learner.per_member(lambda logits, teacher: distillation_loss(config, logits, teacher))

        def pretrain_loss(index):
            images = learner.augment(learner.take("digits", index))  # (R?, b, 1, 14, 14)
            labels = learner.take("digit_classes", index)  # (R?, b)
            if config.digit_mix == "none":
                logits = learner.forward_digits(images)  # (R?, b, 10)
                loss = digit_losses(logits, labels)
            else:
                images, partner, weight = learner.mix(images)  # (R?, b, 1, 14, 14), (R?, b), (R?,)
                logits = learner.forward_digits(images)
                loss = mixed_losses(logits, labels, labels.gather(-1, partner), weight)
            if not config.distill_teachers:
                return loss
            weight = config.distill_weight
            return (1 - weight) * loss + weight * taught(logits, learner.teach(images))

        return pretrain_loss

    # each group of members sharing a configuration gets that configuration's loss (members of
    # a pack differ in what the loss reads: the aux loss and its weight)
    groups = [(learner.per_member(functools.partial(pair_objective, member_config, vectorised=vectorised)),
               uses_aux(member_config), part) for member_config, part in learner.loss_groups()]

    def pair_loss(index):
        pairs = learner.augment(learner.take("train_input", index))  # (R?, b, 2, 14, 14)
        comparison, digits = learner.forward_pairs(pairs)  # (R?, b, K), (R?, b, 2, 10) or None
        target, classes = learner.take("train_target", index), learner.take("train_classes", index)
        if tally is not None:
            tally.add(comparison, target, config.loss)
        losses = []
        for losses_of, aux, part in groups:
            if aux and digits is None:
                raise ValueError(f"{config.encoder} has no digit outputs for an aux loss")
            tensors = (comparison, digits if aux else comparison, target, classes)  # digits unused without aux
            if len(groups) > 1:  # one group holds every member: even a whole slice, a view,
                tensors = tuple(tensor[part] for tensor in tensors)  # costs its backward a gradient copy
            losses.append(losses_of(*tensors))
        return losses[0] if len(losses) == 1 else torch.cat(losses)  # (R?,)

    return pair_loss


def finish(configs: list[RunConfig], outcome: Outcome, results: list[RunResult]) -> None:
    """protocol.finish, then no digit error for a member whose digit logits were not trained
    (`configs`: each member's configuration): untrained intermediate logits predict no digit."""
    protocol.finish(outcome, results)
    for config, result in zip(configs, results, strict=True):
        if not trained_on_digits(config):
            result.metrics.update({key: None for key in result.metrics if key.endswith("_digit_error")})
