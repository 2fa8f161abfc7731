"""The matrix file: parsed once into frozen dataclasses, expanded into seeded jobs.

Precedence for every setting: command line > profile > matrix entry > [defaults] > built-in.
Every error names the file, the key and a fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MAX_PAIRS = 5000  # MNIST test holds 10,000 images: 5,000 pairs with no image twice
MAX_CONFIGS = 10_000  # combinations a matrix may cross before it is refused (--max-configs)
MAX_ROUNDS = 1000
MAX_SEED = 2**32 - 1  # data seeds are seed + round: stored as SQLite integers, fed to torch.Generator

OPTIMIZERS = ("adam", "adamw", "sgd")
LOSSES = ("cross_entropy", "mse", "mse_linear")
LR_SCHEDULES = ("constant", "onecycle", "cosine")

# Settings that describe a configuration without changing what it computes: left out of its id.
PRESENTATION_KEYS = (
    "rounds",
    "eval_every",
    "label",
    "report",
    "reference_test_error",
    "reference_test_std",
    "reference_train_error",
    "reference_params",
)

# Settings added after results were first stored, with the value that reproduces the code before
# them: at that value they are left out of a configuration's id, so stored ids stay valid.
NEUTRAL = {
    "augment_shift": 0,
    "augment_rotate": 0.0,
    "lr_schedule": "constant",
    "label_smoothing": 0.0,
    "ema_decay": 0.0,
    "test_time_augment": False,
}


class ConfigError(Exception):
    """A matrix file or option that cannot be used; the message says where and how to fix it."""


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs: one configuration, any round."""

    # model
    encoder: str = "cnn"
    pairing: str = "siamese"
    weight_sharing: bool = True
    aux_loss: bool = False
    aux_weight: float = 1.0
    batch_norm: bool = False
    dropout: float = 0.0
    transfer: str = "none"
    width: float = 1.0
    head_hidden: int | None = None
    # data
    pairs: int = 1000
    validation: int = 0
    swap_augment: bool = False
    normalize: bool = True
    augment_shift: int = 0  # each training digit moved by up to this many pixels (integer shifts)
    augment_rotate: float = 0.0  # and rotated by up to this many degrees
    # training
    epochs: int = 25
    pretrain_epochs: int | None = None
    batch_size: int = 100
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    loss: str = "cross_entropy"
    lr_schedule: str = "constant"  # per step: constant, onecycle (peak = lr) or cosine decay from lr
    label_smoothing: float = 0.0  # on every cross-entropy (comparison and digits)
    ema_decay: float = 0.0  # evaluate an exponential moving average of the weights (0: off)
    test_time_augment: bool = False  # average the logits over the input and its four 1-pixel shifts
    # protocol
    rounds: int = 10
    seed: int = 0
    eval_every: int = 1
    # presentation and the published figures this configuration reproduces
    label: str | None = None
    report: str | None = None
    reference_test_error: float | None = None
    reference_test_std: float | None = None
    reference_train_error: float | None = None
    reference_params: int | None = None

    def model_options(self):
        from architectures import ModelOptions

        return ModelOptions(
            pairing=self.pairing,
            weight_sharing=self.weight_sharing,
            aux_loss=self.aux_loss,
            batch_norm=self.batch_norm,
            dropout=self.dropout,
            transfer=self.transfer,
            width=self.width,
            head_hidden=self.head_hidden,
        )

    def identity(self) -> dict[str, Any]:
        """The settings that change what a run computes (its id is their hash)."""
        return {
            k: v
            for k, v in dataclasses.asdict(self).items()
            if k not in PRESENTATION_KEYS and not (k in NEUTRAL and v == NEUTRAL[k])
        }

    @property
    def config_id(self) -> str:
        canonical = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def name(self) -> str:
        return self.label or describe(self)


SETTINGS = {f.name: f for f in fields(RunConfig)}
DEFAULTS = RunConfig()


