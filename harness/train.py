"""One training run: a configuration and a round in, errors and learning curves out.

Tensors stay on the device; minibatches are index slices of resident tensors (no DataLoader).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from architectures.pairs import PairOutput
from harness.config import RunConfig
from harness.data import PairSets, PairSource, digit_view, standardize, swap_augment


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class RunResult:
    """What a run produced. Errors are fractions in [0, 1]."""

    config_id: str
    round: int
    data_seed: int
    model_seed: int
    status: str  # "done" or "failed"
    reason: str | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    params: int | None = None
    seconds: float = 0.0
    device: str = "cpu"


def seeds(config: RunConfig, round_index: int) -> tuple[int, int]:
    """(data seed, model seed). Data: base seed + round, shared by every configuration of a
    round (a paired design). Model (initialisation, dropout, minibatch order): derived from the
    base seed, the round and the configuration id."""
    text = f"{config.seed}:{round_index}:{config.config_id}"
    model_seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "big")
    return config.seed + round_index, model_seed


def failed_result(config: RunConfig, round_index: int, reason: str, device: str) -> RunResult:
    """The record of a run that could not train at all (its worker was lost, say)."""
    data_seed, model_seed = seeds(config, round_index)
    return RunResult(config.config_id, round_index, data_seed, model_seed, "failed", reason=reason, device=device)


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


def predict(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Predicted target (B,): 1 where the model says first <= second."""
    if logits.shape[1] == 1:
        return (logits.squeeze(1) > (0.5 if kind == "mse_linear" else 0.0)).long()
    return logits.argmax(1)


def make_optimizer(config: RunConfig, parameters) -> torch.optim.Optimizer:
    parameters = [p for p in parameters if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    optimizer = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return optimizer(parameters, lr=config.lr, weight_decay=config.weight_decay)


def make_schedule(config: RunConfig, optimizer, epochs: int, steps_per_epoch: int):
    """The per-step learning-rate schedule of one stage, or None for a constant rate."""
    total = max(1, epochs * steps_per_epoch)
    if config.lr_schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total)
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return None


# --------------------------------------------------------------------------- augmentation


def augments(config: RunConfig) -> bool:
    return bool(config.augment_shift or config.augment_rotate)


def random_affine(count: int, config: RunConfig, generator: torch.Generator) -> torch.Tensor:
    """(count, 2, 3) affine maps on the CPU: a random whole number of pixels in [-shift, shift]
    per axis and a random angle in [-rotate, rotate] degrees, drawn from `generator`."""
    shift = torch.randint(-config.augment_shift, config.augment_shift + 1, (count, 2), generator=generator)
    angle = (torch.rand(count, generator=generator) * 2 - 1) * math.radians(config.augment_rotate)
    cos, sin = angle.cos(), angle.sin()
    translate = shift.float() * 2 / 14  # pixels -> normalised [-1, 1] coordinates of a 14-pixel side
    return torch.stack((cos, -sin, translate[:, 0], sin, cos, translate[:, 1]), 1).view(count, 2, 3)


