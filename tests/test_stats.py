"""Statistics on stored runs (harness.stats): summaries, paired effects with their intervals,
the t distribution and Benjamini-Hochberg, interactions, names told apart."""

import math

import pytest
from fixtures import fill, run_config

from harness.stats import benjamini_hochberg, effects, summarize, t_quantile, t_two_sided_p
from harness.store import Store


def test_summary_mean_std_and_flags(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        fill(store, run_config(rounds=4), [0.10, 0.20, 0.30], failed_rounds=(2,))
        summary = summarize(store.runs())
    row = summary.iloc[0]
    assert row["rounds_done"] == 2 and row["rounds_failed"] == 1 and row["rounds"] == 4
    assert row["test_error_mean"] == pytest.approx(15.0)
    assert row["test_error_std"] == pytest.approx(100 * math.sqrt(0.005))


def test_paired_effect_has_the_known_answer(constructed):
    frame = effects(constructed.runs()).set_index("factor")
    aux = frame.loc["aux_loss"]
    assert aux["effect"] == pytest.approx(-4.0)
    assert aux["pairs"] == 12 and aux["rounds"] == 3 and aux["configurations"] == 4
    half = t_quantile(0.975, 2) * 2.0 / math.sqrt(3)  # per-round effects -2, -4, -6: std 2
    assert (aux["ci_low"], aux["ci_high"]) == pytest.approx((-4 - half, -4 + half))
    assert aux["p"] == pytest.approx(t_two_sided_p(-4 / (2 / math.sqrt(3)), 2))
    assert frame.loc["batch_norm", "effect"] == pytest.approx(0.0)
    assert frame.loc["encoder", "change"] == "mlp -> cnn"
    assert frame.loc["encoder", "effect"] == pytest.approx(-10.0)


def test_t_distribution_and_bh_against_known_values():
    assert t_two_sided_p(2.262157, 9) == pytest.approx(0.05, abs=1e-6)
    assert t_quantile(0.975, 14) == pytest.approx(2.144787, abs=1e-5)
    assert t_two_sided_p(5.0, 14) == pytest.approx(1.9451530625726e-4, rel=1e-9)
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.5, 0.001]) == pytest.approx([0.025, 0.05, 0.05, 0.5, 0.005])


def test_transfer_effect_matches_despite_its_pretraining_setting(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        fill(store, run_config(aux_loss=True, rounds=2), [0.10, 0.12])
        fill(store, run_config(aux_loss=True, transfer="rule", pretrain_epochs=10, rounds=2), [0.04, 0.05])
        frame = effects(store.runs()).set_index("factor")
    assert frame.loc["transfer", "change"] == "none -> rule"
    assert frame.loc["transfer", "effect"] == pytest.approx(-6.5)


def test_configurations_sharing_a_name_across_plans_are_told_apart():
    import pandas as pd

    from harness.stats import summarize

    rows = []
    for config_id, lr in (("a" * 64, 1e-3), ("b" * 64, 1e-2)):
        for round_index in range(2):
            rows.append({"config_id": config_id, "round": round_index, "status": "done", "name": "mlp siamese ws aux",
                         "lr": lr, "encoder": "mlp", "train_error": 0.1, "test_error": 0.2, "test_digit_error": None,
                         "validation_error": None, "seconds": 1.0, "params": 10, "finished_at": "t"})
    summary = summarize(pd.DataFrame(rows))
    assert sorted(summary["name"]) == ["mlp siamese ws aux (lr=0.001)", "mlp siamese ws aux (lr=0.01)"]


def _interaction_runs():
    """aux_loss lowers test error by 2 pp without swap and by 6 pp with it (rounds differ by noise)."""
    import pandas as pd

    rows = []
    for round_index, noise in enumerate((0.0, 0.4, -0.4, 0.2)):
        for aux in (False, True):
            for swap in (False, True):
                error = 20 + noise - (aux * (6 if swap else 2)) - swap * 1 + (round_index % 2) * 0.1 * aux * swap
                rows.append({"config_id": f"{aux}{swap}", "round": round_index, "status": "done", "aux_loss": aux,
                             "swap_augment": swap, "encoder": "cnn", "test_error": error / 100})
    return pd.DataFrame(rows)


def test_interactions_find_an_effect_that_depends_on_another_factor():
    from harness.stats import interactions

    frame = interactions(_interaction_runs()).set_index(["factor", "given"])
    with_swap = frame.loc[("aux_loss", "swap_augment = True")]
    assert with_swap["effect"] == pytest.approx(-6.0, abs=0.06)
    assert frame.loc[("aux_loss", "swap_augment = False"), "effect"] == pytest.approx(-2.0)
    assert with_swap["difference"] == pytest.approx(-4.0, abs=0.06) and with_swap["p_difference_adjusted"] < 0.05
    assert with_swap["diff_low"] < -3.9 and with_swap["diff_high"] > -4.1


def test_a_numeric_factor_is_measured_from_its_smallest_level_whatever_its_type():
    import numpy as np
    import pandas as pd

    from harness.stats import effects

    rows = [{"config_id": f"c{epochs}", "round": r, "status": "done", "pretrain_epochs": np.int64(epochs),
             "transfer": "rule", "test_error": 0.02 - (epochs == 120) * 0.005} for epochs in (60, 120) for r in range(3)]
    row = effects(pd.DataFrame(rows)).set_index("factor").loc["pretrain_epochs"]
    assert row["change"] == "60 -> 120" and row["effect"] == pytest.approx(-0.5)
