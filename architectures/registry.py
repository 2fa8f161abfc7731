"""The model registry: one family a module, registered by name (harness.registry), built from
`ModelOptions` (the pairs task's settings flagged as model options)."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
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
    # trains in channels_last on CPU under layout "auto": the built-in families, and a user's that
    # says its code runs in either layout (register(..., channels_last=True))
    channels_last: bool = False
    user: bool = False  # a user's model, built behind the contract (architectures.external)


def _adopt(name: str, loaded) -> Family:
    """What an entry point or a `module:Class` name resolves to, as a family: the family it
    registered when imported, or a user's model class or factory behind the output contract."""
    if isinstance(loaded, Family):
        return loaded
    if not callable(loaded):  # a module whose import registered the name
        registered = FAMILIES.registered().get(name)
        if registered is None:
            raise UnknownModelError(f"model {name!r}: {getattr(loaded, '__name__', loaded)} registers no such model")
        return registered
    return external_family(name, loaded)


FAMILIES: Registry[Family] = Registry(
    "model", entry_points="harness.architectures", references=True, adopt=_adopt, error=UnknownModelError,
    hint="; a model of your own: plugins = [\"my_models.py\"] in the matrix, --plugin, or 'module:Class'",
)


def register(name: str, *, check: Callable[[ModelOptions], str | None] | None = None, loss_only: tuple[str, ...] = (),
             channels_last: bool = False):
    """Register a model family under `name`, over a user's torch.nn.Module class or a function
    that returns one (a factory): it receives the settings its signature names (`dropout`,
    `batch_norm`, ...) and the configuration's `model_args`, and its output is read by the
    contract in architectures.external. A function whose one parameter is annotated
    `ModelOptions` receives them all instead (the built-in families' form).

    `check(options)` returns why a combination means nothing for this family, or None.
    `loss_only`: the ModelOptions fields the family's layers and forward never read (see Family).
    `channels_last`: its code runs in either memory layout (no `.view` of a convolution's
    output), so CPU runs may train it in the faster channels_last (layout "auto").
    Registering a name twice with different code is an error; the same code again (a plugin
    imported by two routes) is not."""

    def decorate(builder):
        existing = FAMILIES.registered().get(name)
        if existing is not None and getattr(existing.origin, "__qualname__", None) != getattr(builder, "__qualname__", None):
            raise ValueError(f"model family {name!r} is registered twice")
        unknown = set(loss_only) - {f.name for f in dataclasses.fields(ModelOptions)}
        if unknown:
            raise ValueError(f"model family {name!r}: loss_only names no ModelOptions field: {', '.join(sorted(unknown))}")
        builtin = getattr(builder, "__module__", "").startswith("architectures.")
        if builtin or takes_options(builder):
            made = Family(name, builder, check or (lambda options: None), builder, channels_last=builtin or channels_last)
        else:
            made = dataclasses.replace(external_family(name, builder, check), channels_last=channels_last)
        FAMILIES.register(name, dataclasses.replace(made, loss_only=frozenset(loss_only)), builtin=builtin)
        return builder

    return decorate


def takes_options(builder) -> bool:
    """Whether a function is of the built-in families' form: one parameter, annotated ModelOptions."""
    if isinstance(builder, type) or not callable(builder):
        return False
    try:
        parameters = list(inspect.signature(builder).parameters.values())
    except (TypeError, ValueError):
        return False
    annotation = parameters[0].annotation if len(parameters) == 1 else None
    return annotation is ModelOptions or annotation == "ModelOptions"


def external_family(name: str, factory, check=None) -> Family:
    """A family over a user's class or factory, built behind the output contract."""
    from architectures import external

    def checks(options: ModelOptions) -> str | None:
        return external.why_unsupported(name, factory, options) or (check(options) if check else None)

    return Family(name, functools.partial(external.build_external, name, factory), checks, factory, user=True)


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
    chosen = family(name)
    if not chosen.user and options.model_args:
        return f"{name} is a built-in family: model_args are a user's model's constructor arguments"
    if not chosen.user and options.model_output != "logits":
        return f"{name} is a built-in family and returns logits: model_output applies to a user's model"
    return chosen.check(options)


def build(name: str, options: ModelOptions | None = None, **overrides) -> nn.Module:
    """Build a registered model, its weights drawn from torch's current seed (then re-drawn
    by `weight_init` and `bias_init`, where asked). `build("cnn", pairing="joint", weight_sharing=False)`."""
    options = dataclasses.replace(options or ModelOptions(), **overrides)
    reason = why_invalid(name, options)
    if reason:
        raise UnsupportedOptionError(f"{name}: {reason}")
    model = family(name).builder(options)
    initialise(model, options.weight_init, options.bias_init)
    return model


INITIALISERS = {
    "xavier_uniform": nn.init.xavier_uniform_,
    "xavier_normal": nn.init.xavier_normal_,
    "kaiming_uniform": lambda weight: nn.init.kaiming_uniform_(weight, nonlinearity="relu"),
    "kaiming_normal": lambda weight: nn.init.kaiming_normal_(weight, nonlinearity="relu"),
    "orthogonal": nn.init.orthogonal_,
}


@torch.no_grad()
def initialise(model: nn.Module, init: str = "default", bias: float | None = None) -> None:
    """Re-draw the weights of every linear and convolution layer (`init`: an INITIALISERS
    name; "default" leaves the layers' own) and set their biases to `bias` (None: as built),
    in the order of model.modules(), from torch's current random state."""
    if init == "default" and bias is None:
        return
    for module in model.modules():
        if not isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            continue
        if init != "default":
            INITIALISERS[init](module.weight)
        if bias is not None and module.bias is not None:
            module.bias.fill_(bias)


def uses_channels_last(name: str, layout: str, device_default: bool) -> bool:
    """Whether a run of family `name` trains its convolutions in channels_last: `layout`
    forces it either way; "auto" follows the device policy (`device_default`) for the families
    that run in either layout (Family.channels_last), and NCHW for the others."""
    if layout != "auto":
        return layout == "channels_last"
    return device_default and family(name).channels_last


def settings_not_taken(name: str) -> frozenset[str]:
    """The structural options a user's model does not take (none for a built-in family, or a
    name that is no model here)."""
    from architectures import external

    try:
        chosen = family(name)
    except Exception:  # noqa: BLE001 - a stored name whose plugin is not loaded: nothing known
        return frozenset()
    if not chosen.user:
        return frozenset()
    return frozenset(option for option in external.STRUCTURAL if not external.takes(chosen.origin, option))


def check_user_model(name: str, options: ModelOptions, channels_last: bool = False):
    """The plan-time check of a user's model (architectures.external.probe), or None for a
    built-in family. ContractError in one line for a model that breaks the contract."""
    from architectures import external

    chosen = family(name)
    if not chosen.user:
        return None
    return external.probe(name, chosen.builder, options, channels_last)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
