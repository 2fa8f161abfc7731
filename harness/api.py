"""The Python API: what the command line calls, for notebooks and scripts too.

    from harness import api

    plan = api.plan("ablations.toml", sets=["epochs=5", "dropout=[0, 0.5]"], only={"encoder": "cnn"})
    plan = api.plan(configs=[{"encoder": "MyNet", "aux_loss": True}], plugins=["my_models.py"])
    summary = api.run(plan, store="results/mine.sqlite", device="auto", workers=2)
    api.summary("results/mine.sqlite", plan)      # a DataFrame: one row per configuration
    api.effects("results/mine.sqlite", plan)      # a DataFrame: paired effects with intervals
    print(api.table("results/mine.sqlite", plan))  # the markdown `harness table` prints

Errors are the command line's: ConfigError, DataError, StoreError, BackendError, ReportError,
each with a one-line message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.config import (
    MAX_CONFIGS,
    Plan,
    assignment,
    expand,
    load_matrix,
    parse_assignments,
    with_sets,
)
from harness.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from harness.config import Job
    from harness.runner import Summary

DEFAULT_STORE = "results/harness.sqlite"


def default_store(profile: str | None = None, policy: str = "") -> str:
    """Each profile and each execution policy other than the CPU's default (`policy`, a
    DevicePolicy.tag such as "cuda") keeps its own store, so smoke runs never pool with full
    ones, nor GPU runs with CPU ones."""
    parts = [part for part in ("harness", profile, policy) if part]
    return f"results/{'-'.join(parts)}.sqlite" if len(parts) > 1 else DEFAULT_STORE


def check_policies(store, policy, where: str) -> None:
    """ConfigError in one line when `store` holds finished runs of another execution policy than
    `policy` (device, batching, packing, precision, determinism): they would count as done and
    pool with this run's in every table. Nothing is written."""
    from harness.device import policy_name

    held = {tag: count for tag, count in store.policies().items() if tag != policy.tag}
    if not held:
        return
    others = ", ".join(f"{count} runs {policy_name(tag)}" for tag, count in sorted(held.items()))
    raise ConfigError(
        f"{where} holds {others}; this run trains {policy_name(policy.tag)}, and its runs would pool with them (those "
        f"already there counting as done): give it its own store (the default for this policy is "
        f"{default_store(None, policy.tag)}), or --mix-policies to pool them knowingly")


def plan(
    matrix: str | Path | None = None,
    *,
    configs: list | None = None,
    profile: str | None = None,
    sets: Sequence[str] = (),
    only: Mapping[str, Any] | Sequence[str] | None = None,
    plugins: Sequence[str] = (),
    overrides: dict[str, Any] | None = None,
    max_configs: int | None = None,
) -> Plan:
    """A plan from a matrix file (with a profile, `--set` style assignments, checked
    `overrides` that beat them all, and an `only` filter), or from configurations (RunConfig
    objects or dicts of settings). `plugins`: .py files or modules to import first, so that
    their models and tasks can be named. `only`: settings to keep, a dict or `key=value`
    strings as on the command line (checked once the plugins are imported)."""
    if (matrix is None) == (configs is None):
        raise ConfigError("api.plan: give a matrix file or configs, not both or neither")
    if configs is not None:
        return Plan.from_configs(configs, source="(python)", plugins=tuple(plugins))
    loaded, set_overrides = with_sets(load_matrix(matrix, tuple(plugins)), tuple(sets))
    if only is not None and not isinstance(only, Mapping):
        only = parse_assignments(tuple(only), "--only")
    return expand(loaded, profile, {**set_overrides, **(overrides or {})}, only or None,
                  max_configs=max_configs or MAX_CONFIGS)


