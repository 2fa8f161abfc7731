"""The pairs task's own settings: its model, data, augmentation and training options.

Declared as `harness.settings` declares the common ones (type, range, neutral value, name tag,
effect baseline, help); a configuration of the pairs task reads them as its own
(`config.encoder`). The model options among them (flagged `model_option`) are what a model's
constructor receives: `ModelOptions` is derived from those flags.

No torch here: the model registry (architectures) imports ModelOptions from this module.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from harness.settings import (
    APPLIED,
    FROM_BASELINE,
    FROM_SMALLEST,
    IN_ORDER,
    STRUCTURE,
    TRAINING,
    RunConfig,
    Table,
    declare,
    derived,
    setting,
    shown_value,
)

MAX_PAIRS = 5000  # MNIST test holds 10,000 images: 5,000 pairs with no image twice
PAIRINGS = ("joint", "siamese")
TRANSFERS = ("none", "rule", "frozen", "finetune")
SWAP_TIES = ("stay", "flip")
LR_SCHEDULES = ("constant", "onecycle", "cosine")
SINGLE_DIGIT_STAGE = ("digit_mix", "distill_teachers")  # settings of the single-digit stage alone
MODEL_OUTPUTS = ("logits", "probability")
LAYOUTS = ("auto", "nchw", "channels_last")
INITS = ("default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal")
REFERENCE = "$"  # a model_args value "$aux_loss" is the configuration's value of that setting


def _arguments_tag(config: RunConfig) -> str | None:
    """`channels=16 hidden_units=64`: a model's own arguments, those mapped from a setting left
    out (that setting's own tag shows it)."""
    given = config.model_args or {}
    shown = [f"{key}={shown_value(value)}" for key, value in given.items() if reference_of(value) is None]
    return " ".join(shown) or None


FAMILY_ORDER = ("linear", "mlp", "cnn")


def _encoder_title(change: str) -> str:
    """The encoder factor named by what it changes: the built-in families' ladder, or models."""
    levels = [level.strip() for level in change.split("->")] if change else []
    return "encoder family (linear, MLP, CNN)" if all(level in FAMILY_ORDER for level in levels) else "model"


def _sharing_tag(config: RunConfig) -> str | None:
    if config.pairing != "siamese":
        return None
    return "ws" if config.weight_sharing else "no-ws"


@dataclass(frozen=True)
class PairsSettings:
    """The pairs task's settings. Name tags follow the declaration order below, so the order of
    the tagged settings is part of every configuration's name."""

    # model
    encoder: str = setting("cnn", "a registered model family (built-in, from a plugin or an installed entry point), "
                           "or `package.module:Class`", choices="architectures:builtin_names",
                           check="architectures:why_unknown", tag="{}", always=True, effect=IN_ORDER,
                           order=FAMILY_ORDER, factor=True, title=_encoder_title)
    pairing: str = setting("siamese", "`joint`: the pair as two channels of one encoder; `siamese`: each digit "
                           "through an encoder", choices=PAIRINGS, tag="{}", always=True, effect=FROM_BASELINE,
                           baseline="joint", factor=True, title="siamese vs two-channel (joint) input",
                           model_option=STRUCTURE)
    weight_sharing: bool = setting(True, "siamese only: one encoder for both digits, or two of the same shape",
                                   tag=_sharing_tag, always=True, effect=FROM_BASELINE, baseline=False, factor=True,
                                   model_option=STRUCTURE)
    aux_loss: bool = setting(False, "add `aux_weight` x (the two digits' classification losses)",
                             tag="aux", effect=FROM_BASELINE, baseline=False, factor=True,
                             title="auxiliary digit losses", loss_only=True, model_option=TRAINING)
    aux_weight: float = setting(1.0, "weight of the digit losses when `aux_loss` is on", minimum=0,
                                effect=FROM_SMALLEST, loss_only=True)
    batch_norm: bool = setting(False, "batch norm after hidden layers",
                               tag="bn", effect=FROM_BASELINE, baseline=False, factor=True, model_option=STRUCTURE)
    dropout: float = setting(0.0, "dropout rate after hidden layers", minimum=0, below=1,
                             tag="drop{:g}", effect=FROM_BASELINE, baseline=0.0, factor=True, model_option=STRUCTURE)
    swap_augment: bool = setting(False, "add every training pair swapped, its target recomputed from the classes "
                                 "(ties stay 1)", tag="swap", effect=FROM_BASELINE, baseline=False, factor=True,
                                 title="swap augmentation")
    swap_ties: str = setting("stay", "the target of a swapped pair whose digits are equal: `stay` 1 (recomputed from the "
                             "classes); `flip` 0, as when every swapped target is flipped (report 003's wording)",
                             choices=SWAP_TIES, neutral="stay",
                             tag=lambda c: "flip-ties" if c.swap_augment and c.swap_ties == "flip" else None)
    transfer: str = setting("none", "`rule`: a digit classifier trained on the 2N single digits, compared by the fixed rule "
                            "P(d1 <= d2); `frozen`: pretrained encoder frozen, comparison head trained; `finetune`: "
                            "pretrained, then everything trained on the pair loss (+ aux)",
                            choices=TRANSFERS, tag="{}", effect=FROM_BASELINE, baseline="none",
                            dependent=("pretrain_epochs", "epochs"), factor=True,
                            title="transfer learning", model_option=TRAINING)  # a rule trains no pair stage
    width: float = setting(1.0, "multiplier of the family's hidden widths", above=0, maximum=16,
                           why="times the family's hidden widths", effect=FROM_SMALLEST, model_option=STRUCTURE)
    head_hidden: int | None = setting(None, "hidden units of the comparison head (0: none; unset: the family's)",
                                      minimum=0, maximum=4096, unit="units", model_option=STRUCTURE)
    model_args: dict | None = setting(
        None, "a model's own constructor arguments, e.g. { channels = 16, hidden_units = 64 } (crossed as a list of "
        "tables, or entry by entry: model_args.hidden_units = [64, 128]); a value \"$aux_loss\" passes that setting's "
        "value under the argument's name", neutral=None, tag=_arguments_tag, model_option=APPLIED)
    model_output: str = setting("logits", "what a model's comparison output is: `logits` (or one score), or "
                                "`probability` (after a softmax or sigmoid: read through its log)",
                                choices=MODEL_OUTPUTS, neutral="logits", model_option=APPLIED)
    # named apart from the disk task's `init` (report 002's draw), whose runs stores of every version hold
    weight_init: str = setting("default", "the weights of every linear and convolution layer re-drawn after the model "
                               "is built: `default` (the layers' own), `xavier_*` (Glorot), `kaiming_*` (He, for ReLU), "
                               "`orthogonal`", choices=INITS, neutral="default", tag=lambda c: None
                               if c.weight_init == "default" else c.weight_init, effect=FROM_BASELINE,
                               baseline="default", model_option=APPLIED)
    bias_init: float | None = setting(None, "the biases of those layers set to this constant (unset: as built)",
                                      neutral=None, tag="bias{:g}", model_option=APPLIED)
    layout: str = setting("auto", "the memory layout of 2-D convolutions: `auto` (channels_last on CPU for the "
                          "built-in families and the models registered with channels_last=True, NCHW for every other "
                          "model, as it was written for), `nchw` or `channels_last`; each run records the layout "
                          "it trained in", choices=LAYOUTS, neutral="auto", presentation=True)
    # data
    pairs: int = setting(1000, "pairs per set (train and test)", above=0, maximum=MAX_PAIRS,
                         unit="pairs", why="MNIST test has 10,000 images, two per pair")
    normalize: bool = setting(True, "standardise with the training set's mean and std")
    augment_shift: int = setting(0, "each training digit moved by up to this many pixels (integer shifts)",
                                 minimum=0, maximum=4, unit="pixels", why="a 14x14 digit moved further leaves the image",
                                 neutral=0, tag="shift{}", effect=FROM_BASELINE, baseline=0)
    augment_rotate: float = setting(0.0, "and rotated by up to this many degrees", minimum=0, maximum=90,
                                    unit="degrees", neutral=0.0, tag="rot{:g}", effect=FROM_BASELINE, baseline=0.0)
    augment_scale: float = setting(0.0, "and scaled by a factor drawn from [1 - this, 1 + this]", minimum=0,
                                   maximum=0.5, why="a digit scaled by more than half is no longer that digit",
                                   neutral=0.0, tag="scale{:g}", effect=FROM_BASELINE, baseline=0.0)
    augment_shear: float = setting(0.0, "and sheared along its rows by up to this many degrees", minimum=0,
                                   maximum=45, unit="degrees", neutral=0.0, tag="shear{:g}", effect=FROM_BASELINE,
                                   baseline=0.0)
    augment_elastic: float = setting(0.0, "and distorted elastically: a random displacement field, smoothed by a "
                                     "Gaussian of 2 pixels (Simard et al.'s 4 at 28x28), scaled to this RMS "
                                     "displacement in pixels", minimum=0, maximum=3, unit="pixels",
                                     why="a 14x14 digit displaced further is scrambled", neutral=0.0,
                                     tag="elastic{:g}", effect=FROM_BASELINE, baseline=0.0)
    augment_erase: float = setting(0.0, "probability that a training digit gets a random rectangle (2-20 % of the "
                                   "image, aspect 0.3-3.3) set to the background (random erasing)", minimum=0,
                                   maximum=1, neutral=0.0, tag="erase{:g}", effect=FROM_BASELINE, baseline=0.0)
    digit_mix: str = setting("none", "single-digit stage only: `mixup` (two digits blended, their labels weighted "
                             "alike) or `cutmix` (a rectangle of one pasted into the other, labels weighted by "
                             "area), the weight drawn from Beta(mix_alpha, mix_alpha)",
                             choices=("none", "mixup", "cutmix"), neutral="none", tag=lambda c: None
                             if c.digit_mix == "none" else f"{c.digit_mix}{c.mix_alpha:g}", effect=FROM_BASELINE,
                             baseline="none")
    mix_alpha: float = setting(1.0, "the Beta distribution's parameter of `digit_mix`", above=0, maximum=10,
                               neutral=1.0)
    # training
    pretrain_epochs: int | None = setting(None, "epochs of the single-digit stage of transfer variants (unset: "
                                          "`epochs`)", minimum=0, effect=FROM_SMALLEST)
    lr_schedule: str = setting("constant", "per step: `constant`, `onecycle` (peak = lr) or `cosine` decay from lr",
                               choices=LR_SCHEDULES, neutral="constant", tag="{}", effect=FROM_BASELINE,
                               baseline="constant")
    label_smoothing: float = setting(0.0, "label smoothing of every cross-entropy (comparison and digits)",
                                     minimum=0, below=1, neutral=0.0, tag="ls{:g}", effect=FROM_BASELINE, baseline=0.0)
    ema_decay: float = setting(0.0, "evaluate an exponential moving average of the weights (0: off)",
                               minimum=0, below=1, neutral=0.0, tag="ema{:g}", effect=FROM_BASELINE, baseline=0.0)
    test_time_augment: bool = setting(False, "average the logits over the input and its four 1-pixel shifts",
                                      neutral=False, tag="tta", effect=FROM_BASELINE, baseline=False)
    ensemble: int = setting(1, "models trained independently in each run (each from its own seed: weights, "
                            "minibatch order, augmentation), their predicted probabilities averaged; the parameter "
                            "count is all of theirs", minimum=1, maximum=16, neutral=1, tag="ens{}",
                            effect=FROM_SMALLEST)
    distill_teachers: int = setting(0, "self-distillation: this many models of the run's own architecture are trained "
                                    "first on the same digits (each from its own seed); the run's model then learns "
                                    "the single digits from their averaged softened predictions as well as from the "
                                    "labels. Only the run's model is used at test time and counted",
                                    minimum=0, maximum=8, neutral=0, tag="distill{}", effect=FROM_SMALLEST)
    distill_weight: float = setting(0.5, "the share of the distillation loss beside the labels' (self-distillation)",
                                    minimum=0, maximum=1, neutral=0.5)
    distill_temperature: float = setting(2.0, "the temperature both predictions are softened by (self-distillation)",
                                         above=0, maximum=20, neutral=2.0)
    score_in_train_mode: bool = setting(
        False, "score with the model left in training mode (dropout on, batch norm on each evaluation batch's "
        "statistics), as a loop that never calls model.eval() does; some reports' figures were measured so",
        neutral=False, tag="scored-in-train-mode", effect=FROM_BASELINE, baseline=False)
    # presentation
    curve_train_error: str = setting(
        "running", "the learning curve's train error before the last epoch: `running`, the share of the epoch's "
        "training examples its own steps misclassified (in training mode, swapped twins and augmentation included, "
        "the weights moving; no extra pass), or `pass`, a scoring pass over the training pairs after the epoch, as "
        "the last epoch always gets (so the final train error is the same either way)",
        choices=("running", "pass"), neutral="pass", presentation=True)

    # derived by the rules (complete): the structural options a user's model does not take
    inapplicable: frozenset = derived(frozenset(), "settings that mean nothing for the configuration's model")


def _model_options() -> type:
    """The dataclass a model family's builder receives: the settings flagged `model_option`,
    with their types and defaults; each field's metadata says which kind of option it is."""
    options = [(declared.name, declared.type | None if declared.optional else declared.type,
                dataclasses.field(default=declared.default, metadata={"model_option": declared.meta.model_option}))
               for declared in declare(PairsSettings).values() if declared.meta.model_option]
    made = dataclasses.make_dataclass("ModelOptions", options, frozen=True)
    made.__module__ = __name__  # pickled by reference, as a class written here would be
    made.__doc__ = ("What a family needs to build one model (the pairs task's settings flagged model_option). "
                    "Families reject what they cannot honour.")
    return made


ModelOptions = _model_options()
MODEL_OPTIONS = tuple(field.name for field in dataclasses.fields(ModelOptions))


def model_options(config: RunConfig):
    """A pairs configuration's ModelOptions, its model_args' references ("$aux_loss") replaced
    by those settings' values."""
    values = {name: getattr(config, name) for name in MODEL_OPTIONS}
    if config.model_args:
        values["model_args"] = Table({key: resolve_argument(config, value) for key, value in config.model_args.items()})
    return ModelOptions(**values)


def reference_of(value) -> str | None:
    """The setting a model_args value refers to ("$aux_loss" -> "aux_loss"), or None."""
    return value[len(REFERENCE):] if isinstance(value, str) and value.startswith(REFERENCE) else None


def resolve_argument(config: RunConfig, value):
    name = reference_of(value)
    return value if name is None else getattr(config, name)
