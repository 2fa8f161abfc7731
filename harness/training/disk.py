"""The disk task's training: a multilayer perceptron on its round's points, in minidl (the
from-scratch framework: manual backward, SGD, MSE) or in torch.nn with autograd.

Both frameworks start from the same weights: the minidl network is drawn first (report 002's
N(0, s^2) rule, from the run's model seed) and the torch.nn network copies it, so a framework
ablation differs only in how gradients and steps are computed. Seeds, minibatch order, the
divergence rule and the metrics are the pairs protocol's (harness.training.protocol).
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

import minidl
from harness.device import CPU, DevicePolicy
from harness.results import RunResult, Stage, Status
from harness.settings import RunConfig
from harness.tasks.disk import DiskSource, grid_points, layer_activations
from harness.training import protocol

MINIDL_ACTIVATIONS = {"tanh": minidl.Tanh, "relu": minidl.ReLU}
TORCH_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def widths(config: RunConfig) -> list[int]:
    """2 inputs, the hidden layers, 1 output."""
    return [2] + [config.hidden_units] * config.hidden_layers + [1]


def init_rule(config: RunConfig, activation: str) -> str:
    if config.init != "by_activation":
        return config.init
    return "xavier" if activation == "tanh" else "he"


def build_minidl(config: RunConfig, generator: torch.Generator) -> minidl.Sequential:
    """The perceptron in minidl; each linear layer's weights then bias drawn in order."""
    sizes, activations = widths(config), layer_activations(config)
    modules: list[minidl.Module] = []
    for fan_in, fan_out, activation in zip(sizes, sizes[1:], activations):
        modules.append(minidl.Linear(fan_in, fan_out, init=init_rule(config, activation), generator=generator))
        if activation != "none":
            modules.append(MINIDL_ACTIVATIONS[activation]())
    return minidl.Sequential(*modules)


def to_torch(network: minidl.Sequential) -> nn.Sequential:
    """The same network in torch.nn, its parameters copies of the minidl ones."""
    modules: list[nn.Module] = []
    for module in network.modules:
        if isinstance(module, minidl.Linear):
            linear = nn.Linear(module.weight.shape[1], module.weight.shape[0])
            with torch.no_grad():
                linear.weight.copy_(module.weight)
                linear.bias.copy_(module.bias)
            modules.append(linear)
        else:
            modules.append(TORCH_ACTIVATIONS["tanh" if isinstance(module, minidl.Tanh) else "relu"]())
    return nn.Sequential(*modules)


def count_parameters(network: minidl.Sequential) -> int:
    return sum(parameter.numel() for parameter, _ in network.param())


def parameter_count(config: RunConfig) -> int:
    """The perceptron's weights and biases (the same in both frameworks)."""
    sizes = widths(config)
    return sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(sizes, sizes[1:]))


