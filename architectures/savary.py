"""Report 002 (Savary, Guy): a CNN with batch norm and dropout everywhere, trained with SGD.

Layer tables as in the report's Figures 1.2 and 1.4, including their unusual ReLU (and batch
norm and dropout) after the output layer. Batch norm layers exist iff `batch_norm`; dropout is
`dropout` after the convolutions and `dropout + 0.1` after the fully connected layers (the
report's 0.2 and 0.3).
"""

from __future__ import annotations

from torch import nn

from architectures.pairs import Joint, RuleHead, Siamese
from architectures.registry import ModelOptions, register


def _extras(options: ModelOptions, norm, channels: int, p: float) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.ReLU()]
    if options.batch_norm:
        layers.append(norm(channels))
    if options.dropout:
        layers.append(nn.Dropout(p))
    return layers


def savary_encoder(options: ModelOptions, in_channels: int, outputs: int) -> nn.Sequential:
    conv_p, fc_p = options.dropout, options.dropout + 0.1
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 3),  # (B, 32, 12, 12)
        nn.MaxPool2d(2),  # (B, 32, 6, 6)
        *_extras(options, nn.BatchNorm2d, 32, conv_p),
        nn.Conv2d(32, 64, 3),  # (B, 64, 4, 4)
        nn.MaxPool2d(2),  # (B, 64, 2, 2)
        *_extras(options, nn.BatchNorm2d, 64, conv_p),
        nn.Flatten(),
        nn.Linear(256, 200),
        *_extras(options, nn.BatchNorm1d, 200, fc_p),
        nn.Linear(200, outputs),
        *_extras(options, nn.BatchNorm1d, outputs, fc_p),
    )


def savary_head(options: ModelOptions) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(20, 100),
        *_extras(options, nn.BatchNorm1d, 100, options.dropout),
        nn.Linear(100, 20),
        *_extras(options, nn.BatchNorm1d, 20, options.dropout),
        nn.Linear(20, 2),
        nn.ReLU(),
    )


def _check(options: ModelOptions) -> str | None:
    if not 0 <= options.dropout + 0.1 < 1:
        return "dropout + 0.1 (the fully connected layers' rate) must stay below 1"
    if options.pairing == "joint" and options.aux_loss:
        return "the joint CNN outputs no digit logits for an aux loss"
    return None


@register("savary_cnn", check=_check)
def savary_cnn(options: ModelOptions) -> nn.Module:
    """The report's CNN (joint) and its weight-sharing network with a 3-layer MLP (siamese)."""
    if options.pairing == "joint":
        return Joint(savary_encoder(options, 2, 2), None)
    head = RuleHead() if options.transfer == "rule" else savary_head(options)
    return Siamese(lambda: savary_encoder(options, 1, 10), head, options.weight_sharing)
