"""The `harness` command line: a thin layer over the library; torch is imported lazily."""

from __future__ import annotations

import contextlib
import signal
import sys
import textwrap

import click

from harness import __version__
from harness.backends import NAMES as BACKEND_NAMES
from harness.results import Status
from harness.settings import DECLARED, EFFECT_METRICS

DATA_DIR_OPTION = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="MNIST folder (default: $HARNESS_DATA_DIR, $PYTORCH_DATA_DIR, ./data).",
)


def fail(message: str, code: int = 2):
    """One clear line on stderr and a non-zero exit, no traceback."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="harness")
def main():
    """Benchmark harness for the MNIST digit-pair comparison task.

    \b
    Examples:
      harness data                                  fetch and verify MNIST
      harness plan --matrix ablations.toml          list the jobs a matrix expands to
      harness run --matrix ablations.toml --device cuda
      harness table > RESULTS.md                    markdown tables from the store
    """


@main.command()
@DATA_DIR_OPTION
def data(data_dir):
    """Fetch MNIST if needed, verify its SHA-256 sums and print the class counts.

    Example: harness data --data-dir ~/datasets
    """
    from harness.data import (
        DataError,
        class_counts,
        ensure_mnist,
        load_mnist,
        raw_dir,
        resolve_data_dir,
    )

    directory = raw_dir(resolve_data_dir(data_dir))
    try:
        files, source = ensure_mnist(data_dir)
        splits = load_mnist(data_dir, download=False)
    except DataError as error:
        fail(str(error))
    click.echo(f"MNIST in {directory.resolve()} (source: {source}; SHA-256 verified)")
    for path in files.values():
        click.echo(f"  {path.name}")
    click.echo(f"train {len(splits.train_labels)} images, per class: {class_counts(splits.train_labels)}")
    click.echo(f"test  {len(splits.test_labels)} images, per class: {class_counts(splits.test_labels)}")


MATRIX_OPTION = click.option(
    "--matrix", "matrix_path", type=click.Path(dir_okay=False), default="ablations.toml", show_default=True,
    help="The TOML matrix file.",
)
PROFILE_OPTION = click.option("--profile", default=None, help="A [profiles.NAME] table of overrides.")
ONLY_OPTION = click.option(
    "--only", multiple=True, metavar="KEY=VALUE", help="Keep configurations with this setting (repeatable)."
)


PLUGIN_OPTION = click.option(
    "--plugin", "plugins", multiple=True, metavar="FILE_OR_MODULE",
    help="Import a .py file or module that registers models (repeatable; workers import it too).",
)
SET_OPTION = click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE",
    help="Override a setting without editing the file (repeatable); a list such as \"dropout=[0, 0.5]\" is a factor that crosses every entry of the file.",
)


MAX_CONFIGS_OPTION = click.option(
    "--max-configs", type=click.IntRange(min=1), default=None,
    help="Refuse matrices that cross more combinations than this (default 10,000).",
)


def default_store(profile: str | None) -> str:
    """Each profile keeps its own store, so smoke runs never pool with full ones."""
    return f"results/harness-{profile}.sqlite" if profile else "results/harness.sqlite"


STORE_READ_OPTION = click.option(
    "--store", "store_path", default="results/harness.sqlite", show_default=True, type=click.Path(dir_okay=False)
)
PROFILE_STORE_OPTION = click.option(
    "--store", "store_path", default=None, type=click.Path(dir_okay=False),
    help="The store [default: results/harness.sqlite, or results/harness-PROFILE.sqlite with --profile].",
)


def load_plan(matrix_path, profile, overrides=None, only=(), max_configs=None, plugins=(), sets=()):
    """The plan a command's options ask for (harness.api.plan): plugins imported, --set
    applied, --only kept; one line and exit 2 for bad input."""
    from harness import api
    from harness.config import MAX_CONFIGS, ConfigError

    try:
        return api.plan(matrix_path, profile=profile, sets=sets, only=tuple(only), plugins=plugins,
                        overrides=overrides, max_configs=max_configs or MAX_CONFIGS)
    except ConfigError as error:
        fail(str(error))


SETTINGS_EPILOG = "\b\nSettings (`harness settings` describes each):\n" + textwrap.fill(
    " ".join(DECLARED), 78, initial_indent="  ", subsequent_indent="  "
)


@main.command(epilog=SETTINGS_EPILOG)
@MATRIX_OPTION
@PROFILE_OPTION
@ONLY_OPTION
@SET_OPTION
@PLUGIN_OPTION
@MAX_CONFIGS_OPTION
@click.option("--format", "output_format", type=click.Choice(["text", "csv"]), default="text", show_default=True)
@click.option("--workers", type=int, default=None, help="Worker processes for the time estimate (default: CPU cores).")
@click.option("--estimate/--no-estimate", default=True, show_default=True, help="Estimate the time it takes.")
@PROFILE_STORE_OPTION
def plan(matrix_path, profile, only, sets, plugins, max_configs, output_format, workers, estimate, store_path):
    """List the configurations a matrix expands to, what was dropped and why, and the cost.

    Runs already in the store are counted, and their mean time replaces the estimate.

    Example: harness plan --matrix ablations.toml --profile smoke
    """
    from pathlib import Path

    from harness.plan import plan_frame
    from harness.report import plan_table

    the_plan = load_plan(matrix_path, profile, only=only, max_configs=max_configs, plugins=plugins, sets=sets)
    store_path = store_path or default_store(profile)
    stored = read_runs(store_path)[0] if Path(store_path).is_file() else None
    frame = plan_frame(the_plan, estimate=estimate, stored=stored)
    click.echo(plan_table(frame, the_plan, output_format, workers=workers, estimate=estimate))


@main.command()
@STORE_READ_OPTION
@click.argument("which")
@click.option("--code", is_flag=True, help="Also print the plugin sources and the diff the runs were made with.")
def show(store_path, which, code):
    """A configuration's resolved settings, its runs and their provenance: WHICH is a
    configuration id (or its first characters, as tables show them) or a name.

    Example: harness show 4e14e81c2a --code
    """
    import json

    from harness.settings import for_its_task
    from harness.store import Store, StoreError

    try:
        with Store.open_readonly(store_path) as store:
            runs, sources = store.runs(), store.sources()
    except StoreError as error:
        fail(str(error))
    chosen = runs[runs["config_id"].str.startswith(which) | (runs["name"] == which)] if not runs.empty else runs
    ids = sorted(set(chosen["config_id"])) if not chosen.empty else []
    if len(ids) != 1:
        found = "no configuration" if not ids else f"{len(ids)} configurations ({', '.join(i[:10] for i in ids)})"
        fail(f"{store_path}: {found} match '{which}'; give more of the id, as `harness table --format csv` lists them")
    chosen = chosen.sort_values("round")
    first = chosen.iloc[0]
    click.echo(f"{first['name']}\nid {ids[0]}\n\nsettings:")
    click.echo(json.dumps(for_its_task(json.loads(first["config"])), indent=2, sort_keys=True))
    click.echo("\nruns:")
    for _, run in chosen.iterrows():
        errors = "" if run["status"] != Status.DONE else f" test {100 * run['test_error']:.2f} %, train {100 * run['train_error']:.2f} %"
        click.echo(f"  round {run['round']}: {run['status']}{errors}; seeds {run['data_seed']}/{run['model_seed']}; "
                   f"{run['seconds']:.1f} s on {run['device']}; code {run['code_version']}, torch {run['torch_version']}"
                   + (f"; {run['reason']}" if isinstance(run["reason"], str) else ""))
    click.echo(f"\nmatrix: {first['matrix']}\ncommand: {first['command']}")
    used = {first.get("code_diff")} | {p["sha256"] for text in chosen.get("plugins", []) if isinstance(text, str)
                                        for p in json.loads(text)}
    for _, source in sources[sources["sha256"].isin(used)].iterrows():
        click.echo(f"{source['kind']}: {source['name']} (sha256 {source['sha256'][:12]})")
        if code:
            click.echo(source["text"])


def read_result_set(path: str):
    """The runs of a store, or of a baseline file written by `harness table --format json`."""
    import json
    from pathlib import Path

    import pandas as pd

    if path.endswith(".json"):
        try:
            return pd.DataFrame(json.loads(Path(path).read_text())["runs"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            fail(f"{path}: not a baseline written by `harness table --format json` ({type(error).__name__}: {error})")
    return read_runs(path)[0]


@main.command()
@click.argument("before", type=click.Path(dir_okay=False, exists=True))
@click.argument("after", type=click.Path(dir_okay=False, exists=True))
@click.option("--threshold", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Percentage points a significant change must exceed to count as worse or better.")
@click.option("--fail-on", type=click.Choice(["worse", "any", "never"]), default="worse", show_default=True,
              help="Exit 1 when a configuration got significantly worse, changed at all, or never.")
@click.option("--format", "output_format", type=click.Choice(["markdown", "json"]), default="markdown", show_default=True)
def compare(before, after, threshold, fail_on, output_format):
    """Did a change make things worse? Compares two result sets (stores, or a baseline from
    `harness table --format json`) configuration by configuration, paired on the rounds.
    Runs of the same code version on the CPU under the same execution policy (threads,
    batched rounds, memory layout) must be equal: any difference is a determinism failure
    (exit 1). Then each factor's effect in both, side by side (two devices, say: do they
    answer alike?).

    Example: harness compare results/baseline.sqlite results/harness.sqlite --threshold 0.5
    """
    from harness.report import compare_report
    from harness.stats import WORSE, compare, compare_effects

    runs_before, runs_after = read_result_set(before), read_result_set(after)
    frame = compare(runs_before, runs_after, threshold)
    if frame.empty:
        fail(f"{before} and {after} share no finished run (configuration id and round); nothing to compare")
    click.echo(compare_report(frame, before=before, after=after, threshold=threshold, output_format=output_format,
                              effect_frame=compare_effects(runs_before, runs_after)))
    changed = frame["max_abs_difference"] > 0
    failed = {"worse": (frame["verdict"] == WORSE).any(), "any": changed.any(), "never": False}[fail_on]
    if (failed or frame["determinism_failure"].any()) and fail_on != "never":
        sys.exit(1)


@main.command()
def settings():
    """Every setting a matrix file may give: default, values, whether it enters the
    configuration id, meaning (markdown; the README's table is this output).

    Example: harness settings
    """
    from harness.settings import settings_table

    click.echo(settings_table())


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl-C."""


@contextlib.contextmanager
def stop_signals_as_interrupts():
    """SIGINT and SIGTERM (Ctrl-C, `timeout`, a CI cancel, `kill`) stop the run the same way:
    KeyboardInterrupt (Terminated for SIGTERM) unwinds it, so workers are stopped, the store is
    checkpointed and closed and the terminal restored, then one line and exit 130 or 143.
    After the first signal both are ignored: a second one (`timeout` signals the command, then
    its whole group) must not cut that clean-up short."""
    received = []

    def stop(signum, frame):
        received.append(signum)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt

    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        if not received:  # after a signal this process is ending: leave them ignored
            for number, handler in previous.items():
                signal.signal(number, handler)


def open_store(path, fresh: bool):
    """The store for writing, emptied into a backup first with --fresh; StoreError otherwise."""
    from harness.store import Store

    store = Store(path)
    if fresh:
        try:
            backup = store.start_fresh()
        except BaseException:
            store.close()
            raise
        click.echo(f"previous runs kept in {backup}; starting afresh" if backup else "the store held no runs; starting afresh")
    return store


@main.command()
@MATRIX_OPTION
@PROFILE_OPTION
@ONLY_OPTION
@SET_OPTION
@PLUGIN_OPTION
@MAX_CONFIGS_OPTION
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--rounds", type=click.IntRange(min=1), default=None, help="Override every configuration's rounds.")
@PROFILE_STORE_OPTION
@DATA_DIR_OPTION
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="CPU worker processes, one thread each (default and most: the usable cores).")
@click.option("--fresh", is_flag=True, help="Back the store up (STORE.<time>.bak) and start it empty.")
@click.option(
    "--batch-rounds/--no-batch-rounds", "batched", default=None,
    help="Train a configuration's rounds as one vectorised model (default: on CUDA only).",
)
@click.option("--pack", is_flag=True, help="With the rounds, configurations that differ only in the pair loss "
              "(aux_loss, aux_weight) train as one vectorised model; implies --batch-rounds.")
