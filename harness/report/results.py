"""`harness table`'s output: the answers first (each ablation factor's effect in one line),
interactions, every effect, the reproductions beside the published figures, the
configurations, provenance; for machines, the configurations (CSV) or every table (JSON)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.config import Plan
from harness.report.cells import interval, mean_std, p_value, with_intervals
from harness.report.formats import (
    Document,
    Figure,
    Gallery,
    Heading,
    Items,
    Paragraph,
    Table,
    nested,
    records,
)
from harness.results import METRICS, Status, metric_words
from harness.stats import (
    FITTED_PCT,
    HIGH_TRAIN_ERROR_PCT,
    STILL_FALLING_PP,
    design_effects,
    policy_counts,
    split_interactions,
    stein_summary,
    summarize,
)
from harness.studies import Study
from harness.tasks import TASKS, declared, factors


class ReportError(Exception):
    """Nothing to report, or a check failed; the message says what and how to fix it."""


def select(runs: pd.DataFrame, plan: Plan | None) -> pd.DataFrame:
    """The stored runs of the plan's configurations (all runs without a plan), with the number
    of rounds each configuration asks for."""
    if plan is None:
        return runs
    asked = {c.config_id: c for c in plan.configs}
    chosen = runs[runs["config_id"].isin(asked)].copy()
    chosen["rounds"] = chosen["config_id"].map(lambda i: asked[i].rounds)
    # the matrix names its configurations: runs stored under an earlier label (the same
    # configuration in another matrix) are shown under this one's
    chosen["name"] = chosen["config_id"].map(lambda i: asked[i].name)
    chosen = chosen[chosen["round"] < chosen["rounds"]]
    return chosen


SORTS = ("matrix", "test_error", "validation_error", "name", "params")


def order(summary: pd.DataFrame, plan: Plan | None, sort: str) -> pd.DataFrame:
    if sort in ("test_error", "validation_error"):  # validation: how a search matrix chooses
        return summary.sort_values([f"{sort}_mean", "name"], na_position="last")
    if sort == "name":
        return summary.sort_values("name")
    if sort == "params":
        return summary.sort_values(["params", "name"])
    if plan is not None:
        position = {c.config_id: i for i, c in enumerate(plan.configs)}
        return summary.sort_values("config_id", key=lambda ids: ids.map(position))
    return summary.sort_values("name")


def _flag(row) -> str:
    notes = []
    if row["rounds_done"] < row["rounds"]:
        notes.append(f"{row['rounds_done']}/{row['rounds']} rounds")
    if row["rounds_failed"]:
        notes.append(f"{row['rounds_failed']} failed")
    if row.get("rounds_degenerate"):
        notes.append(f"{DEGENERATE} {row['rounds_degenerate']} degenerate")
    if isinstance(row.get("unsettled"), str):
        notes.append(f"{UNSETTLED} {row['unsettled']}")
    return "; ".join(notes)


DEGENERATE = "⚠"  # marks a configuration with rounds that learned nothing (stats.degenerate)
ID_SHOWN = 10  # characters of a configuration id a table shows: `harness show` takes them back
UNSETTLED = "⏳"  # marks a configuration far from converged (stats.unsettled): more epochs may change it


def configuration_rows(summary: pd.DataFrame, *, with_reference: bool) -> pd.DataFrame:
    """The configurations table as display strings (errors in %)."""
    table = pd.DataFrame(
        {
            "configuration": summary["name"],
            "params": summary["params"].map(lambda v: "–" if pd.isna(v) else f"{int(v):,}"),
            "train error %": [mean_std(m, s) for m, s in zip(summary["train_error_mean"], summary["train_error_std"])],
            "test error %": [mean_std(m, s) + (f" {DEGENERATE}" if bad else "") for m, s, bad in zip(
                summary["test_error_mean"], summary["test_error_std"], summary["rounds_degenerate"])],
            "range %": [
                "–" if pd.isna(low) else f"{low:.1f}–{high:.1f}"
                for low, high in zip(summary["test_error_min"], summary["test_error_max"])
            ],
            "rounds": summary["rounds_done"],
            "s/run": summary["seconds_per_run"].map(lambda v: "–" if pd.isna(v) else f"{v:.1f}"),
        }
    )
    if summary["test_digit_error_mean"].notna().any():  # where digit logits were trained
        table.insert(list(table.columns).index("test error %") + 1, "test digit error %", [
            mean_std(m, s) for m, s in zip(summary["test_digit_error_mean"], summary["test_digit_error_std"])
        ])
    if summary["validation_error_mean"].notna().any():  # choices are made on these columns, not on test
        table.insert(2, "validation error %", [
            mean_std(m, s) for m, s in zip(summary["validation_error_mean"], summary["validation_error_std"])
        ])
        if summary["validation_digit_error_mean"].notna().any():
            table.insert(3, "validation digit error %", [
                mean_std(m, s) for m, s in zip(summary["validation_digit_error_mean"],
                                                summary["validation_digit_error_std"])
            ])
    if with_reference:
        table["published test %"] = [
            "–" if pd.isna(m) else mean_std(m, s)
            for m, s in zip(summary["reference_test_error"], summary["reference_test_std"])
        ]
        table["published params"] = summary["reference_params"].map(lambda v: "–" if pd.isna(v) else f"{int(v):,}")
        table["verdict"] = summary["verdict"].map(lambda v: "–" if v is None or pd.isna(v) else v)
        if "evidence" in summary and summary["evidence"].notna().any():
            table["evidence"] = summary["evidence"].map(lambda v: "" if v is None or pd.isna(v) else v)
    flags = summary.apply(_flag, axis=1)
    if flags.any():
        table["note"] = flags
    # what `harness show` takes back, beside the name it also takes
    table["id"] = summary["config_id"].str[:ID_SHOWN]
    return table


def _unsettled_share(row) -> str:
    """"⏳ k of n configurations" behind an effect that are far from converged, or ""."""
    count = row.get("unsettled")
    if count is None or pd.isna(count) or not count:
        return ""
    return f"{UNSETTLED} {int(count)} of {int(row['behind'])}"


def effect_rows(frame: pd.DataFrame, metric: str = "test_error", margin: float | None = None) -> pd.DataFrame:
    if frame.empty:
        return frame
    rows = pd.DataFrame(
        {
            "factor": frame["factor"],
            "change": frame["change"],
            **({"at": frame["context"]} if "context" in frame and frame["context"].astype(bool).any() else {}),
            f"Δ {metric_words(metric)} (pp)": frame["effect"].map(lambda v: f"{v:+.2f}"),
            "95% CI": [interval(lo, hi) for lo, hi in zip(frame["ci_low"], frame["ci_high"])],
            "p": frame["p"].map(p_value),
            "p (BH)": frame.get("p_adjusted", pd.Series(dtype=float)).map(p_value),
            "matched pairs": frame["pairs"],
            "rounds": frame["rounds"],
        }
    )
    if "aliases" in frame and frame["aliases"].fillna("").astype(bool).any():
        rows["aliased with"] = frame["aliases"].fillna("")
    if margin is not None and "p_equivalence_adjusted" in frame:
        rows["TOST p (BH)"] = frame["p_equivalence_adjusted"].map(p_value)
        rows[f"within ±{margin:g} pp"] = [equivalence_verdict(row) for row in frame.to_dict("records")]
    if "unsettled" in frame and frame["unsettled"].fillna(0).any():
        rows["far from converged"] = [_unsettled_share(row) for row in frame.to_dict("records")]
    return rows


FEW_ROUNDS = 5  # an answer on fewer rounds is marked: its interval leans on its assumptions


def verdict_words(row, metric: str, margin: float | None) -> str:
    """What an effect row answers: lowers or raises the error (p (BH) < 0.05), or, with an
    equivalence margin, equivalent within it (TOST p (BH) < 0.05), both, or undecided; without
    one, "no detectable effect"."""
    significant = not pd.isna(row.get("p_adjusted")) and row["p_adjusted"] < 0.05
    direction = ("lowers " if row["effect"] < 0 else "raises ") + metric_words(metric)
    if margin is None:
        return direction if significant else "no detectable effect"
    equivalent = not pd.isna(row.get("p_equivalence_adjusted")) and row["p_equivalence_adjusted"] < 0.05
    if significant:
        return f"{direction}, by less than ±{margin:g} pp" if equivalent else direction
    if equivalent:
        return f"equivalent within ±{margin:g} pp (TOST p (BH) {p_value(row['p_equivalence_adjusted'])})"
    return f"undecided: neither a change nor equivalence within ±{margin:g} pp is shown"


def equivalence_verdict(row) -> str:
    """The TOST verdict in a word: equivalent, differs, differs (by less), or undecided."""
    significant = not pd.isna(row.get("p_adjusted")) and row["p_adjusted"] < 0.05
    equivalent = not pd.isna(row.get("p_equivalence_adjusted")) and row["p_equivalence_adjusted"] < 0.05
    return {(True, True): "differs, by less", (True, False): "differs", (False, True): "equivalent"}.get(
        (significant, equivalent), "undecided")


def answer_lines(effect_frame: pd.DataFrame, metric: str = "test_error", margin: float | None = None,
                 rule=None) -> list[str]:
    """One line per ablation factor's change: its paired effect with the 95 % interval and
    what it answers (verdict_words); marked when it rests on fewer than FEW_ROUNDS rounds or on
    configurations far from converged."""
    lines, known = [], declared()
    for factor in factors():
        for _, row in effect_frame[effect_frame["factor"] == factor].iterrows():
            verdict = verdict_words(row, metric, margin)
            aliased = f" (aliased with {row['aliases']})" if isinstance(row.get("aliases"), str) and row["aliases"] else ""
            few = (f"; {DEGENERATE} rests on {row['rounds']} round{'s' if row['rounds'] != 1 else ''} (fewer than "
                   f"{FEW_ROUNDS})"
                   if row["rounds"] < FEW_ROUNDS else "")
            share = _unsettled_share(row)
            half = (row["ci_high"] - row["ci_low"]) / 2
            if rule is not None and not pd.isna(half):
                few += (f"; ±{half:.2f} pp, the ±{rule.halfwidth:g} pp asked" if half <= rule.halfwidth + 1e-9 else
                        f"; ±{half:.2f} pp: {rule.max_rounds} rounds (max_rounds) did not reach ±{rule.halfwidth:g}")
            at = f" at {row['context']}" if row.get("context") else ""
            lines.append(
                f"**{known[factor].meta.titled(factor, row['change'])}** ({row['change'].replace('->', '→')}){at}{aliased}: "
                f"{row['effect']:+.2f} pp {interval(row['ci_low'], row['ci_high'])}, p (BH) {p_value(row.get('p_adjusted'))}: "
                f"{verdict} ({row['pairs']} {'runs fitted' if row.get('measured') == 'contrast' else 'matched pairs'} "
                f"over {row['rounds']} rounds){few}"
                + (f"; {share} configurations behind it far from converged" if share else "")
            )
    return lines


def _split_words(effect_frame: pd.DataFrame) -> str:
    """What the answers say when settings other than the factors vary among the runs."""
    if "context" not in effect_frame or not effect_frame["context"].astype(bool).any():
        return ""
    varying = context_settings_named(effect_frame)
    return (f" Other settings vary among these runs ({varying}): each answer is measured at each of their values "
            "apart, never pooled across them.")


def context_settings_named(effect_frame: pd.DataFrame) -> str:
    names = dict.fromkeys(part.split(" = ")[0] for text in effect_frame["context"] if text for part in text.split(", "))
    return ", ".join(names)


def interaction_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Conditional effects that differ from the effect at the other factor's baseline level."""
    if frame.empty:
        return frame
    compared = frame[frame["difference"].notna()]
    if "context" not in frame:
        frame = frame.assign(context="")
        compared = compared.assign(context="")
    at_base = frame[frame["difference"].isna()].set_index(["factor", "change", "condition", "context"])
    base = [at_base.loc[(r.factor, r.change, r.condition, r.context)] for r in compared.itertuples()]
    return pd.DataFrame({
        "factor": compared["factor"],
        "change": compared["change"],
        **({"at": compared["context"]} if "context" in compared and compared["context"].astype(bool).any() else {}),
        "given": compared["given"],
        "effect there (pp)": with_intervals(compared["effect"], compared["ci_low"], compared["ci_high"]),
        "effect at its baseline (pp)": [f"{b['effect']:+.2f} ({b['given'].split(' = ')[1]})" for b in base],
        "difference (pp)": with_intervals(compared["difference"], compared["diff_low"], compared["diff_high"]),
        "p (BH)": compared["p_difference_adjusted"].map(p_value),
        "differs": compared["p_difference_adjusted"].map(lambda v: "yes" if not pd.isna(v) and v < 0.05 else ""),
    })


