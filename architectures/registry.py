"""The model registry: one family a module, registered by name (harness.registry), built from
`ModelOptions` (the pairs task's settings flagged as model options)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from harness.registry import Registry, UnknownName
from harness.tasks.pairs.settings import PAIRINGS, TRANSFERS, ModelOptions


class UnknownModelError(UnknownName):
    """A model name no family answers to; the message lists the known names and a close match."""


class UnsupportedOptionError(ValueError):
    """A family cannot build what the options ask for; the message says why."""


@dataclass(frozen=True)
class Family:
    name: str
    builder: Callable[[ModelOptions], nn.Module]
    check: Callable[[ModelOptions], str | None]
    origin: object = None  # the registered function or class
    # ModelOptions fields that change only how the model is trained (the loss), never what the
    # family builds or how it computes: models differing in them alone can share one vectorised
    # model. A user's family declares none, so it is never packed with another configuration.
    loss_only: frozenset[str] = frozenset()


def _adopt(name: str, loaded) -> Family:
    """What an entry point or a `module:Class` name resolves to, as a family: the family it
    registered when imported, or a user's model class or factory behind the output contract."""
    from architectures import external

    if isinstance(loaded, Family):
        return loaded
    if not callable(loaded):  # a module whose import registered the name
        registered = FAMILIES.registered().get(name)
        if registered is None:
            raise UnknownModelError(f"model {name!r}: {getattr(loaded, '__name__', loaded)} registers no such model")
        return registered
    return external_family(name, loaded, None, external)


FAMILIES: Registry[Family] = Registry(
    "model", entry_points="harness.architectures", references=True, adopt=_adopt, error=UnknownModelError,
    hint="; a model of your own: plugins = [\"my_models.py\"] in the matrix, --plugin, or 'module:Class'",
)


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

        existing = FAMILIES.registered().get(name)
        if existing is not None and getattr(existing.origin, "__qualname__", None) != getattr(builder, "__qualname__", None):
            raise ValueError(f"model family {name!r} is registered twice")
        unknown = set(loss_only) - {f.name for f in dataclasses.fields(ModelOptions)}
        if unknown:
            raise ValueError(f"model family {name!r}: loss_only names no ModelOptions field: {', '.join(sorted(unknown))}")
        made = Family(name, builder, check or (lambda options: None), builder) if not isinstance(builder, type) else \
            external_family(name, builder, check, external)
        FAMILIES.register(name, dataclasses.replace(made, loss_only=frozenset(loss_only)),
                          builtin=getattr(builder, "__module__", "").startswith("architectures."))
        return builder

    return decorate


def external_family(name: str, factory, check, external) -> Family:
    """A family over a user's class or factory, built behind the output contract."""

    def checks(options: ModelOptions) -> str | None:
        return external.why_unsupported(name, factory, options) or (check(options) if check else None)

    return Family(name, lambda options: external.build_external(factory, options), checks, factory)


def names() -> list[str]:
    """Registered families and installed packages' entry points (not imported by listing)."""
    return sorted(FAMILIES.names())


def builtin_names() -> list[str]:
    """The families this package defines (not those of plugins or entry points)."""
    return sorted(FAMILIES.builtin_names())


def family(name: str) -> Family:
    """The family called `name`: registered, an installed entry point (imported now), or a
    `package.module:Class` reference. UnknownModelError (known names, closest) otherwise."""
    return FAMILIES.get(name)


def why_unknown(name: str) -> str | None:
    """Why `name` is no model (the encoder setting's check), or None for a family."""
    try:
        family(name)
    except UnknownModelError as error:
        return str(error).replace(f"unknown model '{name}'", "not a known model", 1)
    return None


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
    options = dataclasses.replace(options or ModelOptions(), **overrides)
    reason = why_invalid(name, options)
    if reason:
        raise UnsupportedOptionError(f"{name}: {reason}")
    return family(name).builder(options)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
