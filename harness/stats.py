"""Aggregation of stored runs: per-configuration summaries and paired factor effects.

Pure computation on DataFrames; formatting lives in harness.report.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from harness.results import METRICS, SUMMARIZED, Stage, Status
from harness.settings import FROM_BASELINE, IN_ORDER, told_apart
from harness.tasks import chance_errors, declared, effect_factors, factors, identity_keys

CHANCE_MARGIN = 0.02  # a final train error within 2 pp of the majority-class answer learned nothing


def degenerate(runs: pd.DataFrame) -> pd.Series:
    """Done runs that learned nothing, whatever the system: every test example got one answer
    (`test_predicted_share` 0 or 1), or the train error stayed at chance, i.e. within
    CHANCE_MARGIN of the error of always answering the training set's majority class (runs
    stored before that was recorded are measured against their task's `chance_error`)."""
    unknown = pd.Series(float("nan"), index=runs.index)
    share = pd.to_numeric(runs.get("test_predicted_share", unknown), errors="coerce")
    task_chance = runs["task"].map(chance_errors()) if "task" in runs else unknown
    chance = pd.to_numeric(runs.get("train_chance_error", unknown), errors="coerce").fillna(task_chance)
    train = pd.to_numeric(runs["train_error"], errors="coerce")
    single_class = share.isin([0.0, 1.0])
    at_chance = train >= chance - CHANCE_MARGIN
    return (runs["status"] == Status.DONE) & (single_class | at_chance)


STILL_FALLING_PP = 2.0  # a train error that fell this much over the last quarter of the epochs is still learning
FITTED_PCT = 2.0  # a train error that ends below this has fitted its training set, however it got there
HIGH_TRAIN_ERROR_PCT = 15.0  # a final train error above this (and not at chance) is far from fitted
LATE_SHARE = 0.25  # the share of the epochs at the end over which the fall is measured


def late_fall(epochs: pd.DataFrame) -> pd.DataFrame:
    """Per run (config_id, round): how much its train error fell (pp) over the last quarter of
    its epochs (LATE_SHARE), from the learning curve of its main stage (the pair stage, not a
    transfer variant's pretraining), and over how many epochs; runs whose curve has no train
    error at two epochs that far apart are left out."""
    columns = ["config_id", "round", "late_fall", "late_epochs"]
    if epochs is None or epochs.empty or "train_error" not in epochs:
        return pd.DataFrame(columns=columns)
    curve = epochs[epochs["train_error"].notna() & (epochs["stage"] == Stage.MAIN.value)]
    if curve.empty:
        return pd.DataFrame(columns=columns)
    curve = curve[["config_id", "round", "epoch", "train_error"]].astype({"epoch": "int64"})
    final = curve.sort_values("epoch").groupby(["config_id", "round"], sort=False).last().reset_index()
    final["target"] = final["epoch"] - (LATE_SHARE * final["epoch"]).round().clip(lower=1).astype("int64")
    # the last evaluated epoch at or before the target, run by run
    earlier = pd.merge_asof(final.sort_values("target"), curve.sort_values("epoch"), left_on="target",
                            right_on="epoch", by=["config_id", "round"], suffixes=("", "_start"),
                            direction="backward")
    earlier = earlier[earlier["epoch_start"].notna()]
    return pd.DataFrame({
        "config_id": earlier["config_id"], "round": earlier["round"],
        "late_fall": 100 * (earlier["train_error_start"] - earlier["train_error"]),
        "late_epochs": (earlier["epoch"] - earlier["epoch_start"]).astype("int64"),
    }).reset_index(drop=True)


def unsettled(summary: pd.DataFrame) -> pd.Series:
    """Per configuration of a summary: why its answer may not be final, or None. "still
    learning" when its train error, not yet below FITTED_PCT, fell by STILL_FALLING_PP or more
    over the last quarter of its epochs (means over rounds); "train error high" when it ends
    above HIGH_TRAIN_ERROR_PCT without learning nothing (degenerate rounds are flagged as such).
    More epochs may change either."""
    def reason(row) -> str | None:
        fall, train = row.get("late_fall"), row.get("train_error_mean")
        fitted = train is not None and not pd.isna(train) and train < FITTED_PCT
        if fall is not None and not pd.isna(fall) and fall >= STILL_FALLING_PP and not fitted:
            return (f"still learning (train error {train:.1f} %, −{fall:.1f} pp over its last "
                    f"{int(row['late_epochs'])} epochs)")
        if (train is not None and not pd.isna(train) and train > HIGH_TRAIN_ERROR_PCT
                and not row.get("rounds_degenerate")):
            return f"train error high ({train:.1f} % at the end)"
        return None

    return pd.Series([reason(row) for row in summary.to_dict("records")], index=summary.index, dtype=object)


def verdict(row: dict) -> str | None:
    """A reproduction's verdict against its published test error (None without one):
    "reproduced" when |ours - published| <= 2 x max(our std, the published std) and no round of
    ours is degenerate; otherwise "ours better" or "ours worse" by the gap in pp, and the
    degenerate rounds, if any."""
    published, ours = row.get("reference_test_error"), row.get("test_error_mean")
    if published is None or pd.isna(published) or pd.isna(ours):
        return None
    spreads = [v for v in (row.get("test_error_std"), row.get("reference_test_std")) if v is not None and not pd.isna(v)]
    gap = ours - published
    degenerate_rounds = int(row.get("rounds_degenerate") or 0)
    if abs(gap) <= 2 * max(spreads, default=0.0) and not degenerate_rounds:
        return "reproduced"
    text = f"ours {'worse' if gap > 0 else 'better'} by {abs(gap):.2f} pp"
    if degenerate_rounds:
        text += f", {degenerate_rounds} degenerate round{'s' if degenerate_rounds > 1 else ''}"
    return text


