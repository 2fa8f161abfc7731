"""Models from outside the package (plugin files and modules, `module:Class` names, entry
points), behind the output contract.

The contract a user's model follows: input (B, 2, 14, 14); output the comparison logits (B, 2)
or (B, 1), or a `PairOutput(comparison, digits)` (or a pair `(comparison, digits)`) where digits
are the two digits' logits (B, 2, 10). A model class (or factory) receives the `ModelOptions`
fields its signature names (`batch_norm`, `dropout`, ...); a combination that asks for an option
it does not take is dropped from the plan with that reason. Transfer learning needs a
`digit_encoder` attribute mapping (b, 1, 14, 14) digits to (b, 10) logits.
"""

from __future__ import annotations

import dataclasses
import inspect

import torch
from torch import nn

from harness.settings import STRUCTURE
from harness.tasks.pairs.settings import ModelOptions

# options that change what a model is: a user's model must take them to be asked for them
STRUCTURAL = tuple(field.name for field in dataclasses.fields(ModelOptions) if field.metadata["model_option"] == STRUCTURE)


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
