"""Tasks: what is learned, registered by name like models, backends and output formats.

A task declares its own settings (a frozen dataclass of `harness.settings.setting(...)` fields:
validated, flattened into configuration ids beside the common settings, shown by `harness
settings`, refused in configurations of another task), its data (drawn for each round from the
round's data seed, so rounds pair across configurations), its trainer, its checks on a
configuration and, optionally, its cost estimates and its own figures. Everything else (the
matrix, ids, the store, tables, effects, compare, plots, the HTML report) is shared: a trainer
returns a `harness.results.RunResult` whose metrics use the shared names
(`harness.results.METRICS`), so the report layer needs no task-specific code.

Adding a task (a plugin file named in a matrix's `plugins`, a module, or an installed package's
entry point in the group `harness.tasks`):

    from dataclasses import dataclass
    from harness.settings import setting
    from harness.tasks import TaskSpec, register_task

    @dataclass(frozen=True)
    class XorSettings:
        points: int = setting(400, "points per set", above=0)

    register_task(TaskSpec(
        name="xor",
        help="points in the unit square, label 1 in two opposite quadrants",
        settings=XorSettings,
        size_setting="points",
        loader="my_task:load",          # load(data_dir) -> the source handed to every run
        trainer="my_task:train_run",    # train_run(config, round_index, source, policy) -> RunResult
    ))

References are `module:attribute` strings (imported where used, so declaring a task imports
neither torch nor its models) or the callables themselves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.registry import Registry, UnknownName, resolve_reference
from harness.settings import COMMON, Declared, NoSettings, declare, range_text, shown_value

Reference = str | Callable[..., Any]


@dataclass(frozen=True)
class TaskSpec:
    """One task.

    `settings`: its own settings (a frozen dataclass of setting(...) fields). `size_setting`:
    the setting holding the examples per set, which `validation` must stay below.
    `loader(data_dir)` runs once per `harness run` in the main process, so that bad data fails
    before any work; its source is shipped to every worker. `trainer(config, round_index,
    source, policy)` trains one round and never raises for a failed run;
    `batched_trainer(config, rounds, source, policy)`, when given, trains several rounds as one
    vectorised model; `packed_trainer(jobs, source, policy)` trains (config, round) jobs of
    configurations with one `pack_key(config)` together (`--pack`).
    `complete(values, where)` fills the settings that follow from the given ones (a dict of
    checked values, the given keys only) and raises ConfigError for contradictions; `check(config)`
    says why a configuration means nothing (it is dropped from the plan), or None, and raises
    ConfigError for one that cannot run at all (a user's model that breaks its contract);
    `notes(config)` lists what the plan should say about a configuration that runs.
    `user_code(config)` says whether its runs execute code from outside the harness (a user's
    model), which then runs in a worker process, never in the driver; a task defined outside
    harness.tasks is a user's code whatever it says.
    `parameter_count(config)` and `seconds_per_run(config)` let `harness plan` show a
    configuration's size and an estimate of its time before training. `figures(runs, epochs,
    out_dir)` draws the task's own figures from the store's DataFrames and returns the paths
    written. `chance_error`: the train error of always answering the majority class, for runs
    stored before they recorded their own."""

    name: str
    help: str
    loader: Reference
    trainer: Reference
    settings: type = NoSettings
    size_setting: str | None = None
    complete: Reference | None = None
    check: Reference | None = None
    notes: Reference | None = None
    user_code: Reference | None = None
    batched_trainer: Reference | None = None
    packed_trainer: Reference | None = None
    pack_key: Reference | None = None
    parameter_count: Reference | None = None
    seconds_per_run: Reference | None = None
    figures: Reference | None = None
    chance_error: float | None = None

    def hook(self, attribute: str) -> Callable[..., Any] | None:
        """The callable behind one of the references (imported on first use), or None."""
        reference = getattr(self, attribute)
        return resolve_reference(reference) if isinstance(reference, str) else reference

    def declared(self) -> dict[str, Declared]:
        """Its own settings' declarations, in order."""
        return declare(self.settings, self.name)


def _checked(name: str, spec: Any) -> TaskSpec:
    """A task as the registry keeps it: its name a word, its settings declared, none of them
    a common setting, its size setting one it has."""
    if not isinstance(spec, TaskSpec):
        raise TypeError(f"task {name!r}: {type(spec).__name__} is not a TaskSpec")
    if not spec.name or not spec.name.replace("_", "").isalnum():
        raise ValueError(f"task name {spec.name!r}: use letters, digits and underscores")
    own = spec.declared()  # TypeError for a field declared without setting(...)
    shared = [key for key in own if key in COMMON]
    if shared:
        raise ValueError(f"task {spec.name!r} declares '{shared[0]}', a common setting: choose another name")
    if spec.size_setting is not None and spec.size_setting not in own and spec.size_setting not in COMMON:
        raise ValueError(f"task {spec.name!r}: size_setting '{spec.size_setting}' is none of its settings")
    return spec


TASKS: Registry[TaskSpec] = Registry(
    "task", entry_points="harness.tasks", adopt=_checked,
    hint="; a task of your own: register_task(TaskSpec(...)) in a plugin named by the matrix's plugins",
)
TASKS.register("pairs", "harness.tasks.pairs:TASK", builtin=True)
TASKS.register("disk", "harness.tasks.disk:TASK", builtin=True)


def register_task(spec: TaskSpec) -> TaskSpec:
    """Register a task under its name (a later registration of the same name replaces it, so a
    plugin imported twice is harmless)."""
    return TASKS.register(spec.name, _checked(spec.name, spec))


def get_task(name: str) -> TaskSpec:
    """The registered task; UnknownName naming the known tasks and a close match."""
    return TASKS.get(name)


def task_setting(choices) -> Declared:
    """The common `task` setting with its choices (the registered tasks' names, or a callable
    that gives them): harness.settings declares it, and cannot know them."""
    task = COMMON["task"]
    return dataclasses.replace(task, meta=dataclasses.replace(task.meta, choices=choices))


def declared() -> dict[str, Declared]:
    """Every setting known now: the common ones (the `task` setting's choices: the registered
    tasks), then each registered task's own, in order. Where two tasks declare one name, the
    first registered task's declaration stands for it here (each configuration is checked
    against its own task's)."""
    union = {**COMMON, "task": task_setting(TASKS.names)}
    for spec in TASKS.registered().values():
        for name, declaration in spec.declared().items():
            union.setdefault(name, declaration)
    return union


def declarations(name: str) -> list[Declared]:
    """Every declaration of the setting `name` known now: the common one, or each registered
    task's that declares it (two tasks may each have a setting of one name)."""
    if name == "task":
        return [task_setting(TASKS.names)]
    if name in COMMON:
        return [COMMON[name]]
    return [spec.declared()[name] for spec in TASKS.registered().values() if name in spec.declared()]


def own_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A stored configuration's settings less those of other tasks (stores of earlier versions
    kept every task's, at their defaults); keys no longer declared anywhere are kept."""
    known = declared()
    try:
        mine = get_task(settings.get("task", COMMON["task"].default)).declared()
    except UnknownName:  # a plugin's task not registered here: everything is shown
        return dict(settings)
    return {key: value for key, value in settings.items() if key in COMMON or key in mine or key not in known}


def settings_table() -> str:
    """The markdown table of every setting of the built-in tasks (the README's, generated:
    `harness settings`): the common ones first, then each task's."""
    builtin = [get_task(name) for name in TASKS.builtin_names()]
    rows = [(task_setting(TASKS.builtin_names), "all"),
            *((declaration, "all") for name, declaration in COMMON.items() if name != "task"),
            *((declaration, spec.name) for spec in builtin for declaration in spec.declared().values())]
    lines = ["| setting | task | default | values | in the id | meaning |", "|---|---|---|---|---|---|"]
    for declaration, task in rows:
        meta = declaration.meta
        in_id = "no" if meta.presentation else f"unless {shown_value(meta.neutral)}" if meta.has_neutral else "yes"
        lines.append(f"| `{declaration.name}` | {task} | {shown_value(declaration.default)} | {range_text(declaration)} | "
                     f"{in_id} | {meta.help.replace('|', '/')} |")
    return "\n".join(lines)


def identity_keys() -> list[str]:
    """The settings known now that can enter a configuration's id (all but presentation ones)."""
    return [name for name, declaration in declared().items() if not declaration.meta.presentation]


def factors() -> list[str]:
    """The ablation factors known now (a column of every table), in declaration order."""
    return [name for name, declaration in declared().items() if declaration.meta.factor]


def effect_factors() -> list[str]:
    """The settings whose effect a table measures when they vary in a store, in order."""
    return [name for name, declaration in declared().items() if declaration.meta.effect]


def chance_errors() -> dict[str, float]:
    """Each registered task's chance error for runs stored before they recorded their own."""
    return {name: spec.chance_error for name, spec in TASKS.registered().items() if spec.chance_error is not None}


def runs_user_code(config) -> bool:
    """Whether a configuration's runs execute code from outside the harness: a task defined
    elsewhere (a plugin's), or a model its task says is a user's (TaskSpec.user_code)."""
    spec = get_task(config.task)
    if not (isinstance(spec.trainer, str) and spec.trainer.startswith("harness.tasks.")):
        return True
    hook = spec.hook("user_code")
    return bool(hook is not None and hook(config))

