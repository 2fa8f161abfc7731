"""Every setting of a run, declared once with what the harness needs to know about it.

A setting is a field of `RunConfig` whose metadata is a `Setting`: its help, its choices or
range, its neutral value (left out of stored ids), its name tag, its effect baseline, whether it
only describes a configuration. Validation, configuration ids and names, the effects' baselines,
the tables' factor columns, the README's settings table and `harness settings` all read these
declarations; nothing else lists settings. Adding a setting is one `setting(...)` line here
(and, for a training factor, its use in `harness.training.protocol`).

No torch here: the CLI, the store and the reports import this module.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

MAX_PAIRS = 5000  # MNIST test holds 10,000 images: 5,000 pairs with no image twice
MAX_ROUNDS = 1000
MAX_SEED = 2**32 - 1  # data seeds are seed + round: stored as SQLite integers, fed to torch.Generator

OPTIMIZERS = ("adam", "adamw", "sgd")
LOSSES = ("cross_entropy", "mse", "mse_linear")
SWAP_TIES = ("stay", "flip")
LR_SCHEDULES = ("constant", "onecycle", "cosine")

# The errors a run records that effects can be measured on (`harness table --metric`)
EFFECT_METRICS = ("test_error", "validation_error", "validation_digit_error", "test_digit_error")

# Effect kinds: how `harness table` measures a setting's effect when it varies in a store.
FROM_BASELINE = "baseline"  # against the declared baseline level (switching a factor on)
FROM_SMALLEST = "smallest"  # against the smallest level present (a numeric schedule)
IN_ORDER = "order"  # against the first of the declared order present (encoder families)


class ConfigError(Exception):
    """A matrix file or option that cannot be used; the message says where and how to fix it."""


_UNSET = object()


@dataclass(frozen=True)
class Setting:
    """What the harness knows about one setting besides its name, type and default."""

    help: str
    group: str
    choices: Sequence[Any] | Callable[[], Sequence[Any]] | None = None  # a callable is asked when checking
    check: Callable[[Any], str | None] | None = None  # what is wrong with a value, instead of choices
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
    title: str = ""  # the factor as a question names it ("weight sharing"); default: the name
    task: str | None = None  # the one task that uses this setting (None: every task)
    # read by the pair loss alone, so that members of one vectorised model may differ in it
    # (--pack); a model option only where the model's family declares it loss-only too
    loss_only: bool = False

    def titled(self, name: str) -> str:
        return self.title or name.replace("_", " ")

    @property
    def has_neutral(self) -> bool:
        return self.neutral is not _UNSET


def setting(default: Any, help: str, group: str, **metadata: Any) -> Any:
    """A `RunConfig` field with its `Setting`."""
    return dataclasses.field(default=default, metadata={"setting": Setting(help, group, **metadata)})


def _encoders() -> Sequence[str]:
    """The built-in families (validation accepts plugins' and `module:Class` too)."""
    from architectures import builtin_names

    return builtin_names()


def _check_encoder(name: str) -> str | None:
    """A registered family, an installed entry point or `module:Class` (imported to check)."""
    from architectures import UnknownModelError, family

    try:
        family(name)
    except UnknownModelError as error:
        return str(error).replace(f"unknown model {name!r}", "not a known model", 1)
    return None


def _pairings() -> Sequence[str]:
    from architectures import PAIRINGS

    return PAIRINGS


def _tasks() -> Sequence[str]:
    """The built-in tasks (validation accepts the plugins' too)."""
    from harness.tasks import builtin_task_names

    return builtin_task_names()


def _check_task(name: str) -> str | None:
    """A registered task, built in or from a plugin."""
    from harness.tasks import task_names

    known = task_names()
    return None if name in known else f"must be one of {', '.join(known)}{suggest(name, known)}"


ACTIVATIONS = ("tanh", "relu", "none")


def _check_activations(value: str) -> str | None:
    names = [name.strip() for name in value.split(",")]
    unknown = [name for name in names if name not in ACTIVATIONS]
    if unknown:
        return f"{unknown[0]!r} is not an activation: use {', '.join(ACTIVATIONS)}, one name or one per linear layer"
    return None


def _transfers() -> Sequence[str]:
    from architectures import TRANSFERS

    return TRANSFERS


def _sharing_tag(config: RunConfig) -> str | None:
    if config.pairing != "siamese":
        return None
    return "ws" if config.weight_sharing else "no-ws"


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs: one configuration, any round.

    Name tags follow the declaration order below, so the order of the tagged settings is part of
    every configuration's name."""

    # task
    task: str = setting("pairs", "what is learned, a registered task: `pairs` (two MNIST digits: is the first <= the "
                        "second?) or `disk` (points in the unit square: inside the disk?); each task uses its own "
                        "settings (the `task` column of `harness settings`) and the common ones", "task", choices=_tasks,
                        check=_check_task, neutral="pairs",
                        tag=lambda config: None if config.task == "pairs" else config.task)
    # model
    encoder: str = setting("cnn", "a registered model family (built-in, from a plugin or an installed entry point), "
                           "or `package.module:Class`", "model", choices=_encoders, check=_check_encoder, tag="{}", always=True, effect=IN_ORDER, order=("linear", "mlp", "cnn"),
                           factor=True, title="encoder family (linear, MLP, CNN)", task="pairs")
    pairing: str = setting("siamese", "`joint`: the pair as two channels of one encoder; `siamese`: each digit through an encoder",
                           "model", choices=_pairings, tag="{}", always=True, effect=FROM_BASELINE, baseline="joint",
                           factor=True, title="siamese vs two-channel (joint) input", task="pairs")
    weight_sharing: bool = setting(True, "siamese only: one encoder for both digits, or two of the same shape", "model",
                                   tag=_sharing_tag, always=True, effect=FROM_BASELINE, baseline=False, factor=True, task="pairs")
    aux_loss: bool = setting(False, "add `aux_weight` x (the two digits' classification losses)", "model",
                             tag="aux", effect=FROM_BASELINE, baseline=False, factor=True,
                             title="auxiliary digit losses", task="pairs", loss_only=True)
    aux_weight: float = setting(1.0, "weight of the digit losses when `aux_loss` is on", "model", minimum=0,
                                effect=FROM_SMALLEST, task="pairs", loss_only=True)
    batch_norm: bool = setting(False, "batch norm after hidden layers", "model",
                               tag="bn", effect=FROM_BASELINE, baseline=False, factor=True, task="pairs")
    dropout: float = setting(0.0, "dropout rate after hidden layers", "model", minimum=0, below=1,
                             tag="drop{:g}", effect=FROM_BASELINE, baseline=0.0, factor=True, task="pairs")
    swap_augment: bool = setting(False, "add every training pair swapped, its target recomputed from the classes (ties stay 1)",
                                 "data", tag="swap", effect=FROM_BASELINE, baseline=False, factor=True,
                                 title="swap augmentation", task="pairs")
    swap_ties: str = setting("stay", "the target of a swapped pair whose digits are equal: `stay` 1 (recomputed from the "
                             "classes); `flip` 0, as when every swapped target is flipped (report 003's wording)",
                             "data", choices=SWAP_TIES, neutral="stay", tag=lambda c: "flip-ties" if c.swap_augment
                             and c.swap_ties == "flip" else None, task="pairs")
    transfer: str = setting("none", "`rule`: a digit classifier trained on the 2N single digits, compared by the fixed rule "
                            "P(d1 <= d2); `frozen`: pretrained encoder frozen, comparison head trained; `finetune`: "
                            "pretrained, then everything trained on the pair loss (+ aux)", "model",
                            choices=_transfers, tag="{}", effect=FROM_BASELINE, baseline="none",
                            dependent=("pretrain_epochs", "epochs"), factor=True,
                            title="transfer learning", task="pairs")  # a rule trains no pair stage
    width: float = setting(1.0, "multiplier of the family's hidden widths", "model", above=0, maximum=16,
                           why="times the family's hidden widths", effect=FROM_SMALLEST, task="pairs")
    head_hidden: int | None = setting(None, "hidden units of the comparison head (0: none; unset: the family's)", "model",
                                      minimum=0, maximum=4096, unit="units", task="pairs")
    # data
    pairs: int = setting(1000, "pairs per set (train and test)", "data", above=0, maximum=MAX_PAIRS,
                         unit="pairs", why="MNIST test has 10,000 images, two per pair", task="pairs")
    validation: int = setting(0, "training pairs held out as a validation set (never the test set)", "data", minimum=0)
    normalize: bool = setting(True, "standardise with the training set's mean and std", "data", task="pairs")
    augment_shift: int = setting(0, "each training digit moved by up to this many pixels (integer shifts)", "data",
                                 minimum=0, maximum=4, unit="pixels", why="a 14x14 digit moved further leaves the image",
                                 neutral=0, tag="shift{}", effect=FROM_BASELINE, baseline=0, task="pairs")
    augment_rotate: float = setting(0.0, "and rotated by up to this many degrees", "data", minimum=0, maximum=90,
                                    unit="degrees", neutral=0.0, tag="rot{:g}", effect=FROM_BASELINE, baseline=0.0, task="pairs")
    augment_scale: float = setting(0.0, "and scaled by a factor drawn from [1 - this, 1 + this]", "data", minimum=0,
                                   maximum=0.5, why="a digit scaled by more than half is no longer that digit",
                                   neutral=0.0, tag="scale{:g}", effect=FROM_BASELINE, baseline=0.0, task="pairs")
    augment_shear: float = setting(0.0, "and sheared along its rows by up to this many degrees", "data", minimum=0,
                                   maximum=45, unit="degrees", neutral=0.0, tag="shear{:g}", effect=FROM_BASELINE,
                                   baseline=0.0, task="pairs")
    augment_elastic: float = setting(0.0, "and distorted elastically: a random displacement field, smoothed by a "
                                     "Gaussian of 2 pixels (Simard et al.'s 4 at 28x28), scaled to this RMS "
                                     "displacement in pixels", "data", minimum=0, maximum=3, unit="pixels",
                                     why="a 14x14 digit displaced further is scrambled", neutral=0.0,
                                     tag="elastic{:g}", effect=FROM_BASELINE, baseline=0.0, task="pairs")
    augment_erase: float = setting(0.0, "probability that a training digit gets a random rectangle (2-20 % of the "
                                   "image, aspect 0.3-3.3) set to the background (random erasing)", "data", minimum=0,
                                   maximum=1, neutral=0.0, tag="erase{:g}", effect=FROM_BASELINE, baseline=0.0,
                                   task="pairs")
    digit_mix: str = setting("none", "single-digit stage only: `mixup` (two digits blended, their labels weighted "
                             "alike) or `cutmix` (a rectangle of one pasted into the other, labels weighted by "
                             "area), the weight drawn from Beta(mix_alpha, mix_alpha)", "data",
                             choices=("none", "mixup", "cutmix"), neutral="none", tag=lambda c: None
                             if c.digit_mix == "none" else f"{c.digit_mix}{c.mix_alpha:g}", effect=FROM_BASELINE,
                             baseline="none", task="pairs")
    mix_alpha: float = setting(1.0, "the Beta distribution's parameter of `digit_mix`", "data", above=0, maximum=10,
                               neutral=1.0, task="pairs")
    # training
    epochs: int = setting(25, "epochs of the pair stage", "training", above=0, effect=FROM_SMALLEST)
    pretrain_epochs: int | None = setting(None, "epochs of the single-digit stage of transfer variants (unset: `epochs`)",
                                          "training", minimum=0, effect=FROM_SMALLEST, task="pairs")
    batch_size: int = setting(100, "pairs (or digits) per minibatch", "training", above=0, effect=FROM_SMALLEST)
    optimizer: str = setting("adam", "the optimiser", "training", choices=OPTIMIZERS,
                             effect=FROM_BASELINE, baseline="adam")
    lr: float = setting(1e-3, "learning rate (the peak of a `onecycle` schedule)", "training", above=0,
                        effect=FROM_SMALLEST)
    momentum: float = setting(0.0, "SGD momentum", "training", minimum=0, below=1)
    weight_decay: float = setting(0.0, "weight decay (L2 in adam and sgd, decoupled in adamw)", "training",
                                  minimum=0, effect=FROM_SMALLEST)
    loss: str = setting("cross_entropy", "`cross_entropy`; `mse` (on probabilities); `mse_linear` (on raw outputs, "
                        "as linear regression)", "training", choices=LOSSES,
                        effect=FROM_BASELINE, baseline="cross_entropy")
    lr_schedule: str = setting("constant", "per step: `constant`, `onecycle` (peak = lr) or `cosine` decay from lr",
                               "training", choices=LR_SCHEDULES, neutral="constant", tag="{}",
                               effect=FROM_BASELINE, baseline="constant", task="pairs")
    label_smoothing: float = setting(0.0, "label smoothing of every cross-entropy (comparison and digits)", "training",
                                     minimum=0, below=1, neutral=0.0, tag="ls{:g}", effect=FROM_BASELINE, baseline=0.0, task="pairs")
    ema_decay: float = setting(0.0, "evaluate an exponential moving average of the weights (0: off)", "training",
                               minimum=0, below=1, neutral=0.0, tag="ema{:g}", effect=FROM_BASELINE, baseline=0.0, task="pairs")
    test_time_augment: bool = setting(False, "average the logits over the input and its four 1-pixel shifts", "training",
                                      neutral=False, tag="tta", effect=FROM_BASELINE, baseline=False, task="pairs")
    ensemble: int = setting(1, "models trained independently in each run (each from its own seed: weights, "
                            "minibatch order, augmentation), their predicted probabilities averaged; the parameter "
                            "count is all of theirs", "model", minimum=1, maximum=16, neutral=1, tag="ens{}",
                            effect=FROM_SMALLEST, task="pairs")
    distill_teachers: int = setting(0, "self-distillation: this many models of the run's own architecture are trained "
                                    "first on the same digits (each from its own seed); the run's model then learns "
                                    "the single digits from their averaged softened predictions as well as from the "
                                    "labels. Only the run's model is used at test time and counted", "training",
                                    minimum=0, maximum=8, neutral=0, tag="distill{}", effect=FROM_SMALLEST, task="pairs")
    distill_weight: float = setting(0.5, "the share of the distillation loss beside the labels' (self-distillation)",
                                    "training", minimum=0, maximum=1, neutral=0.5, task="pairs")
    distill_temperature: float = setting(2.0, "the temperature both predictions are softened by (self-distillation)",
                                         "training", above=0, maximum=20, neutral=2.0, task="pairs")
    score_in_train_mode: bool = setting(
        False, "score with the model left in training mode (dropout on, batch norm on each evaluation batch's "
        "statistics), as a loop that never calls model.eval() does; some reports' figures were measured so",
        "training", neutral=False, tag="scored-in-train-mode", effect=FROM_BASELINE, baseline=False, task="pairs")
    # the disk task (the course's Project 2): a multilayer perceptron on 2-D points
    points: int = setting(1000, "points per set (train and test)", "data", above=0, maximum=1_000_000, neutral=1000,
                          task="disk")
    disk_sampling: str = setting("uniform", "how the points are drawn: `uniform` in [0, 1]^2 (the course); `normal`: each "
                                 "coordinate from N(0, 1), torch's `normal_()` (report 002 says \"normal distribution on "
                                 "[0,1]\")", "data", choices=("uniform", "normal"), neutral="uniform",
                                 tag=lambda config: "normal-draw" if config.disk_sampling == "normal" else None,
                                 task="disk")
    disk_size: str = setting("area", "the disk centred at (0.5, 0.5): `area`: radius 1/sqrt(2 pi), area 1/2, so the "
                             "classes balance (the course); `diameter`: 1/sqrt(2 pi) is its diameter (report 002's "
                             "wording)", "data", choices=("area", "diameter"), neutral="area",
                             tag=lambda config: "small-disk" if config.disk_size == "diameter" else None, task="disk")
    framework: str = setting("minidl", "`minidl`: the from-scratch framework in minidl/ (no autograd, no torch.nn: SGD "
                             "and MSE only); `torch`: the same network in torch.nn with autograd", "model",
                             choices=("minidl", "torch"), neutral="minidl", tag="{}", always=True,
                             effect=FROM_BASELINE, baseline="minidl", task="disk")
    hidden_layers: int = setting(3, "hidden layers of the perceptron", "model", minimum=0, maximum=32, neutral=3,
                                 task="disk")
    hidden_units: int = setting(25, "units of each hidden layer", "model", above=0, maximum=4096, neutral=25,
                                task="disk")
    activations: str = setting("relu", "`tanh`, `relu` or `none`: one name for every hidden layer (the output stays "
                               "linear), or a comma-separated list with one per linear layer, the output's last "
                               "(report 002: `tanh,relu,relu,tanh`)", "model", check=_check_activations,
                               neutral="relu", tag="{}", always=True, task="disk")
    init: str = setting("by_activation", "initial weights and biases from N(0, s^2): `by_activation` (report 002: "
                        "s = sqrt(1/(in+out)) before a tanh, sqrt(2/(in+out)) before a ReLU or nothing), `xavier` "
                        "(sqrt(1/(in+out)) everywhere), `he` (sqrt(2/(in+out)) everywhere)", "model",
                        choices=("by_activation", "xavier", "he"), neutral="by_activation",
                        tag=lambda config: None if config.init == "by_activation" else f"init-{config.init}",
                        effect=FROM_BASELINE, baseline="by_activation", task="disk")
    loss_reduction: str = setting("mean", "the loss over a minibatch: its `mean` (torch's default) or its `sum` (the "
                                  "course's from-scratch MSE, (v - t).pow(2).sum(), which scales the step by the batch "
                                  "size)", "training", choices=("mean", "sum"), neutral="mean",
                                  tag=lambda config: "summed-loss" if config.loss_reduction == "sum" else None,
                                  effect=FROM_BASELINE, baseline="mean", task="disk")
    # protocol
    rounds: int = setting(10, "rounds per configuration (round r draws its pairs from seed + r)", "protocol",
                          above=0, maximum=MAX_ROUNDS, presentation=True)
    seed: int = setting(0, "base seed", "protocol", minimum=0, maximum=MAX_SEED, why="2**32 - 1")
    eval_every: int = setting(1, "epochs between learning-curve evaluations (the last epoch is always evaluated)",
                              "protocol", above=0, presentation=True)
    curve_train_error: str = setting(
        "running", "the learning curve's train error before the last epoch: `running`, the share of the epoch's "
        "training examples its own steps misclassified (in training mode, swapped twins and augmentation included, "
        "the weights moving; no extra pass), or `pass`, a scoring pass over the training pairs after the epoch, as "
        "the last epoch always gets (so the final train error is the same either way)", "protocol",
        choices=("running", "pass"), neutral="pass", presentation=True, task="pairs")
    # presentation and the published figures this configuration reproduces
    label: str | None = setting(None, "a display name (default: made from the settings)", "presentation", presentation=True)
    report: str | None = setting(None, "the report whose system this configuration reproduces", "presentation",
                                 presentation=True)
    reference_test_error: float | None = setting(None, "the report's test error, %", "presentation", presentation=True)
    reference_test_std: float | None = setting(None, "the report's test error std, %", "presentation", presentation=True)
    reference_train_error: float | None = setting(None, "the report's train error, %", "presentation", presentation=True)
    reference_params: int | None = setting(None, "the report's parameter count", "presentation", minimum=0,
                                           presentation=True)
    evidence: str | None = setting(None, "where a reproduction's reading of its report is shown to hold (a matrix "
                                   "under matrices/ and what it shows); printed beside the verdict", "presentation",
                                   presentation=True)

    def model_options(self):
        from architectures import ModelOptions

        return ModelOptions(**{name: getattr(self, name) for name in MODEL_OPTIONS})

    def identity(self) -> dict[str, Any]:
        """The settings that change what a run computes (its id is their hash)."""
        return {
            name: value
            for name, value in dataclasses.asdict(self).items()
            if name not in PRESENTATION_KEYS and not (name in NEUTRAL and value == NEUTRAL[name])
        }

    @property
    def config_id(self) -> str:
        canonical = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def name(self) -> str:
        return self.label or describe(self)


# --------------------------------------------------------------------------- derived once


@dataclass(frozen=True)
class Declared:
    """One setting: its name, type, default and declaration."""

    name: str
    type: type
    optional: bool
    default: Any
    meta: Setting


def declare(config_class: type) -> dict[str, Declared]:
    """Each field of a settings dataclass with its type (read by typing.get_type_hints) and its
    Setting; TypeError for a field declared without one."""
    hints = typing.get_type_hints(config_class)
    declared = {}
    for item in fields(config_class):
        meta = item.metadata.get("setting")
        if meta is None:
            raise TypeError(f"{config_class.__name__}.{item.name} has no Setting: declare it with setting(...)")
        hint = hints[item.name]
        arguments = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else ()
        kind = next((a for a in arguments if a is not type(None)), hint)
        declared[item.name] = Declared(item.name, kind, type(None) in arguments, item.default, meta)
    return declared


DECLARED = declare(RunConfig)
SETTINGS = DECLARED  # name -> Declared, in declaration order
DEFAULTS = RunConfig()
PRESENTATION_KEYS = tuple(name for name, d in DECLARED.items() if d.meta.presentation)
NEUTRAL = {name: d.meta.neutral for name, d in DECLARED.items() if d.meta.has_neutral}
IDENTITY_KEYS = tuple(name for name in DECLARED if name not in PRESENTATION_KEYS)
FACTORS = tuple(name for name, d in DECLARED.items() if d.meta.factor)
EFFECT_FACTORS = tuple(name for name, d in DECLARED.items() if d.meta.effect)
DEPENDENT = {name: d.meta.dependent for name, d in DECLARED.items() if d.meta.dependent}
MODEL_OPTIONS = ("pairing", "weight_sharing", "aux_loss", "batch_norm", "dropout", "transfer", "width", "head_hidden")


def describe(config: RunConfig) -> str:
    """A short human name: the tags of the settings that differ from the built-in defaults,
    in declaration order (`cnn siamese ws aux bn drop0.25`)."""
    parts = []
    for name, declared in DECLARED.items():
        tag = declared.meta.tag
        if tag is None or not applies_to(name, config.task):
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


def unique_names(configs: list[RunConfig]) -> list[RunConfig]:
    """The configurations, those whose names collide given a label that adds the settings
    telling them apart (`mlp siamese ws aux (lr=0.01, aux_weight=0.5)`): two configurations
    of one plan never share a name. A label is presentation only, so no id changes."""
    groups: dict[str, list[RunConfig]] = {}
    for config in configs:
        groups.setdefault(config.name, []).append(config)
    renamed = {}
    for name, group in groups.items():
        if len(group) < 2:
            continue
        labels = told_apart(name, [dataclasses.asdict(config) for config in group])
        for config, label in zip(group, labels):
            renamed[config.config_id] = dataclasses.replace(config, label=label)
    return [renamed.get(config.config_id, config) for config in configs]


def told_apart(name: str, settings: list[dict[str, Any]]) -> list[str]:
    """Names for configurations sharing `name`: each with the identity settings whose values
    differ among them, `name (lr=0.01, aux_weight=0.5)`; the same rule for plans and stores."""
    differing = [key for key in IDENTITY_KEYS if len({json.dumps(one.get(key)) for one in settings}) > 1]
    return [f"{name} ({', '.join(f'{key}={shown_value(one.get(key))}' for key in differing)})" for one in settings]


def shown_value(value: Any) -> str:
    """A value as a matrix file writes it: true, 0.001, cnn."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "unset"
    return f"{value:g}" if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------- value checks

_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def check_value(key: str, value: Any, where: str) -> Any:
    """The value coerced to the setting's type; ConfigError naming `where` and `key` otherwise."""
    if key not in DECLARED:
        raise ConfigError(f"{where}: unknown setting '{key}'{suggest(key, DECLARED)}")
    declared = DECLARED[key]
    if value is None and declared.optional:
        return None
    kind = declared.type
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[kind]
    if not ok:
        raise ConfigError(f"{where}: '{key}' must be {_TYPE_WORDS[kind]}, got {value!r}")
    if kind is float:
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where}: '{key}' = {value!r}: must be a finite number")
    problem = range_problem(declared.meta, value)
    if problem:
        raise ConfigError(f"{where}: '{key}' = {value!r}: {problem}")
    return value