def describe(config: RunConfig) -> str:
    """A short human name from the factors that differ from the defaults."""
    parts = [config.encoder, config.pairing]
    if config.pairing == "siamese":
        parts.append("ws" if config.weight_sharing else "no-ws")
    for flag, text in (
        (config.aux_loss, "aux"),
        (config.batch_norm, "bn"),
        (config.dropout > 0, f"drop{config.dropout:g}"),
        (config.swap_augment, "swap"),
        (config.transfer != "none", config.transfer),
        (config.augment_shift > 0, f"shift{config.augment_shift}"),
        (config.augment_rotate > 0, f"rot{config.augment_rotate:g}"),
        (config.lr_schedule != "constant", config.lr_schedule),
        (config.label_smoothing > 0, f"ls{config.label_smoothing:g}"),
        (config.ema_decay > 0, f"ema{config.ema_decay:g}"),
        (config.test_time_augment, "tta"),
    ):
        if flag:
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
        differing = [
            key for key in SETTINGS
            if key not in PRESENTATION_KEYS and len({json.dumps(getattr(c, key)) for c in group}) > 1
        ]
        for config in group:
            shown = ", ".join(f"{key}={_shown(getattr(config, key))}" for key in differing)
            renamed[config.config_id] = dataclasses.replace(config, label=f"{name} ({shown})")
    return [renamed.get(config.config_id, config) for config in configs]


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------- value checks


def _type_name(annotation: str) -> str:
    return {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string"}.get(
        annotation.split(" | ")[0], annotation
    )


def check_value(key: str, value: Any, where: str) -> Any:
    """The value coerced to the setting's type; ConfigError naming `where` and `key` otherwise."""
    if key not in SETTINGS:
        raise ConfigError(f"{where}: unknown setting '{key}'{_suggest(key, SETTINGS)}")
    annotation = str(SETTINGS[key].type)
    optional = "None" in annotation
    base = annotation.split(" | ")[0]
    if value is None and optional:
        return None
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
    }[base]
    if not ok:
        raise ConfigError(f"{where}: '{key}' must be {_type_name(base)}, got {value!r}")
    if base == "float":
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where}: '{key}' = {value!r}: must be a finite number")
    problem = _range_problem(key, value)
    if problem:
        raise ConfigError(f"{where}: '{key}' = {value!r}: {problem}")
    return value


def _range_problem(key: str, value: Any) -> str | None:
    from architectures import PAIRINGS, TRANSFERS, names

    choices = {
        "encoder": names(),
        "pairing": PAIRINGS,
        "transfer": TRANSFERS,
        "optimizer": OPTIMIZERS,
        "loss": LOSSES,
        "lr_schedule": LR_SCHEDULES,
    }
    if key in choices and value not in choices[key]:
        return f"must be one of {', '.join(choices[key])}{_suggest(value, choices[key])}"
    positive = ("epochs", "batch_size", "lr", "rounds", "pairs", "width", "eval_every")
    if key in positive and value <= 0:
        return "must be greater than 0"
    if key in ("aux_weight", "weight_decay", "validation", "pretrain_epochs", "head_hidden", "reference_params") and value < 0:
        return "must not be negative"
    if key in ("dropout", "momentum", "label_smoothing", "ema_decay") and not 0 <= value < 1:
        return "must be in [0, 1)"
    if key == "augment_shift" and not 0 <= value <= 4:
        return "must be in 0..4 pixels (a 14x14 digit moved further leaves the image)"
    if key == "augment_rotate" and not 0 <= value <= 90:
        return "must be in [0, 90] degrees"
    if key == "rounds" and value > MAX_ROUNDS:
        return f"must be at most {MAX_ROUNDS}"
    if key == "seed" and not 0 <= value <= MAX_SEED:
        return f"must be in 0..{MAX_SEED} (2**32 - 1)"
    if key == "width" and value > 16:
        return "must be at most 16 (times the family's hidden widths)"
    if key == "head_hidden" and value > 4096:
        return "must be at most 4096 units"
    if key == "pairs" and value > MAX_PAIRS:
        return f"a set holds at most {MAX_PAIRS} pairs (MNIST test has 10,000 images, two per pair)"
    return None


def _suggest(word: Any, candidates) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def resolve(settings: dict[str, Any], where: str) -> RunConfig:
    """A RunConfig from checked settings, with the checks that span several settings."""
    values = {key: check_value(key, value, where) for key, value in settings.items()}
    if values.get("pairing", DEFAULTS.pairing) == "joint" and "weight_sharing" not in settings:
        values["weight_sharing"] = False  # joint models have one encoder: nothing to share
    if values.get("transfer", DEFAULTS.transfer) == "none":
        values["pretrain_epochs"] = None  # no pretraining stage: the setting does not apply
    config = RunConfig(**values)
    if config.validation >= config.pairs:
        raise ConfigError(f"{where}: 'validation' = {config.validation} must be below 'pairs' = {config.pairs}")
    return config


# --------------------------------------------------------------------------- the matrix file


