"""The `harness` command line: a thin layer over the library; torch is imported lazily."""

from __future__ import annotations

import sys

import click

from harness import __version__

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


def load_plan(matrix_path, profile, overrides=None, only=()):
    from harness.config import ConfigError, expand, load_matrix, parse_assignments

    try:
        selection = parse_assignments(only, "--only")
        return expand(load_matrix(matrix_path), profile, overrides, selection)
    except ConfigError as error:
        fail(str(error))


@main.command()
@MATRIX_OPTION
@PROFILE_OPTION
@ONLY_OPTION
@click.option("--format", "output_format", type=click.Choice(["text", "csv"]), default="text", show_default=True)
@click.option("--workers", type=int, default=None, help="Worker processes for the time estimate (default: CPU cores).")
@click.option("--estimate/--no-estimate", default=True, show_default=True, help="Estimate the time it takes.")
@click.option("--store", "store_path", default="results/harness.sqlite", show_default=True, type=click.Path(dir_okay=False),
              help="Where finished runs are counted and timed, if it exists.")
def plan(matrix_path, profile, only, output_format, workers, estimate, store_path):
    """List the configurations a matrix expands to, what was dropped and why, and the cost.

    Runs already in the store are counted, and their mean time replaces the estimate.

    Example: harness plan --matrix ablations.toml --profile smoke
    """
    from pathlib import Path

    from harness.report import plan_table
    from harness.store import Store, StoreError

    the_plan = load_plan(matrix_path, profile, only=only)
    stored = None
    if Path(store_path).is_file():
        try:
            with Store(store_path, create=False) as store:
                stored = store.runs()
        except StoreError as error:
            fail(str(error))
    click.echo(plan_table(the_plan, output_format, workers=workers, estimate=estimate, stored=stored))


@main.command()
@MATRIX_OPTION
@PROFILE_OPTION
@ONLY_OPTION
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--rounds", type=int, default=None, help="Override every configuration's rounds.")
@click.option("--store", "store_path", default="results/harness.sqlite", show_default=True, type=click.Path(dir_okay=False))
@DATA_DIR_OPTION
@click.option("--workers", type=click.IntRange(min=1), default=None, help="CPU worker processes, one thread each (default: cores).")
@click.option("--fresh", is_flag=True, help="Move the existing store aside and start a new one.")
@click.option(
    "--batch-rounds/--no-batch-rounds", "batched", default=None,
    help="Train a configuration's rounds as one vectorised model (default: on CUDA only).",
)
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local worker processes, or tasks on a Ray cluster (pip install -e '.[ray]').")
@click.option("--address", default=None, help="Ray: 'auto' joins a running cluster; default starts a local one.")
@click.option("--cpus-per-job", type=float, default=1.0, show_default=True, help="Ray: CPUs each task reserves.")
@click.option("--gpus-per-job", type=float, default=0.0, show_default=True, help="Ray: GPU share each task reserves.")
def run(matrix_path, profile, only, device, rounds, store_path, data_dir, workers, fresh, batched,
        backend, address, cpus_per_job, gpus_per_job):
    """Train every job of a matrix that the store does not hold yet, and store each result.

    Example: harness run --matrix ablations.toml --device cuda
    """
    import time
    from pathlib import Path

    from harness.config import ConfigError
    from harness.data import DataError, load_mnist
    from harness.progress import Progress
    from harness.runner import resolve_device, run_plan
    from harness.store import Store, StoreError

    overrides = {} if rounds is None else {"rounds": rounds}
    the_plan = load_plan(matrix_path, profile, overrides, only)
    ray_options = None
    try:
        if backend == "ray":
            from harness.ray_backend import RayOptions, check

            ray_options = RayOptions(address, cpus_per_job, gpus_per_job)
            if device == "auto":  # the cluster's devices, not this machine's
                device = "cuda" if gpus_per_job > 0 else "cpu"
            device = device if device.startswith("cuda") else resolve_device(device)  # GPUs may be elsewhere
            check(ray_options, device)
        else:
            device = resolve_device(device)
    except ConfigError as error:
        fail(str(error))
    try:  # data before the store: bad input writes nothing
        splits = load_mnist(data_dir)
    except DataError as error:
        fail(str(error))
    path = Path(store_path)
    if fresh and path.exists():
        aside = path.with_name(f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}.bak")
        path.rename(aside)
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        click.echo(f"previous store moved to {aside}")
    try:
        store = Store(path)
    except StoreError as error:
        fail(str(error))
    progress = Progress()
    click.echo(f"{len(the_plan.configs)} configurations, {len(the_plan.jobs)} runs on {device} -> {path}")
    try:
        summary = run_plan(
            the_plan, store, device=device, workers=workers, data_dir=data_dir, splits=splits,
            on_start=progress.start, on_result=progress.result, batched=batched, ray_options=ray_options,
        )
    except DataError as error:
        fail(str(error))
    except KeyboardInterrupt:
        fail("interrupted: finished runs are stored; run the same command again to resume", 130)
    finally:
        progress.stop()
        store.close()
    done = summary.finished - len(summary.failed)
    click.echo(f"{done} runs finished, {len(summary.failed)} failed, in {summary.seconds:.0f} s; store {path}")
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
@DATA_DIR_OPTION
def bench(device, rounds, epochs, paths, workers, project_matrix, data_dir):
    """Runs per second of the reference configuration (siamese CNN with aux loss, 1000 pairs,
    25 epochs) through a plain per-run loop and the harness's paths, side by side.

    Example: harness bench --device cuda
    """
    from harness.bench import PATHS, describe_machine, measure, projected_seconds, reference_config
    from harness.config import ConfigError, load_matrix
    from harness.data import DataError
    from harness.report import bench_report
    from harness.runner import resolve_device

    chosen = [p.strip() for p in paths.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in PATHS]
    if unknown or not chosen:
        fail(f"--paths {paths}: unknown path {', '.join(unknown) or '(none)'}; choose from {', '.join(PATHS)}")
    try:
        if project_matrix:
            load_matrix(project_matrix)  # a bad path fails now, not after minutes of measuring
        device = resolve_device(device)
        timings = measure(chosen, rounds, device, workers, data_dir, epochs)
        fastest = max((t for t in timings if t.path != "plain"), key=lambda t: t.runs_per_second, default=None)
        projection = None
        if project_matrix and fastest and epochs is None:
            seconds, runs = projected_seconds(project_matrix, reference_config(), 1 / fastest.runs_per_second)
            projection = (project_matrix, seconds, runs)
    except (ConfigError, DataError) as error:
        fail(str(error))
    command = " ".join(["harness", *sys.argv[1:]])
    click.echo(bench_report(timings, machine=describe_machine(device), command=command, projection=projection))