def provenance_lines(runs: pd.DataFrame, store_path: str) -> list[str]:
    done = runs[runs["status"] == Status.DONE]

    def values(column):
        return ", ".join(sorted(str(v) for v in done[column].dropna().unique())) or "–"

    tasks = [TASKS.get(name) for name in done["task"].dropna().unique() if name in TASKS] if "task" in done else []
    sizes = "".join(f"; {setting}: {values(setting)}" for setting in
                    dict.fromkeys(spec.size_setting for spec in tasks if spec.size_setting) if setting in done)
    return [
        f"store: `{store_path}` ({len(runs)} runs, {len(done)} done)",
        f"commands: {values('command')}",
        f"matrices: {values('matrix')}",
        f"devices: {values('device')}; torch {values('torch_version')}; Python {values('python_version')}",
        f"code versions: {values('code_version')}",
        "execution policies: " + "; ".join(f"{name}: {count} runs" for name, count in policy_counts(done).items()),
        f"runs finished between {done['finished_at'].min()} and {done['finished_at'].max()}",
        f"epochs: {values('epochs')}; rounds per configuration: {values('rounds')}{sizes}",
    ]


def summary_columns(summary: pd.DataFrame) -> list[str]:
    """The CSV's columns: the configuration, its factors, and each summarized metric."""
    metrics = [f"{metric.name}_{part}" for metric in METRICS for part in
               (("mean", "std") if metric.summarized else ()) + (("min", "max") if metric.extremes else ())]
    columns = ["config_id", "name", *[k for k in factors() if k in summary], "params", *metrics, "rounds_done",
               "rounds", "rounds_failed", "rounds_degenerate", "seconds_per_run", "reference_test_error",
               "reference_test_std", "reference_params", "verdict", "evidence"]
    return [c for c in columns if c in summary]


