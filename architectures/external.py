"""Models from outside the package (plugin files and modules, `module:Class` names, entry
points), run as they were written, behind one output contract checked once at plan time.

The contract. Input: the pair `(B, 2, 14, 14)` to `forward(x)`, or its two images `(B, 1, 14,
14)` to `forward(x1, x2)`. Output: the comparison, `(B, 2)`, `(B, 1)` or `(B,)`: logits (or one
score), or probabilities when the configuration says `model_output = "probability"`; with it,
optionally, the digits' logits: `(B, 2, 10)`, `(B, 20)`, or one `(B, 10)` per digit, first digit
first. The comparison and digits may come as a tensor, a tuple or list (`(comparison, digits)`,
`(comparison, d1, d2)`, `(d1, d2, comparison)`, ...), a dict, or a list of auxiliary heads (each
a digits output; the aux loss averages their losses). Each tensor is read by its shape, which
tells the comparison from the digits unambiguously; anything else, a `(B, 3)` comparison
included, is refused, never trained.

A model class (or factory function) receives the settings its constructor names (`dropout`,
`batch_norm`, `aux_loss`, ...; ModelOptions' STRUCTURE and TRAINING options) and the
configuration's `model_args`; a `digit_encoder` attribute (one digit `(b, 1, 14, 14)` to `(b, 10)`
logits) makes the `transfer` variants apply.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from architectures.layout import to_channels_last
from harness.plugins import line_in
from harness.registry import one_line, suggest
from harness.settings import STRUCTURE, TRAINING
from harness.tasks.pairs.settings import ModelOptions

# options that change what a model is: a user's model must take them to be asked for them
STRUCTURAL = tuple(field.name for field in dataclasses.fields(ModelOptions) if field.metadata["model_option"] == STRUCTURE)
# the options a user's constructor receives when it names them
PASSED = tuple(field.name for field in dataclasses.fields(ModelOptions)
               if field.metadata["model_option"] in (STRUCTURE, TRAINING))

PROBE_BATCH = 6  # pairs in the plan-time check: no accepted size (1, 2, 10, 20) to confuse with the batch
PROBE_SECONDS = 60  # the plan-time check of a user's model: a forward and backward pass on a few pairs
COMPARISON = "(B, 2), (B, 1) or (B,)"
DIGITS = "(B, 2, 10), (B, 20), or (B, 10) per digit"
EPSILON = 1e-7  # probabilities are clamped this far from 0 and 1 before their log


class ContractError(ValueError):
    """A user's model that the contract cannot build or read; the message is one line naming
    what was expected and what came."""


# --------------------------------------------------------------------------- constructors


@dataclass(frozen=True)
class Signature:
    """What a constructor (or factory) takes by name: its named parameters (None: anything,
    through **kwargs as well), those without a default, and the defaults."""

    names: frozenset[str] | None
    required: tuple[str, ...]
    defaults: dict[str, Any]
    listed: tuple[str, ...]  # the named parameters, in order, for messages


@functools.cache
def signature_of(factory) -> Signature:
    try:
        parameters = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return Signature(frozenset(), (), {}, ())
    named = [p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    anything = any(p.kind is p.VAR_KEYWORD for p in parameters)
    return Signature(None if anything else frozenset(p.name for p in named),
                     tuple(p.name for p in named if p.default is p.empty),
                     {p.name: p.default for p in named if p.default is not p.empty},
                     tuple(p.name for p in named))


def takes(factory, name: str) -> bool:
    """Whether the constructor takes the setting `name`: it names it (a **kwargs catch-all does
    not count), and what it says of it (its default, its annotation) fits the setting's type: a
    `width=16` (an int of its own, a channel count) is the model's own argument, never given the
    harness's `width` (a float multiplier); it is set through model_args like any other."""
    return name in options_taken(factory)