def range_problem(meta: Setting, value: Any) -> str | None:
    """What is wrong with a value of the right type, from the declared choices and range."""
    if meta.check is not None:
        return meta.check(value)
    if meta.choices is not None:
        choices = meta.choices() if callable(meta.choices) else meta.choices
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


def suggest(word: Any, candidates) -> str:
    """'; did you mean 'x'?' for the closest candidate, or nothing."""
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


# --------------------------------------------------------------------------- documentation


def _range_text(declared: Declared) -> str:
    meta = declared.meta
    if meta.choices is not None:
        choices = meta.choices() if callable(meta.choices) else meta.choices  # registered names: asked now
        return ", ".join(f"`{c}`" for c in choices)
    if declared.type is bool:
        return "true, false"
    low = (f"> {meta.above:g}" if meta.above is not None else f"≥ {meta.minimum:g}" if meta.minimum is not None else "")
    high = (f"< {meta.below:g}" if meta.below is not None else f"≤ {meta.maximum:g}" if meta.maximum is not None else "")
    text = ", ".join(part for part in (low, high) if part)
    return f"{text} {meta.unit}".strip() if text else ("text" if declared.type is str else "")


def applies_to(name: str, task: str) -> bool:
    """Whether a declared setting means something in a configuration of `task`."""
    return DECLARED[name].meta.task in (None, task)


def for_its_task(settings: dict[str, Any]) -> dict[str, Any]:
    """A stored configuration's settings less those of other tasks (which sit at their
    defaults and mean nothing there); keys no longer declared are kept."""
    task = settings.get("task", "pairs")
    return {key: value for key, value in settings.items() if key not in DECLARED or applies_to(key, task)}


def settings_table() -> str:
    """The markdown table of every setting (the README's, generated: `harness settings`)."""
    lines = ["| setting | task | default | values | in the id | meaning |", "|---|---|---|---|---|---|"]
    for name, declared in DECLARED.items():
        meta = declared.meta
        if meta.presentation:
            in_id = "no"
        elif meta.has_neutral:
            in_id = f"unless {shown_value(meta.neutral)}"
        else:
            in_id = "yes"
        default = shown_value(declared.default)
        task = meta.task or "all"
        lines.append(f"| `{name}` | {task} | {default} | {_range_text(declared)} | {in_id} | {meta.help.replace('|', '/')} |")
    return "\n".join(lines)