def costs(the_plan: Plan, *, store: str | Path | None = None, estimate: bool = True) -> pd.DataFrame:
    """A row per configuration: settings, parameter count and, with `estimate`, seconds per
    run (the store's mean where it holds runs of it, else a few timed steps)."""
    from harness.estimate import cost_frame

    stored = runs(store) if store is not None and Path(store).is_file() else None
    return cost_frame(the_plan, estimate=estimate, stored=stored)


MIN_PILOT_ROUNDS = 2  # a round-to-round spread needs two rounds


def power(the_plan: Plan, store: str | Path, *, mde: float | None = None, alpha: float = 0.05,
          target: float = 0.8) -> tuple[pd.DataFrame, str]:
    """Each factor's minimum detectable effect at the plan's rounds, and with `mde` the rounds
    needed to detect it (harness.stats.power_frame), from the round-to-round spread of its
    effect in a store (a pilot or an earlier study): the plan's own configurations where the
    store holds runs of them, else every run it holds. The frame, and which runs it read.
    ConfigError in one line when the store cannot give a spread."""
    import pandas as pd

    from harness.report.results import select
    from harness.stats import design_effects, power_frame
    from harness.store import Store

    if not Path(store).is_file():
        raise ConfigError(f"--power: {store}: no store here; it needs a pilot's runs: harness run --matrix "
                          f"{the_plan.matrix.path} --rounds {MIN_PILOT_ROUNDS + 1} --store pilot.sqlite, then "
                          "--store pilot.sqlite")
    with Store.open_readonly(store) as opened:
        stored = opened.runs()
    own = select(stored, the_plan) if not stored.empty else stored
    done = own[own["status"] == "done"] if not own.empty else own
    pilot, which = (own, "its runs of this matrix") if not done.empty else (stored, "all its runs (none of this matrix)")
    effect_frame = design_effects(pilot, the_plan.design if not done.empty else None) if not pilot.empty else pd.DataFrame()
    usable = effect_frame[effect_frame["spread"].notna()] if "spread" in effect_frame else effect_frame
    if usable.empty:
        raise ConfigError(f"--power: {store} holds no effect measured over {MIN_PILOT_ROUNDS} or more rounds "
                          f"({which}); run a pilot: harness run --matrix {the_plan.matrix.path} --rounds "
                          f"{MIN_PILOT_ROUNDS + 1} --store pilot.sqlite")
    rounds = max(config.rounds for config in the_plan.configs)
    return power_frame(usable, rounds, mde=mde, alpha=alpha, power=target), f"{store}: {which}"


def adaptive_rounds(the_plan: Plan, stored: pd.DataFrame) -> tuple[int, pd.DataFrame] | None:
    """An adaptive plan's rounds by Stein's two-stage rule, from its pilot rounds in `stored`
    (a store's runs): the most any effect needs, at most the plan's max_rounds; and per effect
    the rounds it needs. None while the pilot is not complete (or the plan is not adaptive)."""
    from harness.report.results import select
    from harness.stats import design_effects, stein_needed

    rule = the_plan.adaptive
    if rule is None or stored.empty:
        return None
    pilot_plan = the_plan.with_rounds(rule.pilot)
    pilot = select(stored, pilot_plan)
    done = pilot[pilot["status"] == "done"]
    if len(done) < sum(config.rounds for config in pilot_plan.configs):
        return None
    frame = design_effects(done, the_plan.design)
    if frame.empty:
        return None
    frame = frame.assign(needed=[min(rule.max_rounds, stein_needed(spread, rule.pilot, rule.halfwidth))
                                 for spread in frame["spread"].fillna(0.0)])
    return int(frame["needed"].max()), frame