@dataclass(frozen=True)
class MatrixFile:
    path: str
    defaults: dict[str, Any]
    factors: dict[str, list[Any]]
    exclude: list[dict[str, Any]]
    include: list[dict[str, Any]]
    profiles: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Job:
    config: RunConfig
    round: int

    @property
    def key(self) -> tuple[str, int]:
        return (self.config.config_id, self.round)


@dataclass(frozen=True)
class Dropped:
    settings: dict[str, Any]
    reason: str


@dataclass(frozen=True)
class Plan:
    matrix: MatrixFile
    profile: str | None
    configs: list[RunConfig]
    dropped: list[Dropped] = field(default_factory=list)

    @property
    def jobs(self) -> list[Job]:
        """Round-major: every configuration's round 0 first, so early results are paired."""
        rounds = max((c.rounds for c in self.configs), default=0)
        return [Job(c, r) for r in range(rounds) for c in self.configs if r < c.rounds]

    @classmethod
    def from_configs(cls, configs, source: str = "(python)") -> Plan:
        """A plan of configurations made in code (RunConfig objects, or dicts of settings
        checked as a matrix file's are), with the same drops as a file's: combinations that
        mean nothing and repeats. `source` stands where a plan from a file records its path."""
        def candidates():
            for position, config in enumerate(configs):
                if isinstance(config, dict):
                    config = resolve(config, f"{source} (configuration {position + 1})")
                yield config, config.identity()

        kept, dropped = admit(candidates())
        if not kept:
            raise ConfigError(f"{source}: no configuration to run (each was dropped: see the plan's dropped list)")
        return cls(MatrixFile(source, {}, {}, [], [], {}), None, unique_names(kept), dropped)


SECTIONS = ("defaults", "matrix", "profiles")


def load_matrix(path: str | Path) -> MatrixFile:
    """Parse and check a matrix file. Raises ConfigError naming the file, key and fix."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise ConfigError(f"{where}: no such file (see ablations.toml for an example)")
    try:
        document = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(f"{where}: not UTF-8 text (byte {error.start}); save the matrix file as UTF-8") from None
    except OSError as error:
        raise ConfigError(f"{where}: cannot read it ({error.strerror or error}); check its permissions") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{where}: TOML syntax error: {error}") from None
    for section in document:
        if section not in SECTIONS:
            raise ConfigError(f"{where}: unknown section [{section}]{_suggest(section, SECTIONS)}; sections are {', '.join(SECTIONS)}")
    defaults = _table(document.get("defaults", {}), f"{where} [defaults]")
    for key, value in defaults.items():
        check_value(key, value, f"{where} [defaults]")

    matrix = dict(_table(document.get("matrix", {}), f"{where} [matrix]"))
    exclude = _entries(matrix.pop("exclude", []), f"{where} [[matrix.exclude]]")
    include = _entries(matrix.pop("include", []), f"{where} [[matrix.include]]")
    factors = {}
    for key, values in matrix.items():
        at = f"{where} [matrix]"
        if not isinstance(values, list):
            raise ConfigError(f"{at}: '{key}' must be a list of values, e.g. {key} = [{_toml(values)}]")
        if not values:
            raise ConfigError(f"{at}: '{key}' is an empty list; give at least one value or remove it")
        factors[key] = [check_value(key, value, at) for value in values]
    for entry_list, name in ((exclude, "exclude"), (include, "include")):
        for entry in entry_list:
            for key, value in entry.items():
                check_value(key, value, f"{where} [[matrix.{name}]]")
    for entry in exclude:
        for key in entry:
            if key not in factors:
                raise ConfigError(
                    f"{where} [[matrix.exclude]]: '{key}' is not a factor of [matrix]; "
                    "an exclude can only name factors"
                )

    profiles = {}
    for name, table in _table(document.get("profiles", {}), f"{where} [profiles]").items():
        profile = _table(table, f"{where} [profiles.{name}]")
        for key, value in profile.items():
            check_value(key, value, f"{where} [profiles.{name}]")
        profiles[name] = profile
    return MatrixFile(where, defaults, factors, exclude, include, profiles)


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a table of key = value settings")
    return value


def _entries(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(entry, dict) for entry in value):
        raise ConfigError(f"{where}: must be an array of tables ([[...]] entries)")
    return value


def _toml(value: Any) -> str:
    return json.dumps(value).lower() if isinstance(value, bool) else json.dumps(value)


def combinations(matrix: MatrixFile) -> list[dict[str, Any]]:
    """The matrix's combinations, GitHub Actions style: cross, then exclude, then include."""
    keys = list(matrix.factors)
    crossed = [dict(zip(keys, values)) for values in itertools.product(*matrix.factors.values())] if keys else []
    kept = [c for c in crossed if not any(all(c[k] == v for k, v in e.items()) for e in matrix.exclude)]
    originals = [dict(c) for c in kept]
    added = []
    for entry in matrix.include:
        matched = False
        for combo, original in zip(kept, originals):
            if all(original.get(k, v) == v for k, v in entry.items()):
                combo.update(entry)
                matched = True
        if not matched:
            added.append(dict(entry))
    return kept + added


