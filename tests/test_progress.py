"""The progress of a matrix run (harness.progress)."""

from fixtures import run_config

from harness.config import Job
from harness.progress import Progress
from harness.training import protocol


def test_progress_shows_the_validation_error_of_a_run_that_holds_pairs_out(capsys):
    config = run_config(**{"validation": 200})
    result = protocol.new_result(config, 0, "cpu")
    result.status, result.seconds = "done", 1.0
    result.metrics = {"test_error": 0.0123, "validation_error": 0.045}
    progress = Progress(force_plain=True)
    progress.start(0, 2)
    progress.result(Job(config, 0), result)
    result.metrics = {"test_error": 0.0123, "validation_error": None}
    progress.result(Job(config, 1), result)
    lines = capsys.readouterr().out.splitlines()
    assert "validation error 4.5%" in lines[1] and "test error" not in lines[1]
    assert "test error 1.2%" in lines[2]


def test_the_bar_keeps_its_counter_and_time_left_at_80_columns_and_closes_before_an_error():
    import io

    from rich.console import Console

    config = run_config(label="a configuration whose name alone is wider than the terminal " * 2)
    result = protocol.new_result(config, 0, "cpu")
    result.status, result.seconds, result.metrics = "done", 0.3, {"test_error": 0.1}
    screen = io.StringIO()
    console = Console(file=screen, width=80, force_terminal=True, color_system=None)
    progress = Progress(console=console)
    progress.start(0, 1520)
    progress.result(Job(config, 0), result)
    progress.bar.refresh()
    drawn = [line for line in screen.getvalue().replace("\r", "\n").splitlines() if "runs" in line]
    assert drawn and all("1/1520" in line and "…" in line for line in drawn[-1:]), drawn
    from harness import progress as module

    assert module._LIVE == [progress]
    module.stop_live()
    assert module._LIVE == [] and progress.bar is None
    assert screen.getvalue().replace("\x1b[?25h", "").endswith("\n")  # an error line starts on its own


def test_the_plain_display_guesses_the_time_left_only_from_a_pace_it_has_seen(capsys, monkeypatch):
    """The first results carry the workers' start and come together: the time left is the pace
    since the first result, given once PACE_RUNS more results and PACE_SECONDS have passed."""
    from harness import progress as module

    config = run_config()
    result = protocol.new_result(config, 0, "cpu")
    result.status, result.seconds, result.metrics = "done", 1.0, {"test_error": 0.1}
    clock = iter([100.0, 101.0, 102.0, 103.0, 104.0, 105.0, 130.0])  # 6 s to start, then a result every ~s
    monkeypatch.setattr(module.time, "perf_counter", lambda: next(clock))
    progress = Progress(force_plain=True)
    progress.start(0, 100)
    for _ in range(7):
        progress.result(Job(config, 0), result)
    lines = capsys.readouterr().out.splitlines()[1:]
    assert all(" left]" not in line for line in lines[:6]), lines  # 5 results in 5 s: too short a pace
    assert lines[6].startswith("[7/100, ~8 min left]")  # 6 results in 30 s: 5 s a run, 93 to go