RUN_COLUMNS = ["config_id", "round", "name", "status", *(metric.name for metric in METRICS), "params", "seconds",
               "device", "code_version", "torch_version", "execution"]


def results_document(runs: pd.DataFrame, *, store_path: str, plan: Plan | None = None, sort: str = "matrix",
                     figures: str | None = None, metric: str = "test_error",
                     epochs: pd.DataFrame | None = None, interval: str = "t",
                     equivalence: float | None = None) -> Document:
    """What `harness table` prints, answers first: each ablation factor's effect in one line
    (with the forest plot from `figures`, a folder, when given), interactions, every effect,
    the reproductions beside the published figures, the configurations (folded where a format
    folds), provenance. With the learning curves (`epochs`), configurations far from converged
    are marked, and so are the answers resting on them. `interval`: t (means, t intervals) or
    wilcoxon (Hodges-Lehmann estimates, exact signed-rank intervals and p); `equivalence` (pp):
    each effect also tested for equivalence within ±that margin (TOST), and the answers say
    "equivalent", "undecided" or how it changes. Its CSV is the configurations; its JSON every
    table and run."""
    runs = select(runs, plan)
    if runs.empty or not (runs["status"] == Status.DONE).any():
        raise ReportError(f"{store_path}: no finished runs" + (" of this matrix" if plan else "") + "; run `harness run` first")
    summary = order(summarize(runs, epochs), plan, sort)
    reproductions = summary[summary["report"].notna()] if "report" in summary else summary.iloc[0:0]
    ablations = summary.drop(reproductions.index)
    ablation_runs = runs[runs["config_id"].isin(ablations["config_id"])]
    flagged = set(ablations.loc[ablations["unsettled"].notna(), "config_id"]) if "unsettled" in ablations else set()
    marked = f"; {UNSETTLED}: far from converged at the last epoch" if "unsettled" in summary and summary[
        "unsettled"].notna().any() else ""
    design = plan.design if plan is not None else None
    rule = plan.adaptive if plan is not None else None
    if rule is not None:  # rounds chosen from the pilot's spreads: Stein's interval keeps its coverage
        if interval == "wilcoxon":
            raise ReportError(f"{store_path}: an adaptive study's intervals are Stein's (its rounds were chosen from "
                              "its pilot's spread); drop --interval wilcoxon")
        interval = functools.partial(stein_summary, pilot=rule.pilot)
    effect_frame = (design_effects(ablation_runs, design, metric, flagged, interval, equivalence)
                    if not ablations.empty else pd.DataFrame())
    interaction_frame = (split_interactions(ablation_runs, metric, interval) if not ablations.empty and design is None
                         else pd.DataFrame())  # a fraction's interactions are its aliased contrasts, in the effects
    words = metric_words(metric)
    figures = figures if metric == "test_error" else None  # the forest plot shows test error
    blocks = []
    pooled = policy_counts(runs[runs["status"] == Status.DONE])
    if len(pooled) > 1:
        blocks.append(Paragraph(
            f"{DEGENERATE} These runs were trained under {len(pooled)} execution policies ("
            + "; ".join(f"{name}: {count} runs" for name, count in pooled.items()) + "), and every answer below pools "
            "them: a configuration's rounds may come from either. Keep them apart with a store per policy (what "
            "`harness run` does by default) and compare them with `harness compare`."))
    answers = answer_lines(effect_frame, metric, equivalence, rule) if not effect_frame.empty else []
    how = ("Hodges–Lehmann estimate, exact Wilcoxon signed-rank 95% interval over rounds and p, Benjamini–Hochberg "
           "adjusted" if interval == "wilcoxon" else
           f"percentage points; rounds chosen by Stein's two-stage rule from a {rule.pilot}-round pilot for a 95% "
           f"interval of ±{rule.halfwidth:g} pp, at most {rule.max_rounds}, the interval and p from the pilot's spread "
           "(t with its degrees of freedom), Benjamini–Hochberg adjusted p" if rule is not None else
           "percentage points, 95% interval over rounds, Benjamini–Hochberg adjusted p")
    few = (f" {DEGENERATE} rests on fewer than {FEW_ROUNDS} rounds: an interval from so few leans on its assumptions "
           "(normal differences for t; an exact Wilcoxon interval that wide says little); train more rounds."
           if not effect_frame.empty and (effect_frame["rounds"] < FEW_ROUNDS).any() else "")
    margin_words = (f" Equivalence: two one-sided t tests (TOST) that the effect lies within ±{equivalence:g} pp, "
                    "Benjamini–Hochberg adjusted; \"no detectable effect\" is not equivalence."
                    if equivalence is not None else "")
    if answers:
        blocks += [Heading("Answers"), Paragraph(
            (f"Each factor's paired effect on {words} ({how}), every other setting and the round held equal."
             if design is None else
             f"A fractional design ({'; '.join(design.lines()[:1])[len('design: '):]}): each factor's effect on "
             f"{words} ({how}) is a contrast of the design's runs, fitted in each round and paired on the rounds; "
             "an effect also holds the interactions it is aliased with, named beside it."
             + (f" The factors crossed in full with the fraction ({', '.join(design.crossed)}) are measured by "
                "matched pairs, every other setting and the round held equal." if design.crossed else ""))
            + margin_words + few
            + (f" {UNSETTLED}: configurations far from converged at their last epoch (a train error of "
               f"{FITTED_PCT:g} % or more still falling by {STILL_FALLING_PP:g} pp or more over the last quarter of "
               f"the epochs, or above {HIGH_TRAIN_ERROR_PCT:g} %), "
               "whose answers more epochs may change; train longer (`--set epochs=N`) before reading them."
               if flagged else "") + _split_words(effect_frame)), Items(answers)]
        if figures:
            blocks.append(Figure(Path(figures) / "effects_forest.svg", "Paired effects on test error with 95% intervals"))
    rows = interaction_rows(interaction_frame)
    if not rows.empty:
        blocks += [Heading("Interactions"), Paragraph(
            "A factor's effect at each other level of a second factor, against its effect at that factor's "
            "baseline; the difference is paired on the rounds; differs: p (BH) < 0.05 across every comparison."),
            Table(rows)]
    if not effect_frame.empty:
        blocks += [Heading("Effects"), Paragraph(
            (f"Change in {words} (percentage points) when a factor leaves its baseline, paired on every "
             "other setting and on the round; " if design is None else
             f"Change in {words} (percentage points) when a factor leaves its baseline, a contrast of the "
             "fractional design fitted in each round (an interaction: the change of one factor's effect with the "
             "other's level), with what it is aliased with"
             + (f" ({', '.join(design.crossed)}, crossed in full: matched pairs)" if design.crossed else "")
             + "; matched pairs: the runs behind it; ")
            + ("Hodges–Lehmann estimate, 95% CI and p from the exact Wilcoxon signed-rank test over rounds; "
               if interval == "wilcoxon" else
               f"95% CI and p from Stein's two-stage t (the {rule.pilot}-round pilot's spread); " if rule is not None
               else "95% CI and p from a t-test over rounds; ") + "p (BH): "
            "Benjamini–Hochberg adjusted across the rows."), Table(effect_rows(effect_frame, metric, equivalence))]
    if not reproductions.empty:
        blocks += [Heading("Reproductions of the reports"), Paragraph(
            "Ours beside the published figures (test error in %, mean ± std). Verdict: reproduced when "
            "|ours − published| ≤ 2 × max(our std, the published std) and no round of ours is degenerate "
            f"({DEGENERATE}: every test pair given one answer, or a train error at chance); otherwise by "
            "how much ours is better or worse. Evidence: the matrix whose results show why the preset "
            f"reads its report as it does, or what the gap comes from{marked.replace('; ', '. ', 1)}."),
            Table(configuration_rows(reproductions, with_reference=True))]
    if not ablations.empty:
        blocks += [Heading("Configurations"), Paragraph(
            "Errors in %, mean ± std over rounds; range: the lowest and highest test error of a round; "
            f"{DEGENERATE}: rounds that learned nothing (every test pair given one answer, or a train "
            f"error at chance), counted in the note{marked}."),
            Table(configuration_rows(ablations, with_reference=False), folded=f"{len(ablations)} configurations")]
    if figures:
        blocks.append(Gallery("Figures", sorted(p for p in Path(figures).glob("*.svg") if p.name != "effects_forest.svg")))
    blocks += [Heading("Provenance"), Items(provenance_lines(runs, store_path))]
    machine = {
        "store": store_path,
        "configurations": records(summary),
        "effects": records(effect_frame),
        "interactions": records(interaction_frame),
        "runs": records(runs[[c for c in RUN_COLUMNS if c in runs]]),
        "provenance": provenance_lines(runs, store_path),
    }
    return Document("harness results", blocks, table=summary[summary_columns(summary)], records=machine,
                    float_format="%.4g")


