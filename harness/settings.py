"""Settings, each declared once with what the harness needs to know about it, and the
configuration of a run: the common settings every task shares, and its task's own.

A setting is a dataclass field whose metadata is a `Setting`: its help, its choices or range,
its neutral value (left out of stored ids), its name tag, its effect baseline, whether it only
describes a configuration. The common settings are the fields of `RunConfig`; a task declares
its own the same way, as the fields of a frozen dataclass of its own (harness.tasks.TaskSpec's
`settings`). Validation, configuration ids and names, the effects' baselines, the tables'
factor columns, the README's settings table and `harness settings` all read these
declarations; nothing else lists settings.

A configuration reads flat: `config.epochs` is a common setting, `config.encoder` one of its
task's, and its id is the hash of both, flattened into one mapping.

No torch here: the CLI, the store and the reports import this module.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from harness.errors import ConfigError
from harness.registry import is_reference, resolve_reference, suggest

MAX_ROUNDS = 1000
MAX_SEED = 2**32 - 1  # data seeds are seed + round: stored as SQLite integers, fed to torch.Generator

OPTIMIZERS = ("adam", "adamw", "sgd")
LOSSES = ("cross_entropy", "mse", "mse_linear")

# Effect kinds: how `harness table` measures a setting's effect when it varies in a store.
FROM_BASELINE = "baseline"  # against the declared baseline level (switching a factor on)
FROM_SMALLEST = "smallest"  # against the smallest level present (a numeric schedule)
IN_ORDER = "order"  # against the first of the declared order present (encoder families)

# Model options: settings a task hands to its model's builder (harness.tasks.pairs derives its
# ModelOptions from them). STRUCTURE: what the model is (a user's model must take the option to
# be asked for it); TRAINING: how it is trained (passed where the model takes it); APPLIED: what
# the harness does around any model (never passed to a user's constructor).
STRUCTURE = "structure"
TRAINING = "training"
APPLIED = "applied"  # what the harness applies around any model (its output reading, its initialisation): never passed

DEFAULT_TASK = "pairs"  # the task of a configuration that names none


_UNSET = object()


class Table(dict):
    """The value of a table setting (a model's constructor arguments): a dict, as JSON writes
    and a constructor reads it, that hashes and compares by its content, keeps its keys sorted
    (so that equal tables read alike) and that nothing changes once made."""

    def __init__(self, items=(), **more):
        merged = dict(items, **more)
        super().__init__(sorted(merged.items()))

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(json.dumps(self, sort_keys=True, default=str))

    def _read_only(self, *arguments, **keywords):
        raise TypeError("a configuration's table setting is read-only: make a new one")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = __ior__ = _read_only  # type: ignore

    def __reduce__(self):
        return (Table, (dict(self),))


@dataclass(frozen=True)
class Setting:
    """What the harness knows about one setting besides its name, type and default."""

    help: str
    # the allowed values; a callable or a `module:attribute` reference to one is asked when checking
    choices: Sequence[Any] | Callable[[], Sequence[Any]] | str | None = None
    check: Callable[[Any], str | None] | str | None = None  # what is wrong with a value, instead of choices
    minimum: float | None = None  # inclusive
    above: float | None = None  # exclusive lower bound
    maximum: float | None = None  # inclusive
    below: float | None = None  # exclusive upper bound
    unit: str = ""  # words after a range in messages ("pixels")
    why: str = ""  # why the range is what it is, shown when a value leaves it
    # Settings added after results were first stored: the value that reproduces the code before
    # them. At that value the setting is left out of a configuration's id, so stored ids stay valid.
    neutral: Any = _UNSET
    presentation: bool = False  # describes a configuration without changing what it computes
    tag: str | Callable[[Any], str | None] | None = None  # in names: "aux", "drop{:g}", or f(config)
    always: bool = False  # the tag is shown at every value, not only away from the default
    effect: str | None = None  # FROM_BASELINE, FROM_SMALLEST or IN_ORDER; None: no effect row
    baseline: Any = None  # the level effects are measured from (FROM_BASELINE)
    order: Sequence[Any] = ()  # the levels' order (IN_ORDER)
    dependent: tuple[str, ...] = ()  # settings that mean nothing at some levels of this one
    factor: bool = False  # one of the ablation factors: a column of every table
    # the factor as a question names it ("weight sharing"; default: the name), or a function of the
    # change measured ("cnn -> mlp") that names it by what that change is
    title: str | Callable[[str], str] = ""
    # read by the loss alone, so that members of one vectorised model may differ in it (--pack);
    # a model option only where the model's family declares it loss-only too
    loss_only: bool = False
    model_option: str | None = None  # STRUCTURE or TRAINING: handed to the model's constructor

    def titled(self, name: str, change: str = "") -> str:
        """The factor's name in effect lines, for the `change` measured ("cnn -> mlp")."""
        title = self.title(change) if callable(self.title) else self.title
        return title or name.replace("_", " ")

    @property
    def has_neutral(self) -> bool:
        return self.neutral is not _UNSET

    def allowed(self) -> Sequence[Any] | None:
        """The declared choices, asked now (a callable or a reference to one), or None."""
        choices = self.choices
        if is_reference(choices):
            choices = resolve_reference(choices)
        return choices() if callable(choices) else choices


def one_line_label(value: Any) -> str | None:
    """Why a display name cannot be one (a line break or control character splits the tables'
    rows), or None."""
    if isinstance(value, str) and any(not character.isprintable() for character in value):
        return "must be one line of printable text (no line break, tab or control character)"
    return None


def setting(default: Any, help: str, **metadata: Any) -> Any:
    """A settings dataclass field with its `Setting`."""
    return dataclasses.field(default=default, metadata={"setting": Setting(help, **metadata)})


# A task's settings class may hold what its `complete` hook derives about a configuration (no
# setting: never given, checked, stored or part of the id, not compared): `derived()` fields.
# INAPPLICABLE names the settings that mean nothing for the configuration (left out of its name).
INAPPLICABLE = "inapplicable"


def derived(default: Any, help: str) -> Any:
    """A settings dataclass field that is no setting: what the task's `complete` hook derives."""
    return dataclasses.field(default=default, compare=False, metadata={"derived": True, "help": help})


def derived_names(settings_class: type) -> tuple[str, ...]:
    return tuple(item.name for item in fields(settings_class) if item.metadata.get("derived"))


@dataclass(frozen=True)
class Declared:
    """One setting: its name, type, default, declaration and the task that owns it (None: common)."""

    name: str
    type: type
    optional: bool
    default: Any
    meta: Setting
    task: str | None = None


@functools.cache
def declare(settings_class: type, task: str | None = None) -> dict[str, Declared]:
    """Each field of a settings dataclass (its `Setting` fields: RunConfig's `task_settings` is
    not one) with its type (read by typing.get_type_hints) and declaration, in declaration
    order; TypeError for a field declared without one."""
    hints = typing.get_type_hints(settings_class)
    declared = {}
    for item in fields(settings_class):
        if item.metadata.get("task_settings") or item.metadata.get("derived"):
            continue
        meta = item.metadata.get("setting")
        if meta is None:
            raise TypeError(f"{settings_class.__name__}.{item.name} has no Setting: declare it with setting(...)")
        hint = hints[item.name]
        arguments = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else ()
        kind = next((a for a in arguments if a is not type(None)), hint)
        declared[item.name] = Declared(item.name, kind, type(None) in arguments, item.default, meta, task)
    return declared


@dataclass(frozen=True)
class NoSettings:
    """The settings of a task that declares none of its own."""

    # stored ids of a task's configurations may carry settings it no longer declares: here, at
    # the values they were stored with, so that those ids stay valid (harness.tasks.disk)
    ID_CONSTANTS: ClassVar[Mapping[str, Any]] = {}


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs: one configuration, any round. The common settings
    are its fields; `task_settings` holds its task's own (a dataclass of that task's settings),
    read as attributes of the configuration itself (`config.encoder`).

    A name lists the tags of the common settings, then its task's, in declaration order, so the
    order of the tagged settings is part of every configuration's name."""

    task: str = setting(DEFAULT_TASK, "what is learned: a registered task (the `task` column of `harness settings` "
                        "lists each task's own settings; every task uses the common ones, `all`)", neutral=DEFAULT_TASK,
                        tag=lambda config: None if config.task == DEFAULT_TASK else config.task)
    validation: int = setting(0, "training examples held out as a validation set (never the test set)", minimum=0)
    epochs: int = setting(25, "epochs of the main training stage", above=0, effect=FROM_SMALLEST)
    batch_size: int = setting(100, "examples per minibatch", above=0, effect=FROM_SMALLEST)
    optimizer: str = setting("adam", "the optimiser", choices=OPTIMIZERS, effect=FROM_BASELINE, baseline="adam")
    lr: float = setting(1e-3, "learning rate (the peak of a `onecycle` schedule)", above=0, effect=FROM_SMALLEST)
    momentum: float = setting(0.0, "SGD momentum", minimum=0, below=1)
    weight_decay: float = setting(0.0, "weight decay (L2 in adam and sgd, decoupled in adamw)", minimum=0,
                                  effect=FROM_SMALLEST)
    loss: str = setting("cross_entropy", "`cross_entropy`; `mse` (on probabilities); `mse_linear` (on raw outputs, "
                        "as linear regression)", choices=LOSSES, effect=FROM_BASELINE, baseline="cross_entropy")
    # protocol
    rounds: int = setting(10, "rounds per configuration (round r draws its data from seed + r)", above=0,
                          maximum=MAX_ROUNDS, presentation=True)
    seed: int = setting(0, "base seed", minimum=0, maximum=MAX_SEED, why="2**32 - 1")
    run_timeout: float | None = setting(None, "seconds one run may take, enforced where it runs (a batched task of "
                                        "R rounds gets R times as long); a run over it is stored failed and the "
                                        "matrix goes on; none: no limit", above=0, unit="s", presentation=True)
    eval_every: int = setting(1, "epochs between learning-curve evaluations (the last epoch is always evaluated)",
                              above=0, presentation=True)
    # presentation and the published figures this configuration reproduces
    label: str | None = setting(None, "a display name (default: made from the settings)", presentation=True,
                                check=one_line_label)
    report: str | None = setting(None, "the report whose system this configuration reproduces", presentation=True)
    reference_test_error: float | None = setting(None, "the report's test error, %", presentation=True)
    reference_test_std: float | None = setting(None, "the report's test error std, %", presentation=True)
    reference_train_error: float | None = setting(None, "the report's train error, %", presentation=True)
    reference_params: int | None = setting(None, "the report's parameter count", minimum=0, presentation=True)
    evidence: str | None = setting(None, "where a reproduction's reading of its report is shown to hold (a matrix "
                                   "under matrices/ and what it shows); printed beside the verdict", presentation=True)
    task_settings: Any = dataclasses.field(kw_only=True, metadata={"task_settings": True})

    def __getattr__(self, name: str) -> Any:
        """A setting of the configuration's task, read as the configuration's own."""
        if name.startswith("__") or name == "task_settings":  # pickling and copying ask before fields exist
            raise AttributeError(name)
        try:
            return getattr(object.__getattribute__(self, "task_settings"), name)
        except AttributeError:
            raise AttributeError(f"a configuration has no setting {name!r}") from None

    def declared(self) -> dict[str, Declared]:
        """The declarations of its settings: the common ones, then its task's."""
        return {**COMMON, **declare(type(self.task_settings), self.task)}

    def settings(self) -> dict[str, Any]:
        """Every setting with its value, flat: the common ones, then its task's."""
        common = {name: getattr(self, name) for name in COMMON}
        own = {item.name: getattr(self.task_settings, item.name) for item in fields(self.task_settings)
               if not item.metadata.get("derived")}
        return {**common, **own}

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some settings changed, common or its task's (no validation: the matrix
        file's checks are harness.config's)."""
        own = {name: value for name, value in changes.items() if name not in COMMON}
        common = {name: value for name, value in changes.items() if name in COMMON}
        task_settings = dataclasses.replace(self.task_settings, **own) if own else self.task_settings
        return dataclasses.replace(self, **common, task_settings=task_settings)

    def identity(self) -> dict[str, Any]:
        """The settings that change what a run computes, flat (its id is their hash); a setting
        at its neutral value is left out, and the task's ID_CONSTANTS are in."""
        declared = self.declared()
        values = {
            name: value
            for name, value in self.settings().items()
            if not declared[name].meta.presentation
            and not (declared[name].meta.has_neutral and value == declared[name].meta.neutral)
        }
        return {**getattr(type(self.task_settings), "ID_CONSTANTS", {}), **values}

    @property
    def config_id(self) -> str:
        canonical = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def name(self) -> str:
        return self.label or describe(self)


