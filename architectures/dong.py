"""Report 004 (Dong, Huang, Xia): an MLP baseline, a CNN, and a siamese CNN with aux loss.

Baseline (73,954) and CNN (77,530) follow the report's Tables I and II and match exactly. The
siamese model's figure is missing: from the text (digits split, Linear(120 -> 10) digit logits,
then the target), its encoder here is the CNN's convolutions with a 76-unit layer before the
120, and a linear comparison of the 20 digit logits, within 0.6% of the reported 69,849.
"""

from __future__ import annotations

from torch import nn

from architectures.pairs import Joint, RuleHead, Siamese
from architectures.registry import ModelOptions, register


def _maybe(condition: bool, module: nn.Module) -> list[nn.Module]:
    return [module] if condition else []


def _joint_check(options: ModelOptions) -> str | None:
    if options.pairing != "joint":
        return "this model takes the pair as two channels: joint pairing only"
    if options.aux_loss:
        return "this model has no digit outputs for an aux loss"
    return None


@register("dong_mlp", check=_joint_check)
def dong_mlp(options: ModelOptions) -> nn.Module:
    """Baseline: linear 392->160, 1-D max-pool, linear 80->128, max-pool, linear 64->2."""
    bn, p = options.batch_norm, options.dropout
    encoder = nn.Sequential(
        nn.Flatten(),
        nn.Linear(392, 160),
        *_maybe(bn, nn.BatchNorm1d(160)),
        nn.ReLU(),
        nn.Unflatten(1, (1, 160)),
        nn.MaxPool1d(2),  # (B, 1, 80)
        nn.Flatten(),
        *_maybe(p > 0, nn.Dropout(p)),
        nn.Linear(80, 128),
        *_maybe(bn, nn.BatchNorm1d(128)),
        nn.ReLU(),
        nn.Unflatten(1, (1, 128)),
        nn.MaxPool1d(2),  # (B, 1, 64)
        nn.Flatten(),
        *_maybe(p > 0, nn.Dropout(p)),
        nn.Linear(64, 2),
    )
    return Joint(encoder, None)


def _convolutions(options: ModelOptions, in_channels: int) -> list[nn.Module]:
    bn = options.batch_norm
    return [
        nn.Conv2d(in_channels, 16, 5, padding=3),  # (B, 16, 16, 16)
        *_maybe(bn, nn.BatchNorm2d(16)),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (B, 16, 8, 8)
        nn.Conv2d(16, 20, 3, padding=3),  # (B, 20, 12, 12)
        *_maybe(bn, nn.BatchNorm2d(20)),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (B, 20, 6, 6)
        nn.Flatten(),
        *_maybe(bn, nn.BatchNorm1d(720)),
    ]


@register("dong_cnn", check=_joint_check)
def dong_cnn(options: ModelOptions) -> nn.Module:
    """CNN: conv 16 (5x5), conv 20 (3x3), batch norm, linear 720->100, dropout, linear 100->2."""
    encoder = nn.Sequential(
        *_convolutions(options, 2),
        nn.Linear(720, 100),
        nn.ReLU(),
        *_maybe(options.dropout > 0, nn.Dropout(options.dropout)),
        nn.Linear(100, 2),
    )
    return Joint(encoder, None)


def _siamese_check(options: ModelOptions) -> str | None:
    if options.pairing != "siamese":
        return "this model splits the pair: siamese pairing only"
    return None


@register("dong_siamese", check=_siamese_check)
def dong_siamese(options: ModelOptions) -> nn.Module:
    """CNN with auxiliary loss: the CNN's convolutions per digit, 720->76->120->10, linear 20->1."""

    def encoder() -> nn.Module:
        return nn.Sequential(
            *_convolutions(options, 1),
            nn.Linear(720, 76),
            nn.ReLU(),
            *_maybe(options.dropout > 0, nn.Dropout(options.dropout)),
            nn.Linear(76, 120),
            nn.ReLU(),
            nn.Linear(120, 10),
        )

    head = RuleHead() if options.transfer == "rule" else nn.Linear(20, 1)
    return Siamese(encoder, head, options.weight_sharing)