@dataclass(frozen=True)
class StudyPart:
    """A study of a studies file, ready to write: its runs (None where none are here), the plan
    of its matrices, where the runs were read (as the file names it) and whether that is the
    committed archive."""

    study: Study
    runs: pd.DataFrame | None
    epochs: pd.DataFrame | None
    plan: Plan
    source: str
    committed: bool


def training_commands(study: Study) -> str:
    """The commands that train a study, as a reader types them."""
    return ", ".join(f"`harness run --matrix {matrix} --store {study.store}`" for matrix in study.matrices)


def origin_line(part: StudyPart) -> str:
    """Where a study's numbers come from, and how to make them again."""
    study = part.study
    trained = training_commands(study)
    if part.runs is None:
        return f"No runs of it here: train it with {trained}, then `harness export` commits them as `{study.runs}`."
    if part.committed:
        return f"Runs: `{study.runs}` (committed), trained by {trained}, then `harness export`."
    return (f"Runs: the store `{study.store}`, trained here by {trained}; `harness table --committed` prints the "
            f"committed runs `{study.runs}` instead.")


def chosen_sections(blocks: list, sections: tuple[str, ...] | None) -> list:
    """The blocks under the headings named (all blocks when none are), in their order."""
    if sections is None:
        return blocks
    kept, keeping = [], False
    for block in blocks:
        if isinstance(block, Heading):
            keeping = block.text in sections
        if keeping:
            kept.append(block)
    return kept