def apply_affine(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Images (n, 1, 14, 14) resampled through the maps theta (n, 2, 3)."""
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    # border padding repeats the background, which is not zero once inputs are standardised
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment_digits(images: torch.Tensor, config: RunConfig, generator: torch.Generator) -> torch.Tensor:
    """Every digit of `images` (n, C, 14, 14) moved and rotated on its own (see random_affine);
    the draws come from the run's generator, so augmentation is seeded like minibatch order."""
    if not augments(config):
        return images
    single = images.reshape(-1, 1, *images.shape[-2:])  # (n*C, 1, 14, 14)
    return apply_affine(single, random_affine(len(single), config, generator)).reshape(images.shape)


TEST_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def shifted(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Images (..., H, W) moved by (dy, dx) pixels, the border repeated into the gap."""
    height, width = images.shape[-2:]
    padded = F.pad(images.reshape(-1, 1, height, width), (1, 1, 1, 1), mode="replicate")
    return padded[..., 1 - dy : 1 - dy + height, 1 - dx : 1 - dx + width].reshape(images.shape)


# --------------------------------------------------------------------------- data for a run


@dataclass
class RunData:
    train_input: torch.Tensor  # (N, 2, 14, 14), standardised when asked, swapped twins appended
    train_target: torch.Tensor
    train_classes: torch.Tensor
    eval_sets: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # train / validation / test
    digits: torch.Tensor  # (2N, 1, 14, 14) single digits of the original training pairs
    digit_classes: torch.Tensor


def prepare_data(config: RunConfig, sets: PairSets, device: torch.device) -> RunData:
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
    training = swap_augment(*fit_set) if config.swap_augment else fit_set
    return RunData(*training, eval_sets, digits, digit_classes)


# --------------------------------------------------------------------------- the loop


@torch.no_grad()
def evaluate(model, config: RunConfig, pair_input, target, classes, batch_size: int = 1000) -> dict[str, float]:
    """Comparison error and, where the model has digit logits, digit error (fractions)."""
    model.eval()
    wrong = digit_wrong = 0
    has_digits = False
    shifts = TEST_SHIFTS if config.test_time_augment else TEST_SHIFTS[:1]
    for start in range(0, len(pair_input), batch_size):
        batch = pair_input[start : start + batch_size]  # (b, 2, 14, 14)
        outputs = [model(shifted(batch, dy, dx) if dy or dx else batch) for dy, dx in shifts]
        # test-time augmentation averages the logits of the shifted copies
        output = PairOutput(
            torch.stack([o.comparison for o in outputs]).mean(0),
            None if outputs[0].digits is None else torch.stack([o.digits for o in outputs]).mean(0),
        )
        wrong += (predict(output.comparison, config.loss) != target[start : start + batch_size]).sum().item()
        if output.digits is not None:
            has_digits = True
            digit_wrong += (output.digits.argmax(2) != classes[start : start + batch_size]).sum().item()
    result = {"error": wrong / len(pair_input)}
    result["digit_error"] = digit_wrong / (2 * len(pair_input)) if has_digits else None
    return result


def minibatches(count: int, batch_size: int, generator: torch.Generator, device):
    order = torch.randperm(count, generator=generator).to(device)
    return [order[start : start + batch_size] for start in range(0, count, batch_size)]


def _step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, stage: str, epoch: int) -> float:
    """One optimisation step on `loss`; its value. A non-finite loss stops the run before the update."""
    value = loss.item()
    if not math.isfinite(value):
        raise TrainingDiverged(f"non-finite loss ({value}) in {stage} epoch {epoch + 1}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return value


def pretrain_digits(model, config: RunConfig, data: RunData, generator, device, record, after_step) -> None:
    """Transfer stage 1: the digit encoder alone learns the 2N single training digits."""
    encoder = model.digit_encoder
    optimizer = make_optimizer(config, encoder.parameters())
    epochs = config.epochs if config.pretrain_epochs is None else config.pretrain_epochs
    schedule = make_schedule(config, optimizer, epochs, math.ceil(len(data.digits) / config.batch_size))
    for epoch in range(epochs):
        encoder.train()
        total = 0.0
        for index in minibatches(len(data.digits), config.batch_size, generator, device):
            images = augment_digits(data.digits[index], config, generator)  # (b, 1, 14, 14)
            logits = encoder(images)  # (b, 10)
            loss = F.cross_entropy(logits, data.digit_classes[index], label_smoothing=config.label_smoothing)
            total += _step(optimizer, loss, "pretrain", epoch) * len(index)
            if schedule:
                schedule.step()
            after_step()
        record("pretrain", epoch, total / len(data.digits))


def train_pairs(model, config: RunConfig, data: RunData, generator, device, record, after_step) -> None:
    """The pair stage: comparison loss + aux_weight x digit losses, minibatches reshuffled per epoch."""
    freeze = config.transfer == "frozen"
    if freeze:
        for parameter in model.digit_encoder.parameters():
            parameter.requires_grad_(False)
            parameter.grad = None  # left over from pretraining
    optimizer = make_optimizer(config, model.parameters())
    schedule = make_schedule(config, optimizer, config.epochs, math.ceil(len(data.train_input) / config.batch_size))
    use_aux = config.aux_loss and config.aux_weight > 0
    smoothing = config.label_smoothing
    for epoch in range(config.epochs):
        model.train()
        if freeze:
            model.digit_encoder.eval()  # frozen means frozen batch-norm statistics too
        total = 0.0
        for index in minibatches(len(data.train_input), config.batch_size, generator, device):
            pairs = augment_digits(data.train_input[index], config, generator)  # (b, 2, 14, 14)
            output = model(pairs)  # comparison (b, 2), digits (b, 2, 10)
            loss = comparison_loss(output.comparison, data.train_target[index], config.loss, smoothing)
            if use_aux:
                if output.digits is None:
                    raise ValueError(f"{config.encoder} has no digit outputs for an aux loss")
                digits = digit_loss(output.digits, data.train_classes[index], config.loss, smoothing)
                loss = loss + config.aux_weight * digits
            total += _step(optimizer, loss, "pair", epoch) * len(index)
            if schedule:
                schedule.step()
            after_step()
        record("pairs", epoch, total / len(data.train_input))


def use_channels_last(model: torch.nn.Module) -> None:
    """2-D convolutions in NHWC layout: their activations (and the pooling on them) follow.
    Measured on a 2-core x86 CPU: a siamese CNN trains ~1.6x faster than in NCHW."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.to(memory_format=torch.channels_last)


def train_run(config: RunConfig, round_index: int, source: PairSource, device: str | torch.device = "cpu") -> RunResult:
    """Train one configuration for one round and evaluate it; never raises for a failed run."""
    from architectures import build, count_parameters

    device = torch.device(device)
    data_seed, model_seed = seeds(config, round_index)
    result = RunResult(config.config_id, round_index, data_seed, model_seed, "failed", device=str(device))
    started = time.perf_counter()
    try:
        data = prepare_data(config, source.pairs(config.pairs, data_seed), device)
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(model_seed)  # initialisation and dropout masks
            generator = torch.Generator().manual_seed(model_seed)  # minibatch order
            model = build(config.encoder, config.model_options()).to(device)
            if device.type == "cpu":
                use_channels_last(model)
            result.params = count_parameters(model)
            # the evaluated weights: the model's own, or their exponential moving average
            averaged = None
            if config.ema_decay:
                averaged = torch.optim.swa_utils.AveragedModel(
                    model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(config.ema_decay), use_buffers=True
                )

            def after_step() -> None:
                if averaged is not None:
                    averaged.update_parameters(model)

            latest: dict[str, dict] = {}  # the last evaluation, after the last epoch of the last stage

            def evaluate_all() -> None:
                evaluated = model if averaged is None else averaged.module
                latest.update({name: evaluate(evaluated, config, *tensors) for name, tensors in data.eval_sets.items()})

            def record(stage: str, epoch: int, train_loss: float) -> None:
                stage_epochs = config.epochs
                if stage == "pretrain" and config.pretrain_epochs is not None:
                    stage_epochs = config.pretrain_epochs
                row = {"stage": stage, "epoch": epoch + 1, "train_loss": train_loss}
                if epoch + 1 == stage_epochs or (epoch + 1) % config.eval_every == 0:
                    evaluate_all()
                    row.update({f"{name}_error": scores["error"] for name, scores in latest.items()})
                result.epochs.append(row)

            if config.transfer != "none":
                pretrain_digits(model, config, data, generator, device, record, after_step)
            if config.transfer != "rule":
                train_pairs(model, config, data, generator, device, record, after_step)
            if not result.epochs:  # no epoch at all (pretrain_epochs = 0 with the rule)
                evaluate_all()
            trained_on_digits = config.aux_loss or config.transfer != "none"
            for name, scores in latest.items():
                result.metrics[f"{name}_error"] = scores["error"]
                # untrained intermediate logits are no digit prediction: no digit error for them
                result.metrics[f"{name}_digit_error"] = scores["digit_error"] if trained_on_digits else None
            result.metrics["train_loss"] = next((row["train_loss"] for row in reversed(result.epochs)), None)
        result.status = "done"
    except Exception as error:  # a failed run is recorded with its reason; the matrix goes on
        result.reason = f"{type(error).__name__}: {error}"
    result.seconds = time.perf_counter() - started
    return result