def why_meaningless(config: RunConfig) -> str | None:
    """Why a combination means nothing (it is dropped from the plan), or None."""
    from architectures import why_invalid

    if config.transfer == "rule" and not config.aux_loss:
        return "transfer 'rule' trains only the digit classifier: it needs aux_loss = true"
    if config.transfer == "frozen" and config.aux_loss:
        return "transfer 'frozen' never updates the encoder, so aux_loss has no effect"
    return why_invalid(config.encoder, config.model_options())


def admit(candidates) -> tuple[list[RunConfig], list[Dropped]]:
    """(configuration, the settings that describe it) pairs -> the configurations kept, and
    those dropped with the reason: a combination that means nothing, or a repeat."""
    kept, dropped, seen = [], [], {}
    for config, settings in candidates:
        reason = why_meaningless(config)
        if reason is None and config.config_id in seen:
            reason = f"same configuration as '{seen[config.config_id]}'"
        if reason:
            dropped.append(Dropped(settings, reason))
            continue
        seen[config.config_id] = config.name
        kept.append(config)
    return kept, dropped


def crossed_count(matrix: MatrixFile) -> int:
    """How many combinations the matrix crosses before exclusions, counted without making them."""
    return math.prod(len(values) for values in matrix.factors.values()) + len(matrix.include)


def expand(
    matrix: MatrixFile,
    profile: str | None = None,
    overrides: dict[str, Any] | None = None,
    only: dict[str, Any] | None = None,
    *,
    max_configs: int = MAX_CONFIGS,
) -> Plan:
    """The configurations a matrix file stands for, with the dropped combinations and why.

    `overrides` (command line) beat the profile, which beats the matrix, then [defaults].
    `only` keeps the configurations whose settings equal every given value. A matrix that
    crosses more than `max_configs` combinations is refused before any is made.
    """
    count = crossed_count(matrix)
    if count > max_configs:
        sizes = " x ".join(str(len(values)) for values in matrix.factors.values())
        raise ConfigError(
            f"{matrix.path}: [matrix] crosses {count:,} combinations ({sizes}), over the limit of {max_configs:,}; "
            "narrow its lists or split the study, or raise the limit with --max-configs"
        )
    if profile is not None and profile not in matrix.profiles:
        known = ", ".join(matrix.profiles) or "none defined"
        raise ConfigError(f"{matrix.path}: unknown profile '{profile}'{_suggest(profile, matrix.profiles)} (profiles: {known})")
    profile_settings = matrix.profiles.get(profile, {}) if profile else {}
    def candidates():
        for combo in combinations(matrix) if matrix.factors or matrix.include else [{}]:  # no [matrix]: the defaults
            settings = {}
            for layer in (matrix.defaults, combo, profile_settings, overrides or {}):
                settings.update(layer)
            yield resolve(settings, f"{matrix.path} (entry {combo})" if combo else matrix.path), combo

    configs, dropped = admit(candidates())
    if only:
        configs = [c for c in configs if all(getattr(c, k) == v for k, v in only.items())]
    configs = unique_names(configs)
    if not configs:
        what = f" with --only {only}" if only else ""
        raise ConfigError(f"{matrix.path}: the matrix expands to no job{what}; check [matrix.exclude] and the dropped list of `harness plan`")
    return Plan(matrix, profile, configs, dropped)


def parse_assignments(pairs: tuple[str, ...], where: str) -> dict[str, Any]:
    """`key=value` strings from the command line, values read as TOML (true, 0.25, "cnn" or cnn)."""
    result = {}
    for text in pairs:
        if "=" not in text:
            raise ConfigError(f"{where}: '{text}' is not key=value (e.g. encoder=cnn)")
        key, raw = (part.strip() for part in text.split("=", 1))
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        result[key] = check_value(key, value, where)
    return result
