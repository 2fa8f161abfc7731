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
    from harness.data import DataError, class_counts, ensure_mnist, load_mnist, raw_dir, resolve_data_dir

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
