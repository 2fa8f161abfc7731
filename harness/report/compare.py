"""`harness compare`'s output: a row per configuration both result sets hold, paired on the
rounds, then each factor's effect in both, side by side."""

from __future__ import annotations

import pandas as pd

from harness.report.cells import p_value, with_intervals
from harness.report.formats import Document, Paragraph, Table, records


def compare_document(frame: pd.DataFrame, *, before: str, after: str, threshold: float,
                     effect_frame: pd.DataFrame | None = None) -> Document:
    """A row per configuration present in both result sets (harness.stats.compare), then each
    factor's effect in both (stats.compare_effects) where both hold the settings. Its JSON: an
    object with "configurations" and "effects" records; its CSV: the configurations."""
    effect_frame = pd.DataFrame() if effect_frame is None else effect_frame
    rows = pd.DataFrame({
        "configuration": frame["name"],
        "rounds": frame["rounds"],
        "before %": frame["before_mean"].map(lambda v: f"{v:.2f}"),
        "after %": frame["after_mean"].map(lambda v: f"{v:.2f}"),
        "Δ (pp)": with_intervals(frame["effect"], frame["ci_low"], frame["ci_high"]),
        "p (BH)": frame["p_adjusted"].map(p_value),
        "verdict": [("DETERMINISM FAILURE: " if bad else "") + verdict
                    for bad, verdict in zip(frame["determinism_failure"], frame["verdict"])],
    })
    counts = frame["verdict"].value_counts()
    identical = int((frame["max_abs_difference"] == 0).sum())
    notes = [", ".join(f"{count} {verdict}" for verdict, count in counts.items())
             + f"; {identical} of {len(frame)} configurations identical in every round both hold"]
    if "policy_before" in frame:
        sides = [" / ".join(dict.fromkeys(frame[f"policy_{side}"])) for side in ("before", "after")]
        notes.append(f"execution policies: before {sides[0]}; after {sides[1]}"
                     + ("" if sides[0] == sides[1] else " (device, batching, precision or determinism differ)"))
    apart = ~frame["same_execution"] & frame["execution_recorded"]
    if apart.any():
        notes.append(f"{int(apart.sum())} configurations trained under different execution policies on the two sides "
                     "(threads, batched rounds, memory layout, precision, determinism): compared for quality, not held to "
                     "equality")
    unrecorded = ~frame["same_execution"] & ~frame["execution_recorded"]
    if unrecorded.any():
        notes.append(f"{int(unrecorded.sum())} configurations have no execution policy recorded on one side (an older "
                     "store or baseline): compared for quality, not held to equality")
    failures = int(frame["determinism_failure"].sum())
    if failures:
        notes.append(f"{failures} configurations differ although both sides ran the same code on the CPU the same way: "
                     "a determinism failure, not a change in quality")
    blocks = [Paragraph(f"`{after}` against `{before}`: {len(frame)} configurations in both, paired by configuration "
                        f"id and round; Δ = after − before in test error; threshold {threshold:g} pp."),
              Table(rows), Paragraph("\n".join(notes))]
    if not effect_frame.empty:
        agree = effect_frame["agree"]
        blocks += [Paragraph("Each factor's effect in both, on the runs both hold (paired by round within each set; "
                             "agree: the two 95 % intervals overlap):"),
                   Table(pd.DataFrame({
                       "factor": effect_frame["factor"],
                       "change": effect_frame["change"],
                       **{f"{side} Δ (pp)": with_intervals(effect_frame[f"effect_{side}"], effect_frame[f"ci_low_{side}"],
                                                            effect_frame[f"ci_high_{side}"]) for side in ("before", "after")},
                       "agree": agree.map(lambda v: "–" if v is None else "yes" if v else "NO"),
                   })),
                   Paragraph(f"{int((agree == True).sum())} of {int(agree.notna().sum())} effects agree")]  # noqa: E712 - None is neither
    machine = {"configurations": records(frame), "effects": records(effect_frame)}
    return Document("harness compare", blocks, table=frame, records=machine, preamble=False)