def run(
    the_plan: Plan,
    store: str | Path | None = None,
    *,
    device: str = "auto",
    workers: int | None = None,
    batched: bool | None = None,
    pack: bool = False,
    tf32: bool = False,
    deterministic: bool = True,
    mix_policies: bool = False,
    data_dir: str | Path | None = None,
    backend: str = "local",
    backend_options: Mapping[str, Any] | Sequence[str] = (),  # a mapping, or `key=value` strings
    fresh: bool = False,
    notify: Callable[[str], None] | None = None,
    estimate: bool = True,
    on_start: Callable[[int, int], None] | None = None,
    on_result: Callable[[Job, object], None] | None = None,
    on_store: Callable[[str], None] | None = None,
) -> Summary:
    """Train what the store lacks of the plan (as `harness run`): the device and its policy
    resolved, the backend built from its options and started, the data loaded and verified,
    all before the store is opened, so that bad input writes nothing. `fresh`: the store
    backed up and emptied first. `notify` receives the lines worth saying (workers capped, the
    backup, where the runs go, the combinations dropped, the plan's notes and, with `estimate`
    on local workers, the time the runs left will take and, when long, how to get a first answer
    sooner); `on_start(done, to_run)` and `on_result(job, result)` follow the progress. The
    summary of what ran. `store`: None for the profile's and policy's own (default_store).
    `tf32`, `deterministic`: the precision policy on CUDA (harness.device.DevicePolicy). A store
    holding runs of another execution policy is refused before anything is written unless
    `mix_policies` (check_policies)."""
    from harness import backends
    from harness.device import resolve
    from harness.runner import Summary, load_sources, run_plan
    from harness.store import Store

    say = notify or (lambda line: None)
    if not isinstance(backend_options, Mapping):  # `key=value` strings, as --backend-option gives them
        backend_options = dict(assignment(text, "--backend-option", "address=auto or cpus_per_job=2")
                               for text in backend_options)
    chosen = backends.create(backend, backend_options)
    policy = resolve(device, workers=workers, batched=batched, pack=pack, tf32=tf32, deterministic=deterministic,
                     elsewhere=chosen.remote_device(device))
    store = store if store is not None else default_store(the_plan.profile, policy.tag)
    if on_store is not None:
        on_store(str(store))
    if workers and workers > policy.workers and policy.kind == "cpu":
        say(f"--workers {workers}: using {policy.workers}, the CPU cores this process may use")
    opened = None
    try:
        sources = load_sources(the_plan, data_dir)  # data and backend before the store: bad input writes nothing
        chosen.start(policy)
        opened = Store(store)
        if fresh:
            backup = opened.start_fresh()
            say(f"previous runs kept in {backup}; starting afresh" if backup else "the store held no runs; starting afresh")
        elif not mix_policies:
            check_policies(opened, policy, str(store))
        say(f"{len(the_plan.configs)} configurations, {len(the_plan.jobs)} runs on {policy.device} -> {store}")
        if the_plan.dropped:
            say(f"dropped {len(the_plan.dropped)} combinations: see harness plan")
        for note in the_plan.notes:
            say(f"note: {note}")
        if estimate and chosen.name == "local":  # another backend's workers are not this machine's cores
            for line in start_estimate(the_plan, opened, policy):
                say(line)
        summary = run_plan(the_plan, opened, policy=policy, sources=sources, backend=chosen, on_start=on_start,
                           on_result=on_result)
        decided = adaptive_rounds(the_plan, opened.runs()) if the_plan.adaptive is not None else None
        if decided is not None and decided[0] > the_plan.adaptive.pilot:
            rounds, frame = decided
            widest = frame.loc[frame["needed"].idxmax()]
            say(f"pilot done: {rounds} rounds for a 95% interval of ±{the_plan.adaptive.halfwidth:g} pp (Stein's "
                f"two-stage rule; the widest answer, {widest['factor']} {widest['change']}, needs {int(widest['needed'])}"
                + (f", at most {the_plan.adaptive.max_rounds}" if rounds == the_plan.adaptive.max_rounds else "") + ")")
            second = run_plan(the_plan.with_rounds(rounds), opened, policy=policy, sources=sources, backend=chosen,
                              on_start=on_start, on_result=on_result)
            summary = Summary(second.total, summary.already_done, summary.finished + second.finished,
                              summary.failed + second.failed, summary.seconds + second.seconds)
        return summary
    finally:
        chosen.close()
        if opened is not None:
            opened.close()