@functools.cache
def options_taken(factory) -> frozenset[str]:
    """The settings (ModelOptions' STRUCTURE and TRAINING options) a constructor takes (`takes`)."""
    from harness.settings import declare
    from harness.tasks.pairs.settings import PairsSettings

    declared = declare(PairsSettings)
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return frozenset()
    taken = set()
    for name in PASSED:
        parameter = parameters.get(name)
        if parameter is None or parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            continue
        kind, choices = declared[name].type, declared[name].meta.allowed()
        said = [parameter.default] if parameter.default not in (parameter.empty, None) else []
        if isinstance(parameter.annotation, type) and parameter.annotation is not parameter.empty:
            said.append(parameter.annotation)
        elif isinstance(parameter.annotation, str) and parameter.annotation in ("bool", "int", "float", "str"):
            said.append({"bool": bool, "int": int, "float": float, "str": str}[parameter.annotation])
        if all(_fits(value, kind, choices) for value in said):
            taken.add(name)
    return frozenset(taken)


def _fits(value, kind: type, choices) -> bool:
    """Whether a default (or an annotation, a type) says a parameter holds the setting's type."""
    if isinstance(value, type):
        return value is kind
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    if kind is float:
        return isinstance(value, float)
    if kind is int:
        return isinstance(value, int)
    return isinstance(value, kind) and (choices is None or value in choices)


def describe_factory(factory) -> str:
    return getattr(factory, "__qualname__", None) or getattr(factory, "__name__", None) or repr(factory)


def constructor_arguments(label: str, factory, options) -> dict[str, Any]:
    """The keyword arguments the user's constructor receives: the passed options it names,
    then `model_args` (their references resolved by the configuration). ContractError for an
    argument it does not take, an option given twice, or a required argument left out."""
    signature, called = signature_of(factory), describe_factory(factory)
    who = label if label.endswith(called) else f"{label} ({called})"
    arguments = {name: getattr(options, name) for name in PASSED if takes(factory, name)}
    for key, value in (options.model_args or {}).items():
        if key in arguments:
            raise ContractError(f"model_args.{key}: '{key}' is a setting of its own: set {key} = {value!r} instead "
                                "(it reaches the model under that name)")
        if signature.names is not None and key not in signature.names:
            takes_what = ", ".join(signature.listed) or "no arguments"
            raise ContractError(f"model_args.{key}: {who} takes no argument '{key}'{suggest(key, signature.listed)} "
                                f"(it takes: {takes_what})")
        arguments[key] = list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value
    missing = [name for name in signature.required if name not in arguments]
    if missing:
        example = ", ".join(f"{name} = ..." for name in missing)
        raise ContractError(f"{who} needs {', '.join(repr(name) for name in missing)}: give "
                            f"{'it' if len(missing) == 1 else 'them'} in the matrix, model_args = {{ {example} }} "
                            "(a setting's value: \"$aux_loss\")")
    return arguments


def why_unsupported(label: str, factory, options) -> str | None:
    """Why a user's model cannot honour `options`: a structural option away from its default
    that the model does not take (the combination is dropped from the plan)."""
    defaults = type(options)()
    for name in STRUCTURAL:
        if getattr(options, name) != getattr(defaults, name) and not takes(factory, name):
            return f"{label} takes no '{name}' option, so {name} = {getattr(options, name)!r} cannot apply"
    return None


def where_raised(error: BaseException, factory) -> str:
    """' (at line N of FILE)' for the last frame of the user's file (the one defining `factory`)
    in the error's traceback."""
    path = getattr(inspect.getmodule(factory), "__file__", None)
    line = line_in(error, path)
    return f" (at line {line} of {path})" if line else ""


def build_external(label: str, factory, options) -> nn.Module:
    """The user's model, given the arguments its constructor takes, behind the contract.
    ContractError in one line when it cannot be built."""
    arguments = constructor_arguments(label, factory, options)
    try:
        model = factory(**arguments)
    except ContractError:
        raise
    except Exception as error:
        shown = ", ".join(f"{key}={value!r}" for key, value in arguments.items())
        raise ContractError(f"{label}: {describe_factory(factory)}({shown}) failed{where_raised(error, factory)}: "
                            f"{one_line(error)}") from None
    if not isinstance(model, nn.Module):
        raise ContractError(f"{label}: {describe_factory(factory)} built a {type(model).__name__}, not a torch.nn.Module")
    return ContractAdapter(model, label, probability=options.model_output == "probability")


# --------------------------------------------------------------------------- outputs