def summarize(runs: pd.DataFrame, epochs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per configuration: errors as mean and std over done rounds (in %), rounds done,
    asked, failed and degenerate, seconds per run, and the configuration's settings. With the
    learning curves (`epochs`): the train error's fall over the last quarter of the epochs
    (`late_fall`, pp, mean over rounds; `late_epochs`) and why the configuration may not be
    final (`unsettled`, harness.stats.unsettled; None when it looks converged)."""
    if runs.empty:
        return pd.DataFrame()
    done = runs[runs["status"] == Status.DONE].assign(degenerate=degenerate)
    missing = {metric: float("nan") for metric in SUMMARIZED if metric not in done}  # a frame made before it was
    grouped = done.assign(**missing).groupby("config_id")
    columns = {}
    for metric in (metric for metric in METRICS if metric.summarized):  # errors as percentages
        values = grouped[metric.name]
        columns.update({f"{metric.name}_mean": 100 * values.mean(), f"{metric.name}_std": 100 * values.std(ddof=1)})
        if metric.extremes:
            columns.update({f"{metric.name}_min": 100 * values.min(), f"{metric.name}_max": 100 * values.max()})
    summary = pd.DataFrame({**columns, "seconds_per_run": grouped["seconds"].mean(),
                            "rounds_done": grouped["round"].nunique(), "rounds_degenerate": grouped["degenerate"].sum()})
    latest = runs.sort_values("finished_at").groupby("config_id").last()
    known = declared()
    settings = latest[[c for c in latest.columns if c in known] + ["name", "params"]]
    failed = runs[runs["status"] == Status.FAILED].groupby("config_id").size().rename("rounds_failed")
    summary = settings.join(summary, how="left").join(failed, how="left")
    summary["rounds_done"] = summary["rounds_done"].fillna(0).astype(int)
    summary["rounds_failed"] = summary["rounds_failed"].fillna(0).astype(int)
    summary["rounds_degenerate"] = summary["rounds_degenerate"].fillna(0).astype(int)
    if "reference_test_error" in summary:
        summary["verdict"] = [verdict(row) for row in summary.to_dict("records")]
    if epochs is not None:
        done_keys = done.set_index(["config_id", "round"]).index
        falls = late_fall(epochs)
        falls = falls[falls.set_index(["config_id", "round"]).index.isin(done_keys)]
        per_config = falls.groupby("config_id").agg(late_fall=("late_fall", "mean"), late_epochs=("late_epochs", "median"))
        summary = summary.join(per_config, how="left")
        summary["unsettled"] = unsettled(summary)
    return distinct_names(summary.reset_index())


def distinct_names(summary: pd.DataFrame) -> pd.DataFrame:
    """Configurations (one row per id) whose names collide get the settings telling them apart
    appended, as a plan names them (`... (lr=0.01)`): a store holding runs of several plans
    never shows two configurations under one name."""
    repeated = summary["name"].duplicated(keep=False)
    if not repeated.any():
        return summary
    summary, keys = summary.copy(), identity_keys()
    for name, group in summary[repeated].groupby("name"):
        rows = [{key: (None if pd.isna(value) else value) for key, value in row.items()}
                for row in group[[k for k in keys if k in group]].to_dict("records")]
        labels = told_apart(name, rows, keys)
        # settings the store does not hold cannot tell them apart: the id does
        summary.loc[group.index, "name"] = [label if not label.endswith(" ()") else f"{name} ({config_id[:10]})"
                                            for label, config_id in zip(labels, group["config_id"])]
    return summary


def labels(runs: pd.DataFrame) -> pd.Series:
    """Each configuration's label by id, as tables show it: its name, with the settings that
    tell it apart from another configuration of the same name (distinct_names)."""
    if runs.empty:
        return pd.Series(dtype=object)
    configurations = runs.sort_values("finished_at").drop_duplicates("config_id", keep="last") if (
        "finished_at" in runs) else runs.drop_duplicates("config_id")
    return distinct_names(configurations.reset_index(drop=True)).set_index("config_id")["name"]


# --------------------------------------------------------------------------- the t distribution


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz, Numerical Recipes)."""
    tiny = 1e-300

    def guard(value: float) -> float:
        return value if abs(value) > tiny else tiny

    c, d = 1.0, 1.0 / guard(1.0 - (a + b) * x / (a + 1.0))
    h = d
    for m in range(1, 300):
        even = m * (b - m) * x / ((a - 1.0 + 2 * m) * (a + 2 * m))
        d = 1.0 / guard(1.0 + even * d)
        c = guard(1.0 + even / c)
        h *= d * c
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 1.0 + 2 * m))
        d = 1.0 / guard(1.0 + odd * d)
        c = guard(1.0 + odd / c)
        h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _incomplete_beta(a: float, b: float, x: float) -> float:
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1 - x) / b


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with `df` degrees of freedom."""
    return _incomplete_beta(df / 2, 0.5, df / (df + t * t))


def t_quantile(probability: float, df: int) -> float:
    """The `probability` quantile (> 0.5) of Student's t, by bisection on the CDF."""
    low, high = 0.0, 1e3
    for _ in range(200):
        middle = (low + high) / 2
        if 1 - t_two_sided_p(middle, df) / 2 < probability:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def t_upper_p(t: float, df: int) -> float:
    """P(T >= t) for Student's t with `df` degrees of freedom."""
    half = t_two_sided_p(t, df) / 2
    return half if t >= 0 else 1 - half


def _normal_upper(x: float) -> float:
    return 0.5 * math.erfc(x / math.sqrt(2))