COMMON = declare(RunConfig)  # the common settings, in declaration order


def describe(config: RunConfig) -> str:
    """A short human name: the tags of the settings that differ from their defaults (or are
    shown always), the common ones, then the task's, in declaration order
    (`cnn siamese ws aux bn drop0.25`). The settings a configuration's task found to mean
    nothing for it (its `inapplicable` derived field) are left out, so that a name never shows
    a setting its model does not take."""
    parts = []
    hidden = getattr(config.task_settings, INAPPLICABLE, ())
    for name, declared in config.declared().items():
        tag = declared.meta.tag
        if tag is None or name in hidden:
            continue
        value = getattr(config, name)
        if callable(tag):
            text = tag(config)
        elif declared.meta.always or value != declared.default:
            text = tag.format(value)
        else:
            text = None
        if text:
            parts.append(text)
    return " ".join(parts)


def told_apart(name: str, settings: list[dict[str, Any]], keys: Sequence[str]) -> list[str]:
    """Names for configurations sharing `name`: each with those of `keys` (the identity
    settings, in order) whose values differ among them, `name (lr=0.01, aux_weight=0.5)`; the
    same rule for plans and stores."""
    differing = [key for key in keys if len({json.dumps(one.get(key)) for one in settings}) > 1]
    return [f"{name} ({', '.join(f'{key}={shown_value(one.get(key))}' for key in differing)})" for one in settings]


