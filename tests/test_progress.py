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
