"""Answers for a fraction of the runs, honestly: the power of the paired t test (`harness plan
--power`), equivalence within a margin (TOST, `harness table --equivalence`), intervals that do
not assume normal differences (`--interval wilcoxon`), and a mark on answers from few rounds.
The statistics are checked against scipy and statsmodels."""

import itertools

import numpy as np
import pandas as pd
import pytest
from fixtures import invoke, one_line_exit_2, run_config
from scipy import stats as scipy_stats
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import DescrStatsW

from harness import api
from harness.results import RunResult
from harness.stats import detectable_shift, rounds_needed, signed_rank_summary, t_power, tost_p
from harness.store import Store
from harness.training.protocol import seeds


@pytest.mark.parametrize("shift, rounds, alpha", [(0.5, 10, 0.05), (1.2, 4, 0.05), (0.8, 6, 0.005), (0.3, 30, 0.01)])
def test_the_power_of_the_paired_t_test_is_statsmodels(shift, rounds, alpha):
    assert t_power(shift, rounds, alpha) == pytest.approx(TTestPower().power(shift, rounds, alpha), abs=1e-6)
    # and the noncentral t's tails, as scipy writes them
    critical = scipy_stats.t.ppf(1 - alpha / 2, rounds - 1)
    noncentral = scipy_stats.nct(rounds - 1, shift * np.sqrt(rounds))
    assert t_power(shift, rounds, alpha) == pytest.approx(noncentral.sf(critical) + noncentral.cdf(-critical), abs=1e-6)


@pytest.mark.parametrize("rounds, alpha", [(3, 0.05), (10, 0.05), (10, 0.005), (20, 0.01)])
def test_the_detectable_effect_is_detected_with_the_power_asked(rounds, alpha):
    shift = detectable_shift(rounds, alpha, 0.8)
    assert TTestPower().power(shift, rounds, alpha) == pytest.approx(0.8, abs=1e-6)


@pytest.mark.parametrize("spread, effect, alpha", [(1.0, 0.5, 0.05), (0.4, 1.0, 0.005), (2.0, 1.0, 0.05)])
def test_the_rounds_needed_are_the_fewest_that_reach_the_power(spread, effect, alpha):
    needed = rounds_needed(spread, effect, alpha, 0.8)
    shift = effect / spread
    assert TTestPower().power(shift, needed, alpha) >= 0.8 > TTestPower().power(shift, needed - 1, alpha)


@pytest.mark.parametrize("seed, rounds, margin", [(0, 5, 1.0), (1, 10, 0.5), (2, 12, 0.2)])
def test_tost_is_statsmodels_ttost(seed, rounds, margin):
    values = np.random.default_rng(seed).normal(0.1, 0.4, rounds)
    expected = DescrStatsW(values).ttost_mean(-margin, margin)[0]
    assert tost_p(pd.Series(values), margin) == pytest.approx(expected, rel=1e-9)


def test_tost_on_rounds_that_all_differ_alike_is_the_sign_test():
    assert tost_p(pd.Series([0.1] * 6), 0.5) == 0.5**6
    assert tost_p(pd.Series([0.7] * 6), 0.5) == 1.0


@pytest.mark.parametrize("seed, rounds", [(0, 6), (1, 9), (2, 12), (3, 15)])
def test_the_signed_rank_p_is_scipys_exact_one(seed, rounds):
    values = np.random.default_rng(seed).normal(0.3, 1.0, rounds)
    assert signed_rank_summary(pd.Series(values))["p"] == pytest.approx(
        scipy_stats.wilcoxon(values, method="exact").pvalue, rel=1e-12)


def test_with_ties_the_signed_rank_p_is_the_exact_sign_flip_distribution_of_the_midranks():
    values = [0.5, 0.5, -0.2, 1.0, 0.5, 0.3, -0.3, 0.8]
    ranks = scipy_stats.rankdata(np.abs(values))
    observed = sum(r for r, v in zip(ranks, values) if v > 0)
    centre = ranks.sum() / 2
    flips = [sum(r for r, sign in zip(ranks, signs) if sign) for signs in itertools.product((0, 1), repeat=len(values))]
    expected = np.mean([abs(f - centre) >= abs(observed - centre) - 1e-9 for f in flips])
    assert signed_rank_summary(pd.Series(values))["p"] == pytest.approx(expected)


@pytest.mark.parametrize("seed, rounds", [(0, 8), (1, 10), (2, 14)])
def test_the_hodges_lehmann_interval_holds_the_shifts_the_exact_test_keeps(seed, rounds):
    """The interval inverts the test: a shift just inside is not rejected at 5 %, just outside is."""
    values = np.random.default_rng(seed).normal(0.5, 1.0, rounds)
    summary = signed_rank_summary(pd.Series(values))
    walsh = [(values[i] + values[j]) / 2 for i in range(rounds) for j in range(i, rounds)]
    assert summary["effect"] == pytest.approx(np.median(walsh))
    low, high = summary["ci_low"], summary["ci_high"]
    for inside in (low + 1e-7, high - 1e-7):
        assert scipy_stats.wilcoxon(values - inside, method="exact").pvalue > 0.05
    for outside in (low - 1e-7, high + 1e-7):
        assert scipy_stats.wilcoxon(values - outside, method="exact").pvalue < 0.05


