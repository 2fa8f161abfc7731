"""How two digits meet: joint (two channels, one encoder) or siamese (an encoder per digit).

Every model maps a (B, 2, 14, 14) batch to a `PairOutput` of logits; losses live in harness.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn


class PairOutput(NamedTuple):
    comparison: torch.Tensor  # (B, 2) logits of [first > second, first <= second], or (B, 1)
    digits: torch.Tensor | None  # (B, 2, 10) digit logits, None where the model has no digit heads


def mlp(sizes: list[int], *, final_activation: bool = False) -> nn.Sequential:
    """Linear layers with ReLU between them."""
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if index < len(sizes) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RuleHead(nn.Module):
    """No trained weights: P(first <= second) from the two predicted digit distributions."""

    def __init__(self):
        super().__init__()
        self.register_buffer("lesser_or_equal", torch.ones(10, 10).triu())  # [i, j] = i <= j

    def forward(self, digit_logits: torch.Tensor) -> torch.Tensor:  # (B, 20)
        first, second = digit_logits.view(-1, 2, 10).softmax(-1).unbind(1)  # (B, 10) each
        p = torch.einsum("bi,ij,bj->b", first, self.lesser_or_equal, second)  # (B,)
        p = p.clamp(1e-6, 1 - 1e-6)
        return torch.stack((torch.log1p(-p), torch.log(p)), 1)  # (B, 2) log-probabilities


def comparison_head(options, default_hidden: int) -> nn.Module:
    """The head on the concatenated digit logits (B, 20) -> (B, 2), or the fixed rule."""
    if options.transfer == "rule":
        return RuleHead()
    hidden = default_hidden if options.head_hidden is None else options.head_hidden
    hidden = max(1, round(hidden * options.width)) if hidden else 0
    return mlp([20, hidden, 2]) if hidden else nn.Linear(20, 2)


class Siamese(nn.Module):
    """Each digit through a digit encoder (B, 1, 14, 14) -> (B, 10); a head compares them.

    With weight sharing one encoder serves both digits; without, two encoders of the same shape.
    The code path is the same either way, so sharing is the only difference.
    """

    def __init__(self, make_encoder: Callable[[], nn.Module], head: nn.Module, weight_sharing: bool):
        super().__init__()
        encoders = [make_encoder()] if weight_sharing else [make_encoder(), make_encoder()]
        self.encoders = nn.ModuleList(encoders)
        self.head = head

    @property
    def digit_encoder(self) -> nn.Module:
        """The encoder that transfer learning pretrains on single digits."""
        return self.encoders[0]

    def forward(self, pairs: torch.Tensor) -> PairOutput:  # (B, 2, 14, 14)
        digits = torch.stack(
            [self.encoders[i % len(self.encoders)](pairs[:, i : i + 1]) for i in range(2)], 1
        )  # (B, 2, 10)
        return PairOutput(self.head(digits.flatten(1)), digits)


class Joint(nn.Module):
    """The pair as two channels of one encoder (B, 2, 14, 14) -> (B, 20) digit logits, then a head.

    With `head=None` the encoder's own outputs are the comparison logits and there are no digits.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module | None):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, pairs: torch.Tensor) -> PairOutput:  # (B, 2, 14, 14)
        features = self.encoder(pairs)  # (B, 20), or (B, 2) without a head
        if self.head is None:
            return PairOutput(features, None)
        return PairOutput(self.head(features), features.view(-1, 2, 10))
