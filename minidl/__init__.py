"""minidl: a deep-learning framework written from scratch, as the course's Project 2 asks.

No autograd and no `torch.nn`: every parameter and buffer is made with `torch.empty` and filled
with tensor operations, every module computes its own gradients in `backward`, and autograd is
switched off inside every method (`torch.no_grad`), so nothing here records a graph.

The contract of a module (`Module`):
- `forward(x)` returns the output and keeps what `backward` needs;
- `backward(grad_output)` takes dLoss/d(output) of the last `forward`, accumulates
  dLoss/d(parameter) into each parameter's gradient and returns dLoss/d(input);
- `param()` returns `[(parameter, gradient), ...]`, the tensors the optimiser updates in place.

A criterion (`LossMSE`) has `forward(prediction, target)` returning the loss (a 0-d tensor) and
`backward()` returning dLoss/d(prediction). `SGD(params, lr, weight_decay)` updates with
`p -= lr * (g + weight_decay * p)`, which is torch.optim.SGD's coupled L2 without momentum.

    model = Sequential(Linear(2, 25), Tanh(), Linear(25, 1))
    criterion, optimiser = LossMSE(), SGD(model.param(), lr=5e-3, weight_decay=1e-6)
    for batch, target in batches:
        optimiser.zero_grad()
        loss = criterion.forward(model.forward(batch), target)
        model.backward(criterion.backward())
        optimiser.step()
"""

from __future__ import annotations

import math

import torch

__all__ = ["Module", "Linear", "ReLU", "Tanh", "Sequential", "LossMSE", "SGD", "init_std"]


class Module:
    """The interface every layer and container implements."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def param(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


def init_std(fan_in: int, fan_out: int, rule: str) -> float:
    """Report 002's standard deviations: `xavier` sqrt(1/(in+out)), `he` sqrt(2/(in+out))."""
    if rule == "xavier":
        return math.sqrt(1.0 / (fan_in + fan_out))
    if rule == "he":
        return math.sqrt(2.0 / (fan_in + fan_out))
    raise ValueError(f"unknown initialisation {rule!r}: use 'xavier' or 'he'")


class Linear(Module):
    """y = x W^T + b for x (B, in); weight (out, in) and bias (out,) drawn from N(0, std^2)
    with `std` given, or from `init` ('xavier' or 'he', as `init_std`)."""

    def __init__(self, in_features: int, out_features: int, init: str = "xavier", std: float | None = None,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32):
        std = init_std(in_features, out_features, init) if std is None else std
        with torch.no_grad():
            self.weight = torch.empty(out_features, in_features, dtype=dtype).normal_(0.0, std, generator=generator)
            self.bias = torch.empty(out_features, dtype=dtype).normal_(0.0, std, generator=generator)
            self.grad_weight = torch.empty_like(self.weight).zero_()
            self.grad_bias = torch.empty_like(self.bias).zero_()
        self.input: torch.Tensor | None = None

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in) -> (B, out)
        self.input = x
        return torch.addmm(self.bias, x, self.weight.t())

    @torch.no_grad()
    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:  # (B, out) -> (B, in)
        if self.input is None:
            raise RuntimeError("Linear.backward called before forward")
        self.grad_weight.add_(grad_output.t() @ self.input)  # (out, in)
        self.grad_bias.add_(grad_output.sum(0))  # (out,)
        return grad_output @ self.weight

    def param(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(self.weight, self.grad_weight), (self.bias, self.grad_bias)]


class ReLU(Module):
    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.positive = x > 0
        return x.clamp(min=0)

    @torch.no_grad()
    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        return grad_output * self.positive  # the subgradient at 0 is 0, as torch's


class Tanh(Module):
    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.output = x.tanh()
        return self.output

    @torch.no_grad()
    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        return grad_output * (1 - self.output * self.output)


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse."""

    def __init__(self, *modules: Module):
        self.modules = list(modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.modules:
            x = module.forward(x)
        return x

    def backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        for module in reversed(self.modules):
            grad_output = module.backward(grad_output)
        return grad_output

    def param(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [pair for module in self.modules for pair in module.param()]


class LossMSE:
    """(prediction - target)^2 over every element, averaged (`reduction="mean"`, torch's
    `mse_loss`) or summed (`"sum"`)."""

    def __init__(self, reduction: str = "mean"):
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction {reduction!r}: use 'mean' or 'sum'")
        self.reduction = reduction

    @torch.no_grad()
    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.difference = prediction - target.reshape(prediction.shape).to(prediction.dtype)
        squares = self.difference * self.difference
        return squares.mean() if self.reduction == "mean" else squares.sum()

    @torch.no_grad()
    def backward(self) -> torch.Tensor:
        norm = 2.0 / self.difference.numel() if self.reduction == "mean" else 2.0
        return self.difference * norm  # torch's mse_loss backward, in its order


class SGD:
    """Plain stochastic gradient descent with coupled weight decay: p -= lr * (g + wd * p)."""

    def __init__(self, params: list[tuple[torch.Tensor, torch.Tensor]], lr: float, weight_decay: float = 0.0):
        if lr <= 0 or weight_decay < 0:
            raise ValueError(f"SGD needs lr > 0 and weight_decay >= 0, got lr={lr}, weight_decay={weight_decay}")
        self.params, self.lr, self.weight_decay = params, lr, weight_decay

    @torch.no_grad()
    def step(self) -> None:
        for parameter, gradient in self.params:  # the operations torch.optim.SGD does, in its order
            step = gradient.add(parameter, alpha=self.weight_decay) if self.weight_decay else gradient
            parameter.add_(step, alpha=-self.lr)

    @torch.no_grad()
    def zero_grad(self) -> None:
        for _, gradient in self.params:
            gradient.zero_()
