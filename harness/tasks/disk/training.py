"""The disk task's training: a multilayer perceptron on its round's points, in minidl (the
from-scratch framework: manual backward, SGD, MSE) or in torch.nn with autograd, trained
through the protocol's loop, schedule and final metrics (harness.training.protocol).

Both frameworks start from the same weights: the minidl network is drawn first (report 002's
N(0, s^2) rule, from the run's model seed) and the torch.nn network copies it, so a framework
ablation differs only in how gradients and steps are computed.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

import minidl
from harness.device import CPU, DevicePolicy
from harness.results import RunResult, Stage
from harness.settings import RunConfig
from harness.tasks.disk.data import DiskSource, grid_points
from harness.tasks.disk.rules import layer_activations
from harness.training import protocol

MINIDL_ACTIVATIONS = {"tanh": minidl.Tanh, "relu": minidl.ReLU}
TORCH_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}

EvalSets = dict[str, tuple[torch.Tensor, torch.Tensor]]  # set name -> points (n, 2), targets (n,)


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


def parameter_count(config: RunConfig) -> int:
    """The perceptron's weights and biases (the same in both frameworks)."""
    sizes = widths(config)
    return sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(sizes, sizes[1:]))


class Perceptron:
    """protocol.Learner for one perceptron of the disk task: its points, its minibatch order,
    its scores; the framework's subclass steps it."""

    members = 1
    fail_fast = True

    def __init__(self, config: RunConfig, network: minidl.Sequential, points: torch.Tensor, target: torch.Tensor,
                 eval_sets: EvalSets, generator: torch.Generator):
        self.config, self.network, self.generator = config, network, generator
        self.points, self.target, self.eval_sets = points, target, eval_sets  # (n, 2), (n,)
        self.params = sum(parameter.numel() for parameter, _ in network.param())

    def examples(self, stage: protocol.TrainingStage) -> int:
        return len(self.points)

    def train_mode(self, stage: protocol.TrainingStage) -> None:
        """Nothing differs between training and scoring: no dropout, no batch norm."""

    def batches(self, count: int) -> list[torch.Tensor]:
        return protocol.minibatches(count, self.config.batch_size, self.generator, "cpu")

    def after_step(self) -> None:
        """No weight average."""

    def outputs(self, points: torch.Tensor) -> torch.Tensor:  # (n, 2) -> (n, 1)
        raise NotImplementedError

    def evaluate(self, skip: tuple[str, ...] = ()) -> protocol.Scores:
        scores = {}
        for name, (points, target) in self.eval_sets.items():
            if name in skip:
                continue
            predicted = protocol.predict(self.outputs(points), self.config.loss)  # (n,)
            count, ones = len(target), int(target.sum())
            scores[name] = [{"error": int((predicted != target).sum()) / count,
                             "predicted_share": int(predicted.sum()) / count,
                             "chance_error": min(ones, count - ones) / count}]
        return scores


class MinidlPerceptron(Perceptron):
    """SGD on the MSE of the minidl network; autograd plays no part."""

    def __init__(self, *arguments):
        super().__init__(*arguments)
        self.criterion = minidl.LossMSE(self.config.loss_reduction)

    def optimizer(self, stage: protocol.TrainingStage) -> minidl.SGD:
        return minidl.SGD(self.network.param(), lr=self.config.lr, weight_decay=self.config.weight_decay)

    def objective(self, stage: protocol.TrainingStage, tally: protocol.Tally | None):
        def loss(index: torch.Tensor) -> torch.Tensor:  # (b,) -> ()
            return self.criterion.forward(self.network.forward(self.points[index]), self.target[index].float())

        return loss

    def backward(self, losses: torch.Tensor) -> None:
        self.network.backward(self.criterion.backward())

    def outputs(self, points: torch.Tensor) -> torch.Tensor:
        return self.network.forward(points)


class TorchPerceptron(Perceptron):
    """The same network in torch.nn, with autograd and the protocol's optimiser."""

    def __init__(self, *arguments):
        super().__init__(*arguments)
        self.model = to_torch(self.network)

    def optimizer(self, stage: protocol.TrainingStage):
        return protocol.make_optimizer(self.config, self.model.parameters(), stage.lr_schedule)

    def objective(self, stage: protocol.TrainingStage, tally: protocol.Tally | None):
        config = self.config

        def loss(index: torch.Tensor) -> torch.Tensor:  # (b,) -> ()
            outputs, target = self.model(self.points[index]), self.target[index]  # (b, 1), (b,)
            if config.loss == "mse_linear":  # minidl's criterion, computed as torch computes it
                return F.mse_loss(outputs.squeeze(1), target.float(), reduction=config.loss_reduction)
            mean = protocol.decision_loss(outputs, target, config.loss)  # the mean over the minibatch
            return mean * outputs.numel() if config.loss_reduction == "sum" else mean

        return loss

    def backward(self, losses: torch.Tensor) -> None:
        losses.backward()

    @torch.no_grad()
    def outputs(self, points: torch.Tensor) -> torch.Tensor:
        return self.model(points)


def make_learner(config: RunConfig, points, target, eval_sets: EvalSets, generator: torch.Generator) -> Perceptron:
    """The configuration's perceptron, its minidl weights drawn first from `generator`."""
    network = build_minidl(config, generator)
    kind = MinidlPerceptron if config.framework == "minidl" else TorchPerceptron
    return kind(config, network, points, target, eval_sets, generator)


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
        eval_sets = {"train": (train_points, train_target), "test": (sets.test_input, sets.test_target)}
        if config.validation:
            eval_sets["validation"] = (sets.train_input[fit:], sets.train_target[fit:])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(result.model_seed)
            generator = torch.Generator().manual_seed(result.model_seed)  # weights, then minibatch order
            learner = make_learner(config, train_points, train_target, eval_sets, generator)
            result.params = learner.params
            outcome = protocol.train(config, [protocol.TrainingStage(Stage.MAIN, config.epochs)], learner)
        protocol.finish(outcome, [result])
        grid = protocol.predict(learner.outputs(grid_points()), config.loss)  # (GRID^2,)
        result.artifacts["decision_grid"] = "".join(str(v) for v in grid.tolist())
    except Exception as error:  # a failed run is recorded with its reason; the matrix goes on
        result.reason = f"{type(error).__name__}: {error}"
    result.seconds = time.perf_counter() - started
    return result


def seconds_per_run(config: RunConfig, steps: int = 20) -> float:
    """A few timed steps of the configuration's framework on random points, scaled to its epochs
    (evaluation passes over the sets counted as a third of a step per minibatch's worth of
    points)."""
    generator = torch.Generator().manual_seed(0)
    batch = min(config.batch_size, config.points - config.validation)
    points, target = torch.rand(batch, 2, generator=generator), torch.randint(0, 2, (batch,), generator=generator)
    learner = make_learner(config, points, target, {}, generator)
    stage = protocol.TrainingStage(Stage.MAIN, config.epochs)
    optimizer, loss_of, index = learner.optimizer(stage), learner.objective(stage, None), torch.arange(batch)
    timings = []
    for _ in range(steps):
        started = time.perf_counter()
        losses = loss_of(index)
        optimizer.zero_grad()
        learner.backward(losses)
        optimizer.step()
        timings.append(time.perf_counter() - started)
    steps_per_epoch = -(-(config.points - config.validation) // batch)
    evaluations = 2 * config.points / batch / 3 / max(1, config.eval_every)
    return min(timings) * (steps_per_epoch + evaluations) * config.epochs
