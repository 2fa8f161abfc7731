"""The rounds of one configuration trained as one vectorised model (torch.func).

Each round is a member: its own data (the round's data seed), its own initial weights (built
under its model seed exactly as a sequential run builds them) and its own minibatch order and
augmentation (drawn from its own generator in the sequential order). The members' parameters
are stacked along a leading dimension; one `vmap` of `functional_call` runs them all, and
one optimiser steps the stacked tensors. Adam, AdamW and SGD are elementwise, so the stacked
step is each member's own step; nothing couples the members (no global gradient norm), and a
member whose loss goes non-finite fails alone.

What differs from the sequential path: dropout masks (drawn by vmap, independent per member,
not from the member's seed) and float summation order (so errors agree within a tolerance).
"""

from __future__ import annotations

import copy
import math
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from harness.config import RunConfig
from harness.data import PairSource
from harness.train import (
    TEST_SHIFTS,
    RunResult,
    apply_affine,
    augments,
    comparison_loss,
    digit_loss,
    failed_result,
    make_optimizer,
    make_schedule,
    minibatches,
    predict,
    prepare_data,
    random_affine,
    seeds,
    shifted,
)


class Members:
    """The stacked state of R members of one configuration."""

    def __init__(self, config: RunConfig, rounds: list[int], source: PairSource, device: torch.device):
        from architectures import build, count_parameters

        self.config, self.device = config, device
        self.results: list[RunResult] = []
        self.generators: list[torch.Generator] = []
        models, datasets = [], []
        for round_index in rounds:
            data_seed, model_seed = seeds(config, round_index)
            self.results.append(RunResult(config.config_id, round_index, data_seed, model_seed, "failed", device=str(device)))
            datasets.append(prepare_data(config, source.pairs(config.pairs, data_seed), device))
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(model_seed)  # the initialisation a sequential run gets
                models.append(build(config.encoder, config.model_options()).to(device))
            self.generators.append(torch.Generator().manual_seed(model_seed))
        self.params_count = count_parameters(models[0])
        self.params, self.buffers = stack_module_state(models)  # name -> (R, ...)
        self.base = copy.deepcopy(models[0]).to("meta")  # the code; the weights are stacked
        stack = lambda name: torch.stack([getattr(d, name) for d in datasets])  # noqa: E731
        self.train_input = stack("train_input")  # (R, N, 2, 14, 14)
        self.train_target = stack("train_target")  # (R, N)
        self.train_classes = stack("train_classes")  # (R, N, 2)
        self.digits = stack("digits")  # (R, 2N', 1, 14, 14)
        self.digit_classes = stack("digit_classes")  # (R, 2N')
        self.eval_sets = {
            name: tuple(torch.stack([d.eval_sets[name][i] for d in datasets]) for i in range(3))
            for name in datasets[0].eval_sets
        }
        self.alive = [True] * len(rounds)
        self.averaged = None
        if config.ema_decay:
            self.averaged = {name: t.detach().clone() for name, t in {**self.params, **self.buffers}.items()}
        self.encoder_prefix = next(
            (name + "." for name, module in self.base.named_modules() if module is getattr(self.base, "digit_encoder", None)),
            None,
        )

    @property
    def size(self) -> int:
        return len(self.results)

    def encoder_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k[len(self.encoder_prefix) :]: v for k, v in state.items() if k.startswith(self.encoder_prefix)}

    def update_average(self) -> None:
        """The same exponential moving average torch.optim.swa_utils.get_ema_multi_avg_fn keeps."""
        if self.averaged is None:
            return
        for name, current in {**self.params, **self.buffers}.items():
            average = self.averaged[name]
            if average.is_floating_point():
                average.lerp_(current.detach(), 1 - self.config.ema_decay)
            else:
                average.copy_(current)

    def batches(self, count: int) -> list[torch.Tensor]:
        """The epoch's minibatch indices (R, b) per step, each member drawing from its generator."""
        orders = [minibatches(count, self.config.batch_size, g, "cpu") for g in self.generators]
        return [torch.stack(step).to(self.device) for step in zip(*orders)]

    def augmented(self, images: torch.Tensor) -> torch.Tensor:
        """images (R, b, C, 14, 14), each member's digits moved with draws from its generator."""
        if not augments(self.config):
            return images
        shape = images.shape
        count = shape[1] * shape[2]
        theta = torch.cat([random_affine(count, self.config, g) for g in self.generators])  # (R*b*C, 2, 3)
        return apply_affine(images.reshape(-1, 1, *shape[-2:]), theta).reshape(shape)