def two_inputs(model: nn.Module) -> bool:
    """Whether `forward` takes the two images apart: two parameters without defaults."""
    try:
        parameters = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    return len(positional) >= 2


def _leaves(output: Any, path: str) -> Iterator[tuple[str, Any]]:
    """The tensors of an output, depth first, with where each sits (`[1]`, `['digits']`)."""
    if isinstance(output, torch.Tensor) or output is None:
        if output is not None:
            yield path, output
    elif isinstance(output, dict):
        for key, value in output.items():
            yield from _leaves(value, f"{path}[{key!r}]")
    elif isinstance(output, (tuple, list)):
        for index, value in enumerate(output):
            yield from _leaves(value, f"{path}[{index}]")
    else:
        yield path, output  # refused by the reader, with its type


def _shape(tensor) -> str:
    return "(" + ", ".join(str(size) for size in tensor.shape) + (",)" if tensor.dim() == 1 else ")")


def described(output: Any) -> str:
    """A model's output as the messages quote it: `a tuple of (6, 2) float32, (6, 3) float32`."""
    if isinstance(output, torch.Tensor):
        return f"{_shape(output)} {str(output.dtype).replace('torch.', '')}"
    if not isinstance(output, (tuple, list, dict)):  # no container: the thing itself
        return f"a {type(output).__name__}"
    parts = [f"{_shape(value)} {str(value.dtype).replace('torch.', '')}" if isinstance(value, torch.Tensor)
             else type(value).__name__ for _, value in _leaves(output, "")]
    return f"a {type(output).__name__} of {', '.join(parts) or 'nothing'}"


def read_output(output: Any, batch: int, label: str, *, probability: bool = False):
    """A user's model output as the harness's PairOutput: comparison (B, 2) or (B, 1) logits,
    digits (B, 2, 10), (B, H, 2, 10) for H auxiliary heads, or None. ContractError in one line
    for anything the contract does not read."""
    from architectures.pairs import PairOutput

    comparisons, singles, heads = [], [], []
    expected = f"expected the comparison {COMPARISON} and, optionally, digit logits {DIGITS}, with B = {batch}"
    for path, tensor in _leaves(output, "output"):
        if not isinstance(tensor, torch.Tensor):
            raise ContractError(f"{label} returned {described(output)}: {path} is a {type(tensor).__name__}; {expected}")
        if not tensor.is_floating_point():
            raise ContractError(f"{label} returned {described(output)}: {path} is {tensor.dtype}, not floating point "
                                f"(return scores, not decisions); {expected}")
        shape = tuple(tensor.shape)
        if shape == () and batch == 1:  # a squeezed score of a batch of one
            comparisons.append(tensor.reshape(1, 1))
        elif shape in ((batch,), (batch, 1), (batch, 2)):
            comparisons.append(tensor.reshape(batch, -1))
        elif shape == (batch, 10):
            singles.append(tensor)
        elif shape in ((batch, 20), (batch, 2, 10)):
            heads.append(tensor.reshape(batch, 2, 10))
        else:
            kind = ("the comparison must have two classes or one score" if len(shape) == 2 and shape[0] == batch
                    and shape[1] < 10 else f"{path} is neither")
            raise ContractError(f"{label} returned {described(output)}: {kind}; {expected}")
    if len(comparisons) != 1:
        found = "no comparison" if not comparisons else f"{len(comparisons)} outputs shaped like a comparison"
        raise ContractError(f"{label} returned {described(output)}: {found}; {expected}")
    if len(singles) % 2:
        raise ContractError(f"{label} returned {described(output)}: {len(singles)} single-digit output(s) (B, 10), "
                            f"not pairs of them (first digit, second digit); {expected}")
    heads += [torch.stack(singles[i : i + 2], 1) for i in range(0, len(singles), 2)]  # (B, 2, 10) each
    comparison = comparisons[0]
    if probability:
        p = comparison.clamp(EPSILON, 1 - EPSILON)
        comparison = torch.log(p) - torch.log1p(-p) if p.shape[1] == 1 else torch.log(p)
    digits = None if not heads else heads[0] if len(heads) == 1 else torch.stack(heads, 1)  # (B, [H,] 2, 10)
    return PairOutput(comparison, digits)