def start_estimate(the_plan: Plan, store, policy) -> list[str]:
    """What `harness run` says of the time it will take, before its first run: the store's
    timings where it holds runs of a configuration, else a few timed steps (on the CPU only:
    a step timed here says nothing of a GPU's)."""
    from harness.estimate import cost_frame
    from harness.report.plan import start_lines

    finished = store.finished_keys()
    if all(job.key in finished for job in the_plan.jobs):
        return []
    if policy.kind != "cpu":
        return [f"estimated time: none yet on {policy.device} (steps are timed on the CPU); the progress line "
                "gives one after the first runs"]
    # a finished configuration costs nothing here (its stored timings), and start_lines counts runs left only
    return start_lines(cost_frame(the_plan, stored=store.runs()), the_plan, policy.workers)


def runs(store: str | Path = DEFAULT_STORE, the_plan: Plan | None = None) -> pd.DataFrame:
    """The store's runs (read only), one row each with its settings; the plan's alone if given."""
    from harness.report.results import select
    from harness.store import Store

    with Store.open_readonly(store) as opened:
        return select(opened.runs(), the_plan)


def epochs(store: str | Path = DEFAULT_STORE) -> pd.DataFrame:
    """The store's learning curves (read only): a row per run and evaluated epoch."""
    from harness.store import Store

    with Store.open_readonly(store) as opened:
        return opened.epochs()


def summary(store: str | Path = DEFAULT_STORE, the_plan: Plan | None = None) -> pd.DataFrame:
    """One row per configuration: errors mean and std over rounds (%), rounds, settings."""
    from harness.stats import summarize

    return summarize(runs(store, the_plan))


def effects(store: str | Path = DEFAULT_STORE, the_plan: Plan | None = None) -> pd.DataFrame:
    """Each factor's paired effect on test error (percentage points) with its 95 % interval
    and Benjamini-Hochberg adjusted p-value."""
    from harness.stats import effects as paired_effects

    return paired_effects(runs(store, the_plan))


def filtered(frame: pd.DataFrame, only: Mapping[str, Any] | Sequence[str] | None) -> pd.DataFrame:
    """The stored runs whose settings equal every given value (`key=value` strings or a dict)."""
    if not only:
        return frame
    if not isinstance(only, Mapping):
        only = parse_assignments(tuple(only), "--only")
    for key, value in only.items():
        if key in frame:
            frame = frame[frame[key] == value]
        elif "." in key and key.partition(".")[0] in frame:  # one entry of a table setting (model_args.hidden_units)
            name, _, inner = key.partition(".")
            frame = frame[frame[name].map(lambda table, inner=inner, value=value: isinstance(table, dict)
                                          and table.get(inner) == value)]
        else:
            frame = frame.iloc[0:0]
    return frame


def table(store: str | Path = DEFAULT_STORE, the_plan: Plan | None = None, output_format: str = "markdown", *,
          sort: str = "matrix", figures: str | None = None, metric: str = "test_error",
          only: Mapping[str, Any] | Sequence[str] | None = None, interval: str = "t",
          equivalence: float | None = None) -> str:
    """What `harness table` prints, in any registered format (harness.report.formats).
    `interval`: t or wilcoxon; `equivalence`: a margin in pp for TOST verdicts."""
    from harness.report.formats import write
    from harness.report.results import results_document

    if figures is not None and not Path(figures).is_dir():
        raise ConfigError(f"--figures {figures}: no such folder; draw the figures first (harness plot --out {figures})")
    stored = runs(store)
    the_plan = decided_plan(the_plan, stored)
    chosen = filtered(stored, only if the_plan is None else None)
    document = results_document(chosen, store_path=str(store), plan=the_plan, sort=sort, figures=figures, metric=metric,
                                epochs=epochs(store), interval=interval, equivalence=equivalence)
    return write(document, output_format)