def shown_value(value: Any) -> str:
    """A value as a matrix file writes it: true, 0.001, cnn."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "unset"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}={shown_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(shown_value(item) for item in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------- value checks

_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
               dict: "a table, e.g. { channels = 16, hidden_units = 64 }"}


def table_problem(value: Any, at: str = "") -> str | None:
    """What keeps a table's values from being stored and compared: only text keys, and values
    that are true/false, numbers (finite), text, or lists and tables of those."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                return f"its keys must be names, got {key!r}"
            problem = table_problem(item, f"{at}.{key}" if at else key)
            if problem:
                return problem
        return None
    if isinstance(value, list):
        return next((p for p in (table_problem(item, at) for item in value) if p), None)
    if isinstance(value, float) and not math.isfinite(value):
        return f"'{at}' = {value!r}: must be a finite number"
    if not isinstance(value, (bool, int, float, str)):
        return f"'{at}' = {value!r}: a value must be true/false, a number, text, or a list or table of those"
    return None


def split_key(key: str, declared: Mapping[str, Declared]) -> tuple[str, str] | None:
    """`model_args.hidden_units` -> ("model_args", "hidden_units") where the part before the
    dot is a table setting of `declared`; None for any other key."""
    name, dot, inner = key.partition(".")
    if dot and inner and name in declared and declared[name].type is dict:
        return name, inner
    return None


