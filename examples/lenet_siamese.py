"""A user's own model, registered from its own file: a LeNet-style siamese network with a
three-layer comparison head, as many EE-559 projects describe theirs.

The harness's contract: input (B, 2, 14, 14); output the comparison logits (B, 2) and, for the
aux loss, the two digits' logits (B, 2, 10). The options the class takes by name (`dropout`,
`batch_norm`) are the factors a matrix may vary; `digit_encoder` makes transfer learning apply.
"""

import torch
from torch import nn

from architectures import register


class DigitNet(nn.Module):
    """One 14x14 digit -> 10 logits: two conv blocks, two linear layers."""

    def __init__(self, dropout: float, batch_norm: bool):
        super().__init__()
        norm = (lambda channels: nn.BatchNorm2d(channels)) if batch_norm else (lambda channels: nn.Identity())
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=3), norm(32), nn.ReLU(), nn.MaxPool2d(2),  # (32, 6, 6)
            nn.Conv2d(32, 64, kernel_size=3), norm(64), nn.ReLU(), nn.MaxPool2d(2),  # (64, 2, 2)
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(256, 128), nn.ReLU(), nn.Dropout(dropout), nn.Linear(128, 10))

    def forward(self, digit: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(digit))


@register("lenet_siamese")
class LeNetSiamese(nn.Module):
    """LeNet-style siamese net, shared weights, 3-layer comparison head on the digit logits."""

    def __init__(self, dropout: float = 0.0, batch_norm: bool = False):
        super().__init__()
        self.digit_encoder = DigitNet(dropout, batch_norm)
        self.head = nn.Sequential(
            nn.Linear(20, 64), nn.ReLU(), nn.Dropout(dropout), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2)
        )

    def forward(self, pairs: torch.Tensor):
        first = self.digit_encoder(pairs[:, 0:1])  # (B, 10)
        second = self.digit_encoder(pairs[:, 1:2])  # (B, 10)
        comparison = self.head(torch.cat([first, second], dim=1))  # (B, 2)
        return comparison, torch.stack([first, second], dim=1)  # (B, 2, 10)
