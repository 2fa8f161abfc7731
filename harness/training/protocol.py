"""The training protocol, decided once: what a run of a configuration does, whoever drives it.

Both drivers (sequential.py: one run, one model; batched.py: a configuration's rounds as one
vectorised model) implement `Learner`, the few things that differ between one model and R
stacked members, and call `train`. Everything else is decided here: seeds, the data a run sees,
the stages (pretrain when transfer is not none, pairs when it is not rule) and their epochs, the
frozen encoder, the losses and aux use, augmentation, the optimiser and schedule, weight
averaging, when to evaluate, test-time augmentation, the divergence rule and the final metrics.

Shapes: a driver's tensors carry an optional leading member dimension, written (R, ...) here;
the sequential driver has none. Every function below works on both.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import get_ema_multi_avg_fn

from harness.data import PairSets, digit_view, standardize, swap_augment
from harness.results import RunResult, Stage, Status
from harness.settings import RunConfig
from harness.training.optim import FunctionalOptimizer

EVAL_BATCH = 1000  # pairs per evaluation forward pass


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def diverged_reason(value: float, stage: Stage, epoch: int) -> str:
    return f"non-finite loss ({value}) in {stage.value} epoch {epoch + 1}"


# --------------------------------------------------------------------------- seeds


def seeds(config: RunConfig, round_index: int) -> tuple[int, int]:
    """(data seed, model seed). Data: base seed + round, shared by every configuration of a
    round (a paired design). Model (initialisation, dropout, minibatch order): derived from the
    base seed, the round and the configuration id."""
    text = f"{config.seed}:{round_index}:{config.config_id}"
    model_seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "big")
    return config.seed + round_index, model_seed


def member_seed(model_seed: int, member: int) -> int:
    """An ensemble member's model seed: the run's own for the first member (so that a run of
    one model is what it was before ensembles), a derived one for the others."""
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


# --------------------------------------------------------------------------- the data a run sees


@dataclass
class RunData:
    train_input: torch.Tensor  # (N, 2, 14, 14), standardised when asked, swapped twins appended
    train_target: torch.Tensor  # (N,)
    train_classes: torch.Tensor  # (N, 2)
    eval_sets: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # train / validation / test
    digits: torch.Tensor  # (2N, 1, 14, 14) single digits of the original training pairs
    digit_classes: torch.Tensor  # (2N,)


def prepare_data(config: RunConfig, sets: PairSets, device: torch.device) -> RunData:
    """The training pairs (less the validation pairs held out), standardised with their own
    statistics, swapped twins appended when asked; the evaluation sets; the single digits."""
    train_input, train_target, train_classes = sets.train_input, sets.train_target, sets.train_classes
    test_input = sets.test_input
    held_out = config.validation
    fit = slice(0, config.pairs - held_out)
    valid = slice(config.pairs - held_out, config.pairs)
    if config.normalize:
        train_input, test_input = standardize(train_input[fit], train_input, test_input)[1:]
    to = lambda *tensors: tuple(t.to(device) for t in tensors)  # noqa: E731
    fit_set = to(train_input[fit], train_target[fit], train_classes[fit])
    eval_sets = {"train": fit_set, "test": to(test_input, sets.test_target, sets.test_classes)}
    if held_out:
        eval_sets["validation"] = to(train_input[valid], train_target[valid], train_classes[valid])
    digits, digit_classes = digit_view(fit_set[0], fit_set[2])
    training = swap_augment(*fit_set, ties=config.swap_ties) if config.swap_augment else fit_set
    return RunData(*training, eval_sets, digits, digit_classes)


def minibatches(count: int, batch_size: int, generator: torch.Generator, device) -> list[torch.Tensor]:
    """One epoch's minibatch indices: a permutation drawn from the run's generator, cut in order."""
    order = torch.randperm(count, generator=generator).to(device)
    return [order[start : start + batch_size] for start in range(0, count, batch_size)]


# --------------------------------------------------------------------------- augmentation


def resamples(config: RunConfig) -> bool:
    """Whether training digits are moved (shift, rotation, scale, shear, elastic distortion)."""
    return bool(config.augment_shift or config.augment_rotate or config.augment_scale or config.augment_shear
                or config.augment_elastic)


def augments(config: RunConfig) -> bool:
    return resamples(config) or bool(config.augment_erase)


def random_affine(count: int, config: RunConfig, generator: torch.Generator) -> torch.Tensor:
    """(count, 2, 3) affine maps on the CPU: a random whole number of pixels in [-shift, shift]
    per axis and a random angle in [-rotate, rotate] degrees, drawn from `generator`; then, when
    asked, a scale in [1 - s, 1 + s] and a shear along the rows (drawn after, so that the maps
    of configurations without them are the same draws as before they existed)."""
    shift = torch.randint(-config.augment_shift, config.augment_shift + 1, (count, 2), generator=generator)
    angle = (torch.rand(count, generator=generator) * 2 - 1) * math.radians(config.augment_rotate)
    cos, sin = angle.cos(), angle.sin()
    translate = shift.float() * 2 / 14  # pixels -> normalised [-1, 1] coordinates of a 14-pixel side
    theta = torch.stack((cos, -sin, translate[:, 0], sin, cos, translate[:, 1]), 1).view(count, 2, 3)
    if config.augment_scale or config.augment_shear:
        # grid_sample reads the input at theta @ (output position): a digit drawn s times larger
        # is read at positions divided by s
        scale = 1 + (torch.rand(count, generator=generator) * 2 - 1) * config.augment_scale  # (count,)
        shear = ((torch.rand(count, generator=generator) * 2 - 1) * math.radians(config.augment_shear)).tan()
        linear = torch.zeros(count, 2, 2)
        linear[:, 0, 0] = linear[:, 1, 1] = 1 / scale
        linear[:, 0, 1] = shear / scale
        theta = torch.cat((theta[:, :, :2] @ linear, theta[:, :, 2:]), 2)
    return theta


ELASTIC_SIGMA = 2.0  # pixels of a 14x14 digit: Simard et al.'s 4 at 28x28
ERASE_AREA, ERASE_ASPECT = (0.02, 0.2), (0.3, 3.3)  # random erasing's rectangle: share of the image, h / w


def gaussian_smoothed(noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """noise (n, C, H, W) convolved with a normalised Gaussian of `sigma` pixels, per channel,
    the border repeated. Two grouped convolutions rather than torchvision's gaussian_blur: the
    workers never import torchvision, and stored runs with elastic distortion depend on this
    field to the last bit (torchvision reflects the border)."""
    radius = math.ceil(3 * sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=noise.dtype)
    kernel = torch.exp(-offsets**2 / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = noise.shape[1]
    rows = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    columns = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    smoothed = F.conv2d(F.pad(noise, (0, 0, radius, radius), mode="replicate"), rows, groups=channels)
    return F.conv2d(F.pad(smoothed, (radius, radius, 0, 0), mode="replicate"), columns, groups=channels)


def random_displacement(count: int, config: RunConfig, generator: torch.Generator) -> torch.Tensor:
    """(count, 14, 14, 2) elastic displacements in grid_sample's normalised coordinates: uniform
    noise smoothed by a Gaussian of ELASTIC_SIGMA pixels, each digit's field scaled to an RMS of
    `augment_elastic` pixels."""
    noise = torch.rand(count, 2, 14, 14, generator=generator) * 2 - 1
    field = gaussian_smoothed(noise, ELASTIC_SIGMA)  # (count, 2, 14, 14), in pixels once scaled
    rms = field.pow(2).mean((1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)
    return (field / rms * config.augment_elastic * 2 / 14).permute(0, 2, 3, 1)


def random_erasing(count: int, config: RunConfig, generator: torch.Generator) -> torch.Tensor:
    """(count, 14, 14) bool: the pixels each digit loses; a digit is erased with probability
    `augment_erase`, a rectangle of ERASE_AREA of the image with aspect (h / w) in ERASE_ASPECT."""
    erased = torch.rand(count, generator=generator) < config.augment_erase
    area = (ERASE_AREA[0] + torch.rand(count, generator=generator) * (ERASE_AREA[1] - ERASE_AREA[0])) * 196
    low, high = math.log(ERASE_ASPECT[0]), math.log(ERASE_ASPECT[1])
    aspect = torch.exp(low + torch.rand(count, generator=generator) * (high - low))
    height = (area * aspect).sqrt().round().clamp(1, 14)
    width = (area / aspect).sqrt().round().clamp(1, 14)
    top = (torch.rand(count, generator=generator) * (15 - height)).floor()
    left = (torch.rand(count, generator=generator) * (15 - width)).floor()
    position = torch.arange(14.0)
    rows = (position >= top[:, None]) & (position < (top + height)[:, None])  # (count, 14)
    columns = (position >= left[:, None]) & (position < (left + width)[:, None])
    return erased[:, None, None] & rows[:, :, None] & columns[:, None, :]


def apply_affine(images: torch.Tensor, theta: torch.Tensor, displacement: torch.Tensor | None = None) -> torch.Tensor:
    """Images (n, 1, 14, 14) resampled through the maps theta (n, 2, 3), plus an elastic
    displacement (n, 14, 14, 2) of the sampling grid when given."""
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    if displacement is not None:
        grid = grid + displacement.to(grid)
    # border padding repeats the background, which is not zero once inputs are standardised
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment_digits(images: torch.Tensor, config: RunConfig, generators: list[torch.Generator]) -> torch.Tensor:
    """Every digit of `images` (R?, n, C, 14, 14) moved, rotated, scaled, sheared, distorted and
    erased on its own, as the configuration asks; member r's draws come from generators[r] in
    its sequential order (the affine maps, then the displacements, then the erasures)."""
    if not augments(config):
        return images
    count = images.numel() // (images.shape[-2] * images.shape[-1] * len(generators))  # digits per member
    geometric = resamples(config)
    draws = []
    for generator in generators:
        theta = random_affine(count, config, generator) if geometric else None  # (n*C, 2, 3)
        displacement = random_displacement(count, config, generator) if config.augment_elastic else None
        erased = random_erasing(count, config, generator) if config.augment_erase else None
        draws.append((theta, displacement, erased))
    flat = images.reshape(-1, 1, *images.shape[-2:])  # (R*n*C, 1, 14, 14)
    moved = flat
    if geometric:
        theta = torch.cat([d[0] for d in draws])  # (R*n*C, 2, 3)
        displacement = torch.cat([d[1] for d in draws]) if config.augment_elastic else None  # (R*n*C, 14, 14, 2)
        moved = apply_affine(flat, theta, displacement)
    if config.augment_erase:
        erased = torch.cat([d[2] for d in draws]).to(moved.device)  # (R*n*C, 14, 14)
        background = flat.amin((-2, -1), keepdim=True)  # each digit's own background level
        moved = torch.where(erased[:, None], background, moved)
    return moved.reshape(images.shape)


def mix_digits(images: torch.Tensor, config: RunConfig, generators: list[torch.Generator]):
    """`digit_mix` on a batch of single digits (R?, b, 1, 14, 14): each member blends its batch
    with a permutation of itself (mixup) or pastes a rectangle of the permuted digits into it
    (cutmix). Returns (mixed images, partner (R?, b): the permuted positions, weight (R?,): the
    share of the loss that the digits' own labels carry). Member r draws from generators[r]:
    the permutation, then the weight from Beta(mix_alpha, mix_alpha) (Python's betavariate,
    seeded from the generator: torch draws Beta from its global generator only), then the
    rectangle."""
    batch = images.shape[-4]
    partners, weights, masks = [], [], []
    for generator in generators:
        partners.append(torch.randperm(batch, generator=generator))
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        weight = random.Random(seed).betavariate(config.mix_alpha, config.mix_alpha)
        mask = None
        if config.digit_mix == "cutmix":
            side = round(14 * math.sqrt(1 - weight))
            centre = torch.randint(0, 14, (2,), generator=generator).tolist()
            top, left = (min(max(c - side // 2, 0), 14 - side) for c in centre)
            mask = torch.zeros(14, 14, dtype=torch.bool)
            mask[top : top + side, left : left + side] = True
            weight = 1 - side * side / 196  # the labels weighted by the area each digit shows
        weights.append(weight)
        masks.append(mask)
    device = images.device
    partner = torch.stack(partners).reshape(*images.shape[:-4], batch).to(device)  # (R?, b)
    weight = torch.tensor(weights, dtype=images.dtype).reshape(images.shape[:-4]).to(device)  # (R?,)
    others = images.gather(-4, partner.reshape(*partner.shape, 1, 1, 1).expand(images.shape))
    if config.digit_mix == "mixup":
        shaped = weight.reshape(*weight.shape, 1, 1, 1, 1)
        return shaped * images + (1 - shaped) * others, partner, weight
    mask = torch.stack(masks).reshape(*images.shape[:-4], 1, 1, 14, 14).to(device)
    return torch.where(mask, others, images), partner, weight


TEST_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def shifted(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Images (..., H, W) moved by (dy, dx) pixels, the border repeated into the gap."""
    height, width = images.shape[-2:]
    padded = F.pad(images.reshape(-1, 1, height, width), (1, 1, 1, 1), mode="replicate")
    return padded[..., 1 - dy : 1 - dy + height, 1 - dx : 1 - dx + width].reshape(images.shape)


# --------------------------------------------------------------------------- losses


def comparison_loss(logits: torch.Tensor, target: torch.Tensor, kind: str, smoothing: float = 0.0) -> torch.Tensor:
    """logits (B, 2) or (B, 1); target (B,) long in {0, 1}. `smoothing` applies to cross-entropy."""
    if logits.shape[1] == 1:
        score = logits.squeeze(1)
        if kind == "cross_entropy":
            return F.binary_cross_entropy_with_logits(score, target.float() * (1 - smoothing) + smoothing / 2)
        if kind == "mse":
            return F.mse_loss(torch.sigmoid(score), target.float())
        return F.mse_loss(score, target.float())
    if kind == "cross_entropy":
        return F.cross_entropy(logits, target, label_smoothing=smoothing)
    one_hot = F.one_hot(target, 2).float()
    return F.mse_loss(logits.softmax(1) if kind == "mse" else logits, one_hot)


def digit_loss(digits: torch.Tensor, classes: torch.Tensor, kind: str, smoothing: float = 0.0) -> torch.Tensor:
    """The sum of the two digits' losses: digits (B, 2, 10) logits, classes (B, 2)."""
    logits, labels = digits.reshape(-1, 10), classes.reshape(-1)  # (2B, 10), (2B,)
    if kind == "cross_entropy":
        return 2 * F.cross_entropy(logits, labels, label_smoothing=smoothing)
    one_hot = F.one_hot(labels, 10).float()
    return 2 * F.mse_loss(logits.softmax(1) if kind == "mse" else logits, one_hot)


def uses_aux(config: RunConfig) -> bool:
    return config.aux_loss and config.aux_weight > 0


def pair_objective(config: RunConfig, comparison, digits, target, classes) -> torch.Tensor:
    """One member's pair-stage loss: comparison loss + aux_weight x the digits' losses."""
    loss = comparison_loss(comparison, target, config.loss, config.label_smoothing)
    if uses_aux(config):
        loss = loss + config.aux_weight * digit_loss(digits, classes, config.loss, config.label_smoothing)
    return loss


def digit_objective(config: RunConfig, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """One member's pretraining loss: logits (b, 10) of single digits, labels (b,)."""
    return F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)


def distillation_loss(config: RunConfig, logits: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher || model) between predictions softened by the temperature T, times T^2 so that
    its gradients keep their scale whatever T (Hinton et al.): logits (b, 10), teacher (b, 10)
    the teachers' averaged probabilities at T."""
    temperature = config.distill_temperature
    log_probabilities = F.log_softmax(logits / temperature, -1)
    return F.kl_div(log_probabilities, teacher, reduction="batchmean") * temperature**2


def mixed_digit_objective(config: RunConfig, logits: torch.Tensor, labels: torch.Tensor, partner_labels: torch.Tensor,
                          weight: torch.Tensor) -> torch.Tensor:
    """One member's pretraining loss on mixed digits: `weight` x the loss on the digits' own
    labels + (1 - weight) x the loss on their partners' (mixup's and cutmix's rule)."""
    return weight * digit_objective(config, logits, labels) + (1 - weight) * digit_objective(config, logits, partner_labels)


def predict(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Predicted target (...,): 1 where the model says first <= second; logits (..., 2) or (..., 1)."""
    if logits.shape[-1] == 1:
        return (logits[..., 0] > (0.5 if kind == "mse_linear" else 0.0)).long()
    return logits.argmax(-1)


# --------------------------------------------------------------------------- optimisation


def make_optimizer(config: RunConfig, parameters) -> FunctionalOptimizer | torch.optim.Optimizer:
    """The configuration's optimiser: `step()` and `zero_grad(set_to_none=True)`.
    `foreach=True`: the multi-tensor implementation, which torch picks by itself on CUDA only;
    on CPU it steps in 2/3 of the time with bit-identical results (the fused kernels are
    faster still, but round differently, so they are not used). With a constant learning rate
    it is torch.optim's own update without a torch.optim.Optimizer (harness.training.optim:
    the same numbers, without importing torch._dynamo in every worker); a schedule drives a
    torch.optim optimiser, which torch's schedulers require."""
    parameters = [p for p in parameters if p.requires_grad]
    momentum = config.momentum if config.optimizer == "sgd" else 0.0
    if config.lr_schedule == "constant":
        return FunctionalOptimizer(config.optimizer, parameters, lr=config.lr, weight_decay=config.weight_decay,
                                   momentum=momentum, foreach=True)
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.lr, momentum=momentum, weight_decay=config.weight_decay,
                               foreach=True)
    optimizer = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return optimizer(parameters, lr=config.lr, weight_decay=config.weight_decay, foreach=True)