def t_power(shift: float, rounds: int, alpha: float) -> float:
    """The power of the two-sided one-sample (paired) t test at level `alpha` over `rounds`
    rounds when the true mean is `shift` standard deviations of a round's value: the noncentral
    t's tails beyond the critical value, integrated over the chi distribution of the sample
    spread (exact up to the quadrature; statsmodels' TTestPower gives the same)."""
    df = rounds - 1
    critical = t_quantile(1 - alpha / 2, df)
    noncentrality = shift * math.sqrt(rounds)
    steps, top = 4000, 1 + 12 / math.sqrt(df)
    width = top / steps
    total = 0.0
    log_norm = (df / 2) * math.log(df / 2) - math.lgamma(df / 2) + math.log(2)
    for index in range(1, steps + 1):
        scale = index * width  # sqrt(V / df), V ~ chi-square(df)
        density = math.exp(log_norm + (df - 1) * math.log(scale) - df * scale * scale / 2)
        tails = _normal_upper(critical * scale - noncentrality) + _normal_upper(critical * scale + noncentrality)
        total += density * tails * (0.5 if index == steps else 1.0)
    return min(1.0, total * width)


def detectable_shift(rounds: int, alpha: float, power: float) -> float:
    """The smallest true mean, in standard deviations of a round's value, that the two-sided
    paired t test at `alpha` over `rounds` rounds detects with probability `power`."""
    low, high = 0.0, 1.0
    while t_power(high, rounds, alpha) < power:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if t_power(middle, rounds, alpha) < power else (low, middle)
    return high


def rounds_needed(spread: float, effect: float, alpha: float, power: float, most: int = 1000) -> int | None:
    """The fewest rounds (at least 2) at which the paired t test detects a true effect of
    `effect` (pp) given a round-to-round spread `spread` (pp), or None beyond `most`."""
    if spread <= 0:
        return 2
    shift = abs(effect) / spread
    low, high = 2, 2
    while t_power(shift, high, alpha) < power:
        if high >= most:
            return None
        low, high = high, min(most, high * 2)
    while low < high:  # power grows with the rounds: the first that reaches it
        middle = (low + high) // 2
        low, high = (middle + 1, high) if t_power(shift, middle, alpha) < power else (low, middle)
    return high


def tost_p(per_round: pd.Series, margin: float) -> float:
    """The two one-sided tests' p (TOST) that the mean of the per-round values lies within
    (-margin, +margin): the larger of the t tests of mean <= -margin and mean >= +margin (NaN
    under two rounds). Rounds that all differ alike give the exact sign test's 0.5^n."""
    rounds = len(per_round)
    if rounds < 2:
        return math.nan
    mean, std = float(per_round.mean()), float(per_round.std(ddof=1))
    if std <= SPREAD_TOLERANCE * max(1.0, abs(mean)):
        return 0.5**rounds if abs(mean) < margin else 1.0
    error = std / math.sqrt(rounds)
    return max(t_upper_p((mean + margin) / error, rounds - 1), t_upper_p((margin - mean) / error, rounds - 1))


def _signed_rank_counts(doubled_ranks: list[int]) -> list[int]:
    """How many of the 2^n sign choices give each sum of the positive (doubled) ranks."""
    counts = [1] + [0] * sum(doubled_ranks)
    for rank in doubled_ranks:
        for total in range(len(counts) - 1, rank - 1, -1):
            counts[total] += counts[total - rank]
    return counts


def signed_rank_summary(per_round: pd.Series) -> dict:
    """Wilcoxon's signed-rank answer for the per-round values, assuming no normality: the
    Hodges-Lehmann estimate (median of the Walsh averages), its exact 95 % interval (the Walsh
    averages' order statistics at the signed-rank distribution's 2.5 % quantile, as R's
    wilcox.test gives it) and the exact two-sided p (zeros dropped, ties at mid-ranks: the exact
    conditional distribution, as scipy's exact method gives it without ties)."""
    values = [float(v) for v in per_round]
    rounds = len(values)
    result = {"rounds": rounds, "effect": values[0] if rounds == 1 else math.nan, "ci_low": math.nan,
              "ci_high": math.nan, "p": math.nan}
    if rounds < 2:
        return result
    walsh = sorted((values[i] + values[j]) / 2 for i in range(rounds) for j in range(i, rounds))
    result["effect"] = float(pd.Series(walsh).median())
    null = _signed_rank_counts(list(range(2, 2 * rounds + 1, 2)))  # no ties: ranks 1..n, doubled
    cumulative, quantile = 0, 0
    for total, count in enumerate(null[::2]):  # sums of undoubled ranks
        cumulative += count
        if cumulative / 2**rounds >= 0.025:
            quantile = total
            break
    lower = max(quantile, 1)  # R: qsignrank(alpha / 2, n), at least 1
    result["ci_low"], result["ci_high"] = walsh[lower - 1], walsh[len(walsh) - lower]
    nonzero = [v for v in values if abs(v) > SPREAD_TOLERANCE * max(1.0, max(map(abs, values)))]
    if not nonzero:
        result["p"] = 1.0
        return result
    ranks = pd.Series([abs(v) for v in nonzero]).rank(method="average")
    doubled = [int(round(2 * r)) for r in ranks]
    counts = _signed_rank_counts(doubled)
    observed = sum(d for d, v in zip(doubled, nonzero) if v > 0)
    centre = sum(doubled) / 2
    extreme = sum(c for total, c in enumerate(counts) if abs(total - centre) >= abs(observed - centre) - 1e-9)
    result["p"] = min(1.0, extreme / 2 ** len(nonzero))
    return result


