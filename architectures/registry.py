"""The model registry: one family a module, registered by name, built from `ModelOptions`."""

from __future__ import annotations

import dataclasses
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
    origin: object = None  # the registered function or class
    # ModelOptions fields that change only how the model is trained (the loss), never what the
    # family builds or how it computes: models differing in them alone can share one vectorised
    # model. A user's family declares none, so it is never packed with another configuration.
    loss_only: frozenset[str] = frozenset()


_FAMILIES: dict[str, Family] = {}


def register(name: str, *, check: Callable[[ModelOptions], str | None] | None = None, loss_only: tuple[str, ...] = ()):
    """Register a model family under `name`, over either
    - a function `ModelOptions -> nn.Module` (the built-in families' form), or
    - a torch.nn.Module class (a user's model): it receives the ModelOptions fields its
      `__init__` names, and its output is read by the contract in architectures.external.

    `check(options)` returns why a combination means nothing for this family, or None.
    `loss_only`: the ModelOptions fields the family's layers and forward never read (see Family).
    Registering a name twice with different code is an error; the same code again (a plugin
    imported by two routes) is not."""

    def decorate(builder):
        from architectures import external

        existing = _FAMILIES.get(name)
        if existing is not None and getattr(existing.origin, "__qualname__", None) != getattr(builder, "__qualname__", None):
            raise ValueError(f"model family {name!r} is registered twice")
        unknown = set(loss_only) - {f.name for f in dataclasses.fields(ModelOptions)}
        if unknown:
            raise ValueError(f"model family {name!r}: loss_only names no ModelOptions field: {', '.join(sorted(unknown))}")
        made = _family(name, builder, check) if not isinstance(builder, type) else \
            external_family(name, builder, check, external)
        _FAMILIES[name] = dataclasses.replace(made, loss_only=frozenset(loss_only))
        return builder

    return decorate


def _family(name, builder, check) -> Family:
    summary = (builder.__doc__ or "").strip().splitlines()[0] if builder.__doc__ else ""
    return Family(name, builder, check or (lambda options: None), summary, builder)


def external_family(name: str, factory, check, external) -> Family:
    """A family over a user's class or factory, built behind the output contract."""

    def checks(options: ModelOptions) -> str | None:
        return external.why_unsupported(name, factory, options) or (check(options) if check else None)

    summary = (factory.__doc__ or "").strip().splitlines()[0] if factory.__doc__ else "a user's model"
    return Family(name, lambda options: external.build_external(factory, options), checks, summary, factory)


def names() -> list[str]:
    """Registered families and installed packages' entry points (not imported by listing)."""
    from architectures.external import entry_points

    return sorted(set(_FAMILIES) | set(entry_points()))


def builtin_names() -> list[str]:
    """The families this package defines (not those of plugins or entry points)."""
    return sorted(name for name, found in _FAMILIES.items()
                  if getattr(found.origin, "__module__", "").startswith("architectures."))


def family(name: str) -> Family:
    """The family called `name`: registered, an installed entry point (imported now), or a
    `package.module:Class` reference. UnknownModelError (known names, closest) otherwise."""
    if name in _FAMILIES:
        return _FAMILIES[name]
    from architectures import external

    if ":" in name:
        try:
            _FAMILIES[name] = external_family(name, external.resolve_object(name), None, external)
        except external.PluginError as error:
            raise UnknownModelError(str(error)) from None
        return _FAMILIES[name]
    points = external.entry_points()
    if name in points:
        try:
            loaded = points[name].load()  # a module that registers, or the model class itself
        except BaseException as error:
            raise UnknownModelError(f"model {name!r} (entry point {points[name].value}) failed to import: "
                                    f"{type(error).__name__}: {error}") from None
        if name not in _FAMILIES:
            _FAMILIES[name] = external_family(name, loaded, None, external)
        return _FAMILIES[name]
    close = difflib.get_close_matches(name, names(), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise UnknownModelError(f"unknown model {name!r}{hint} Known: {', '.join(names())}; "
                            "a model of your own: plugins = [\"my_models.py\"] in the matrix, --plugin, or 'module:Class'")


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