def study_parts(path: str | Path | None = None, *, committed: bool = False) -> list:
    """Each study a studies file declares (default: studies.toml here), with its runs: from its
    store where one is here, else (or with `committed`) from its committed archive; None where
    neither is."""
    from harness.report.results import StudyPart, select
    from harness.results import Status
    from harness.studies import STUDIES_FILE, load_studies

    loaded: dict[Path, tuple] = {}  # studies that share a store or archive read it once

    def stored_at(found: Path) -> tuple:
        if found not in loaded:
            loaded[found] = (runs(found), epochs(found))
        return loaded[found]

    def read(source: str, the_plan: Plan):
        """The study's runs in `source` (None where it is not here), and its plan as they decide it."""
        if not study.path(source).is_file():
            return None, the_plan
        stored = stored_at(study.path(source))[0]
        the_plan = decided_plan(the_plan, stored)
        return select(stored, the_plan), the_plan

    parts = []
    for study in load_studies(path or STUDIES_FILE):
        source, is_committed = study.source(committed)
        chosen, the_plan = read(source, study_plan(study))
        if not is_committed and not (chosen["status"] == Status.DONE).any():  # a store here, but of other runs
            source, is_committed = study.runs, True
            chosen, the_plan = read(source, study_plan(study))
        parts.append(StudyPart(study, chosen, stored_at(study.path(source))[1] if chosen is not None else None,
                               the_plan, source, is_committed))
    return parts


def decided_plan(the_plan: Plan | None, stored: pd.DataFrame) -> Plan | None:
    """An adaptive plan with the rounds its pilot decided (adaptive_rounds), which tables read;
    any other plan as it is."""
    if the_plan is None or the_plan.adaptive is None:
        return the_plan
    decided = adaptive_rounds(the_plan, stored)
    return the_plan.with_rounds(decided[0]) if decided is not None else the_plan


def study_plan(study) -> Plan:
    """The configurations of a study's matrices, in their order."""
    return Plan.combined([plan(study.path(matrix)) for matrix in study.matrices])


def studies_table(path: str | Path | None = None, output_format: str = "markdown", *, committed: bool = False,
                  notify: Callable[[str], None] | None = None) -> str:
    """What `harness table` prints with no argument: every study of the studies file, in one
    document (harness.report.results.studies_document). `notify` hears which studies were read
    from a store here rather than from their committed runs, and which have no runs."""
    from harness.report.formats import write
    from harness.report.results import studies_document

    parts = study_parts(path, committed=committed)
    say = notify or (lambda line: None)
    for part in parts:
        if part.runs is None:
            say(f"{part.study.title}: no runs here ({part.study.runs} is missing); its section says how to train it")
        elif not part.committed:
            say(f"{part.study.title}: from the store {part.source} trained here (--committed: from {part.study.runs})")
    return write(studies_document(parts), output_format)


def export(store: str | Path, target: str | Path, the_plan: Plan | None = None) -> int:
    """The store's runs (the plan's only, when given) written as an archive at `target`, which
    every reader takes as a store (`harness table --store target`); the number of runs."""
    from harness.store import ARCHIVE_SUFFIX, Store, is_archive

    if not is_archive(target):
        raise ConfigError(f"--out {target}: an archive's name ends in {ARCHIVE_SUFFIX} (e.g. baselines/mine{ARCHIVE_SUFFIX})")
    from harness.files import output_folder

    output_folder(Path(target).parent, "--out")  # a folder in the way fails before any work
    with Store.open_readonly(store) as opened:
        ids = {config.config_id for config in the_plan.configs} if the_plan is not None else None
        count = opened.export(target, ids)
    if count == 0:
        Path(target).unlink(missing_ok=True)
        raise ConfigError(f"{store}: no run of " + ("this matrix" if the_plan is not None else "any configuration")
                          + " to export; run `harness run` first")
    return count