def value_of(settings: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """A setting's value, or one entry of a table setting named with a dot
    (`model_args.hidden_units`); `default` when there is none."""
    if key in settings:
        return settings[key]
    name, dot, inner = key.partition(".")
    table = settings.get(name) if dot else None
    return table.get(inner, default) if isinstance(table, dict) else default


def check_value(declared: Mapping[str, Declared], key: str, value: Any, where: str) -> Any:
    """The value coerced to the setting's type; ConfigError naming `where` and `key` otherwise.
    `declared`: the settings `key` may be (a task's and the common ones, or every task's)."""
    dotted = split_key(key, declared) if key not in declared else None
    if dotted is not None:  # one entry of a table setting: checked as the table {entry = value}
        name, inner = dotted
        return check_value(declared, name, {inner: value}, where)[inner]
    if key not in declared:
        raise ConfigError(f"{where}: unknown setting '{key}'{suggest(key, declared)}")
    declaration = declared[key]
    if value is None and declaration.optional:
        return None
    kind = declaration.type
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
        dict: isinstance(value, dict),
    }[kind]
    if not ok:
        raise ConfigError(f"{where}: '{key}' must be {_TYPE_WORDS[kind]}, got {value!r}")
    if kind is dict:
        problem = table_problem(value)
        if problem:
            raise ConfigError(f"{where}: '{key}': {problem}")
        value = Table(value) if value else None  # an empty table is no table: the neutral value
        if value is None and declaration.optional:
            return None
    if kind is float:
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where}: '{key}' = {value!r}: must be a finite number")
    problem = range_problem(declaration.meta, value)
    if problem:
        raise ConfigError(f"{where}: '{key}' = {value!r}: {problem}")
    return value


