"""Adaptive rounds (`[design] rounds = "auto"`): a pilot, then the rounds Stein's two-stage rule
asks for a 95 % interval of a given half-width, at most max_rounds; intervals that stay valid
under that choice; what a bad [design] asks refused in one line."""

import math

import numpy as np
import pandas as pd
import pytest
from fixtures import TINY, invoke, one_line_exit_2
from scipy import stats as scipy_stats

from harness import api
from harness.stats import stein_needed, stein_summary


def test_stein_needs_the_rounds_whose_interval_reaches_the_half_width():
    spread, pilot, half = 1.2, 5, 0.5
    needed = stein_needed(spread, pilot, half)
    quantile = scipy_stats.t.ppf(0.975, pilot - 1)
    assert needed == math.ceil((quantile * spread / half) ** 2)
    assert quantile * spread / math.sqrt(needed) <= half < quantile * spread / math.sqrt(needed - 1)
    assert stein_needed(0.01, pilot, half) == pilot  # never fewer than the pilot


def test_steins_interval_uses_the_pilots_spread_and_its_degrees_of_freedom():
    values = pd.Series([1.0, 1.4, 0.6, 1.2, 0.8, 1.1, 0.9, 1.3], index=range(8))
    summary = stein_summary(values, pilot=5)
    spread = values[:5].std(ddof=1)
    half = scipy_stats.t.ppf(0.975, 4) * spread / math.sqrt(8)
    assert summary["effect"] == pytest.approx(values.mean())
    assert (summary["ci_low"], summary["ci_high"]) == pytest.approx((values.mean() - half, values.mean() + half))
    assert summary["p"] == pytest.approx(2 * scipy_stats.t.sf(values.mean() / (spread / math.sqrt(8)), 4))


def test_the_two_stage_interval_keeps_its_coverage_where_stopping_at_significance_does_not():
    """Simulated: rounds chosen from the pilot's spread; the interval covers the true effect
    95 % of the time (a rule that adds rounds until p < 0.05 would not)."""
    rng = np.random.default_rng(7)
    true, sigma, pilot, half = 0.3, 1.0, 5, 0.6
    covered = 0
    trials = 4000
    for _ in range(trials):
        first = rng.normal(true, sigma, pilot)
        needed = stein_needed(float(np.std(first, ddof=1)), pilot, half)
        values = np.concatenate([first, rng.normal(true, sigma, needed - pilot)])
        summary = stein_summary(pd.Series(values, index=range(len(values))), pilot)
        covered += summary["ci_low"] <= true <= summary["ci_high"]
    assert 0.94 <= covered / trials <= 0.96


@pytest.mark.parametrize("design, fragment", [
    ('rounds = "auto"', "needs halfwidth = PP"),
    ("rounds = 12", "\"auto\" is the one value here"),
    ("halfwidth = 0.5", "halfwidth goes with rounds = \"auto\""),
    ('rounds = "auto"\nhalfwidth = 0.5\npilot_rounds = 2', "pilot_rounds = 2: give a whole number from 3 to 1000"),
    ('rounds = "auto"\nhalfwidth = 0.5\nmax_rounds = 4', "max_rounds = 4: give a whole number from 5 to 1000"),
    ('rounds = "auto"\nhalfwidth = -1', "needs halfwidth = PP"),
])
def test_a_bad_adaptive_design_is_one_line(tmp_path, design, fragment):
    (tmp_path / "m.toml").write_text(TINY + "[design]\n" + design + "\n")
    one_line_exit_2(invoke("plan", "--matrix", tmp_path / "m.toml", "--no-estimate"), fragment)


@pytest.mark.slow
def test_run_adds_the_rounds_the_pilot_asks_for_and_the_table_says_what_it_reached(tmp_path, fake_mnist):
    (tmp_path / "m.toml").write_text(TINY + '[design]\nrounds = "auto"\nhalfwidth = 0.01\npilot_rounds = 3\n'
                                     "max_rounds = 5\n")
    plan = api.plan(tmp_path / "m.toml")
    assert {config.rounds for config in plan.configs} == {3}
    planned = invoke("plan", "--matrix", tmp_path / "m.toml", "--no-estimate", "--store", tmp_path / "s.sqlite")
    assert "rounds: adaptive (Stein's two-stage rule): a pilot of 3 rounds" in planned.stdout
    result = invoke("run", "--matrix", tmp_path / "m.toml", "--store", tmp_path / "s.sqlite", "--device", "cpu",
                    "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "pilot done: 5 rounds for a 95% interval of ±0.01 pp" in result.stdout and "at most 5" in result.stdout
    assert sorted(set(api.runs(tmp_path / "s.sqlite")["round"])) == [0, 1, 2, 3, 4]
    text = api.table(tmp_path / "s.sqlite", api.plan(tmp_path / "m.toml"))
    assert "rounds chosen by Stein's two-stage rule from a 3-round pilot" in text
    aux = next(line for line in text.splitlines() if line.startswith("- **auxiliary"))
    assert "over 5 rounds" in aux and "5 rounds (max_rounds) did not reach ±0.01" in aux
    again = invoke("plan", "--matrix", tmp_path / "m.toml", "--no-estimate", "--store", tmp_path / "s.sqlite")
    assert f"rounds decided by the pilot in {tmp_path / 's.sqlite'}: 5" in again.stdout