def make_schedule(config: RunConfig, optimizer, epochs: int, steps_per_epoch: int):
    """The per-step learning-rate schedule of one stage, or None for a constant rate."""
    total = max(1, epochs * steps_per_epoch)
    if config.lr_schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total)
    if config.lr_schedule == "cosine":
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


# --------------------------------------------------------------------------- stages


@dataclass(frozen=True)
class StagePlan:
    stage: Stage
    epochs: int
    frozen_encoder: bool = False  # the pretrained encoder is not trained (nor its batch norm)


def stages(config: RunConfig) -> list[StagePlan]:
    """The stages a configuration trains, in order (the cost estimate reads them too)."""
    plan = []
    if config.transfer != "none":
        epochs = config.epochs if config.pretrain_epochs is None else config.pretrain_epochs
        plan.append(StagePlan(Stage.PRETRAIN, epochs))
    if config.transfer != "rule":
        plan.append(StagePlan(Stage.PAIRS, config.epochs, frozen_encoder=config.transfer == "frozen"))
    return plan


def evaluates(config: RunConfig, plan: StagePlan, epoch: int) -> bool:
    """Whether the learning curve is measured after `epoch` (0-based): every `eval_every`
    epochs, and always after a stage's last."""
    return epoch + 1 == plan.epochs or (epoch + 1) % config.eval_every == 0


