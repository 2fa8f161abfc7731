"""The model registry: one family a module, registered by name, built from `ModelOptions`."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

PAIRINGS = ("joint", "siamese")
TRANSFERS = ("none", "rule", "frozen", "finetune")


@dataclass(frozen=True)
class ModelOptions:
    """What a family needs to build one model. Families reject what they cannot honour.

    pairing: "joint" (the pair as two channels) or "siamese" (each digit through an encoder).
    weight_sharing: siamese only; one encoder applied twice, else two of the same shape.
    aux_loss: the model will be trained with digit losses (families whose layers differ with
        digit heads use it; the generic families always carry digit logits).
    transfer: "rule" builds a fixed comparison rule instead of a trained head.
    width: multiplies every hidden width, to hold compared variants near a parameter budget.
    head_hidden: hidden units of the comparison head (None: the family's default, 0: no head).
    """

    pairing: str = "siamese"
    weight_sharing: bool = True
    aux_loss: bool = False
    batch_norm: bool = False
    dropout: float = 0.0
    transfer: str = "none"
    width: float = 1.0
    head_hidden: int | None = None


class UnknownModelError(KeyError):
    def __str__(self) -> str:
        return self.args[0]


class UnsupportedOptionError(ValueError):
    """A family cannot build what the options ask for; the message says why."""


@dataclass(frozen=True)
class Family:
    name: str
    builder: Callable[[ModelOptions], nn.Module]
    check: Callable[[ModelOptions], str | None]
    summary: str


_FAMILIES: dict[str, Family] = {}


def register(name: str, *, check: Callable[[ModelOptions], str | None] | None = None):
    """Register a model family: `@register("cnn")` over a function `ModelOptions -> nn.Module`.

    `check(options)` returns why a combination means nothing for this family, or None.
    """

    def decorate(builder):
        if name in _FAMILIES:
            raise ValueError(f"model family {name!r} is registered twice")
        summary = (builder.__doc__ or "").strip().splitlines()[0] if builder.__doc__ else ""
        _FAMILIES[name] = Family(name, builder, check or (lambda options: None), summary)
        return builder

    return decorate


def names() -> list[str]:
    return sorted(_FAMILIES)


def family(name: str) -> Family:
    if name not in _FAMILIES:
        close = difflib.get_close_matches(name, names(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownModelError(f"unknown model {name!r}{hint} Known: {', '.join(names())}")
    return _FAMILIES[name]


def why_invalid(name: str, options: ModelOptions) -> str | None:
    """Why this family with these options means nothing (None when it is fine)."""
    if options.pairing not in PAIRINGS:
        return f"pairing must be one of {PAIRINGS}"
    if options.transfer not in TRANSFERS:
        return f"transfer must be one of {TRANSFERS}"
    if options.pairing == "joint" and options.weight_sharing:
        return "weight sharing needs two encoders: siamese pairing only"
    if options.transfer != "none" and options.pairing == "joint":
        return "transfer needs a digit encoder applied to single digits: siamese pairing only"
    if options.transfer != "none" and not options.weight_sharing:
        return "transfer pretrains one digit encoder: needs weight sharing"
    return family(name).check(options)


def build(name: str, options: ModelOptions | None = None, **overrides) -> nn.Module:
    """Build a registered model. `build("cnn", pairing="joint", weight_sharing=False)`."""
    options = ModelOptions(**{**(options.__dict__ if options else {}), **overrides})
    reason = why_invalid(name, options)
    if reason:
        raise UnsupportedOptionError(f"{name}: {reason}")
    return family(name).builder(options)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
