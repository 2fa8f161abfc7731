"""Progress of a matrix run: a rich bar on a terminal, plain lines otherwise (CI logs)."""

from __future__ import annotations

import sys
import time

import click

from harness.report.cells import duration
from harness.results import Status

PACE_RUNS = 5  # results after the first before the plain display guesses the time left
PACE_SECONDS = 20.0

_LIVE: list[Progress] = []  # the bar on the terminal now, which an error line must close first


def stop_live() -> None:
    """Close the bar on the terminal, if one is drawn, so that what is printed next (an error
    line) stands on a line of its own and is not drawn over."""
    for progress in list(_LIVE):
        progress.stop()


class Progress:
    def __init__(self, force_plain: bool = False, console=None):
        self.plain = force_plain or not (console.is_terminal if console is not None else sys.stdout.isatty())
        self.console = console  # rich's Console to draw on (default: standard output)
        self.bar = None
        self.count = 0
        self.total = 0
        self.started = False  # whether training started: the store is open and holds what finishes
        self.first = None  # when the first result came, and how many had come then

    def start(self, already_done: int, to_run: int) -> None:
        """A stage of training begins (an adaptive study has two): its counts, and a bar."""
        self.stop()  # the previous stage's bar, if any
        self.count, self.first = 0, None
        self.started = True
        click.echo(f"{already_done} done, {to_run} to run")
        self.total = to_run
        if to_run and not self.plain:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress
            from rich.table import Column

            self.bar = RichProgress(
                TextColumn("[bold]runs"),
                BarColumn(bar_width=16),
                # the counter and the time left never wrap or shrink; the last run's line takes
                # what width is left, cut with an ellipsis (80 columns keep all the numbers)
                MofNCompleteColumn(table_column=Column(no_wrap=True, min_width=len(f"{to_run}/{to_run}"))),
                TimeRemainingColumn(table_column=Column(no_wrap=True, min_width=7)),
                TextColumn("{task.description}", table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis")),
                console=self.console,
                expand=True,
                # its redraw thread shares the cores with the workers: at rich's default 10 Hz
                # it took 2 % of a core, at 2 Hz 0.4 % (runs last seconds: 2 Hz is smooth)
                refresh_per_second=2,
            )
            self.task = self.bar.add_task("", total=to_run)
            self.bar.start()
            _LIVE.append(self)

    def result(self, job, result) -> None:
        self.count += 1
        if result.status == Status.DONE and result.metrics.get("validation_error") is not None:
            # a run that holds validation pairs out is there to choose on them: its test error
            # is not put in front of whoever is choosing
            outcome = f"validation error {100 * result.metrics['validation_error']:.1f}%"
        elif result.status == Status.DONE:
            outcome = f"test error {100 * result.metrics['test_error']:.1f}%"
        else:
            outcome = f"FAILED: {result.reason}"
        text = f"{job.config.name} round {job.round}: {outcome} ({result.seconds:.1f} s)"
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=text)
        else:
            click.echo(f"[{self.count}/{self.total}{self.time_left()}] {text}")

    def time_left(self) -> str:
        """", ~N min left" from the pace of the results since the first, once it says something:
        at least PACE_RUNS results and PACE_SECONDS after the first (the first results carry the
        workers' start and come together, which made the first guesses hours off); else ""."""
        now = time.perf_counter()
        if self.first is None:
            self.first = (now, self.count)
            return ""
        since, counted = now - self.first[0], self.count - self.first[1]
        if counted < PACE_RUNS or since < PACE_SECONDS:
            return ""
        return f", ~{duration(since / counted * (self.total - self.count))} left"

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        if self in _LIVE:
            _LIVE.remove(self)
