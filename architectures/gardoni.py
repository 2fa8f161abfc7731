"""Report 003 (Gardoni, Vardi, Stefanini): a siamese net comparing digit probabilities.

Digit encoder: conv 64 (5x5), conv 32 (3x3), max-pool, fc 100, fc 10 = 72,438 parameters, so
that one encoder + the 861-parameter head is the report's 73,299 and two encoders its 145,737.
Head: the two digits' softmax probabilities (20) -> 20 -> 20 -> 1 (binary cross-entropy), 861
parameters. The report calls it "three linear layers" and the comparison "a linearly separable
problem"; whether ReLUs sit between those layers is not said, so both readings are registered:
`gardoni_siamese` (ReLU between them) and `gardoni_siamese_linear` (no activation: a linear
function of the probabilities, which is enough, since first <= second is linearly separable in
one-hot digit codes). With ReLUs, all of the head's 20 units can die in some rounds and the
model then answers one class for good.
"""

from __future__ import annotations

import torch
from torch import nn

from architectures.pairs import RuleHead, Siamese, mlp
from architectures.registry import ModelOptions, register


def gardoni_encoder(options: ModelOptions) -> nn.Sequential:
    norm2d = nn.BatchNorm2d if options.batch_norm else (lambda _: nn.Identity())
    return nn.Sequential(
        nn.Conv2d(1, 64, 5),  # (B, 64, 10, 10)
        norm2d(64),
        nn.ReLU(),
        nn.Conv2d(64, 32, 3),  # (B, 32, 8, 8)
        norm2d(32),
        nn.MaxPool2d(2),  # (B, 32, 4, 4); before the ReLU: the same values, fewer to rectify
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(512, 100),
        *([nn.BatchNorm1d(100)] if options.batch_norm else []),
        nn.ReLU(),
        *([nn.Dropout(options.dropout)] if options.dropout else []),
        nn.Linear(100, 10),
    )


class ProbabilityHead(nn.Module):
    """Three linear layers on the two digits' predicted probabilities -> one logit."""

    def __init__(self, activations: bool = True):
        super().__init__()
        self.layers = mlp([20, 20, 20, 1]) if activations else nn.Sequential(
            nn.Linear(20, 20), nn.Linear(20, 20), nn.Linear(20, 1))

    def forward(self, digit_logits: torch.Tensor) -> torch.Tensor:  # (B, 20)
        probabilities = digit_logits.view(-1, 2, 10).softmax(-1).flatten(1)  # (B, 20)
        return self.layers(probabilities)  # (B, 1)


def _check(options: ModelOptions) -> str | None:
    if options.pairing != "siamese":
        return "this report's models are siamese"
    return None


def _siamese(options: ModelOptions, activations: bool) -> nn.Module:
    head = RuleHead() if options.transfer == "rule" else ProbabilityHead(activations)
    return Siamese(lambda: gardoni_encoder(options), head, options.weight_sharing)


@register("gardoni_siamese", check=_check)
def gardoni_siamese(options: ModelOptions) -> nn.Module:
    """Siamese with or without sharing, aux, BN, dropout; transfer "rule" is their TransferLearn."""
    return _siamese(options, activations=True)


@register("gardoni_siamese_linear", check=_check)
def gardoni_siamese_linear(options: ModelOptions) -> nn.Module:
    """The same, its comparison head three linear layers with no activation between them."""
    return _siamese(options, activations=False)
