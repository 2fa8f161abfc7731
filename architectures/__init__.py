"""Model families for the digit-pair task, registered by name.

    >>> from architectures import build, names
    >>> model = build("cnn", pairing="siamese", weight_sharing=True)
    >>> out = model(torch.randn(8, 2, 14, 14))   # out.comparison (8, 2), out.digits (8, 2, 10)
"""

from architectures import damachi, dong, gardoni, generic, poulsen, savary  # noqa: F401  (registers)
from architectures.pairs import PairOutput
from architectures.registry import (
    FAMILIES,
    UnknownModelError,
    UnsupportedOptionError,
    build,
    builtin_names,
    count_parameters,
    family,
    names,
    register,
    why_invalid,
    why_unknown,
)
from harness.tasks.pairs.settings import PAIRINGS, TRANSFERS, ModelOptions

__all__ = [
    "FAMILIES",
    "PAIRINGS",
    "TRANSFERS",
    "ModelOptions",
    "PairOutput",
    "UnknownModelError",
    "UnsupportedOptionError",
    "build",
    "builtin_names",
    "count_parameters",
    "family",
    "names",
    "register",
    "why_invalid",
    "why_unknown",
]
