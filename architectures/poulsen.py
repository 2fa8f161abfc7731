"""Report 001 (Poulsen, Chambras): a customised LeNet-5 ("CLeNet") with an MLP classifier.

CLeNet: 3x3 kernels, doubled channels (12, 32), the last max-pool with stride 1, fc 120 and 84.
Parameter counts match the report's Table 1 exactly (B1 48,730; B2 51,412; WS 50,454; WSAL 51,604).
"""

from __future__ import annotations

from torch import nn

from architectures.pairs import Joint, RuleHead, Siamese, mlp
from architectures.registry import ModelOptions, register


def clenet(in_channels: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, 12, 3),  # (B, 12, 12, 12)
        nn.MaxPool2d(2),  # (B, 12, 6, 6); before the ReLU: the same values, fewer to rectify
        nn.ReLU(),
        nn.Conv2d(12, 32, 3),  # (B, 32, 4, 4)
        nn.MaxPool2d(2, stride=1),  # (B, 32, 3, 3)
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(288, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, outputs),
    )


def _check(options: ModelOptions) -> str | None:
    if options.batch_norm or options.dropout:
        return "CLeNet has no batch norm or dropout"
    if options.pairing == "siamese" and options.head_hidden == 0 and options.transfer != "rule":
        return "a siamese CLeNet needs its MLP classifier (head_hidden > 0)"
    if options.pairing == "joint" and options.aux_loss and options.head_hidden == 0:
        return "without a classifier the joint CLeNet outputs no digit logits for an aux loss"
    return None


@register("poulsen_clenet", check=_check)
def poulsen_clenet(options: ModelOptions) -> nn.Module:
    """CLeNet: B1 (joint, head_hidden=0), B2 (joint, 50), WS and WSAL (siamese, 50 / 100)."""
    hidden = 50 if options.head_hidden is None else options.head_hidden
    if options.pairing == "joint":
        if hidden == 0:
            return Joint(clenet(2, 2), None)
        return Joint(clenet(2, 20), mlp([20, hidden, 2]))
    head = RuleHead() if options.transfer == "rule" else mlp([20, hidden, 2])
    return Siamese(lambda: clenet(1, 10), head, options.weight_sharing)