STORE_READ_OPTION = click.option(
    "--store", "store_path", default="results/harness.sqlite", show_default=True, type=click.Path(dir_okay=False)
)


def read_runs(store_path):
    from harness.store import Store, StoreError

    try:
        with Store(store_path, create=False) as store:
            return store.runs(), store.epochs()
    except StoreError as error:
        fail(str(error))


@main.command()
@STORE_READ_OPTION
@click.option("--matrix", "matrix_path", type=click.Path(dir_okay=False), default=None,
              help="Only this matrix's configurations, in its order.")
@PROFILE_OPTION
@click.option("--format", "output_format", type=click.Choice(["markdown", "latex", "csv"]), default="markdown", show_default=True)
@click.option("--sort", type=click.Choice(["matrix", "test_error", "name", "params"]), default="matrix", show_default=True)
@click.option("--check", "check_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Compare configurations and parameter counts with a committed table; exit 1 on a difference.")
def table(store_path, matrix_path, profile, output_format, sort, check_path):
    """Print tables of parameters and error mean ± std per configuration, effects and provenance.

    Example: harness table > RESULTS.md
    """
    from pathlib import Path

    from harness.report import ReportError, check_against, results_report

    runs, _ = read_runs(store_path)
    the_plan = load_plan(matrix_path, profile) if matrix_path else None
    try:
        if check_path:
            problems = check_against(Path(check_path).read_text(), runs, plan=the_plan, source=check_path)
            for problem in problems:
                click.echo(f"differs: {problem}", err=True)
            if problems:
                sys.exit(1)
            click.echo(f"{check_path}: same configurations and parameter counts as {store_path}")
            return
        click.echo(results_report(runs, store_path=store_path, plan=the_plan, output_format=output_format, sort=sort))
    except ReportError as error:
        fail(str(error))


@main.command()
@STORE_READ_OPTION
@click.option("--out", "out_dir", default="docs", show_default=True, type=click.Path(file_okay=False))
@click.option("--matrix", "matrix_path", type=click.Path(dir_okay=False), default=None, help="Only this matrix's configurations.")
def plot(store_path, out_dir, matrix_path):
    """Draw box plots of test error, learning curves and a forest plot of effects (PNG and SVG).

    Example: harness plot --out docs
    """
    from pathlib import Path

    from harness.report import select

    try:
        from harness import plots
        from harness.stats import effects
    except ImportError:
        fail("plotting needs matplotlib: pip install -e '.[plot]'")
    runs, epochs = read_runs(store_path)
    runs = select(runs, load_plan(matrix_path, None) if matrix_path else None)
    if runs.empty or not (runs["status"] == "done").any():
        fail(f"{store_path}: no finished runs to plot; run `harness run` first")
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    done = runs[runs["status"] == "done"]
    written = plots.box_plot(done, directory) + plots.learning_curves(done, epochs, directory)
    written += plots.forest_plot(effects(done[done["report"].isna()] if "report" in done else done), directory)
    for path in written:
        click.echo(str(path))