def _gather(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """tensor (R, N, ...) and index (R, b) -> (R, b, ...)."""
    return tensor[torch.arange(len(index), device=index.device)[:, None], index]


def _fail(members: Members, losses: list[float], stage: str, epoch: int) -> None:
    for position, value in enumerate(losses):
        if members.alive[position] and not math.isfinite(value):
            members.alive[position] = False
            members.results[position].reason = f"TrainingDiverged: non-finite loss ({value}) in {stage} epoch {epoch + 1}"


def _stage(members: Members, stage: str, epochs: int, count: int, trainable: dict, loss_of, record, train_mode) -> None:
    """One training stage of every member: `loss_of(index)` -> per-member losses (R,);
    `train_mode()` puts the modules in training mode at each epoch (evaluation leaves them in eval)."""
    config = members.config
    optimizer = make_optimizer(config, trainable.values())
    schedule = make_schedule(config, optimizer, epochs, math.ceil(count / config.batch_size))
    for epoch in range(epochs):
        train_mode()
        total = torch.zeros(members.size, device=members.device)
        for index in members.batches(count):  # (R, b)
            losses = loss_of(index)  # (R,)
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # members are independent: each gets its own gradient
            optimizer.step()
            if schedule:
                schedule.step()
            members.update_average()
            total += losses.detach() * index.shape[1]
        _fail(members, total.tolist(), stage, epoch)
        record(stage, epoch, (total / count).tolist())


def train_rounds(config: RunConfig, rounds: list[int], source: PairSource, device: str | torch.device = "cpu") -> list[RunResult]:
    """Train `rounds` of one configuration together; one RunResult per round, in order.

    Never raises for a failed training: every member is recorded failed with the reason.
    """
    device = torch.device(device)
    started = time.perf_counter()
    try:
        members = Members(config, rounds, source, device)
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
        return [failed_result(config, round_index, reason, str(device)) for round_index in rounds]
    try:
        _train(members)
        for position, result in enumerate(members.results):
            if members.alive[position]:
                result.status = "done"
    except Exception as error:
        for result in members.results:
            result.status, result.reason = "failed", result.reason or f"{type(error).__name__}: {error}"
    seconds = (time.perf_counter() - started) / members.size  # the group's wall time, shared
    for result in members.results:
        result.params, result.seconds = members.params_count, seconds
    return members.results


def _train(members: Members) -> None:
    config = members.config
    base = members.base

    def forward(module):
        def run(params, buffers, pairs):
            output = functional_call(module, (params, buffers), (pairs,))
            return output if isinstance(output, torch.Tensor) else tuple(o for o in output if o is not None)

        return vmap(run, randomness="different")

    latest: dict[str, list[dict]] = {}

    @torch.no_grad()
    def evaluate_all() -> None:
        base.eval()
        params, buffers = members.params, members.buffers
        if members.averaged is not None:
            params = {k: members.averaged[k] for k in members.params}
            buffers = {k: members.averaged[k] for k in members.buffers}
        run = forward(base)
        shifts = TEST_SHIFTS if config.test_time_augment else TEST_SHIFTS[:1]
        for name, (pair_input, target, classes) in members.eval_sets.items():
            wrong = torch.zeros(members.size, dtype=torch.long, device=members.device)
            digit_wrong = torch.zeros(members.size, dtype=torch.long, device=members.device)
            has_digits = False
            for start in range(0, pair_input.shape[1], 1000):
                batch = pair_input[:, start : start + 1000]  # (R, b, 2, 14, 14)
                outputs = [run(params, buffers, shifted(batch, dy, dx) if dy or dx else batch) for dy, dx in shifts]
                comparison = torch.stack([o[0] for o in outputs]).mean(0)  # (R, b, 2)
                predicted = vmap(lambda logits: predict(logits, config.loss))(comparison)
                wrong += (predicted != target[:, start : start + 1000]).sum(1)
                if len(outputs[0]) > 1:
                    has_digits = True
                    digits = torch.stack([o[1] for o in outputs]).mean(0)  # (R, b, 2, 10)
                    digit_wrong += (digits.argmax(-1) != classes[:, start : start + 1000]).sum((1, 2))
            count = pair_input.shape[1]
            errors = [w / count for w in wrong.tolist()]
            digit_errors = [w / (2 * count) for w in digit_wrong.tolist()] if has_digits else [None] * members.size
            latest[name] = [{"error": e, "digit_error": d} for e, d in zip(errors, digit_errors)]

    def record(stage: str, epoch: int, losses: list[float]) -> None:
        stage_epochs = config.pretrain_epochs if stage == "pretrain" and config.pretrain_epochs is not None else config.epochs
        evaluate = epoch + 1 == stage_epochs or (epoch + 1) % config.eval_every == 0
        if evaluate:
            evaluate_all()
        for position, result in enumerate(members.results):
            if not members.alive[position]:
                continue
            row = {"stage": stage, "epoch": epoch + 1, "train_loss": losses[position]}
            if evaluate:
                row.update({f"{name}_error": scores[position]["error"] for name, scores in latest.items()})
            result.epochs.append(row)

    if config.transfer != "none":
        encoder = base.digit_encoder
        params = members.encoder_state(members.params)
        buffers = members.encoder_state(members.buffers)
        run_encoder = vmap(lambda p, b, x: functional_call(encoder, (p, b), (x,)), randomness="different")

        def pretrain_loss(index):
            images = members.augmented(_gather(members.digits, index))  # (R, b, 1, 14, 14)
            logits = run_encoder(params, buffers, images)  # (R, b, 10)
            labels = _gather(members.digit_classes, index)  # (R, b)
            return vmap(lambda lo, la: F.cross_entropy(lo, la, label_smoothing=config.label_smoothing))(logits, labels)

        epochs = config.epochs if config.pretrain_epochs is None else config.pretrain_epochs
        _stage(members, "pretrain", epochs, members.digits.shape[1], params, pretrain_loss, record, encoder.train)

    if config.transfer != "rule":
        trainable = dict(members.params)
        if config.transfer == "frozen":
            for name in [k for k in trainable if k.startswith(members.encoder_prefix)]:
                trainable.pop(name).requires_grad_(False)
        run = forward(base)
        use_aux = config.aux_loss and config.aux_weight > 0

        def member_loss(comparison, digits, target, classes):
            loss = comparison_loss(comparison, target, config.loss, config.label_smoothing)
            if use_aux:
                loss = loss + config.aux_weight * digit_loss(digits, classes, config.loss, config.label_smoothing)
            return loss

        def pair_loss(index):
            pairs = members.augmented(_gather(members.train_input, index))  # (R, b, 2, 14, 14)
            outputs = run(members.params, members.buffers, pairs)
            if use_aux and len(outputs) < 2:
                raise ValueError(f"{config.encoder} has no digit outputs for an aux loss")
            digits = outputs[1] if use_aux else outputs[0]  # unused without aux
            target, classes = _gather(members.train_target, index), _gather(members.train_classes, index)
            return vmap(member_loss)(outputs[0], digits, target, classes)

        def train_mode() -> None:
            base.train()
            if config.transfer == "frozen":
                base.digit_encoder.eval()  # frozen means frozen batch-norm statistics too

        _stage(members, "pairs", config.epochs, members.train_input.shape[1], trainable, pair_loss, record, train_mode)

    if not latest:
        evaluate_all()
    trained_on_digits = config.aux_loss or config.transfer != "none"
    for position, result in enumerate(members.results):
        if not members.alive[position]:
            continue  # a diverged member is failed: its weights are not finite, its errors meaningless
        for name, scores in latest.items():
            result.metrics[f"{name}_error"] = scores[position]["error"]
            result.metrics[f"{name}_digit_error"] = scores[position]["digit_error"] if trained_on_digits else None
        result.metrics["train_loss"] = next((row["train_loss"] for row in reversed(result.epochs)), None)
