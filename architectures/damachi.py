"""Report 000 (Damachi, Volpini): linear/logistic regression, an MLP and a conv3d CNN, MSE loss.

Layer sizes are recovered from the report's parameter table (Table I).
"""

from __future__ import annotations

import torch
from torch import nn

from architectures.pairs import PairOutput, mlp
from architectures.registry import ModelOptions, register


def _joint_only(options: ModelOptions) -> str | None:
    if options.pairing != "joint":
        return "this report's models take the pair as one input: joint pairing only"
    return None


def _regression_check(options: ModelOptions) -> str | None:
    if options.aux_loss or options.batch_norm or options.dropout:
        return "a regression has no digit outputs and no hidden layer"
    return _joint_only(options)


class Regression(nn.Module):
    """One linear layer from the 392 pixels to one score (393 parameters)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(392, 1)

    def forward(self, pairs: torch.Tensor) -> PairOutput:  # (B, 2, 14, 14)
        return PairOutput(self.linear(pairs.flatten(1)), None)  # (B, 1)


@register("damachi_regression", check=_regression_check)
def damachi_regression(options: ModelOptions) -> nn.Module:
    """Linear (MSE on the score) or logistic (MSE on its sigmoid) regression: 393 parameters."""
    return Regression()


class PerceptronPair(nn.Module):
    """392 -> 256 -> 128 features, one comparison output and, with aux loss, 20 digit outputs."""

    def __init__(self, options: ModelOptions):
        super().__init__()
        self.features = mlp([392, 256, 128], final_activation=True)
        self.comparison = nn.Linear(128, 1)
        self.digits = nn.Linear(128, 20) if options.aux_loss else None

    def forward(self, pairs: torch.Tensor) -> PairOutput:  # (B, 2, 14, 14)
        features = self.features(pairs.flatten(1))  # (B, 128)
        digits = self.digits(features).view(-1, 2, 10) if self.digits is not None else None
        return PairOutput(self.comparison(features), digits)


def _no_norm(options: ModelOptions) -> str | None:
    if options.batch_norm or options.dropout:
        return "this report's MLP has no batch norm or dropout"
    return _joint_only(options)


@register("damachi_nn", check=_no_norm)
def damachi_nn(options: ModelOptions) -> nn.Module:
    """The report's 'NN': 133,633 parameters with 1 loss, 136,213 with the 20 digit outputs."""
    return PerceptronPair(options)


class Conv3dPair(nn.Module):
    """Conv3d with (1, 3, 3) kernels sees the two digits as depth: each digit filtered alike.

    The report gives 47,803 / 51,733 parameters but no layer table; 16 and 8 filters and a
    59-unit hidden layer land within 0.3% of both counts.
    """

    def __init__(self, options: ModelOptions):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(1, 16, (1, 3, 3), padding=(0, 1, 1)),  # (B, 16, 2, 14, 14)
            nn.ReLU(),
            nn.Conv3d(16, 8, (1, 3, 3), padding=(0, 1, 1)),  # (B, 8, 2, 14, 14)
            nn.ReLU(),
            nn.MaxPool3d((1, 2, 2)),  # (B, 8, 2, 7, 7)
        )
        self.comparison = nn.Sequential(
            nn.Flatten(), nn.Linear(784, 59), nn.ReLU(), nn.Dropout(options.dropout), nn.Linear(59, 1)
        )
        self.digits = nn.Linear(392, 10) if options.aux_loss else None

    def forward(self, pairs: torch.Tensor) -> PairOutput:  # (B, 2, 14, 14)
        features = self.features(pairs.unsqueeze(1))  # (B, 8, 2, 7, 7)
        digits = None
        if self.digits is not None:
            per_digit = features.transpose(1, 2).flatten(2)  # (B, 2, 392)
            digits = self.digits(per_digit)  # (B, 2, 10)
        return PairOutput(self.comparison(features), digits)


def _conv3d_check(options: ModelOptions) -> str | None:
    if options.batch_norm:
        return "this report's CNN has no batch norm"
    return _joint_only(options)


@register("damachi_cnn3d", check=_conv3d_check)
def damachi_cnn3d(options: ModelOptions) -> nn.Module:
    """The report's conv3d CNN, with dropout before the output layer."""
    return Conv3dPair(options)