def train_mode(model: torch.nn.Module, plan: StagePlan) -> None:
    """The modules' modes for a stage's epoch: the encoder alone when pretraining; the whole
    model otherwise, but a frozen encoder stays in eval mode (frozen batch-norm statistics too)."""
    if plan.stage is Stage.PRETRAIN:
        model.digit_encoder.train()
        return
    model.train()
    if plan.frozen_encoder:
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
Scores = dict[str, list[dict[str, float | None]]]  # set name -> per member {"error", "digit_error"}


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
                digits = torch.stack([o[1] for o in outputs]).mean(0)  # (R?, b, 2, 10)
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


class Learner(Protocol):
    """What a driver supplies: one model (sequential) or R stacked members (batched)."""

    members: int
    fail_fast: bool  # stop at the first non-finite loss (one model) or let the others go on

    def examples(self, stage: Stage) -> int: ...  # training examples of the stage

    def trainable(self, plan: StagePlan): ...  # the tensors the stage's optimiser steps

    def train_mode(self, plan: StagePlan) -> None: ...

    def batches(self, count: int) -> list[torch.Tensor]: ...  # indices (R?, b) per step

    def take(self, name: str, index: torch.Tensor) -> torch.Tensor: ...  # a RunData tensor's rows

    def augment(self, images: torch.Tensor) -> torch.Tensor: ...

    def mix(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...  # mix_digits

    def teach(self, images: torch.Tensor) -> torch.Tensor: ...  # the teachers' softened probabilities (R?, b, 10)

    def forward_pairs(self, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]: ...

    def forward_digits(self, images: torch.Tensor) -> torch.Tensor: ...

    def per_member(self, loss: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]: ...

    def loss_groups(self) -> list[tuple[RunConfig, slice]]: ...  # members sharing a configuration, in order; together, every member

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


def train(config: RunConfig, learner: Learner) -> Outcome:
    """Train every stage of `config` through `learner`; raises for a failure that is not one
    member's divergence (a model without digit outputs asked for an aux loss, say)."""
    outcome = Outcome([[] for _ in range(learner.members)], [None] * learner.members)
    for plan in stages(config):
        train_stage(config, plan, learner, outcome)
    if outcome.latest is None:  # no epoch at all (pretrain_epochs = 0 with the rule)
        outcome.latest = learner.evaluate()
    return outcome


@dataclass
class Tally:
    """The training examples an epoch's own steps misclassified, per member (R?,): the
    learning curve's running train error (`curve_train_error = "running"`)."""

    wrong: torch.Tensor | int = 0
    seen: int = 0

    def add(self, comparison: torch.Tensor, target: torch.Tensor, kind: str) -> None:
        self.wrong = self.wrong + (predict(comparison.detach(), kind) != target).sum(-1)
        self.seen += target.shape[-1]

    def errors(self) -> list[float]:
        return [w / self.seen for w in torch.as_tensor(self.wrong).reshape(-1).tolist()]


def train_stage(config: RunConfig, plan: StagePlan, learner: Learner, outcome: Outcome) -> None:
    count = learner.examples(plan.stage)
    optimizer = make_optimizer(config, learner.trainable(plan))
    schedule = make_schedule(config, optimizer, plan.epochs, math.ceil(count / config.batch_size))
    running = config.curve_train_error == "running" and plan.stage is Stage.PAIRS
    tally = Tally()
    loss_of = objective(config, plan, learner, tally if running else None)
    for epoch in range(plan.epochs):
        learner.train_mode(plan)
        total = 0.0
        tally.wrong, tally.seen = 0, 0
        for index in learner.batches(count):  # (R?, b)
            losses = loss_of(index)  # (R?,)
            if learner.fail_fast:
                value = losses.item()
                if not math.isfinite(value):  # before the update: the weights stay finite
                    raise TrainingDiverged(diverged_reason(value, plan.stage, epoch))
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # members are independent: each gets its own gradient
            optimizer.step()
            if schedule:
                schedule.step()
            learner.after_step()
            total = total + losses.detach().double() * index.shape[-1]
        end_epoch(config, plan, epoch, (total / count).reshape(-1).tolist(), learner, outcome,
                  tally.errors() if running else None)


def objective(config: RunConfig, plan: StagePlan, learner: Learner,
              tally: Tally | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """index (R?, b) -> the stage's loss of each member (R?,); `tally` counts the pair
    stage's misclassified training examples as they go by."""
    if plan.stage is Stage.PRETRAIN:
        digit_losses = learner.per_member(lambda logits, labels: digit_objective(config, logits, labels))
        mixed_losses = learner.per_member(lambda *tensors: mixed_digit_objective(config, *tensors))
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
    groups = [(learner.per_member(functools.partial(pair_objective, member_config)), uses_aux(member_config), part)
              for member_config, part in learner.loss_groups()]

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


def end_epoch(config: RunConfig, plan: StagePlan, epoch: int, losses: list[float], learner: Learner, outcome: Outcome,
              running: list[float] | None = None) -> None:
    """A member whose epoch loss is not finite fails (its weights are not finite); the others'
    curves get the epoch's row, with the errors when the schedule evaluates. `running`: the
    epoch's running train errors, which replace a scoring pass over the training pairs except
    after the stage's last epoch (whose scores are the run's final metrics)."""
    for position, value in enumerate(losses):
        if outcome.alive(position) and not math.isfinite(value):
            outcome.reasons[position] = f"TrainingDiverged: {diverged_reason(value, plan.stage, epoch)}"
    evaluate = evaluates(config, plan, epoch)
    from_training = running is not None and epoch + 1 < plan.epochs
    scores = None
    if evaluate:
        scores = learner.evaluate(skip=("train",) if from_training else ())
        if not from_training:
            outcome.latest = scores
    for position, curve in enumerate(outcome.curves):
        if not outcome.alive(position):
            continue
        row = {"stage": plan.stage.value, "epoch": epoch + 1, "train_loss": losses[position]}
        if evaluate:
            row.update({f"{name}_error": member[position]["error"] for name, member in scores.items()})
            if from_training:
                row["train_error"] = running[position]
        curve.append(row)


def finish(configs: list[RunConfig], outcome: Outcome, results: list[RunResult]) -> None:
    """The members' final metrics and status into their results (`configs`: each member's
    configuration). A diverged member is failed with no metrics: its weights are not finite,
    its errors meaningless."""
    for position, (config, result) in enumerate(zip(configs, results, strict=True)):
        digits = trained_on_digits(config)
        result.epochs = outcome.curves[position]
        if not outcome.alive(position):
            result.status, result.reason = Status.FAILED.value, outcome.reasons[position]
            continue
        for name, scores in outcome.latest.items():
            result.metrics[f"{name}_error"] = scores[position]["error"]
            # untrained intermediate logits are no digit prediction: no digit error for them
            result.metrics[f"{name}_digit_error"] = scores[position]["digit_error"] if digits else None
        # what tells a degenerate run (one class predicted, or a train error at chance) apart
        result.metrics["test_predicted_share"] = outcome.latest["test"][position]["predicted_share"]
        result.metrics["train_chance_error"] = outcome.latest["train"][position]["chance_error"]
        result.metrics["train_loss"] = next((row["train_loss"] for row in reversed(result.epochs)), None)
        result.status = Status.DONE.value
