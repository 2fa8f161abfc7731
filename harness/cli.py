"""The `harness` command line: a thin click group over the Python API (harness.api); torch is
imported lazily. Every error of bad input is one line on stderr and exit 2."""

from __future__ import annotations

import contextlib
import functools
import signal
import sys

import click

from harness import __version__
from harness.errors import ConfigError, DataError
from harness.report.formats import names as format_names
from harness.results import EFFECT_METRICS


def fail(message: str, code: int = 2):
    """One clear line on stderr, on a line of its own (a progress bar on the terminal is closed
    first), and a non-zero exit, no traceback."""
    from harness.progress import stop_live

    stop_live()
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def entry() -> None:
    """The `harness` command: `main`, with a failure to write its output (a full disk, an
    unwritable file, standard output gone) as one line and exit 2, never a traceback; the output
    is flushed here, where such a failure can still be reported."""
    code: int | str | None = 0
    try:
        main()
    except SystemExit as exit:
        code = exit.code
    except OSError as error:
        code = _output_failed(error)
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (`| head`): what it did not read is nobody's
        _silence_stdout()
    except OSError as error:
        _silence_stdout()
        code = _output_failed(error)
    sys.exit(code)


def _output_failed(error: OSError) -> int:
    click.echo(f"error: {output_failed(error)}", err=True)
    return 2


def output_failed(error: OSError) -> str:
    """One line for an output that could not be written: where, why, what to do."""
    if error.filename and str(error.strerror or "").startswith("--"):  # harness.files.output_folder's own words
        return f"{error.strerror}; choose another folder"
    where = f"{error.filename}" if error.filename else "standard output"
    return f"cannot write {where}: {error.strerror or error}; free some space or choose a writable place"


