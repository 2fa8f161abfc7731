"""The disk task's own settings: how its points are drawn and its perceptron.

No torch here: configurations, the store and the reports read these declarations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.settings import FROM_BASELINE, setting

ACTIVATIONS = ("tanh", "relu", "none")


def _check_activations(value: str) -> str | None:
    names = [name.strip() for name in value.split(",")]
    unknown = [name for name in names if name not in ACTIVATIONS]
    if unknown:
        return f"{unknown[0]!r} is not an activation: use {', '.join(ACTIVATIONS)}, one name or one per linear layer"
    return None


@dataclass(frozen=True)
class DiskSettings:
    """The disk task's settings (the course's Project 2: a multilayer perceptron on 2-D points)."""

    # The disk task's configurations were first keyed when every task's settings were one list:
    # their ids carry the pairs task's settings at the defaults they had then. Frozen here, so
    # that those stored ids stay valid whatever the pairs task's defaults become.
    ID_CONSTANTS: ClassVar[Mapping[str, Any]] = {
        "encoder": "cnn", "pairing": "siamese", "weight_sharing": True, "aux_loss": False, "aux_weight": 1.0,
        "batch_norm": False, "dropout": 0.0, "swap_augment": False, "transfer": "none", "width": 1.0,
        "head_hidden": None, "pairs": 1000, "normalize": True, "pretrain_epochs": None,
    }

    points: int = setting(1000, "points per set (train and test)", above=0, maximum=1_000_000, neutral=1000)
    disk_sampling: str = setting("uniform", "how the points are drawn: `uniform` in [0, 1]^2 (the course); `normal`: "
                                 "each coordinate from N(0, 1), torch's `normal_()` (report 002 says \"normal "
                                 "distribution on [0,1]\")", choices=("uniform", "normal"), neutral="uniform",
                                 tag=lambda config: "normal-draw" if config.disk_sampling == "normal" else None)
    disk_size: str = setting("area", "the disk centred at (0.5, 0.5): `area`: radius 1/sqrt(2 pi), area 1/2, so the "
                             "classes balance (the course); `diameter`: 1/sqrt(2 pi) is its diameter (report 002's "
                             "wording)", choices=("area", "diameter"), neutral="area",
                             tag=lambda config: "small-disk" if config.disk_size == "diameter" else None)
    framework: str = setting("minidl", "`minidl`: the from-scratch framework in minidl/ (no autograd, no torch.nn: SGD "
                             "and MSE only); `torch`: the same network in torch.nn with autograd",
                             choices=("minidl", "torch"), neutral="minidl", tag="{}", always=True,
                             effect=FROM_BASELINE, baseline="minidl")
    hidden_layers: int = setting(3, "hidden layers of the perceptron", minimum=0, maximum=32, neutral=3)
    hidden_units: int = setting(25, "units of each hidden layer", above=0, maximum=4096, neutral=25)
    activations: str = setting("relu", "`tanh`, `relu` or `none`: one name for every hidden layer (the output stays "
                               "linear), or a comma-separated list with one per linear layer, the output's last "
                               "(report 002: `tanh,relu,relu,tanh`)", check=_check_activations,
                               neutral="relu", tag="{}", always=True)
    init: str = setting("by_activation", "initial weights and biases from N(0, s^2): `by_activation` (report 002: "
                        "s = sqrt(1/(in+out)) before a tanh, sqrt(2/(in+out)) before a ReLU or nothing), `xavier` "
                        "(sqrt(1/(in+out)) everywhere), `he` (sqrt(2/(in+out)) everywhere)",
                        choices=("by_activation", "xavier", "he"), neutral="by_activation",
                        tag=lambda config: None if config.init == "by_activation" else f"init-{config.init}",
                        effect=FROM_BASELINE, baseline="by_activation")
    loss_reduction: str = setting("mean", "the loss over a minibatch: its `mean` (torch's default) or its `sum` (the "
                                  "course's from-scratch MSE, (v - t).pow(2).sum(), which scales the step by the batch "
                                  "size)", choices=("mean", "sum"), neutral="mean",
                                  tag=lambda config: "summed-loss" if config.loss_reduction == "sum" else None,
                                  effect=FROM_BASELINE, baseline="mean")