# --------------------------------------------------------------------------- through the commands


def store_with_effects(path, rounds=10):
    """Three factors against one baseline: aux_loss lowers test error by 3 pp, batch_norm changes
    it by 0 give or take 0.1 pp (inside a 0.5 pp margin), dropout by 1 pp give or take 3 pp
    (undecided)."""
    noise = np.random.default_rng(0)
    with Store(path) as store:
        for settings, change, spread in (({}, 0.0, 0.0), ({"aux_loss": True}, -3.0, 0.0),
                                         ({"batch_norm": True}, 0.0, 0.1), ({"dropout": 0.25}, -1.0, 3.0)):
            config = run_config(rounds=rounds, **settings)
            for round_index in range(rounds):
                shift = change + spread * noise.standard_normal()
                error = 0.20 + 0.005 * round_index + shift / 100
                data_seed, model_seed = seeds(config, round_index)
                result = RunResult(config.config_id, round_index, data_seed, model_seed, "done",
                                   metrics={"train_error": 0.0, "test_error": error, "train_loss": 0.1},
                                   params=10, seconds=1.0)
                store.write(result, config, {})


def test_table_with_an_equivalence_margin_says_equivalent_undecided_or_how_it_changes(tmp_path):
    store_with_effects(tmp_path / "s.sqlite")
    text = api.table(tmp_path / "s.sqlite", equivalence=0.5)
    answers = {line.split("**")[1]: line for line in text.splitlines() if line.startswith("- **")}
    assert answers["auxiliary digit losses"].endswith("lowers test error (10 matched pairs over 10 rounds)")
    assert "equivalent within ±0.5 pp (TOST p (BH)" in answers["batch norm"]
    assert "undecided: neither a change nor equivalence within ±0.5 pp is shown" in answers["dropout"]
    effects = text.split("## Effects")[1]
    assert "| TOST p (BH)" in effects and "within ±0.5 pp" in effects
    plain = api.table(tmp_path / "s.sqlite")
    assert "no detectable effect" in plain and "equivalent" not in plain


def test_table_with_wilcoxon_intervals_gives_hodges_lehmann_estimates(tmp_path):
    store_with_effects(tmp_path / "s.sqlite")
    result = invoke("table", "--store", tmp_path / "s.sqlite", "--interval", "wilcoxon")
    assert result.exit_code == 0, result.output
    assert "Hodges–Lehmann estimate, exact Wilcoxon signed-rank 95% interval" in result.stdout
    aux = next(line for line in result.stdout.splitlines() if line.startswith("- **auxiliary"))
    assert aux.startswith("- **auxiliary digit losses** (False → True): -3.00 pp [-3.00, -3.00], p (BH) 0.0059")


def test_an_answer_on_fewer_than_five_rounds_is_marked(tmp_path):
    store_with_effects(tmp_path / "s.sqlite", rounds=3)
    text = api.table(tmp_path / "s.sqlite")
    aux = next(line for line in text.splitlines() if line.startswith("- **auxiliary"))
    assert aux.endswith("; ⚠ rests on 3 rounds (fewer than 5)")
    assert "rests on fewer than 5 rounds: an interval from so few leans on its assumptions" in text


def test_plan_power_gives_each_effects_detectable_size_and_the_rounds_it_needs(tmp_path):
    store_with_effects(tmp_path / "pilot.sqlite", rounds=4)
    (tmp_path / "m.toml").write_text("[defaults]\nrounds = 10\n[[matrix.include]]\n[[matrix.include]]\naux_loss = true\n"
                                     "[[matrix.include]]\nbatch_norm = true\n[[matrix.include]]\ndropout = 0.25\n")
    result = invoke("plan", "--matrix", tmp_path / "m.toml", "--store", tmp_path / "pilot.sqlite", "--power", "--mde", "1")
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.split()[:1] in
             (["aux_loss"], ["batch_norm"], ["dropout"])}
    assert set(lines) == {"aux_loss", "batch_norm", "dropout"}
    frame, _ = api.power(api.plan(tmp_path / "m.toml"), tmp_path / "pilot.sqlite", mde=1.0)
    dropout = frame.set_index("factor").loc["dropout"]
    # the rounds a 1 pp effect needs, at the conservative threshold of a family of 3
    assert TTestPower().power(1.0 / dropout["spread"], int(dropout["rounds_needed"]), 0.05 / 3) >= 0.8
    assert dropout["mde_first"] > dropout["mde_last"] > 0


def test_plan_power_without_a_usable_pilot_is_one_line(tmp_path):
    (tmp_path / "m.toml").write_text("[defaults]\nrounds = 10\n[matrix]\naux_loss = [false, true]\n")
    one_line_exit_2(invoke("plan", "--matrix", tmp_path / "m.toml", "--store", tmp_path / "none.sqlite", "--power"),
                    "no store here; it needs a pilot's runs")
    store_with_effects(tmp_path / "one.sqlite", rounds=1)
    one_line_exit_2(invoke("plan", "--matrix", tmp_path / "m.toml", "--store", tmp_path / "one.sqlite", "--power"),
                    "holds no effect measured over 2 or more rounds")
    one_line_exit_2(invoke("plan", "--matrix", tmp_path / "m.toml", "--mde", "1"), "--mde goes with --power")