def _silence_stdout() -> None:
    """Send what is still written to standard output to /dev/null (its reader is gone, or
    its disk is full): the command goes on, and exits without a second failure."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def survives_closed_stdout(function):
    """`function` printing to standard output, and the command going on when that output's
    reader has gone (`harness run | head -1`): training continues and every run is stored."""
    @functools.wraps(function)
    def wrapped(*arguments, **options):
        try:
            return function(*arguments, **options)
        except BrokenPipeError:
            _silence_stdout()
            return None

    return wrapped


def one_line_errors(command):
    """The errors of bad input (ConfigError, DataError, StoreError, BackendError, ReportError,
    an unknown name) as one line and exit 2; a backend lost mid-launch (BackendLost) as one line
    and exit 3."""
    @functools.wraps(command)
    def wrapped(*arguments, **options):
        from harness.backends import BackendError, BackendLost
        from harness.registry import UnknownName
        from harness.report.results import ReportError
        from harness.store import StoreError

        try:
            return command(*arguments, **options)
        except BackendLost as error:
            fail(str(error), 3)
        except (ConfigError, DataError, StoreError, BackendError, ReportError, UnknownName) as error:
            fail(str(error))
        except BrokenPipeError:
            raise  # the reader went away: click ends the command quietly
        except OSError as error:  # an output file or folder that cannot be written
            fail(output_failed(error))

    return wrapped


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


DATA_DIR = click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                        help="MNIST folder (default: $HARNESS_DATA_DIR, $PYTORCH_DATA_DIR, ./data if it has MNIST, "
                             "else ~/.cache/harness).")
MATRIX = click.option("--matrix", "matrix_path", type=click.Path(dir_okay=False), default="ablations.toml",
                      show_default=True, help="The TOML matrix file.")
MATRIX_FILTER = click.option("--matrix", "matrix_path", type=click.Path(dir_okay=False), default=None,
                             help="Only this matrix's configurations, in its order.")
PROFILE = click.option("--profile", default=None, help="A [profiles.NAME] table of overrides.")
ONLY = click.option("--only", multiple=True, metavar="KEY=VALUE", help="Keep configurations with this setting (repeatable).")
PLUGIN = click.option("--plugin", "plugins", multiple=True, metavar="FILE_OR_MODULE",
                      help="Import a .py file or module that registers models or tasks (repeatable; workers import it too).")
READ_PLUGIN = click.option("--plugin", "plugins", multiple=True, metavar="FILE_OR_MODULE",
                           help="Import a .py file or module that registers the models or tasks the matrix names "
                                "(repeatable).")
SET = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                   help="Override a setting without editing the file (repeatable); a list such as \"dropout=[0, 0.5]\" "
                        "is a factor that crosses every entry of the file.")
MAX_CONFIGS = click.option("--max-configs", type=click.IntRange(min=1), default=None,
                           help="Refuse matrices that cross more combinations than this (default 10,000).")
STORE = click.option("--store", "store_path", default=None, type=click.Path(dir_okay=False),
                     help="The store [default: results/harness.sqlite, or results/harness-PROFILE.sqlite with --profile].")


def plan_options(command):
    """The options that choose a plan: the matrix, its profile, --only, --set, plugins, the limit."""
    for option in reversed((MATRIX, PROFILE, ONLY, SET, PLUGIN, MAX_CONFIGS)):
        command = option(command)
    return command


def output_format(default: str):
    return click.option("--format", "output_format", type=click.Choice(format_names()), default=default,
                        show_default=True, help="How to write it (every command writes every format).")


def plan_of(matrix_path, profile=None, *, only=(), sets=(), plugins=(), max_configs=None, overrides=None):
    """The plan the options ask for (harness.api.plan), or None without a matrix."""
    from harness import api

    if matrix_path is None:
        return None
    return api.plan(matrix_path, profile=profile, sets=sets, only=only, plugins=plugins, overrides=overrides,
                    max_configs=max_configs)


@main.command()
@DATA_DIR
@one_line_errors
def data(data_dir):
    """Fetch MNIST if needed, verify its SHA-256 sums and print the class counts.

    Example: harness data --data-dir ~/datasets
    """
    from harness.mnist import class_counts, ensure_mnist, load_mnist, raw_dir, resolve_data_dir

    files, source = ensure_mnist(data_dir)
    splits = load_mnist(data_dir, download=False)
    click.echo(f"MNIST in {raw_dir(resolve_data_dir(data_dir)).resolve()} (source: {source}; SHA-256 verified)")
    for path in files.values():
        click.echo(f"  {path.name}")
    click.echo(f"train {len(splits.train_labels)} images, per class: {class_counts(splits.train_labels)}")
    click.echo(f"test  {len(splits.test_labels)} images, per class: {class_counts(splits.test_labels)}")


@main.command()
@plan_options
@output_format("text")
@click.option("--workers", type=int, default=None, help="Worker processes for the time estimate (default: CPU cores).")
@click.option("--estimate/--no-estimate", default=True, show_default=True, help="Estimate the time it takes.")
@STORE
@click.option("--power", "power_wanted", is_flag=True,
              help="Instead: each effect's minimum detectable size at the planned rounds, from the round-to-round "
                   "spread of its effect in --store (a pilot, or an earlier study).")
@click.option("--mde", type=click.FloatRange(min=0, min_open=True), default=None, metavar="PP",
              help="With --power: the rounds each effect needs to detect PP percentage points.")
@one_line_errors
def plan(matrix_path, profile, only, sets, plugins, max_configs, output_format, workers, estimate, store_path,
         power_wanted, mde):
    """List the configurations a matrix expands to, what was dropped and why, and the cost.

    Runs already in the store are counted, and their mean time replaces the estimate.
    `harness settings` lists every setting a matrix may give.

    \b
    Example: harness plan --matrix ablations.toml --profile smoke
             harness plan --matrix ablations.toml --store pilot.sqlite --power --mde 1
    """
    from harness import api
    from harness.report.formats import write
    from harness.report.plan import plan_document, power_document

    if mde is not None and not power_wanted:
        fail("--mde goes with --power (the rounds an effect of that size needs)")
    the_plan = plan_of(matrix_path, profile, only=only, sets=sets, plugins=plugins, max_configs=max_configs)
    if power_wanted:
        frame, source = api.power(the_plan, store_path or api.default_store(profile), mde=mde)
        click.echo(write(power_document(frame, the_plan, source, mde=mde), output_format))
        return
    store_path = store_path or api.default_store(profile)
    frame = api.costs(the_plan, store=store_path, estimate=estimate)
    click.echo(write(plan_document(frame, the_plan, workers=workers, estimate=estimate), output_format))
    if the_plan.adaptive is not None:
        from pathlib import Path

        decided = api.adaptive_rounds(the_plan, api.runs(store_path)) if Path(store_path).is_file() else None
        click.echo(f"rounds decided by the pilot in {store_path}: {decided[0]}" if decided is not None else
                   f"rounds: {the_plan.adaptive.pilot} now (the pilot), then what its spread asks, at most "
                   f"{the_plan.adaptive.max_rounds}; `harness plan --power --store PILOT` gives each effect's from "
                   "an earlier study")


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


@main.command()
@plan_options
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--rounds", type=click.IntRange(min=1), default=None, help="Override every configuration's rounds.")
@STORE
@DATA_DIR
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="CPU worker processes, one thread each (default and most: the usable cores).")
@click.option("--fresh", is_flag=True, help="Back the store up (STORE.<time>.bak) and start it empty.")
@click.option("--batch-rounds/--no-batch-rounds", "batched", default=None,
              help="Train a configuration's rounds as one vectorised model (default: on CUDA only).")
@click.option("--pack", is_flag=True, help="With the rounds, configurations that differ only in the pair loss "
              "(aux_loss, aux_weight) train as one vectorised model; implies --batch-rounds.")
@click.option("--tf32", is_flag=True, help="On CUDA, let float32 products and convolutions run in TF32 (faster, "
              "10-bit mantissa); off: float32 fidelity.")
@click.option("--nondeterministic", is_flag=True, help="On CUDA, let cuDNN and torch pick nondeterministic kernels "
              "(reruns may differ); off: deterministic.")
@click.option("--mix-policies", is_flag=True, help="Train into a store that holds runs of another device or policy; "
              "they count as done and pool in its tables.")
@click.option("--backend", "backend_name", default="local", show_default=True,
              help="Where the runs train: local worker processes, ray (pip install -e '.[ray]'), slurm (job arrays or "
              "steps of an allocation: pip install -e '.[slurm]'), or an installed one.")
@click.option("--backend-option", "backend_options", multiple=True, metavar="KEY=VALUE",
              help="An option of the backend (repeatable), e.g. address=auto for ray, partition=gpu for slurm.")
@click.option("--address", default=None, help="= --backend-option address=... (ray: 'auto' joins a running cluster).")
@click.option("--cpus-per-job", type=float, default=None, help="= --backend-option cpus_per_job=... (ray, slurm).")
@click.option("--gpus-per-job", type=float, default=None, help="= --backend-option gpus_per_job=... (ray, slurm).")
def run(matrix_path, profile, only, sets, plugins, max_configs, device, rounds, store_path, data_dir, workers, fresh,
        batched, pack, tf32, nondeterministic, mix_policies, backend_name, backend_options, address, cpus_per_job,
        gpus_per_job):
    """Train every job of a matrix that the store does not hold yet, and store each result.

    Ctrl-C or SIGTERM stops it (exit 130 or 143) with every finished run stored; the same
    command resumes. One `harness run` writes a store at a time. Each device and policy other
    than the CPU's default keeps its own store (results/harness-cuda.sqlite for --device cuda);
    a store holding another policy's runs is refused unless --mix-policies.

    Example: harness run --matrix ablations.toml --device cuda
    """
    from harness import api
    from harness.progress import Progress

    chosen_store = [store_path or api.default_store(profile)]  # the policy's own, once api.run resolves it
    aliases = {"address": address, "cpus_per_job": cpus_per_job, "gpus_per_job": gpus_per_job}
    options = [*backend_options, *(f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}"
                                   for key, value in aliases.items() if value is not None)]
    progress = Progress()
    with stop_signals_as_interrupts():
        try:
            the_plan = one_line_errors(plan_of)(matrix_path, profile, only=only, sets=sets, plugins=plugins,
                                                max_configs=max_configs, overrides={"rounds": rounds} if rounds else None)
            summary = one_line_errors(api.run)(
                the_plan, store_path, device=device, workers=workers, batched=batched, pack=pack, tf32=tf32,
                deterministic=not nondeterministic, mix_policies=mix_policies, data_dir=data_dir,
                backend=backend_name, backend_options=options, fresh=fresh, notify=survives_closed_stdout(click.echo),
                on_start=survives_closed_stdout(progress.start), on_result=survives_closed_stdout(progress.result),
                on_store=lambda path: chosen_store.__setitem__(0, path))
        except KeyboardInterrupt as stop:
            what, code = ("terminated (SIGTERM)", 143) if isinstance(stop, Terminated) else ("interrupted", 130)
            stored = f"; finished runs are stored in {chosen_store[0]}: run the same command again to resume" \
                if progress.started else ""
            progress.stop()
            fail(f"{what}{stored}", code)
        finally:
            progress.stop()
    done = summary.finished - len(summary.failed)
    read = "" if store_path or chosen_store[0] == api.default_store(profile) else \
        f" (this policy's own: read it with --store {chosen_store[0]})"
    survives_closed_stdout(click.echo)(f"{done} runs finished, {len(summary.failed)} failed, in {summary.seconds:.0f} s; "
                                       f"store {chosen_store[0]}{read}")
    for name, round_index, reason in summary.failed:
        click.echo(f"  failed: {name} round {round_index}: {reason}", err=True)
    if summary.failed:
        sys.exit(1)


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
@output_format("markdown")
@DATA_DIR
@one_line_errors
def bench(device, rounds, epochs, paths, workers, project_matrix, frameworks_too, launches_too, output_format, data_dir):
    """Runs per second of the reference configuration (siamese CNN with aux loss, 1000 pairs,
    25 epochs) through the loop a student writes around the same model (one evaluation at the
    end) and the harness's paths with their defaults (learning curves on), side by side, with the
    GFLOP/s each achieves and the fraction of this machine's measured peak.

    Example: harness bench --device cuda
    """
    from harness.bench import benchmark
    from harness.report.formats import write

    chosen = [p.strip() for p in paths.split(",") if p.strip()]
    document = benchmark(chosen, device=device, rounds=rounds, epochs=epochs, workers=workers,
                         project_matrix=project_matrix or None, frameworks=frameworks_too, launches=launches_too,
                         data_dir=data_dir, command=" ".join(["harness", *sys.argv[1:]]))
    click.echo(write(document, output_format))


@main.command()
@STORE
@PROFILE
@MATRIX_FILTER
@ONLY
@SET
@READ_PLUGIN
@output_format("markdown")
@click.option("--figures", default=None, metavar="DIR",
              help="Embed the forest plot from DIR (as `harness plot --out DIR` writes it) under the answers.")
@click.option("--sort", type=click.Choice(["matrix", "test_error", "validation_error", "name", "params"]), default="matrix",
              show_default=True, help="Row order; validation_error ranks a search matrix's candidates.")
@click.option("--check", "check_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Compare configurations and parameter counts with a committed table; exit 1 on a difference.")
@click.option("--metric", type=click.Choice(EFFECT_METRICS), default="test_error", show_default=True,
              help="The error effects are measured on: a search matrix's runs, which hold pairs out, are compared "
                   "on validation_error or validation_digit_error.")
@click.option("--interval", type=click.Choice(["t", "wilcoxon"]), default="t", show_default=True,
              help="How effects get their interval and p: t (means), or wilcoxon (Hodges-Lehmann estimates, exact "
                   "signed-rank intervals: no normality assumed).")
@click.option("--equivalence", type=click.FloatRange(min=0, min_open=True), default=None, metavar="PP",
              help="Also test each effect for equivalence within ±PP percentage points (TOST): answers say "
                   "equivalent, undecided, or how it changes.")
@click.option("--committed", is_flag=True,
              help="With no store named: every study from its committed runs, even where its store is here.")
@one_line_errors
def table(store_path, profile, matrix_path, only, sets, plugins, output_format, figures, sort, check_path, metric,
          interval, equivalence, committed):
    """Print tables of parameters and error mean ± std per configuration, effects and provenance.

    With no store, matrix or profile named, in a folder with a studies.toml (the repository's),
    it prints every study declared there, each from its store where one is here, else from its
    committed runs: the repository's RESULTS.md.

    \b
    Example: harness table > RESULTS.md
             harness table --store results/mine.sqlite --matrix mine.toml
    """
    from pathlib import Path

    from harness import api
    from harness.studies import STUDIES_FILE

    context = click.get_current_context()
    chosen = [parameter.opts[0] for parameter in context.command.params  # the options the user gave
              if parameter.name not in ("output_format", "committed")
              and context.get_parameter_source(parameter.name) is not click.core.ParameterSource.DEFAULT]
    if not chosen and Path(STUDIES_FILE).is_file():
        click.echo(api.studies_table(STUDIES_FILE, output_format, committed=committed,
                                     notify=lambda line: click.echo(line, err=True)))
        return
    if committed:
        fail(f"--committed reads the studies of {STUDIES_FILE}" + (f"; it does not go with {', '.join(chosen)}" if chosen
             else ", and there is none here; run it in the repository's folder"))
    store_path = store_path or api.default_store(profile)
    the_plan = plan_of(matrix_path, profile, only=only, sets=sets, plugins=plugins)
    if check_path:
        problems = api.check(store_path, check_path, the_plan)
        for problem in problems:
            click.echo(f"differs: {problem}", err=True)
        if problems:
            sys.exit(1)
        click.echo(f"{check_path}: same configurations and parameter counts as {store_path}")
        return
    click.echo(api.table(store_path, the_plan, output_format, sort=sort, figures=figures, metric=metric, only=only,
                         interval=interval, equivalence=equivalence))


@main.command()
@click.option("--store", "store_path", default=None, type=click.Path(dir_okay=False, exists=True),
              help="The store to export (with --out); without both, every study of studies.toml whose store is here.")
@click.option("--out", "out_path", default=None, type=click.Path(dir_okay=False), metavar="FILE.json.gz",
              help="The archive to write.")
@MATRIX_FILTER
@READ_PLUGIN
@one_line_errors
def export(store_path, out_path, matrix_path, plugins):
    """Write a store's runs, learning curves and sources as a compressed JSON archive, which
    `table`, `plot`, `show` and `compare` read as a store: results to commit or share.

    With no option: each study of studies.toml whose store is here, to its committed runs.

    \b
    Example: harness export
             harness export --store results/mine.sqlite --out mine.json.gz
    """
    from harness import api
    from harness.studies import STUDIES_FILE

    if (store_path is None) != (out_path is None):
        fail("give --store and --out together (one store to one archive), or neither (the studies of studies.toml)")
    if store_path is None:
        if matrix_path or plugins:
            fail("--matrix and --plugin go with --store and --out; a study's matrices are declared in studies.toml")
        for store, archive, count, versions in api.export_studies(STUDIES_FILE):
            click.echo(f"{archive}: {count} runs from {store} (code {', '.join(versions) or 'unknown'})")
        return
    count = api.export(store_path, out_path, plan_of(matrix_path, plugins=plugins))
    click.echo(f"{out_path}: {count} runs from {store_path}")


@main.command()
@click.argument("which")
@STORE
@PROFILE
@output_format("text")
@click.option("--code", is_flag=True, help="Also print the plugin sources and the diff the runs were made with.")
@one_line_errors
def show(which, store_path, profile, output_format, code):
    """A configuration's resolved settings, its runs and their provenance: WHICH is a
    configuration id (or its first characters, as tables show them) or a name.

    Example: harness show 4e14e81c2a --code
    """
    from harness import api

    click.echo(api.show(store_path or api.default_store(profile), which, code=code, output_format=output_format))


@main.command()
@click.argument("before", type=click.Path(dir_okay=False, exists=True))
@click.argument("after", type=click.Path(dir_okay=False, exists=True))
@click.option("--threshold", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Percentage points a significant change must exceed to count as worse or better.")
@click.option("--fail-on", type=click.Choice(["worse", "any", "never"]), default="worse", show_default=True,
              help="Exit 1 when a configuration got significantly worse, changed at all, or never.")
@output_format("markdown")
@one_line_errors
def compare(before, after, threshold, fail_on, output_format):
    """Did a change make things worse? Compares two result sets (stores, or a baseline from
    `harness table --format json`) configuration by configuration, paired on the rounds.
    Runs of the same code version on the CPU under the same execution policy (threads,
    batched rounds, memory layout) must be equal: any difference is a determinism failure
    (exit 1). Then each factor's effect in both, side by side (two devices, say: do they
    answer alike?).

    Example: harness compare results/baseline.sqlite results/harness.sqlite --threshold 0.5
    """
    from harness import api

    comparison = api.compare(before, after, threshold=threshold, fail_on=fail_on, output_format=output_format)
    click.echo(comparison.text)
    if comparison.failed:
        sys.exit(1)


@main.command()
def settings():
    """Every setting a matrix file may give: the task it belongs to, default, values, whether it
    enters the configuration id, meaning (markdown; the README's table is this output).

    Example: harness settings
    """
    from harness import api

    click.echo(api.settings_table())


@main.command()
@STORE
@click.option("--html", "html_dir", required=True, type=click.Path(file_okay=False), help="Folder for the page (index.html).")
@MATRIX_FILTER
@PROFILE
@READ_PLUGIN
@one_line_errors
def report(store_path, html_dir, matrix_path, profile, plugins):
    """One self-contained HTML page: the answers, interactions, effects, reproductions,
    configurations, the figures as inline SVG (with matplotlib) and provenance; no server needed.

    Example: harness report --html results/report
    """
    import tempfile
    from pathlib import Path

    from harness import api, plots
    from harness.files import output_folder, write_text

    store_path = store_path or api.default_store(profile)
    the_plan = plan_of(matrix_path, profile, plugins=plugins)
    target = output_folder(html_dir, "--html") / "index.html"  # a folder in the way fails before any work
    with tempfile.TemporaryDirectory() as figures:
        try:
            plots.draw(api.runs(store_path, the_plan), Path(figures), api.epochs(store_path))  # curves too
        except ImportError:
            click.echo("matplotlib is not installed: the page has no figures (pip install -e '.[plot]')", err=True)
        page = api.table(store_path, the_plan, "html", figures=figures)
    write_text(target, page)
    click.echo(f"{target} ({len(page.encode()) / 1024:.0f} KiB)")


@main.command()
@STORE
@click.option("--out", "out_dir", default="results/plots", show_default=True, type=click.Path(file_okay=False))
@MATRIX_FILTER
@PROFILE
@READ_PLUGIN
@one_line_errors
def plot(store_path, out_dir, matrix_path, profile, plugins):
    """Draw box plots of test error, learning curves and a forest plot of effects (PNG and SVG).

    Example: harness plot --out docs
    """
    from pathlib import Path

    from harness import api, plots

    store_path = store_path or api.default_store(profile)
    runs = api.runs(store_path, plan_of(matrix_path, profile, plugins=plugins))
    try:
        written = plots.draw(runs, Path(out_dir), api.epochs(store_path))
    except ImportError:
        fail("plotting needs matplotlib: pip install -e '.[plot]'")
    if not written:
        fail(f"{store_path}: no finished runs to plot; run `harness run` first")
    for path in written:
        click.echo(str(path))