def export_studies(path: str | Path | None = None) -> list[tuple[str, str, int, list[str]]]:
    """Each study whose store is here exported to its committed archive: (store, archive, runs,
    the code versions of its runs). A code version marked +dirty means runs of uncommitted code,
    which a committed results file must not rest on: ConfigError before anything is written."""
    from harness.studies import STUDIES_FILE, load_studies

    studies = [study for study in load_studies(path or STUDIES_FILE) if study.path(study.store).is_file()]
    if not studies:
        raise ConfigError(f"{path or STUDIES_FILE}: no study's store is here; train one first (its section of "
                          "`harness table` gives the commands)")
    # studies that share their committed runs (a fraction read from the full study's) are written together
    groups: dict[tuple[Path, Path], list] = {}
    for study in studies:
        groups.setdefault((study.path(study.store), study.path(study.runs)), []).append(study)
    chosen = []
    for (store, archive), members in groups.items():
        configs = {config.config_id: config for study in members for config in study_plan(study).configs}
        the_plan = Plan.from_configs(list(configs.values()), source=str(archive)) if configs else None
        stored = runs(store, the_plan)
        if stored.empty:  # a store of other runs: nothing of these studies to commit
            continue
        versions = sorted(str(v) for v in stored["code_version"].dropna().unique())
        dirty = [v for v in versions if v.endswith("+dirty")]
        if dirty:
            raise ConfigError(f"{members[0].store}: runs of uncommitted code ({', '.join(dirty)}); commit, train them "
                              "again from the clean tree (harness run --fresh), then export")
        chosen.append((members[0], the_plan, versions))
    if not chosen:
        raise ConfigError(f"{path or STUDIES_FILE}: no study's store here holds runs of its matrices; train one first")
    written = []
    for study, the_plan, versions in chosen:
        count = export(study.path(study.store), study.path(study.runs), the_plan)
        written.append((study.store, study.runs, count, versions))
    return written


def check(store: str | Path, results_file: str | Path, the_plan: Plan | None = None) -> list[str]:
    """What differs between a committed results file (RESULTS.md) and the store: its
    configurations and parameter counts, section by section; empty when nothing does."""
    from harness.report.check import check_against

    return check_against(Path(results_file).read_text(), runs(store), plan=the_plan, source=str(results_file))


def result_set(path: str | Path) -> pd.DataFrame:
    """The runs of a store, or of a baseline file written by `harness table --format json`."""

    path = str(path)
    if path.endswith(".json"):
        try:
            document = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise ConfigError(f"{path}: not a baseline written by `harness table --format json` "
                              f"({type(error).__name__}: {error})") from None
        return checked_baseline(document, path)
    return runs(path)


BASELINE_COLUMNS = {"config_id": str, "round": int, "status": str}  # what every run of a baseline carries


def checked_baseline(document, path: str) -> pd.DataFrame:
    """A baseline's runs as a frame, or ConfigError in one line naming the first run that is
    not one: a run without its id, round or status, a finished run whose errors are missing or
    not numbers, or a (configuration, round) given twice. No comparison is made from no data."""
    import math

    import pandas as pd

    from harness.results import Status

    fix = "regenerate it with `harness table --format json --store STORE`"
    runs_given = document.get("runs") if isinstance(document, dict) else None
    if not isinstance(runs_given, list) or not all(isinstance(run, dict) for run in runs_given):
        raise ConfigError(f"{path}: not a baseline written by `harness table --format json` (no list of runs "
                          f"under \"runs\"); {fix}")
    seen: dict[tuple, int] = {}
    for index, run in enumerate(runs_given):
        where = f"{path}: runs[{index}]"
        for key, kind in BASELINE_COLUMNS.items():
            if not isinstance(run.get(key), kind) or isinstance(run.get(key), bool):
                raise ConfigError(f"{where}: {key} must be a {kind.__name__}, got {run.get(key)!r}; {fix}")
        if run["status"] == Status.DONE:
            for metric in ("test_error", "train_error"):
                value = run.get(metric)
                if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                    raise ConfigError(f"{where} ({run['config_id'][:10]}, round {run['round']}) is done but its {metric} "
                                      f"is {value!r}, not a number; {fix}")
        key = (run["config_id"], run["round"])
        if key in seen:
            raise ConfigError(f"{where}: configuration {run['config_id'][:10]} round {run['round']} is given twice "
                              f"(also runs[{seen[key]}]); a baseline holds each run once; {fix}")
        seen[key] = index
    return pd.DataFrame(runs_given)