def studies_document(parts: list[StudyPart]) -> Document:
    """Every study of a studies file in one document, in its order: each study's title (a part
    of the study above at level 2), its paragraph, where its runs come from, then `harness
    table`'s sections for its configurations one level below its title. A study without runs
    says how to make them. CSV: every study's configurations, a column naming the study; JSON:
    each study's records."""
    blocks, tables, machine = [], [], []
    for part in parts:
        study = part.study
        blocks.append(Heading(study.title, study.level))
        if study.about:
            blocks.append(Paragraph(study.about))
        blocks.append(Paragraph(origin_line(part)))
        if part.runs is None:
            continue
        if study.image:
            blocks.append(Figure(Path(study.image), study.caption))
        inner = results_document(part.runs, store_path=part.source, plan=part.plan, sort=study.sort,
                                 figures=study.figures, metric=study.metric, epochs=part.epochs,
                                 interval=study.interval, equivalence=study.equivalence)
        blocks += nested(chosen_sections(inner.blocks, study.sections), study.level - 1)
        tables.append(inner.table.assign(study=study.title))
        machine.append({"study": study.title, "source": part.source, **inner.records})
    if not tables:
        raise ReportError("no study has runs here: train one (`harness run --matrix ... --store ...`), or restore "
                          "the committed runs (`git checkout baselines`)")
    table = pd.concat(tables, ignore_index=True)
    return Document("harness results", blocks, table=table[["study", *(c for c in table if c != "study")]],
                    records={"studies": machine}, float_format="%.4g")