def power_frame(effect_frame: pd.DataFrame, rounds: int, *, mde: float | None = None, alpha: float = 0.05,
                power: float = 0.8) -> pd.DataFrame:
    """For each effect of a pilot (effects() rows with their round-to-round `spread`): the
    minimum detectable effect (pp) of the two-sided paired t test at `rounds` rounds with
    `power`, within the Benjamini-Hochberg family of every row: from `mde_first` (the threshold
    alpha / m the first-ranked p must pass, a conservative bound) to `mde_last` (alpha, met
    when every effect of the family is real); with `mde`, the rounds needed to detect it at
    the conservative threshold (`rounds_needed`; None beyond 1000)."""
    frame = effect_frame[effect_frame["spread"].notna()].copy()
    family = max(1, len(frame))
    first = detectable_shift(rounds, alpha / family, power)
    last = detectable_shift(rounds, alpha, power)
    frame["mde_first"] = frame["spread"] * first
    frame["mde_last"] = frame["spread"] * last
    if mde is not None:
        frame["rounds_needed"] = [rounds_needed(spread, mde, alpha / family, power) for spread in frame["spread"]]
    return frame


INTERVALS = ("t", "wilcoxon")  # how a per-round mean change gets its interval and p


def stein_needed(spread: float, pilot: int, halfwidth: float, alpha: float = 0.05) -> int:
    """Stein's second-stage size: the rounds (at least the pilot's) whose mean, with the pilot's
    spread and its t quantile, has a 95 % interval no wider than ±halfwidth."""
    if not spread > 0:
        return pilot
    return max(pilot, math.ceil((t_quantile(1 - alpha / 2, pilot - 1) * spread / halfwidth) ** 2))


def stein_summary(per_round: pd.Series, pilot: int, alpha: float = 0.05) -> dict:
    """Stein's two-stage interval: the mean over every round, its half-width and p from the
    spread of the first `pilot` rounds (the per-round values are indexed by round) and the t
    distribution with pilot - 1 degrees of freedom, which stays valid when the number of rounds
    was chosen from that spread."""
    rounds = len(per_round)
    first = per_round[per_round.index < pilot]
    result = {"rounds": rounds, "effect": float(per_round.mean()) if rounds else math.nan, "ci_low": math.nan,
              "ci_high": math.nan, "p": math.nan}
    if len(first) < 2:
        return result
    spread = float(first.std(ddof=1))
    if spread <= SPREAD_TOLERANCE * max(1.0, abs(result["effect"])):
        return t_summary(per_round)  # no spread to work with: the exact sign test, as t_summary gives
    error = spread / math.sqrt(rounds)
    half = t_quantile(1 - alpha / 2, pilot - 1) * error
    result.update(ci_low=result["effect"] - half, ci_high=result["effect"] + half,
                  p=t_two_sided_p(result["effect"] / error, pilot - 1))
    return result


def round_summary(per_round: pd.Series, interval="t") -> dict:
    """t_summary (the default) or signed_rank_summary, as `interval` names it; a callable
    `interval` is the summary itself (stein_summary with its pilot, say)."""
    if callable(interval):
        return interval(per_round)
    return signed_rank_summary(per_round) if interval == "wilcoxon" else t_summary(per_round)