FAIL_ON = ("worse", "any", "never")


@dataclass(frozen=True)
class Comparison:
    """What `harness compare` found: its text, and whether it fails the command (something got
    significantly worse, or changed at all, as `fail_on` asks; a determinism failure always)."""

    text: str
    failed: bool


def compare(before: str | Path, after: str | Path, *, threshold: float = 0.0, fail_on: str = "worse",
            output_format: str = "markdown") -> Comparison:
    """Two result sets (stores, or baselines from `harness table --format json`) compared
    configuration by configuration, paired on the rounds, then each factor's effect in both."""
    from harness.report.compare import compare_document
    from harness.report.formats import write
    from harness.stats import WORSE, compare_effects
    from harness.stats import compare as paired_changes

    if fail_on not in FAIL_ON:
        raise ConfigError(f"--fail-on {fail_on}: use one of {', '.join(FAIL_ON)}")
    runs_before, runs_after = result_set(before), result_set(after)
    frame = paired_changes(runs_before, runs_after, threshold)
    if frame.empty:
        raise ConfigError(f"{before} and {after} share no finished run (configuration id and round); nothing to compare")
    document = compare_document(frame, before=str(before), after=str(after), threshold=threshold,
                                effect_frame=compare_effects(runs_before, runs_after))
    changed = {"worse": (frame["verdict"] == WORSE).any(), "any": (frame["max_abs_difference"] > 0).any(),
               "never": False}[fail_on]
    failed = fail_on != "never" and bool(changed or frame["determinism_failure"].any())
    return Comparison(write(document, output_format), failed)


def show(store: str | Path, which: str, *, code: bool = False, output_format: str = "text") -> str:
    """One configuration of the store, found by its id (or the first characters of it, as
    tables show them) or its name: its settings, runs and provenance (`code`: with the plugin
    and diff texts it ran with)."""
    from harness.report.formats import write
    from harness.report.show import show_document
    from harness.stats import labels
    from harness.store import Store

    with Store.open_readonly(store) as opened:
        stored, sources = opened.runs(), opened.sources()
    if stored.empty:
        raise ConfigError(f"{store}: no runs; run `harness run` first")
    label = labels(stored)  # names as tables print them: `X (epochs=20)` where two share the name X
    by_id = {i for i in label.index if i.startswith(which)}
    by_label = set(label.index[label == which])
    by_name = set(stored.loc[stored["name"] == which, "config_id"])
    ids = sorted(by_label or by_id or by_name)
    if len(ids) != 1:
        found = "no configuration" if not ids else f"{len(ids)} configurations"
        listed = "; ".join(f"{label[i]!r} ({i[:10]})" for i in ids[:6]) + ("; ..." if len(ids) > 6 else "")
        raise ConfigError(f"{store}: {found} match {which!r}" + (f": {listed}; give one of these names or ids" if ids else
                          "; give a name or id as `harness table` prints it (its id column)"))
    chosen = stored[stored["config_id"] == ids[0]].assign(name=label[ids[0]])
    return write(show_document(chosen, sources, code=code), output_format)


def settings_table() -> str:
    """Every setting of the built-in tasks, as `harness settings` and the README show them."""
    from harness.tasks import settings_table as table_of_settings

    return table_of_settings()
