"""`harness show`'s output: one configuration's settings, each of its runs with its seeds,
device and code version, the matrix and command, and the sources it ran with."""

from __future__ import annotations

import json

import pandas as pd

from harness.report.formats import Document, Paragraph, records
from harness.results import Status
from harness.stats import execution_words
from harness.tasks import own_settings


def show_document(runs: pd.DataFrame, sources: pd.DataFrame, *, code: bool = False) -> Document:
    """`runs`: the stored runs of one configuration; `sources`: the store's kept source texts
    (the ones its runs name are listed, with their text when `code`)."""
    runs = runs.sort_values("round")
    first = runs.iloc[0]
    settings = own_settings(json.loads(first["config"]))
    lines = []
    for _, run in runs.iterrows():
        errors = "" if run["status"] != Status.DONE else f" test {100 * run['test_error']:.2f} %, train {100 * run['train_error']:.2f} %"
        lines.append(f"  round {run['round']}: {run['status']}{errors}; seeds {run['data_seed']}/{run['model_seed']}; "
                     f"{run['seconds']:.1f} s on {run['device']}; code {run['code_version']}, torch {run['torch_version']}"
                     + (f"; {words}" if (words := execution_words(run.get("execution"))) else "")
                     + (f"; {run['reason']}" if isinstance(run["reason"], str) else ""))
    used = {first.get("code_diff")} | {p["sha256"] for text in runs.get("plugins", []) if isinstance(text, str)
                                        for p in json.loads(text)}
    kept = sources[sources["sha256"].isin(used)]
    provenance = [f"matrix: {first['matrix']}", f"command: {first['command']}"]
    for _, source in kept.iterrows():
        provenance.append(f"{source['kind']}: {source['name']} (sha256 {source['sha256'][:12]})")
        if code:
            provenance.append(source["text"])
    blocks = [Paragraph(f"{first['name']}\nid {first['config_id']}"),
              Paragraph("settings:\n" + json.dumps(settings, indent=2, sort_keys=True)),
              Paragraph("runs:\n" + "\n".join(lines)), Paragraph("\n".join(provenance))]
    columns = ["round", "status", "reason", "test_error", "train_error", "data_seed", "model_seed", "seconds", "device",
               "code_version", "torch_version", "execution"]
    machine = {"id": first["config_id"], "name": first["name"], "settings": settings,
               "runs": records(runs[[c for c in columns if c in runs]]), "matrix": first["matrix"],
               "command": first["command"], "sources": records(kept if code else kept.drop(columns=["text"]))}
    return Document(str(first["name"]), blocks, table=runs[[c for c in columns if c in runs]], records=machine,
                    preamble=False)