class ContractAdapter(nn.Module):
    """A user's model, called as it was written, with its output read as the harness's
    PairOutput (read_output)."""

    def __init__(self, model: nn.Module, label: str, *, probability: bool = False):
        super().__init__()
        self.model = model
        self.label = label
        self.probability = probability
        self.two_inputs = two_inputs(model)

    @property
    def digit_encoder(self) -> nn.Module:
        if not hasattr(self.model, "digit_encoder"):
            raise AttributeError(f"{type(self.model).__name__} has no digit_encoder: transfer needs one")
        return self.model.digit_encoder

    def call(self, pairs: torch.Tensor) -> Any:
        """The user's model on the pairs (B, 2, 14, 14), as it was written to be called: its
        output as it returns it."""
        if self.two_inputs:  # each image (B, 1, 14, 14), contiguous as a fresh tensor is
            return self.model(pairs[:, 0:1].contiguous(), pairs[:, 1:2].contiguous())
        return self.model(pairs.contiguous())

    def forward(self, pairs: torch.Tensor):  # (B, 2, 14, 14)
        return read_output(self.call(pairs), pairs.shape[0], self.label, probability=self.probability)


# --------------------------------------------------------------------------- the plan-time check


@dataclass(frozen=True)
class Probe:
    """What the plan-time call of a user's model found: how many digit heads it returns in
    training (0: none), whether it has a usable digit encoder, and what the plan should say."""

    heads: int
    digit_encoder: bool
    notes: tuple[str, ...]
    parameters: int = 0  # the model's parameter count


@functools.lru_cache(maxsize=256)
def probe(label: str, build, options, channels_last: bool = False) -> Probe:
    """Build the model as a run does (`build(options)`), then call it on a small batch of
    random pairs in training mode (forward and backward) and in eval mode (no gradient), in
    NCHW and, when runs may use it, channels_last, so that a model that breaks the contract is
    refused in one line before anything is stored. Torch's random state is left as it was.
    It runs in a forked copy of this process (harness.plugins.call_in_child) and may take
    PROBE_SECONDS: a model that exits, crashes, is killed or outlasts them is refused in one
    line too, and this process goes on."""
    from harness.plugins import ChildFailed, call_in_child

    try:
        return call_in_child(functools.partial(_probe_bounded, label, build, options, channels_last), PROBE_SECONDS + 10)
    except ChildFailed as error:
        raise ContractError(f"{label}: building it and calling it on {PROBE_BATCH} pairs failed: {error}") from None


def _probe_bounded(label: str, build, options, channels_last: bool) -> Probe:
    from harness.plugins import TimeLimitExceeded, time_limit

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # in a forked copy: one thread, and no thread pool inherited mid-state
    try:
        with time_limit(PROBE_SECONDS, ""):
            return _probe(label, build, options, channels_last)
    except TimeLimitExceeded:
        raise ContractError(f"{label}: building it and calling it on {PROBE_BATCH} pairs took over {PROBE_SECONDS} s "
                            "(does it wait for input, a lock or a download?): the plan cannot check it") from None
    except (SystemExit, GeneratorExit) as error:
        what = f"called sys.exit({error.code!r})" if isinstance(error, SystemExit) else f"raised {type(error).__name__}"
        raise ContractError(f"{label}: the model {what} when built or called on {PROBE_BATCH} pairs") from None
    finally:
        torch.set_num_threads(threads)


