"""`harness bench`: the student's loop against the harness's paths, with the work counted."""

import pytest
import torch
from click.testing import CliRunner

from harness.bench import (
    LaunchCounter,
    Launches,
    StepCost,
    Timing,
    count_launches,
    reference_config,
    run_flops,
)
from harness.cli import main
from harness.report.bench import bench_document
from harness.report.formats import write


def bench_report(timings, **options):
    """`harness bench`'s markdown."""
    return write(bench_document(timings, **options), "markdown")


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


@pytest.mark.slow
def test_bench_runs_every_path_from_the_command_line(fake_mnist, monkeypatch):
    monkeypatch.setitem(__import__("harness.bench").bench.REFERENCE, "pairs", 100)  # the fixture's MNIST is small
    result = CliRunner().invoke(main, ["bench", "--device", "cpu", "--rounds", "1", "--epochs", "1",
                                       "--paths", "plain,workers", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "| plain" in result.output and "| workers" in result.output and "GFLOP/s" in result.output


def test_the_report_separates_the_steady_rate_from_the_start_up():
    plain = Timing("plain", 4, 20.0, 0.1, 300.0, 10e9, run_seconds=(6.0, 5.0, 5.0, 4.0))
    # two processes, 2 runs each: 5 s a run once warm, the first of each 2 s slower; 18 s of wall time
    workers = Timing("workers", 4, 18.0, 0.1, 400.0, 15e9, run_seconds=(7.0, 7.0, 5.0, 5.0), side_by_side=2)
    assert plain.steady_seconds_per_run == 5.0 and workers.steady_seconds_per_run == 3.0
    assert workers.outside_runs == pytest.approx(6.0)
    text = bench_report([plain, workers], machine="m", command="c", projection=None)
    line = next(line for line in text.splitlines() if line.startswith("workers:"))
    assert "6.00 s with 2 side by side" in line and "1.67x once started" in line and "6.0 s of its 18.0 s" in line


def test_launches_count_kernels_not_views_or_allocations_and_reads_apart():
    x = torch.ones(3)
    with LaunchCounter() as counter:
        y = x.view(3, 1).t()  # views: no kernel
        torch.empty(4)  # an allocation: no kernel
        with torch.profiler.record_function("a marker"):  # the profiler's ops: no kernel
            z = (y + 1).sum()  # two kernels
        value = z.item()  # a read to the host
    assert (counter.kernels, counter.host_reads, value) == (2, 1, 6.0)


@pytest.mark.slow
def test_launches_per_run_of_each_path(fake_mnist):
    from harness.device import resolve
    from harness.mnist import load_mnist
    from harness.tasks.pairs.data import PairSource

    source, policy = PairSource(load_mnist(fake_mnist)), resolve("cpu")
    config = reference_config(pairs=100, epochs=3)
    paths = ("plain", "workers", "batched", "packed")
    counts = {path: count_launches(path, config, 4, source, policy, host=False) for path in paths}
    assert all(c.steps == 3 and c.kernels > 0 for c in counts.values())
    # an epoch's launches (the count is linear in the epochs): with four rounds as one
    # vectorised model each round's share is far smaller, and smaller again with a second
    # configuration packed in (the fixed part, the model's building and final scoring, is not
    # what bounds a 25-epoch run)
    longer = {path: count_launches(path, reference_config(pairs=100, epochs=4), 4, source, policy, host=False)
              for path in paths}
    epoch = {path: longer[path].kernels - counts[path].kernels for path in paths}
    assert epoch["packed"] < epoch["batched"] < epoch["workers"] / 2
    # the sequential run reads every step's loss (to stop a diverged run before its update)
    assert counts["workers"].host_reads >= counts["workers"].steps
    # the count is the fixed part plus the epochs: a run of 3 epochs, counted directly, agrees
    with LaunchCounter() as direct:
        from harness.tasks.pairs.sequential import train_run

        train_run(config, 0, source, policy)
    assert direct.kernels == pytest.approx(counts["workers"].kernels, rel=0.02)


def test_the_report_lists_launches_per_run_and_step_and_the_step_cost_split():
    launches = [Launches("workers", 27_500.0, 6_250.0, 250),
                Launches("batched", 5_000.0, 600.0, 250, StepCost(10, 8_000.0, 2_000.0, 600.0))]
    text = bench_report([], machine="m", command="c", projection=None, launches=launches)
    row = next(line for line in text.splitlines() if line.startswith("| batched"))
    # a group-step of 10 members launches 10 x 20 kernels: its fixed 2,000 µs is 10 µs a launch
    assert [c.strip() for c in row.strip("|").split("|")] == ["batched", "5,000", "20.0", "600", "8,000 (10 members)",
                                                               "2,000", "600", "10.0"]
    row = next(line for line in text.splitlines() if line.startswith("| workers"))
    assert [c.strip() for c in row.strip("|").split("|")][-4:] == ["–"] * 4
    one_round = Launches("batched", 5_000.0, 600.0, 250, StepCost(1, 3_000.0))  # no second member count: no split
    row = next(line for line in bench_report([], machine="m", command="c", projection=None, launches=[one_round])
               .splitlines() if line.startswith("| batched"))
    assert [c.strip() for c in row.strip("|").split("|")][-4:] == ["3,000 (1 members)", "–", "–", "–"]


@pytest.mark.parametrize(("path", "timed", "expected"), [
    # a straight line through the two member counts: 1 member 3,000 µs, 10 members 9,000 µs
    ("batched", {10: 9_000.0, 1: 3_000.0}, StepCost(10, 9_000.0, 3_000.0 - 6_000.0 / 9, 6_000.0 / 9)),
    # a pack's fewest is one round of each configuration: 2 members
    ("packed", {10: 16_000.0, 1: 4_000.0}, StepCost(20, 16_000.0, 4_000.0 - 2 * 12_000.0 / 18, 12_000.0 / 18)),
    # noise that makes more members look cheaper is no negative arithmetic: all of it is fixed
    ("batched", {10: 2_900.0, 1: 3_000.0}, StepCost(10, 2_900.0, 3_000.0, 0.0)),
])
def test_the_step_cost_splits_into_a_fixed_part_and_a_part_per_member(monkeypatch, path, timed, expected):
    import harness.bench as bench

    monkeypatch.setattr(bench, "group_step_microseconds", lambda path, config, rounds, source, policy: timed[rounds])
    cost = bench.step_cost(path, reference_config(), 10, None, None)
    assert cost.members == expected.members and cost.group_us == expected.group_us
    assert cost.fixed_us == pytest.approx(expected.fixed_us) and cost.member_us == pytest.approx(expected.member_us)
    assert bench.step_cost(path, reference_config(), 1, None, None).fixed_us is None


@pytest.mark.slow
def test_the_step_cost_is_timed_on_the_path_itself(fake_mnist):
    """Timed at one pair per member on the real driver: a positive, finite whole step, its
    parts non-negative, for a batched group and a pack."""
    from harness.bench import step_cost
    from harness.device import resolve
    from harness.mnist import load_mnist
    from harness.tasks.pairs.data import PairSource

    source, policy = PairSource(load_mnist(fake_mnist)), resolve("cpu")
    config = reference_config(encoder="mlp", pairing="joint", weight_sharing=False)
    for path, members in (("batched", 2), ("packed", 4)):
        cost = step_cost(path, config, 2, source, policy)
        assert cost.members == members and 0 < cost.group_us < 1e6
        assert cost.fixed_us >= 0 and cost.member_us >= 0


@pytest.mark.slow
def test_batched_groups_trained_side_by_side_count_as_such(fake_mnist):
    from harness.bench import harness_path
    from harness.device import policy_for

    policy = policy_for("cpu", workers=2)
    timing = harness_path(reference_config(pairs=100, epochs=1), 4, policy, batched=True, data_dir=fake_mnist)
    # two groups of two rounds, one per worker: each run's seconds are its group's shared out
    assert timing.side_by_side == 2 and len(timing.run_seconds) == 4
    assert 0 <= timing.outside_runs < timing.seconds


@pytest.mark.parametrize("members", [None, [0, 1, 2]], ids=["sequential", "batched"])
def test_one_configurations_loss_reads_the_outputs_whole(fake_mnist, members):
    """The pair loss of one configuration (a run, or its rounds as one vectorised model) takes
    the model's outputs as they are: a slice of them, even a whole one, would cost every step's
    backward a copy of the gradient (a kernel each on a GPU). Only a pack slices its groups."""
    from harness.device import CPU
    from harness.mnist import load_mnist
    from harness.results import Stage
    from harness.tasks.pairs import training
    from harness.tasks.pairs.batched import Members
    from harness.tasks.pairs.data import PairSource, prepare_data
    from harness.tasks.pairs.sequential import new_learner

    config, source = reference_config(pairs=100, epochs=1), PairSource(load_mnist(fake_mnist))
    if members is None:
        data = prepare_data(config, source.pairs(100, 0), torch.device("cpu"))
        learner = new_learner(config, 0, data, CPU)
    else:
        learner = Members([(config, round_index) for round_index in members], source, torch.device("cpu"))
    stage = next(stage for stage in training.stages(config) if stage.name is Stage.MAIN)
    loss = training.objective(config, stage, learner)(learner.batches(100)[0])
    nodes, kinds = [loss.grad_fn], set()
    while nodes:
        node = nodes.pop()
        kinds.add(type(node).__name__)
        nodes.extend(parent for parent, _ in node.next_functions if parent is not None)
    assert any(kind.startswith("Convolution") for kind in kinds), kinds  # the walk reached the model
    assert not {kind for kind in kinds if kind.startswith(("Slice", "Index"))}, kinds


@pytest.mark.slow
def test_the_gpu_script_parses_and_names_its_steps(tmp_path):
    """benchmarks/gpu.sh is what a GPU session runs (each step checked with DEVICE=cpu by hand;
    here only what needs no MNIST): valid bash, and an unknown step refused in one line, exit 2,
    nothing written."""
    import os
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    out = tmp_path / "out"
    result = subprocess.run(["bash", str(script), "everything"], capture_output=True, text=True,
                            env={**os.environ, "OUT": str(out), "DEVICE": "cpu"})
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "gpu.sh: unknown step 'everything': use hour, smoke, rerun, precision, inflight, bench or matrix"]
    assert not out.exists()