@click.option("--backend", "backend_name", type=click.Choice(BACKEND_NAMES), default="local", show_default=True,
              help="local worker processes, or tasks on a Ray cluster (pip install -e '.[ray]').")
@click.option("--address", default=None, help="Ray: 'auto' joins a running cluster; default starts a local one.")
@click.option("--cpus-per-job", type=float, default=1.0, show_default=True, help="Ray: CPUs each task reserves.")
@click.option("--gpus-per-job", type=float, default=0.0, show_default=True, help="Ray: GPU share each task reserves.")
def run(matrix_path, profile, only, sets, plugins, max_configs, device, rounds, store_path, data_dir, workers, fresh, batched,
        pack, backend_name, address, cpus_per_job, gpus_per_job):
    """Train every job of a matrix that the store does not hold yet, and store each result.

    Ctrl-C or SIGTERM stops it (exit 130 or 143) with every finished run stored; the same
    command resumes. One `harness run` writes a store at a time.

    Example: harness run --matrix ablations.toml --device cuda
    """
    from harness import backends
    from harness.config import ConfigError
    from harness.data import DataError, load_mnist
    from harness.device import resolve
    from harness.progress import Progress
    from harness.runner import run_plan
    from harness.store import StoreError

    overrides = {} if rounds is None else {"rounds": rounds}
    store_path = store_path or default_store(profile)
    the_plan = load_plan(matrix_path, profile, overrides, only, max_configs, plugins, sets)
    backend = store = progress = None
    with stop_signals_as_interrupts():
        try:
            remote_gpus = gpus_per_job if backend_name != "local" else None
            if pack and batched is False:
                raise ConfigError("--pack trains vectorised models: it cannot go with --no-batch-rounds")
            policy = resolve(device, workers=workers, batched=batched, remote_gpus=remote_gpus, pack=pack)
            if workers and workers > policy.workers and policy.kind == "cpu":
                click.echo(f"--workers {workers}: using {policy.workers}, the CPU cores this process may use")
            backend = backends.make(backend_name, device=policy.device, workers=policy.workers, address=address,
                                    cpus_per_job=cpus_per_job, gpus_per_job=gpus_per_job)
            splits = load_mnist(data_dir)  # data and backend before the store: bad input writes nothing
            backend.start()
            store = open_store(store_path, fresh)
            progress = Progress()
            click.echo(f"{len(the_plan.configs)} configurations, {len(the_plan.jobs)} runs on {policy.device} -> {store_path}")
            summary = run_plan(the_plan, store, policy=policy, splits=splits, on_start=progress.start,
                               on_result=progress.result, backend=backend)
        except (ConfigError, DataError, StoreError, backends.BackendError) as error:
            fail(str(error))
        except KeyboardInterrupt as stop:
            what, code = ("terminated (SIGTERM)", 143) if isinstance(stop, Terminated) else ("interrupted", 130)
            stored = f"; finished runs are stored in {store_path}: run the same command again to resume" if store else ""
            fail(f"{what}{stored}", code)
        finally:
            _shut(progress, store, backend)
    done = summary.finished - len(summary.failed)
    click.echo(f"{done} runs finished, {len(summary.failed)} failed, in {summary.seconds:.0f} s; store {store_path}")
    for name, round_index, reason in summary.failed:
        click.echo(f"  failed: {name} round {round_index}: {reason}", err=True)
    if summary.failed:
        sys.exit(1)


