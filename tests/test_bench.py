"""`harness bench`: the student's loop against the harness's paths, with the work counted."""

import pytest
from click.testing import CliRunner

from harness.bench import Timing, reference_config, run_flops
from harness.cli import main
from harness.report import bench_report


def test_the_reference_run_costs_what_the_flop_counter_says():
    train, scoring = run_flops(reference_config())
    # 25 epochs of 1000 pairs through the 72,964-parameter siamese CNN, forward and backward
    assert train / 1e9 == pytest.approx(112.8, rel=0.01)
    # the train and test sets through the model once: 25 of these are the learning curves
    assert 25 * scoring / 1e9 == pytest.approx(78.0, rel=0.01)
    assert run_flops(reference_config(epochs=5))[0] == pytest.approx(train / 5)


def test_the_report_sets_each_path_against_the_plain_loop_and_the_peak():
    timings = [Timing("plain", 4, 8.0, 0.1, 300.0, 10e9), Timing("workers", 4, 4.0, 0.1, 400.0, 15e9)]
    text = bench_report(timings, machine="m", command="harness bench", projection=None, peak_gflops=100.0)
    assert "peak: 100 GFLOP/s" in text
    row = next(line for line in text.splitlines() if line.startswith("| workers"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4] == "2.00x" and cells[6] == "15.0" and cells[7] == "15%"


def test_bench_runs_every_path_from_the_command_line(fake_mnist, monkeypatch):
    monkeypatch.setitem(__import__("harness.bench").bench.REFERENCE, "pairs", 100)  # the fixture's MNIST is small
    result = CliRunner().invoke(main, ["bench", "--device", "cpu", "--rounds", "1", "--epochs", "1",
                                       "--paths", "plain,workers", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "| plain" in result.output and "| workers" in result.output and "GFLOP/s" in result.output