def seconds_per_run(config: RunConfig, steps: int = 20) -> float:
    """A few timed steps of the configuration's framework, scaled to its epochs (evaluation
    passes over the sets counted as a third of a step per minibatch's worth of points)."""
    generator = torch.Generator().manual_seed(0)
    stepper, _ = make_stepper(config, generator)
    fit = config.points - config.validation
    batch = min(config.batch_size, fit)
    points, target = torch.rand(batch, 2, generator=generator), torch.randint(0, 2, (batch,), generator=generator)
    timings = []
    for _ in range(steps):
        started = time.perf_counter()
        stepper.step(points, target)
        timings.append(time.perf_counter() - started)
    steps_per_epoch = -(-fit // batch)
    evaluations = 2 * config.points / batch / 3 / max(1, config.eval_every)
    return min(timings) * (steps_per_epoch + evaluations) * config.epochs


class MinidlStepper:
    """One SGD step of the minidl network on MSE; autograd plays no part."""

    def __init__(self, config: RunConfig, network: minidl.Sequential):
        self.network, self.criterion = network, minidl.LossMSE(config.loss_reduction)
        self.optimiser = minidl.SGD(network.param(), lr=config.lr, weight_decay=config.weight_decay)

    def step(self, points: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # (b, 2), (b,)
        self.optimiser.zero_grad()
        loss = self.criterion.forward(self.network.forward(points), target.float())
        self.network.backward(self.criterion.backward())
        self.optimiser.step()
        return loss

    def outputs(self, points: torch.Tensor) -> torch.Tensor:  # (n, 2) -> (n, 1)
        return self.network.forward(points)


class TorchStepper:
    """One step of the torch.nn network with autograd and the protocol's optimiser and loss."""

    def __init__(self, config: RunConfig, network: minidl.Sequential):
        self.config, self.model = config, to_torch(network)
        self.optimiser = protocol.make_optimizer(config, self.model.parameters())

    def step(self, points: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.optimiser.zero_grad(set_to_none=True)
        outputs = self.model(points)  # (b, 1)
        if self.config.loss == "mse_linear":  # minidl's criterion, computed as torch computes it
            loss = F.mse_loss(outputs.squeeze(1), target.float(), reduction=self.config.loss_reduction)
        else:
            loss = protocol.comparison_loss(outputs, target, self.config.loss)  # the mean over the minibatch
            if self.config.loss_reduction == "sum":
                loss = loss * outputs.numel()
        loss.backward()
        self.optimiser.step()
        return loss.detach()

    @torch.no_grad()
    def outputs(self, points: torch.Tensor) -> torch.Tensor:
        return self.model(points)


def make_stepper(config: RunConfig, generator: torch.Generator):
    network = build_minidl(config, generator)
    stepper = MinidlStepper(config, network) if config.framework == "minidl" else TorchStepper(config, network)
    return stepper, count_parameters(network)


def scores(config: RunConfig, stepper, points: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    predicted = protocol.predict(stepper.outputs(points), config.loss)  # (n,)
    count = len(target)
    ones = int(target.sum())
    return {"error": int((predicted != target).sum()) / count, "predicted_share": int(predicted.sum()) / count,
            "chance_error": min(ones, count - ones) / count}


def train_run(config: RunConfig, round_index: int, source: DiskSource, policy: DevicePolicy = CPU) -> RunResult:
    """Train one configuration of the disk task for one round; never raises for a failed run.
    The network is tiny (1,401 parameters), so it trains on the CPU whatever the policy's
    device, and its record says so."""
    result = protocol.new_result(config, round_index, "cpu")
    started = time.perf_counter()
    try:
        sets = source.sets(config.points, result.data_seed, config.disk_sampling, config.disk_size)
        fit = config.points - config.validation
        train_points, train_target = sets.train_input[:fit], sets.train_target[:fit]  # (n, 2), (n,)
        evaluation = {"train": (train_points, train_target), "test": (sets.test_input, sets.test_target)}
        if config.validation:
            evaluation["validation"] = (sets.train_input[fit:], sets.train_target[fit:])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(result.model_seed)
            generator = torch.Generator().manual_seed(result.model_seed)  # weights, then minibatch order
            stepper, result.params = make_stepper(config, generator)
            latest: dict[str, dict[str, float]] = {}
            for epoch in range(config.epochs):
                total = torch.zeros(())
                batches = protocol.minibatches(fit, config.batch_size, generator, "cpu")
                for index in batches:
                    total += stepper.step(train_points[index], train_target[index])
                loss = float(total) / len(batches)
                if not math.isfinite(loss):
                    raise protocol.TrainingDiverged(protocol.diverged_reason(loss, Stage.PAIRS, epoch))
                row = {"stage": Stage.PAIRS.value, "epoch": epoch + 1, "train_loss": loss}
                if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
                    latest = {name: scores(config, stepper, *points) for name, points in evaluation.items()}
                    row.update({f"{name}_error": value["error"] for name, value in latest.items()})
                result.epochs.append(row)
            result.metrics.update({f"{name}_error": value["error"] for name, value in latest.items()})
            result.metrics["test_predicted_share"] = latest["test"]["predicted_share"]
            result.metrics["train_chance_error"] = latest["train"]["chance_error"]
            result.metrics["train_loss"] = result.epochs[-1]["train_loss"]
            grid = protocol.predict(stepper.outputs(grid_points()), config.loss)  # (GRID^2,)
            result.artifacts["decision_grid"] = "".join(str(v) for v in grid.tolist())
            result.status = Status.DONE.value
    except Exception as error:  # a failed run is recorded with its reason; the matrix goes on
        result.reason = f"{type(error).__name__}: {error}"
    result.seconds = time.perf_counter() - started
    return result