def _shut(progress, store, backend) -> None:
    """Stop the bar (restores the cursor), the workers, and checkpoint and close the store."""
    if progress is not None:
        progress.stop()
    if backend is not None:
        backend.close()
    if store is not None:
        store.close()


@main.command()
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--rounds", type=click.IntRange(min=1), default=10, show_default=True, help="Runs per path.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Shorter runs for a quick look (default 25).")
@click.option("--paths", default="plain,workers,batched", show_default=True, help="Comma-separated: plain, workers, batched.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="CPU worker processes (default: cores).")
@click.option("--project", "project_matrix", default="ablations.toml", show_default=True,
              help="Matrix whose full time is projected from the fastest path ('' to skip).")
@click.option("--frameworks/--no-frameworks", "frameworks_too", default=True, show_default=True,
              help="Also time the disk task's network in minidl against torch.nn (50 epochs a run).")
@click.option("--launches/--no-launches", "launches_too", default=True, show_default=True,
              help="Also count each path's operator launches per run (the GPU-time proxy; runs of 1 and 2 epochs).")
@DATA_DIR_OPTION
def bench(device, rounds, epochs, paths, workers, project_matrix, data_dir, frameworks_too, launches_too):
    """Runs per second of the reference configuration (siamese CNN with aux loss, 1000 pairs,
    25 epochs) through the loop a student writes around the same model (one evaluation at the
    end) and the harness's paths with their defaults (learning curves on), side by side, with the
    GFLOP/s each achieves and the fraction of this machine's measured peak.

    Example: harness bench --device cuda
    """
    from harness.bench import (
        PATHS,
        describe_machine,
        framework_timings,
        measure,
        measure_launches,
        peak_gflops,
        projected_seconds,
        reference_config,
    )
    from harness.config import ConfigError, load_matrix
    from harness.data import DataError
    from harness.device import resolve
    from harness.report import bench_report

    chosen = [p.strip() for p in paths.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in PATHS]
    if unknown or not chosen:
        fail(f"--paths {paths}: unknown path {', '.join(unknown) or '(none)'}; choose from {', '.join(PATHS)}")
    try:
        if project_matrix:
            load_matrix(project_matrix)  # a bad path fails now, not after minutes of measuring
        policy = resolve(device, workers=workers)
        peak = peak_gflops(policy)
        timings = measure(chosen, rounds, policy, data_dir, epochs)
        frameworks = framework_timings(rounds) if frameworks_too else None
        launches = measure_launches(chosen, rounds, policy, data_dir, epochs) if launches_too else None
        fastest = max((t for t in timings if t.path != "plain"), key=lambda t: t.runs_per_second, default=None)
        projection = None
        if project_matrix and fastest and epochs is None:
            seconds, runs = projected_seconds(project_matrix, reference_config(), 1 / fastest.runs_per_second)
            projection = (project_matrix, seconds, runs)
    except (ConfigError, DataError) as error:
        fail(str(error))
    command = " ".join(["harness", *sys.argv[1:]])
    click.echo(bench_report(timings, machine=describe_machine(policy), command=command, projection=projection,
                            peak_gflops=peak, frameworks=frameworks, launches=launches))


def read_runs(store_path):
    """The store's runs and epochs, read without writing anything (read-only media too)."""
    from harness.store import Store, StoreError

    try:
        with Store.open_readonly(store_path) as store:
            return store.runs(), store.epochs()
    except StoreError as error:
        fail(str(error))


@main.command()
@PROFILE_STORE_OPTION
@click.option("--html", "html_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for the page (index.html).")
@click.option("--matrix", "matrix_path", type=click.Path(dir_okay=False), default=None,
              help="Only this matrix's configurations, in its order.")
@PROFILE_OPTION
@PLUGIN_OPTION
def report(store_path, html_dir, matrix_path, profile, plugins):
    """One self-contained HTML page: the answers, interactions, effects, reproductions,
    configurations, the figures as inline SVG (with matplotlib) and provenance; no server needed.

    Example: harness report --html results/report
    """
    import tempfile
    from pathlib import Path

    from harness import plots
    from harness.report import ReportError, results_report, select

    store_path = store_path or default_store(profile)
    runs, epochs = read_runs(store_path)
    the_plan = load_plan(matrix_path, profile, plugins=plugins) if matrix_path else None
    with tempfile.TemporaryDirectory() as figures:
        done = select(runs, the_plan)
        done = done[done["status"] == Status.DONE]
        try:
            if not done.empty:
                plots.draw(done, Path(figures))
        except ImportError:
            click.echo("matplotlib is not installed: the page has no figures (pip install -e '.[plot]')", err=True)
        try:
            page = results_report(runs, store_path=store_path, plan=the_plan, output_format="html", figures=figures)
        except ReportError as error:
            fail(str(error))
    target = Path(html_dir) / "index.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    click.echo(f"{target} ({len(page.encode()) / 1024:.0f} KiB)")


@main.command()
@PROFILE_STORE_OPTION
@click.option("--matrix", "matrix_path", type=click.Path(dir_okay=False), default=None,
              help="Only this matrix's configurations, in its order.")
@PROFILE_OPTION
@ONLY_OPTION
@SET_OPTION
@PLUGIN_OPTION
@click.option("--format", "output_format", type=click.Choice(["markdown", "latex", "csv", "json", "html"]),
              default="markdown", show_default=True)
@click.option("--figures", default=None, metavar="DIR",
              help="Embed the forest plot from DIR (as `harness plot --out DIR` writes it) under the answers.")
@click.option("--sort", type=click.Choice(["matrix", "test_error", "validation_error", "name", "params"]), default="matrix",
              show_default=True, help="Row order; validation_error ranks a search matrix's candidates.")
@click.option("--check", "check_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Compare configurations and parameter counts with a committed table; exit 1 on a difference.")
@click.option("--metric", type=click.Choice(EFFECT_METRICS), default="test_error", show_default=True,
              help="The error effects are measured on: a search matrix's runs, which hold pairs out, are compared "
                   "on validation_error or validation_digit_error.")
def table(store_path, matrix_path, profile, only, sets, plugins, output_format, figures, sort, check_path, metric):
    """Print tables of parameters and error mean ± std per configuration, effects and provenance.

    Example: harness table > RESULTS.md
    """
    from pathlib import Path

    from harness.config import ConfigError, parse_assignments
    from harness.report import ReportError, check_against, results_report

    store_path = store_path or default_store(profile)
    runs, _ = read_runs(store_path)
    the_plan = load_plan(matrix_path, profile, only=only, plugins=plugins, sets=sets) if matrix_path else None
    if only and not matrix_path:
        try:
            for key, value in parse_assignments(only, "--only").items():
                runs = runs[runs[key] == value] if key in runs else runs.iloc[0:0]
        except ConfigError as error:
            fail(str(error))
    try:
        if check_path:
            problems = check_against(Path(check_path).read_text(), runs, plan=the_plan, source=check_path)
            for problem in problems:
                click.echo(f"differs: {problem}", err=True)
            if problems:
                sys.exit(1)
            click.echo(f"{check_path}: same configurations and parameter counts as {store_path}")
            return
        click.echo(results_report(runs, store_path=store_path, plan=the_plan, output_format=output_format, sort=sort,
                                  figures=figures, metric=metric))
    except ReportError as error:
        fail(str(error))


@main.command()
@STORE_READ_OPTION
@click.option("--out", "out_dir", default="results/plots", show_default=True, type=click.Path(file_okay=False))
@click.option("--matrix", "matrix_path", type=click.Path(dir_okay=False), default=None, help="Only this matrix's configurations.")
@PLUGIN_OPTION
def plot(store_path, out_dir, matrix_path, plugins):
    """Draw box plots of test error, learning curves and a forest plot of effects (PNG and SVG).

    Example: harness plot --out docs
    """
    from pathlib import Path

    from harness import plots
    from harness.report import select

    runs, epochs = read_runs(store_path)
    runs = select(runs, load_plan(matrix_path, None, plugins=plugins) if matrix_path else None)
    if runs.empty or not (runs["status"] == Status.DONE).any():
        fail(f"{store_path}: no finished runs to plot; run `harness run` first")
    try:
        written = plots.draw(runs[runs["status"] == Status.DONE], Path(out_dir), epochs)
    except ImportError:
        fail("plotting needs matplotlib: pip install -e '.[plot]'")
    for path in written:
        click.echo(str(path))