def _probe(label: str, build, options, channels_last: bool) -> Probe:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build(options)
        pairs = torch.randn(PROBE_BATCH, 2, 14, 14)
        for layout in ("nchw", "channels_last") if channels_last else ("nchw",):
            if layout == "channels_last":
                to_channels_last(model)
            model.train()
            trained = _call(model, pairs, label, "in training mode")
            try:
                total = trained.comparison.sum() + (0 if trained.digits is None else trained.digits.sum())
                if total.requires_grad:
                    total.backward()
            except Exception as error:
                raise ContractError(f"{label}: its backward pass failed{where_raised(error, type(model.model))}: "
                                    f"{one_line(error)}") from None
            model.eval()
            with torch.no_grad():
                scored = _call(model, pairs, label, "in eval mode")
        encoder = _digit_encoder_works(model, label)
    notes = []
    # a probability stays in [0, 1] however large the input; logits of a ReLU network grow with it
    in_unit_interval = _comparison_in_unit_interval(model)
    if options.model_output == "logits" and in_unit_interval:
        notes.append(f"{label}: its comparison outputs stay in [0, 1] for inputs of every scale tried: if they are "
                     "probabilities (after a sigmoid or softmax), set model_output = \"probability\"")
    if options.model_output == "probability" and in_unit_interval is False:
        raise ContractError(f"{label}: model_output = \"probability\", but its comparison outputs leave [0, 1]: "
                            "set model_output = \"logits\" (or end the model with a sigmoid or softmax)")
    digits = trained.digits
    heads = 0 if digits is None else 1 if digits.dim() == 3 else digits.shape[1]
    if heads > 1:
        notes.append(f"{label} returns {heads} digit heads: the aux loss averages their losses, and the digit error "
                     "is that of their averaged probabilities")
    if digits is not None and bool((digits >= 0).all()) and torch.allclose(digits.sum(-1), torch.ones(()), atol=1e-4):
        notes.append(f"{label}: its digit outputs sum to 1 (probabilities?): the aux loss reads them as logits; "
                     "return logits or log-probabilities")
    if scored.comparison.shape != trained.comparison.shape:
        raise ContractError(f"{label}: its comparison is {_shape(trained.comparison)} in training mode and "
                            f"{_shape(scored.comparison)} in eval mode")
    return Probe(heads, encoder, tuple(notes), sum(parameter.numel() for parameter in model.parameters()))


def _call(model: ContractAdapter, pairs: torch.Tensor, label: str, when: str):
    try:
        return model(pairs)
    except ContractError:
        raise
    except Exception as error:
        shape = f"({pairs.shape[0]}, 1, 14, 14) twice" if model.two_inputs else f"({pairs.shape[0]}, 2, 14, 14)"
        raise ContractError(f"{label}: calling it on {shape} {when} failed{where_raised(error, type(model.model))}: "
                            f"{one_line(error)}") from None


def _comparison_in_unit_interval(model: ContractAdapter) -> bool | None:
    """Whether the comparison the model returns (before a probability's log), in eval mode, lies
    in [0, 1] for random pairs scaled by 1, 10 and 100; None when it cannot be told apart."""
    generator = torch.Generator().manual_seed(1)
    pairs = torch.randn(8 * PROBE_BATCH, 2, 14, 14, generator=generator)
    inside = True
    with torch.no_grad():
        for scale in (1.0, 10.0, 100.0):
            batch = pairs.shape[0]
            found = [t for _, t in _leaves(model.call(pairs * scale), "") if isinstance(t, torch.Tensor)
                     and tuple(t.shape) in ((batch,), (batch, 1), (batch, 2))]
            if len(found) != 1:
                return None
            inside = inside and bool(((found[0] >= 0) & (found[0] <= 1)).all())
    return inside


def _digit_encoder_works(model: ContractAdapter, label: str) -> bool:
    """Whether the model has a digit encoder mapping (b, 1, 14, 14) digits to (b, 10) logits."""
    encoder = getattr(model.model, "digit_encoder", None)
    if not isinstance(encoder, nn.Module):
        return False
    with torch.no_grad():
        try:
            logits = encoder(torch.randn(PROBE_BATCH, 1, 14, 14))
        except Exception as error:
            raise ContractError(f"{label}: its digit_encoder fails on ({PROBE_BATCH}, 1, 14, 14) digits"
                                f"{where_raised(error, type(model.model))}: {one_line(error)}") from None
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (PROBE_BATCH, 10):
        raise ContractError(f"{label}: its digit_encoder returned {described(logits)} for ({PROBE_BATCH}, 1, 14, 14) "
                            "digits: transfer needs (b, 10) logits")
    return True


def adopted_defaults(factory) -> dict[str, Any]:
    """The defaults the user's constructor gives to the settings it names: a configuration
    that does not set them takes these, so that the model runs as written and its name says so."""
    signature = signature_of(factory)
    return {name: signature.defaults[name] for name in PASSED if name in signature.defaults and takes(factory, name)}
