"""The matrix file: parsed once into frozen dataclasses, expanded into seeded jobs.

Precedence for every setting: command line > profile > matrix entry > [defaults] > built-in.
Every error names the file, the key and a fix.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from harness.errors import ConfigError
from harness.registry import UnknownName, suggest
from harness.settings import (
    COMMON,
    RunConfig,
    check_value,
    derived_names,
    split_key,
    told_apart,
    value_of,
)
from harness.tasks import TASKS, declarations, declared, get_task

MAX_CONFIGS = 10_000  # combinations a matrix may cross before it is refused (--max-configs)


def make_config(settings: dict[str, Any], where: str) -> RunConfig:
    """A RunConfig from a matrix's settings (names and values as a file gives them): each
    checked against its task's settings and the common ones, then completed by the task's
    rules (harness.tasks.TaskSpec.complete). ConfigError naming `where` otherwise."""
    folded: dict[str, Any] = {}
    overlay(folded, settings)  # `model_args.channels` keys into their table
    settings = folded
    name = check_value(COMMON, "task", settings.get("task", COMMON["task"].default), where)
    try:
        spec = get_task(name)
    except UnknownName:
        known = TASKS.names()
        raise ConfigError(f"{where}: 'task' = {name!r}: must be one of {', '.join(known)}{suggest(name, known)}") from None
    own = spec.declared()
    allowed, everywhere = {**COMMON, **own}, declared()
    for key in settings:
        if key in everywhere and key not in allowed:
            task = everywhere[key].task
            raise ConfigError(f"{where}: '{key}' is a setting of the {task} task, and this configuration's task is "
                              f"'{name}': remove it or set task = \"{task}\"")
    values = {key: check_value(everywhere if key not in allowed else allowed, key, value, where)
              for key, value in settings.items()}
    complete = spec.hook("complete")
    if complete is not None:
        values = complete(values, where)
    kept = {*own, *derived_names(spec.settings)}  # its settings, and what its complete hook derived
    config = RunConfig(**{key: value for key, value in values.items() if key in COMMON},
                       task_settings=spec.settings(**{key: value for key, value in values.items() if key in kept}))
    if spec.size_setting is not None:
        size = getattr(config, spec.size_setting)
        if config.validation >= size:
            raise ConfigError(f"{where}: 'validation' = {config.validation} must be below '{spec.size_setting}' = {size}")
    return config


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
        keys = dict.fromkeys(key for config in group for key, declaration in config.declared().items()
                             if not declaration.meta.presentation)
        labels = told_apart(name, [config.settings() for config in group], list(keys))
        for config, label in zip(group, labels):
            renamed[config.config_id] = replace(config, label=label)
    return [renamed.get(config.config_id, config) for config in configs]


# --------------------------------------------------------------------------- the matrix file


@dataclass(frozen=True)
class MatrixFile:
    path: str
    defaults: dict[str, Any]
    factors: dict[str, list[Any]]
    exclude: list[dict[str, Any]]
    include: list[dict[str, Any]]
    profiles: dict[str, dict[str, Any]]
    plugins: tuple[Any, ...] = ()  # harness.plugins.PluginSource, in import order
    sets: tuple[str, ...] = ()  # the --set assignments applied to the file
    crossed: dict[str, list[Any]] = field(default_factory=dict)  # --set lists crossing every entry
    design: dict[str, Any] = field(default_factory=dict)  # the [design] table (harness.designs)

    def describe(self, profile: str | None = None) -> str:
        """How the plan was asked for: the file, its profile and --set assignments."""
        parts = [self.path, *([f"--profile {profile}"] if profile else []), *(f"--set {s}" for s in self.sets)]
        return " ".join(parts)


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
    notes: list[str] = field(default_factory=list)  # what the plan says about its configurations (their tasks' notes)
    design: Any = None  # harness.designs.Design of a fractional plan; None for the full factorial
    adaptive: Any = None  # harness.designs.Adaptive: rounds chosen by Stein's two-stage rule; None: as given

    def with_rounds(self, rounds: int) -> Plan:
        """The plan with every configuration asking for `rounds` rounds (an adaptive plan's second stage)."""
        return replace(self, configs=[replace(config, rounds=rounds) for config in self.configs])

    @property
    def jobs(self) -> list[Job]:
        """Round-major: every configuration's round 0 first, so early results are paired."""
        rounds = max((c.rounds for c in self.configs), default=0)
        return [Job(c, r) for r in range(rounds) for c in self.configs if r < c.rounds]

    @classmethod
    def from_configs(cls, configs, source: str = "(python)", plugins: tuple[str, ...] = ()) -> Plan:
        """A plan of configurations made in code (RunConfig objects, or dicts of settings
        checked as a matrix file's are), with the same drops as a file's: combinations that
        mean nothing and repeats. `source` stands where a plan from a file records its path;
        `plugins` (.py files or modules) are imported first, as a file's are."""
        from harness.plugins import add_user_folder

        add_user_folder(Path.cwd())  # `module:Class` names find the user's modules there
        loaded = load_plugins(plugins, f"{source} plugins", Path.cwd())

        def candidates():
            for position, config in enumerate(configs):
                if isinstance(config, dict):
                    config = make_config(config, f"{source} (configuration {position + 1})")
                yield config, config.identity()

        kept, dropped = admit(candidates())
        if not kept:
            raise ConfigError(f"{source}: no configuration to run: {why_none(dropped)}")
        return cls(MatrixFile(source, {}, {}, [], [], {}, loaded), None, unique_names(kept), dropped, notes_on(kept))


    @classmethod
    def combined(cls, plans: list[Plan]) -> Plan:
        """One plan of several plans' configurations, in their order, each once (the first
        plan's label where two name one configuration); names kept unique across them."""
        seen: dict[str, RunConfig] = {}
        for each in plans:
            for config in each.configs:
                seen.setdefault(config.config_id, config)
        if len(plans) > 1 and any(each.design is not None for each in plans):
            raise ConfigError(f"{', '.join(each.matrix.path for each in plans)}: a fractional design is a study of its "
                              "own; declare it with its one matrix")
        return cls(plans[0].matrix, None, unique_names(list(seen.values())),
                   [d for each in plans for d in each.dropped], [n for each in plans for n in each.notes],
                   plans[0].design, plans[0].adaptive if len(plans) == 1 else None)


SECTIONS = ("plugins", "defaults", "matrix", "profiles", "design")


def load_plugins(specs, where: str, base: Path | None = None) -> tuple[Any, ...]:
    """Import plugins (`.py` files, relative to `base`, or modules) so that the models they
    register can be named; ConfigError in one line naming `where`, the plugin and the error."""
    from harness.plugins import PluginError, load_plugin

    loaded = []
    for spec in specs:
        if not isinstance(spec, str) or not spec:
            raise ConfigError(f"{where}: a plugin is a .py file path or a module name, got {spec!r}")
        try:
            loaded.append(load_plugin(spec, base))
        except PluginError as error:
            raise ConfigError(f"{where}: {error}") from None
    return tuple(loaded)


def read_toml(path: Path, what: str) -> dict:
    """A TOML file's document; ConfigError in one line naming the file when it cannot be read
    (`what` it is names the fix: "save the matrix file as UTF-8")."""
    where = str(path)
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{where}: not UTF-8 text (byte {error.start}); save {what} as UTF-8") from None
    except OSError as error:
        raise ConfigError(f"{where}: cannot read it ({error.strerror or error}); check its permissions") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{where}: TOML syntax error: {error}") from None
    except RecursionError:
        raise ConfigError(f"{where}: its arrays or tables nest too deeply to read") from None


def load_matrix(path: str | Path, plugins: tuple[str, ...] = ()) -> MatrixFile:
    """Parse and check a matrix file, after importing `plugins` (--plugin) and the file's own
    `plugins = [...]`. Raises ConfigError naming the file, key and fix."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        example = ("run from the repository's folder, where it is, or pass --matrix FILE" if path.name == "ablations.toml"
                   else "see the repository's ablations.toml for an example")
        raise ConfigError(f"{where}: no such file ({example})")
    document = read_toml(path, "the matrix file")
    for section in document:
        if section not in SECTIONS:
            raise ConfigError(f"{where}: unknown section [{section}]{suggest(section, SECTIONS)}; sections are {', '.join(SECTIONS)}")
    from harness.plugins import add_user_folder

    add_user_folder(path.resolve().parent)  # `module:Class` names find the user's modules beside the matrix,
    add_user_folder(Path.cwd())  # and where the command runs
    loaded = load_plugins(plugins, "--plugin")
    listed = document.get("plugins", [])
    if not isinstance(listed, list):
        raise ConfigError(f"{where}: 'plugins' must be a list, e.g. plugins = [\"my_models.py\"]")
    loaded += load_plugins(listed, f"{where} plugins", path.resolve().parent)
    load_named_tasks(document)
    defaults = _table(document.get("defaults", {}), f"{where} [defaults]")
    for key, value in defaults.items():
        check_anywhere(key, value, f"{where} [defaults]")

    matrix = dict(_table(document.get("matrix", {}), f"{where} [matrix]"))
    exclude = _entries(matrix.pop("exclude", []), f"{where} [[matrix.exclude]]")
    include = _entries(matrix.pop("include", []), f"{where} [[matrix.include]]")
    matrix = dotted(matrix)
    exclude = [dotted(entry, keep=matrix) for entry in exclude]
    include = [dotted(entry, keep=matrix) for entry in include]
    factors = {}
    for key, values in matrix.items():
        at = f"{where} [matrix]"
        if not isinstance(values, list):
            raise ConfigError(f"{at}: '{key}' must be a list of values, e.g. {key} = [{_toml(values)}]")
        if not values:
            raise ConfigError(f"{at}: '{key}' is an empty list; give at least one value or remove it")
        factors[key] = [check_anywhere(key, value, at) for value in values]
    for entry_list, name in ((exclude, "exclude"), (include, "include")):
        for entry in entry_list:
            for key, value in entry.items():
                check_anywhere(key, value, f"{where} [[matrix.{name}]]")
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
            check_anywhere(key, value, f"{where} [profiles.{name}]")
        profiles[name] = profile
    design = _table(document.get("design", {}), f"{where} [design]")
    matrix_file = MatrixFile(where, defaults, factors, exclude, include, profiles, loaded, design=design)
    design_of(matrix_file)  # a bad [design] is refused with the file, before any plan
    adaptive_of(matrix_file)
    return matrix_file


def design_of(matrix: MatrixFile):
    """The fractional design a matrix asks for (harness.designs.Design), or None for the full
    factorial; ConfigError in one line for one it cannot run."""
    from harness.designs import fractional

    if not matrix.design:
        return None
    return fractional(matrix.design, matrix.factors, excluded=bool(matrix.exclude), included=bool(matrix.include),
                      where=matrix.path)


def adaptive_of(matrix: MatrixFile):
    """The adaptive rounds a matrix asks for (harness.designs.Adaptive), or None."""
    from harness.designs import adaptive

    return adaptive(matrix.design, matrix.path) if matrix.design else None


def dotted(table: dict[str, Any], keep: dict[str, Any] | None = None) -> dict[str, Any]:
    """A [matrix] table (or an exclude or include entry) with each table setting given as a
    table (`model_args.hidden_units = [64, 128]`, as TOML reads it) spelt as dotted keys
    (`"model_args.hidden_units"`), so that its entries cross one by one; a table setting that
    is itself a factor of `keep` (a list of tables) stays whole."""
    known = declared()
    spelt = {}
    for key, value in table.items():
        if isinstance(value, dict) and key in known and known[key].type is dict and key not in (keep or {}):
            spelt.update({f"{key}.{inner}": item for inner, item in value.items()})
        else:
            spelt[key] = value
    return spelt


def overlay(settings: dict[str, Any], layer: dict[str, Any]) -> None:
    """One layer of settings ([defaults], an entry, a profile, the command line) over the ones
    below: a table setting's entries merge, so that a layer's `model_args.hidden_units` (or its
    `model_args` table) changes those entries and keeps the others."""
    known = declared()
    for key, value in layer.items():
        split = split_key(key, known)
        if split is not None:
            name, inner = split
            settings[name] = {**(settings.get(name) or {}), inner: value}
        elif isinstance(value, dict) and key in known and known[key].type is dict:
            settings[key] = {**(settings.get(key) or {}), **value}
        else:
            settings[key] = value


def load_named_tasks(document: dict[str, Any]) -> None:
    """Import the installed tasks (entry points) a matrix document names anywhere, so that
    their settings are known before the document's are checked."""
    named = []

    def collect(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "task":
                    named.extend(value if isinstance(value, list) else [value])
                else:
                    collect(value)
        elif isinstance(node, list):
            for item in node:
                collect(item)

    collect(document)
    for name in named:
        if isinstance(name, str) and name in TASKS:
            get_task(name)


def check_anywhere(key: str, value: Any, where: str) -> Any:
    """A value of a matrix file, checked before its configurations (and their tasks) are
    known: against the common setting of that name, or against each task's that declares it
    (one of them must take it); ConfigError naming `where` otherwise."""
    found = declarations(key)
    if not found:
        return check_value(declared(), key, value, where)  # unknown: the message suggests a close name
    problems = []
    for declaration in found:
        try:
            return check_value({key: declaration}, key, value, where)
        except ConfigError as error:
            problems.append(error)
    raise problems[0]


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


def why_none(dropped: list[Dropped]) -> str:
    """Why a plan holds nothing: its most frequent reason for dropping a combination."""
    if not dropped:
        return "no combination"
    reasons = [combination.reason for combination in dropped]
    common = max(dict.fromkeys(reasons), key=reasons.count)
    return f"all {len(dropped)} combinations were dropped ({reasons.count(common)} x {common})"


def notes_on(configs: list[RunConfig]) -> list[str]:
    """The tasks' notes on the configurations, each once, in order."""
    notes = {}
    for config in configs:
        hook = get_task(config.task).hook("notes")
        notes.update(dict.fromkeys(hook(config) if hook else []))
    return list(notes)


def why_meaningless(config: RunConfig) -> str | None:
    """Why a combination means nothing (it is dropped from the plan), or None: its task's check."""
    check = get_task(config.task).hook("check")
    return check(config) if check else None


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


_ABSENT = object()  # a setting a configuration's task does not have: equal to no value


def crossed_count(matrix: MatrixFile) -> int:
    """How many combinations the matrix crosses before exclusions, counted without making them."""
    entries = math.prod(len(values) for values in matrix.factors.values()) + len(matrix.include)
    return entries * math.prod(len(values) for values in matrix.crossed.values())


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
        entries = " x ".join(str(len(values)) for values in matrix.factors.values()) or "1"
        if matrix.include:
            entries = f"{entries} + {len(matrix.include):,} included"
        crossing = [str(len(values)) for values in matrix.crossed.values()]
        sizes = " x ".join([f"({entries})" if crossing and matrix.include else entries, *crossing])
        raise ConfigError(
            f"{matrix.path}: [matrix] crosses {count:,} combinations ({sizes}), over the limit of {max_configs:,}; "
            "narrow its lists or split the study, or raise the limit with --max-configs"
        )
    if profile is not None and profile not in matrix.profiles:
        known = ", ".join(matrix.profiles) or "none defined"
        raise ConfigError(f"{matrix.path}: unknown profile '{profile}'{suggest(profile, matrix.profiles)} (profiles: {known})")
    profile_settings = matrix.profiles.get(profile, {}) if profile else {}

    design, rounds_rule = design_of(matrix), adaptive_of(matrix)
    if rounds_rule is not None:  # the pilot first: harness run adds the rounds the answers need
        overrides = {**(overrides or {}), "rounds": rounds_rule.pilot}
    fixed = {name: values[0] for name, values in matrix.factors.items() if len(values) == 1}
    if design is not None:  # each row of the fraction at every combination of the factors crossed with it
        rest = [dict(zip(design.crossed, values))
                for values in itertools.product(*(matrix.factors[name] for name in design.crossed))]
        entries = [{**fixed, **other, **row} for other in rest for row in design.entries()]
        entries = [entry for entry in entries
                   if not any(all(entry.get(k, _ABSENT) == v for k, v in e.items()) for e in matrix.exclude)]
    else:
        entries = combinations(matrix) if matrix.factors or matrix.include else [{}]  # no [matrix]: the defaults

    def candidates():
        for entry in entries:
            for values in itertools.product(*matrix.crossed.values()):
                combo = {**entry, **dict(zip(matrix.crossed, values))}
                settings = {}
                for layer in (matrix.defaults, combo, profile_settings, overrides or {}):
                    overlay(settings, layer)
                yield make_config(settings, f"{matrix.path} (entry {combo})" if combo else matrix.path), combo

    configs, dropped = admit(candidates())
    if design is not None and not design.crossed and dropped:
        raise ConfigError(f"{matrix.path} [design]: the fraction holds a combination the harness drops "
                          f"({dropped[0].reason}: {dropped[0].settings}); a fraction needs every one of its runs: "
                          "fix that setting in [defaults], name the fraction's factors (factors = [...]) to cross "
                          "the others in full, or run a full factorial")
    if design is not None and design.crossed and not design.estimable_on(
            [{name: value_of(c.settings(), name, _ABSENT) for name in (*design.factors, *design.crossed)}
             for c in configs]):
        raise ConfigError(f"{matrix.path} [design]: the runs its exclusions and dropped combinations leave cannot "
                          "estimate every contrast of the fraction apart; exclude fewer combinations, raise the "
                          "resolution, or run a full factorial")
    if only:
        configs = [c for c in configs if all(value_of(c.settings(), k, _ABSENT) == v for k, v in only.items())]
    configs = unique_names(configs)
    if not configs:
        if only or not dropped:
            what = f" with --only {only}" if only else ""
            raise ConfigError(f"{matrix.path}: the matrix expands to no job{what}; check [matrix.exclude] and the "
                              "dropped list of `harness plan`")
        raise ConfigError(f"{matrix.path}: the matrix expands to no job: {why_none(dropped)}")
    return Plan(matrix, profile, configs, dropped, notes_on(configs), design, rounds_rule)


def with_sets(matrix: MatrixFile, assignments: tuple[str, ...]) -> tuple[MatrixFile, dict[str, Any]]:
    """`--set key=value` assignments applied to a matrix: a list value replaces the factor `key`
    when the file crosses it, and otherwise crosses every entry of the matrix, [[matrix.include]]
    ones included, so `--set "normalize=[true, false]"` doubles any plan; no [defaults], profile
    or include then overrides it. A single value is returned as an override, which beats the
    profile and the matrix. Values are checked as the file's are."""
    factors, crossed, overrides = dict(matrix.factors), dict(matrix.crossed), {}
    defaults, profiles = dict(matrix.defaults), {name: dict(table) for name, table in matrix.profiles.items()}
    for text in assignments:
        key, value = assignment(text, "--set")
        if isinstance(value, list):
            if not value:
                raise ConfigError(f"--set {text}: an empty list; give at least one value")
            values = [check_anywhere(key, item, f"--set {text}") for item in value]
            if key in factors:
                factors[key] = values
            else:
                crossed[key] = values
            defaults.pop(key, None)
            for table in profiles.values():
                table.pop(key, None)
            overrides.pop(key, None)
        else:
            overrides[key] = check_anywhere(key, value, f"--set {text}")
            crossed.pop(key, None)
            if key in factors:  # one level left: [[matrix.exclude]] entries naming it still match
                factors[key] = [overrides[key]]
    changed = replace(matrix, defaults=defaults, factors=factors, crossed=crossed, profiles=profiles,
                      sets=matrix.sets + tuple(assignments))
    return changed, overrides


def assignment(text: str, where: str, example: str = 'epochs=5 or "dropout=[0, 0.5]"') -> tuple[str, Any]:
    """`key=value` from the command line, the value read as TOML (true, 0.25, [0, 0.5], "cnn" or
    cnn); ConfigError naming `where` (the option) and an `example` otherwise."""
    if "=" not in text:
        raise ConfigError(f"{where} {text}: not key=value (e.g. {example})")
    key, raw = (part.strip() for part in text.split("=", 1))
    try:
        return key, tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return key, raw
    except RecursionError:
        raise ConfigError(f"{where} {key}=...: nests too deeply to read (e.g. {example})") from None


def parse_assignments(pairs: tuple[str, ...], where: str) -> dict[str, Any]:
    """`key=value` strings from the command line, each value checked as a matrix file's."""
    result = {}
    for text in pairs:
        key, value = assignment(text, where)
        result[key] = check_anywhere(key, value, f"{where} {text}")
    return result
