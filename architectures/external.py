"""Models from outside the package: plugin files and modules, `module:Class` names, entry points.

The contract a user's model follows: input (B, 2, 14, 14); output the comparison logits (B, 2)
or (B, 1), or a `PairOutput(comparison, digits)` (or a pair `(comparison, digits)`) where digits
are the two digits' logits (B, 2, 10). A model class (or factory) receives the `ModelOptions`
fields its signature names (`batch_norm`, `dropout`, ...); a combination that asks for an option
it does not take is dropped from the plan with that reason. Transfer learning needs a
`digit_encoder` attribute mapping (b, 1, 14, 14) digits to (b, 10) logits.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

ENTRY_POINT_GROUP = "harness.architectures"
# options that change what a model is: a user's model must take them to be asked for them
STRUCTURAL = ("pairing", "weight_sharing", "batch_norm", "dropout", "width", "head_hidden")


class PluginError(Exception):
    """A plugin that cannot be imported; the message names it and the error, in one line."""


@dataclass(frozen=True)
class PluginSource:
    """A plugin as it was used: how it was named, the file imported, and its text's SHA-256."""

    spec: str
    path: str | None
    sha256: str | None
    text: str | None


def _one_line(error: BaseException) -> str:
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _where(error: BaseException, path: Path) -> str:
    """' at line N' of the plugin file where the error was raised, when it was raised there."""
    import traceback

    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__) if Path(frame.filename) == path]
    return f" at line {lines[-1]}" if lines else ""


def is_file_spec(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def load_plugin(spec: str, base: str | Path | None = None) -> PluginSource:
    """Import a plugin: a .py file (relative to `base`, the matrix file's folder, when given) or
    an importable module; its registrations take effect. Importing the same file twice is one
    import. PluginError in one line otherwise."""
    if is_file_spec(spec):
        path = Path(spec).expanduser()
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        path = path.resolve()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise PluginError(f"plugin {spec}: cannot read {path} ({_one_line(error)})") from None
        digest = hashlib.sha256(text.encode()).hexdigest()
        name = f"harness_plugin_{path.stem}_{digest[:12]}"
        if name not in sys.modules:
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module  # dataclasses and pickling look the module up by name
            try:
                module_spec.loader.exec_module(module)
            except BaseException as error:
                del sys.modules[name]
                raise PluginError(f"plugin {spec}: importing {path} failed{_where(error, path)}: {_one_line(error)}") from None
        return PluginSource(spec, str(path), digest, text)
    try:
        module = importlib.import_module(spec)
    except BaseException as error:
        raise PluginError(f"plugin {spec}: cannot import the module ({_one_line(error)}); "
                          "give a .py file path or a module on sys.path") from None
    path = getattr(module, "__file__", None)
    text = digest = None
    if path and path.endswith(".py"):
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        digest = hashlib.sha256(text.encode()).hexdigest()
    return PluginSource(spec, path, digest, text)


def entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """Installed packages' models (group `harness.architectures`), by name; nothing imported."""
    return {point.name: point for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def resolve_object(reference: str):
    """`package.module:Name` -> the object (a torch.nn.Module class or a factory)."""
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except BaseException as error:
        raise PluginError(f"encoder {reference}: cannot import {module_name} ({_one_line(error)})") from None
    target = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise PluginError(f"encoder {reference}: {module_name} has no {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise PluginError(f"encoder {reference}: {attribute} is not a class or factory")
    return target


class ContractAdapter(nn.Module):
    """A user's model with its output read as the harness's PairOutput."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @property
    def digit_encoder(self) -> nn.Module:
        if not hasattr(self.model, "digit_encoder"):
            raise AttributeError(f"{type(self.model).__name__} has no digit_encoder: transfer needs one")
        return self.model.digit_encoder

    def forward(self, pairs: torch.Tensor):
        from architectures.pairs import PairOutput

        output = self.model(pairs)  # (B, 2, 14, 14) in
        if isinstance(output, torch.Tensor):
            return PairOutput(output, None)
        if isinstance(output, (tuple, list)) and len(output) == 2:
            return PairOutput(output[0], output[1])
        raise TypeError(f"{type(self.model).__name__} returned {type(output).__name__}: "
                        "expected comparison logits, or (comparison, digits)")


def accepted(factory) -> set[str] | None:
    """The ModelOptions fields `factory` takes by name (None: it takes them all, **kwargs)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return set()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters}


def why_unsupported(label: str, factory, options) -> str | None:
    """Why a user's model cannot honour `options`: a structural option away from its default
    that the model does not take."""
    takes = accepted(factory)
    if takes is None:
        return None
    defaults = type(options)()
    for name in STRUCTURAL:
        if getattr(options, name) != getattr(defaults, name) and name not in takes:
            return f"{label} takes no '{name}' option, so {name} = {getattr(options, name)!r} cannot apply"
    return None


def build_external(factory, options) -> nn.Module:
    """The user's model, given the options its signature names, behind the output contract."""
    takes = accepted(factory)
    values = dataclasses.asdict(options)
    arguments = values if takes is None else {k: v for k, v in values.items() if k in takes}
    model = factory(**arguments)
    if not isinstance(model, nn.Module):
        raise TypeError(f"{getattr(factory, '__name__', factory)} built a {type(model).__name__}, not a torch.nn.Module")
    return ContractAdapter(model)