def range_problem(meta: Setting, value: Any) -> str | None:
    """What is wrong with a value of the right type, from the declared choices and range."""
    if meta.check is not None:
        check = resolve_reference(meta.check) if is_reference(meta.check) else meta.check
        return check(value)
    if isinstance(value, dict):
        return None
    choices = meta.allowed()
    if choices is not None:
        if value not in choices:
            return f"must be one of {', '.join(choices)}{suggest(value, choices)}"
        return None
    why = f" ({meta.why})" if meta.why else ""
    unit = f" {meta.unit}" if meta.unit else ""
    if meta.above is not None and value <= meta.above:
        return f"must be greater than {meta.above:g}"
    low_ok = meta.minimum is None or value >= meta.minimum
    if meta.minimum is not None and meta.below is not None and not (low_ok and value < meta.below):
        return f"must be in [{meta.minimum:g}, {meta.below:g})"
    if meta.minimum is not None and meta.maximum is not None and not (low_ok and value <= meta.maximum):
        if isinstance(value, int):
            return f"must be in {meta.minimum}..{meta.maximum}{unit}{why}"
        return f"must be in [{meta.minimum:g}, {meta.maximum:g}]{unit}{why}"
    if not low_ok:
        return "must not be negative" if meta.minimum == 0 else f"must be at least {meta.minimum:g}"
    if meta.maximum is not None and value > meta.maximum:
        return f"must be at most {meta.maximum:g}{unit}{why}"
    return None


def range_text(declared: Declared) -> str:
    """The values a setting takes, as the settings table shows them."""
    meta = declared.meta
    choices = meta.allowed()
    if choices is not None:
        return ", ".join(f"`{c}`" for c in choices)
    if declared.type is bool:
        return "true, false"
    if declared.type is dict:
        return "a table"
    low = (f"> {meta.above:g}" if meta.above is not None else f"≥ {meta.minimum:g}" if meta.minimum is not None else "")
    high = (f"< {meta.below:g}" if meta.below is not None else f"≤ {meta.maximum:g}" if meta.maximum is not None else "")
    text = ", ".join(part for part in (low, high) if part)
    return f"{text} {meta.unit}".strip() if text else ("text" if declared.type is str else "")