def benjamini_hochberg(p_values: list[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), in the input order."""
    count = len(p_values)
    order = sorted(range(count), key=lambda i: p_values[i])
    adjusted = [0.0] * count
    running = 1.0
    for rank in range(count, 0, -1):
        index = order[rank - 1]
        running = min(running, p_values[index] * count / rank)
        adjusted[index] = running
    return adjusted


# --------------------------------------------------------------------------- effects


def _level_text(value) -> str:
    """25.0 reads 25: a column with missing values holds its integers as floats."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _levels(frame: pd.DataFrame, factor: str) -> tuple[object, list[object]] | None:
    values = list(pd.unique(frame[factor]))
    if len(values) < 2:
        return None
    meta = declared()[factor].meta
    if meta.effect == IN_ORDER:
        rank = {level: position for position, level in enumerate(meta.order)}
        ranked = sorted(values, key=lambda v: (rank.get(v, len(rank)), str(v)))
        return ranked[0], ranked[1:]
    baseline = meta.baseline if meta.effect == FROM_BASELINE else None
    if meta.effect != FROM_BASELINE or baseline not in values:  # the smallest level present
        values = [v for v in values if not pd.isna(v)]
        if len(values) < 2:
            return None
        # numpy's integers are numbers too: sorted as text, 120 would come before 60
        numeric = all(pd.api.types.is_number(v) for v in values)
        baseline = sorted(values, key=(lambda v: v) if numeric else str)[0]
    return baseline, [v for v in values if v != baseline]


def matched_differences(runs: pd.DataFrame, factor: str, level, baseline, metric: str = "test_error") -> pd.DataFrame:
    """Differences of `metric` (an error; percentage points) between runs at `level` and at `baseline` of
    `factor` that share every other identity setting and the round: columns match (the shared
    settings), round, difference. Settings that mean nothing at one of the levels
    (DEPENDENT) are not matched on."""
    dependent = declared()[factor].meta.dependent
    others = [key for key in identity_keys() if key != factor and key not in dependent and key in runs]
    done = runs[runs["status"] == Status.DONE]
    on = done[done[factor] == level]
    off = done[done[factor] == baseline]
    if on.empty or off.empty:
        return pd.DataFrame(columns=["match", "round", "difference", "config_id_on", "config_id_off"])
    key = [*others, "round"]

    def as_key(frame: pd.DataFrame) -> pd.Series:
        """The matched settings and round as one text per run (column by column: row-wise joins were the slow part)."""
        text = frame[key[0]].map(repr)
        for column in key[1:]:
            text = text + "|" + frame[column].map(repr)
        return text

    merged = pd.merge(
        on.assign(match=as_key(on))[["match", "round", metric, "config_id"]],
        off.assign(match=as_key(off))[["match", metric, "config_id"]],
        on="match",
        suffixes=("_on", "_off"),
    )
    merged["difference"] = 100 * (merged[f"{metric}_on"] - merged[f"{metric}_off"])
    merged = merged[merged["difference"].notna()]  # runs without that metric (no validation pairs) pair with nothing
    return merged[["match", "round", "difference", "config_id_on", "config_id_off"]]


SPREAD_TOLERANCE = 1e-9  # relative: a spread this small is rounding, not variation between rounds


def t_summary(per_round: pd.Series) -> dict:
    """Mean of per-round values with its 95 % t interval and two-sided p against 0 (NaN for
    fewer than two rounds): the rounds are independent data draws, the unit of replication.
    Rounds that all differ by the same amount give the t test no spread to work with: p is then
    the exact sign test's (all n on one side: 2 x 0.5^n), so two rounds alike are no evidence."""
    rounds = len(per_round)
    mean = float(per_round.mean()) if rounds else math.nan
    result = {"rounds": rounds, "effect": mean, "ci_low": math.nan, "ci_high": math.nan, "p": math.nan}
    if rounds >= 2:
        std = float(per_round.std(ddof=1))
        if std <= SPREAD_TOLERANCE * max(1.0, abs(mean)):  # equal up to float rounding (x/n - y/n)
            std = 0.0
        half = t_quantile(0.975, rounds - 1) * std / math.sqrt(rounds)
        result["ci_low"], result["ci_high"] = mean - half, mean + half
        result["p"] = t_two_sided_p(mean / (std / math.sqrt(rounds)), rounds - 1) if std > 0 else (
            min(1.0, 2 * 0.5**rounds) if mean else 1.0)
    return result


def paired_effect(runs: pd.DataFrame, factor: str, level, baseline, metric: str = "test_error",
                  flagged: frozenset = frozenset(), interval: str = "t", margin: float | None = None) -> dict | None:
    """Mean change in `metric` (percentage points; test error unless said) when `factor` goes from `baseline` to
    `level`, everything else and the round held equal. Differences are averaged over the matched
    configurations within each round; the rounds (independent data draws) give the interval.
    `behind`: the configurations the effect is measured on; `unsettled`: how many of them are
    in `flagged` (configurations whose answer may not be final, harness.stats.unsettled).
    `interval`: t (mean, t interval) or wilcoxon (Hodges-Lehmann, exact signed-rank interval);
    `margin` (pp): also the TOST p that the effect lies within ±margin (`p_equivalence`)."""
    merged = matched_differences(runs, factor, level, baseline, metric)
    if merged.empty:
        return None
    behind = set(merged["config_id_on"]) | set(merged["config_id_off"])
    per_round = merged.groupby("round")["difference"].mean()
    return {
        "factor": factor,
        "change": f"{_level_text(baseline)} -> {_level_text(level)}",
        "pairs": len(merged),
        "configurations": merged["match"].str.rsplit("|", n=1).str[0].nunique(),
        **effect_summary(per_round, behind, flagged, interval, margin),
    }


def effect_summary(per_round: pd.Series, behind: set, flagged, interval="t", margin: float | None = None) -> dict:
    """What every effect row holds, however it was measured (matched pairs, a design's
    contrast): the configurations behind it and how many of them are `flagged`, its estimate,
    interval and p (round_summary), its round-to-round spread (pp) and, with a `margin`, its
    TOST p."""
    return {
        "behind": len(behind),
        "unsettled": len(behind & set(flagged)),
        **round_summary(per_round, interval),
        "spread": float(per_round.std(ddof=1)) if len(per_round) > 1 else math.nan,
        **({"p_equivalence": tost_p(per_round, margin)} if margin is not None else {}),
    }


def interactions(runs: pd.DataFrame, factors=None, metric: str = "test_error", interval: str = "t") -> pd.DataFrame:
    """For each pair of factors (A, B) that both vary: A's paired effect at each level of B, and
    whether it differs between B's baseline and another level: the per-round difference of the
    two conditional effects, t-tested over rounds and BH-adjusted across every comparison.
    A row per (A change, B level): factor, change, given, effect and interval at that level,
    and, for B's non-baseline levels, difference from the effect at B's baseline with its p.
    `factors`: the settings to look at (default: every effect_factors()); `interval`: t or
    wilcoxon (round_summary)."""
    done = runs[runs["status"] == Status.DONE] if not runs.empty else runs
    known = declared()
    varying = {f: _levels(done, f) for f in (factors or effect_factors()) if f in done and not done.empty}
    varying = {f: levels for f, levels in varying.items() if levels is not None}
    rows = []
    for factor, (baseline, levels) in varying.items():
        for condition, (condition_base, condition_levels) in varying.items():
            if condition == factor or condition in known[factor].meta.dependent or factor in known[condition].meta.dependent:
                continue
            for level in levels:
                rows += _conditional_rows(done, factor, level, baseline, condition, condition_base, condition_levels,
                                          metric, interval)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        tested = frame["p_difference"].notna()
        frame.loc[tested, "p_difference_adjusted"] = benjamini_hochberg(frame.loc[tested, "p_difference"].tolist())
    return frame


def _conditional_rows(done, factor, level, baseline, condition, condition_base, condition_levels,
                      metric: str = "test_error", interval: str = "t") -> list[dict]:
    per_level = {}
    for value in (condition_base, *condition_levels):
        merged = matched_differences(done[done[condition] == value], factor, level, baseline, metric)
        if not merged.empty:
            per_level[value] = merged.groupby("round")["difference"].mean()
    if condition_base not in per_level or len(per_level) < 2:
        return []
    rows = []
    for value, per_round in per_level.items():
        row = {"factor": factor, "change": f"{_level_text(baseline)} -> {_level_text(level)}",
               "given": f"{condition} = {_level_text(value)}", "condition": condition, **round_summary(per_round, interval),
               "difference": math.nan, "diff_low": math.nan, "diff_high": math.nan, "p_difference": math.nan}
        if value != condition_base:
            paired = (per_round - per_level[condition_base]).dropna()  # the same rounds at both levels
            test = round_summary(paired, interval)
            row.update(difference=test["effect"], diff_low=test["ci_low"], diff_high=test["ci_high"],
                       p_difference=test["p"])
        rows.append(row)
    return rows


def effects(runs: pd.DataFrame, factors=None, metric: str = "test_error", flagged=frozenset(), interval: str = "t",
            margin: float | None = None) -> pd.DataFrame:
    """Every factor level's paired effect on `metric` (test error unless said), with
    BH-adjusted p-values. `factors`: the settings to look at (default: every effect_factors());
    `flagged`: configuration ids whose answer may not be final, counted per effect."""
    rows = []
    done = runs[runs["status"] == Status.DONE] if not runs.empty else runs
    for factor in factors or effect_factors():
        if factor not in done or done.empty:
            continue
        levels = _levels(done, factor)
        if levels is None:
            continue
        baseline, others = levels
        for level in others:
            row = paired_effect(done, factor, level, baseline, metric, frozenset(flagged), interval, margin)
            if row is not None:
                rows.append(row)
    return adjusted(pd.DataFrame(rows))


def adjusted(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with Benjamini-Hochberg adjusted p-values across its rows: `p_adjusted` from
    `p`, and `p_equivalence_adjusted` from `p_equivalence` where the rows have one."""
    for column in ("p", "p_equivalence"):
        if frame.empty or column not in frame:
            continue
        target = "p_adjusted" if column == "p" else f"{column}_adjusted"
        tested = frame[column].notna()
        frame[target] = float("nan")
        frame.loc[tested, target] = benjamini_hochberg(frame.loc[tested, column].tolist())
    return frame


def context_settings(runs: pd.DataFrame) -> list[str]:
    """The settings, other than the ablation factors, that vary among the done runs and that
    no ablation factor explains (a setting meaningful at one level of a factor only, constant
    within each level, is explained by it): runs of a matrix made again with other epochs, say.
    An ablation factor's answer is never pooled across their levels (split_effects)."""
    done = runs[runs["status"] == Status.DONE] if not runs.empty else runs
    if done.empty:
        return []
    known, answers = declared(), factors()
    text = lambda column: done[column].map(repr)  # noqa: E731  (tables and None compare as their repr)
    varying = [key for key in identity_keys() if key not in answers and key in done and text(key).nunique() > 1]

    def explained(key: str) -> bool:
        return any(key in known[factor].meta.dependent and factor in done
                   and all(group.nunique() <= 1 for _, group in text(key).groupby(text(factor)))
                   for factor in answers)

    return [key for key in varying if not explained(key)]


def _by_context(runs: pd.DataFrame, context: list[str]):
    """(label, runs) for each combination of the context settings' values among the done runs."""
    done = runs[runs["status"] == Status.DONE]
    keyed = done[context].apply(lambda column: column.map(repr))
    for _, group in done.groupby([keyed[key] for key in context], sort=True):
        first = group.iloc[0]
        yield ", ".join(f"{key} = {_level_text(first[key])}" for key in context), group


def _apart(runs: pd.DataFrame, context: list[str], measure) -> list[pd.DataFrame]:
    """`measure(runs)` at each combination of the context settings' values, each frame naming
    its combination (`context`); "" where one combination holds everything measured (nothing
    was pooled, nothing to name)."""
    measured = [part.assign(context=label) for label, group in _by_context(runs, context)
                if not (part := measure(group)).empty]
    if len(measured) == 1:
        measured[0]["context"] = ""
    return measured


def split_interactions(runs: pd.DataFrame, metric: str = "test_error", interval: str = "t") -> pd.DataFrame:
    """interactions(), with the ablation factors' interactions with one another measured apart
    at each combination of the context settings (context_settings), as split_effects does for
    their effects; an interaction with a context setting (aux loss given epochs = 20) is
    measured over every run. Column `context` ("" when there is one); BH across every row."""
    context = context_settings(runs)
    if not context:
        frame = interactions(runs, metric=metric, interval=interval)
        return frame.assign(context="") if not frame.empty else frame
    answers = set(factors())
    every = interactions(runs, metric=metric, interval=interval)
    parts = [every[~(every["factor"].isin(answers) & every["given"].str.split(" = ").str[0].isin(answers))]
             .assign(context="")] if not every.empty else []
    measured = _apart(runs, context, lambda group: interactions(group, list(answers & set(group.columns)), metric,
                                                                interval))
    frame = pd.concat([part for part in [*parts, *measured] if not part.empty], ignore_index=True) if (
        parts or measured) else pd.DataFrame()
    if frame.empty:
        return frame
    tested = frame["p_difference"].notna()
    frame["p_difference_adjusted"] = float("nan")
    frame.loc[tested, "p_difference_adjusted"] = benjamini_hochberg(frame.loc[tested, "p_difference"].tolist())
    return frame


def contrast_effects(runs: pd.DataFrame, design, metric: str = "test_error", flagged=frozenset(), interval: str = "t",
                     margin: float | None = None) -> pd.DataFrame:
    """The effects a fractional design estimates (harness.designs.Design.estimable): in each
    round, the least-squares fit of `metric` (pp) on the runs' coded factors (-1 baseline, +1
    other level), one column per chain of two-factor interactions and, for a fraction crossed
    with other factors, one indicator per combination of those (Design.coded), an effect being
    twice its coefficient (the mean at +1 minus the mean at -1, as a full factorial's main effect
    averages over every other factor); the rounds then give the interval and p (round_summary),
    paired as every effect is, and Benjamini-Hochberg adjusts across the rows. Each row names
    what it is aliased with (`aliases`; words of up to two factors)."""
    import numpy as np

    done = runs[runs["status"] == Status.DONE]
    if done.empty:
        return pd.DataFrame()
    columns = design.estimable()
    per_round: dict[str, dict[int, float]] = {word: {} for word in columns}
    used: set[int] = set()
    for round_index, rows in done.groupby("round"):
        target = 100 * rows[metric].to_numpy(dtype=float)
        names, matrix = design.coded(rows.to_dict("records"))
        if len(rows) < len(names) or np.linalg.matrix_rank(matrix) < len(names):
            continue  # a round missing runs (failed ones) cannot estimate every contrast apart
        coefficients = np.linalg.lstsq(matrix, target, rcond=None)[0]
        for word, coefficient in zip(columns, coefficients[1:]):
            per_round[word][round_index] = 2 * coefficient
        used.add(round_index)
    behind = set(done["config_id"])
    result = []
    for word in columns:
        values = pd.Series(per_round[word], dtype=float)
        if values.empty:
            continue
        main = "×" not in word
        low, high = design.levels[word] if main else ("-", "+")
        result.append({
            "factor": word, "change": f"{_level_text(low)} -> {_level_text(high)}" if main else "interaction",
            "pairs": int(done["round"].isin(used).sum()), "configurations": len(behind),
            **effect_summary(values, behind, flagged, interval, margin),
            "aliases": " = ".join(design.aliases_of(word)), "context": "", "measured": "contrast",
        })
    return adjusted(pd.DataFrame(result))


def split_effects(runs: pd.DataFrame, metric: str = "test_error", flagged=frozenset(), interval: str = "t",
                  margin: float | None = None) -> pd.DataFrame:
    """effects(), with each ablation factor's effect measured apart at each combination of the
    context settings (context_settings: other settings that vary, epochs say), never pooled
    across them; column `context` names the combination ("" when there is one). The other
    factors' effects (epochs itself, say) are measured over every run, as effects() does.
    Benjamini-Hochberg adjusts across every row."""
    context = context_settings(runs)
    answers = factors()
    if not context:
        frame = effects(runs, metric=metric, flagged=flagged, interval=interval, margin=margin)
        return frame.assign(context="") if not frame.empty else frame
    parts = [effects(runs, [f for f in effect_factors() if f not in answers], metric, flagged, interval, margin)
             .assign(context="")]
    measured = _apart(runs, context, lambda group: effects(group, answers, metric, flagged, interval, margin))
    frame = pd.concat([part for part in [*parts, *measured] if not part.empty], ignore_index=True)
    if frame.empty:
        return frame
    position = {factor: index for index, factor in enumerate(effect_factors())}
    frame = frame.sort_values("factor", key=lambda column: column.map(position), kind="stable").reset_index(drop=True)
    return adjusted(frame)


# --------------------------------------------------------------------------- comparing result sets

WORSE, BETTER, SAME, UNTESTED = "worse", "better", "no detectable change", "too few rounds to test"


def policy_counts(done: pd.DataFrame) -> dict[str, int]:
    """How many of these runs each execution policy trained (harness.device.policy_tag, named
    as `harness run` says it), most first."""
    from harness.device import execution_record, policy_name, policy_tag

    if done.empty:
        return {}
    execution = done["execution"] if "execution" in done else pd.Series(None, index=done.index, dtype=object)
    device = done["device"] if "device" in done else pd.Series("cpu", index=done.index)
    tags = [policy_tag(where, execution_record(text)) for where, text in zip(device, execution)]
    counts = pd.Series(tags, dtype=object).value_counts()
    return {policy_name(tag): int(count) for tag, count in counts.items()}


def execution_words(text) -> str:
    """A run's execution policy as `harness show` says it beside its device: precision,
    determinism, batching (and packing) and threads ("" where no record was kept)."""
    from harness.device import execution_record

    record = execution_record(text)
    if not record:
        return ""
    threads = record.get("threads", 1)
    return ", ".join([record["precision"], "deterministic" if record["deterministic"] else "nondeterministic",
                      ("packed" if record.get("pack") else "batched") if record.get("batched") else "sequential",
                      f"{threads} thread{'s' if threads != 1 else ''}"])


def _with_execution(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with their execution policy as one comparable text ("" where none is recorded):
    key order and spacing of the stored JSON do not matter, and a record from before the
    precision was recorded reads as the float32, deterministic run it was
    (harness.device.execution_record)."""
    from harness.device import execution_record

    def canonical(text) -> str:
        if not isinstance(text, str) or not text:
            return ""
        record = execution_record(text)
        return json.dumps(record, sort_keys=True) if record else text  # not JSON: compared as it is written

    recorded = runs["execution"] if "execution" in runs else pd.Series(None, index=runs.index, dtype=object)
    return runs.assign(execution=[canonical(text) for text in recorded])


def compare(before: pd.DataFrame, after: pd.DataFrame, threshold: float = 0.0) -> pd.DataFrame:
    """Configuration by configuration and round by round (the same id and round: the same data
    and initialisation), the change in test error from `before` to `after` in percentage
    points: mean, 95 % interval and p over the paired rounds, BH-adjusted across configurations.
    verdict: worse / better when the adjusted p < 0.05 and the change exceeds `threshold`;
    `deterministic`: both sides ran the same code version and torch under the same execution
    policy (`same_execution`: threads, batched rounds, memory layout, precision, determinism and,
    on CUDA, the GPU model; a run recorded without one, from an older store or baseline,
    matches only another without one) on the CPU, or on one GPU model with deterministic
    kernels, so they must be equal."""
    key = ["config_id", "round"]
    left = _with_execution(before[before["status"] == Status.DONE])
    right = _with_execution(after[after["status"] == Status.DONE])
    columns = [*key, "name", "test_error", "code_version", "torch_version", "device", "execution"]
    merged = pd.merge(left[[c for c in columns if c in left]], right[[c for c in columns if c in right]],
                      on=key, suffixes=("_a", "_b"))
    from harness.device import execution_record, policy_name, policy_tag

    def named(side: str) -> pd.Series:
        device = merged[f"device_{side}"] if f"device_{side}" in merged else pd.Series("cpu", index=merged.index)
        return pd.Series([policy_name(policy_tag(where, execution_record(text)))
                          for where, text in zip(device, merged[f"execution_{side}"])], index=merged.index, dtype=object)

    merged["policy_a"], merged["policy_b"] = named("a"), named("b")
    rows = []
    for config_id, group in merged.groupby("config_id", sort=False):
        differences = 100 * (group["test_error_b"] - group["test_error_a"])
        summary = t_summary(differences)
        same_code = all(f"{c}_a" in group and (group[f"{c}_a"] == group[f"{c}_b"]).all() for c in ("code_version", "torch_version"))
        same_execution = bool((group["execution_a"] == group["execution_b"]).all())
        # held to equality: both on the CPU, or both on one GPU model with deterministic kernels
        # (the record names the model and the determinism: same_execution covers both)
        on_cpu = "device_a" in group and bool((
            (group["device_a"] == group["device_b"])
            & ((group["device_a"] == "cpu") | group["execution_a"].map(
                lambda text: bool(text) and '"deterministic": true' in text and '"gpu"' in text))).all())
        execution_recorded = bool(((group["execution_a"] != "") & (group["execution_b"] != "")).all())
        rows.append({
            "config_id": config_id,
            "name": group["name_b"].iloc[0] if "name_b" in group else group["name_a"].iloc[0],
            "before_mean": 100 * group["test_error_a"].mean(),
            "after_mean": 100 * group["test_error_b"].mean(),
            "max_abs_difference": float(differences.abs().max()),
            "same_execution": same_execution,
            "execution_recorded": execution_recorded,
            "policy_before": " / ".join(dict.fromkeys(group["policy_a"])),
            "policy_after": " / ".join(dict.fromkeys(group["policy_b"])),
            "deterministic": same_code and on_cpu and same_execution,
            **summary,
        })
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    tested = frame["p"].notna()
    frame["p_adjusted"] = math.nan
    if tested.any():
        frame.loc[tested, "p_adjusted"] = benjamini_hochberg(frame.loc[tested, "p"].tolist())

    def verdict(row) -> str:
        if pd.isna(row["p_adjusted"]):
            return UNTESTED if row["max_abs_difference"] > 0 else SAME
        if row["p_adjusted"] < 0.05 and row["effect"] > threshold:
            return WORSE
        if row["p_adjusted"] < 0.05 and row["effect"] < -threshold:
            return BETTER
        return SAME

    frame["verdict"] = frame.apply(verdict, axis=1)
    frame["determinism_failure"] = frame["deterministic"] & (frame["max_abs_difference"] > 0)
    return frame


def compare_effects(before: pd.DataFrame, after: pd.DataFrame, metric: str = "test_error") -> pd.DataFrame:
    """Each factor's paired effect in both result sets, computed on the runs (configuration id
    and round) that both hold finished, so that the same comparisons enter both: do two sets
    (two devices, two execution policies, two code versions) answer the question alike?
    `agree`: the two 95 % intervals overlap (None without an interval). Empty when either side
    has no effect to compute (a baseline file holds errors, not settings)."""
    key = ["config_id", "round"]
    done = [frame[frame["status"] == Status.DONE] for frame in (before, after)]
    both = pd.merge(done[0][key], done[1][key], on=key)
    frames = [effects(frame.merge(both, on=key), metric=metric) for frame in done]
    if any(frame.empty for frame in frames):
        return pd.DataFrame()
    columns = ["factor", "change", "effect", "ci_low", "ci_high", "rounds"]
    merged = pd.merge(frames[0][columns], frames[1][columns], on=["factor", "change"], suffixes=("_before", "_after"))
    overlap = (merged["ci_low_before"] <= merged["ci_high_after"]) & (merged["ci_low_after"] <= merged["ci_high_before"])
    known = merged[["ci_low_before", "ci_low_after"]].notna().all(axis=1)
    merged["agree"] = [bool(o) if k else None for o, k in zip(overlap, known)]
    return merged


def design_effects(runs: pd.DataFrame, design=None, metric: str = "test_error", flagged=frozenset(),
                   interval: str = "t", margin: float | None = None) -> pd.DataFrame:
    """The effects a study's design estimates: a fractional design's contrasts
    (contrast_effects) and, for the factors it crosses in full, their matched pairs (effects);
    else the paired effects of the full factorial (split_effects). BH across every row."""
    if design is None:
        return split_effects(runs, metric, flagged, interval, margin)
    frame = contrast_effects(runs, design, metric, flagged, interval, margin)
    if not design.crossed:
        return frame
    # every row of the fraction runs at each combination of the crossed factors: theirs are matched pairs
    paired = effects(runs, [f for f in effect_factors() if f in design.crossed], metric, flagged, interval, margin)
    if paired.empty:
        return frame
    frame = pd.concat([frame, paired.assign(aliases="", context="")], ignore_index=True)
    position = {factor: index for index, factor in enumerate(effect_factors())}
    frame = frame.sort_values("factor", key=lambda column: column.map(lambda f: position.get(f, len(position))),
                              kind="stable").reset_index(drop=True)
    return adjusted(frame)
