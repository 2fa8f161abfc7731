"""Results a repository commits and regenerates: archives (`harness export`, read as a store),
the studies one file declares (`harness table` with no argument), answers that say when they
stand on sand (configurations far from converged, settings that vary and are never pooled),
and names that `harness show` takes back from any table."""

import gzip
import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from fixtures import PROVENANCE, invoke, one_line_exit_2, run_config

from harness import api
from harness.cli import main
from harness.report.formats import write
from harness.report.results import results_document
from harness.results import RunResult
from harness.stats import context_settings, late_fall, split_effects, summarize
from harness.store import Store, StoreError
from harness.studies import load_studies
from harness.training.protocol import seeds

ROOT = Path(__file__).resolve().parent.parent


def stored_run(store, config, round_index, test_error, *, curve=None, code_version="abc123", train_error=None):
    """A made-up finished run; `curve`: (epoch, train error) points of its learning curve."""
    data_seed, model_seed = seeds(config, round_index)
    train = train_error if train_error is not None else (curve[-1][1] if curve else test_error / 2)
    points = curve or [(1, train), (2, train)]
    result = RunResult(config.config_id, round_index, data_seed, model_seed, "done",
                       metrics={"train_error": train, "test_error": test_error, "train_loss": 0.1},
                       epochs=[{"stage": "pairs", "epoch": e, "train_loss": 0.1, "train_error": t, "test_error": test_error}
                               for e, t in points],
                       params=1000, seconds=1.5)
    store.write(result, config, {**PROVENANCE, "code_version": code_version})


def small_store(path, *, code_version="abc123"):
    """aux_loss lowers test error by 2 pp in each of 3 rounds, for two encoders."""
    with Store(path) as store:
        for encoder, base in (("mlp", 0.20), ("cnn", 0.10)):
            for aux in (False, True):
                config = run_config(encoder=encoder, aux_loss=aux, rounds=3)
                for round_index in range(3):
                    stored_run(store, config, round_index, base - (0.02 if aux else 0) + 0.01 * round_index,
                               code_version=code_version)


# --------------------------------------------------------------------------- archives


def test_an_archive_reads_back_as_the_store_it_was_exported_from(tmp_path):
    small_store(tmp_path / "s.sqlite")
    archive = tmp_path / "s.json.gz"
    assert api.export(tmp_path / "s.sqlite", archive) == 12
    with Store.open_readonly(tmp_path / "s.sqlite") as store, Store.open_readonly(archive) as copy:
        pd.testing.assert_frame_equal(store.runs(), copy.runs())
        pd.testing.assert_frame_equal(store.epochs(), copy.epochs())
    # every reader takes it: the table (but for the path it names), compare (no change), show
    assert api.table(tmp_path / "s.sqlite").replace(str(tmp_path / "s.sqlite"), "X") == \
        api.table(archive).replace(str(archive), "X")
    assert not api.compare(tmp_path / "s.sqlite", archive, fail_on="any").failed
    # the same runs give the same bytes: a committed archive changes only with its runs
    again = tmp_path / "again.json.gz"
    api.export(tmp_path / "s.sqlite", again)
    assert archive.read_bytes() == again.read_bytes()


def test_an_archive_holds_only_the_plans_configurations_when_given_one(tmp_path):
    small_store(tmp_path / "s.sqlite")
    (tmp_path / "m.toml").write_text('[defaults]\nrounds = 3\nencoder = "mlp"\n[matrix]\naux_loss = [false, true]\n')
    count = api.export(tmp_path / "s.sqlite", tmp_path / "m.json.gz", api.plan(tmp_path / "m.toml"))
    assert count == 6
    assert set(api.runs(tmp_path / "m.json.gz")["encoder"]) == {"mlp"}


@pytest.mark.parametrize("content, fragment", [
    (b"not gzip at all", "not a harness archive"),
    (gzip.compress(b"[1, 2"), "not a harness archive"),
    (gzip.compress(b'{"runs": []}'), 'no "kind": "harness runs"'),
    (gzip.compress(b'{"kind": "harness runs", "schema": 99}'), "schema 99"),
    (gzip.compress(b'{"kind": "harness runs", "schema": 5, "runs": {"config_id": ["a"], "round": []}}'),
     "a damaged harness archive"),
])
def test_a_file_that_is_no_archive_is_one_line(tmp_path, content, fragment):
    (tmp_path / "x.json.gz").write_bytes(content)
    with pytest.raises(StoreError, match=re.escape(fragment)):
        Store.open_readonly(tmp_path / "x.json.gz")
    one_line_exit_2(invoke("table", "--store", tmp_path / "x.json.gz"), fragment)


def test_export_refuses_an_archive_name_and_an_empty_result(tmp_path):
    small_store(tmp_path / "s.sqlite")
    one_line_exit_2(invoke("export", "--store", tmp_path / "s.sqlite", "--out", tmp_path / "x.json"), "ends in .json.gz")
    one_line_exit_2(invoke("export", "--store", tmp_path / "s.sqlite"), "--store and --out together")
    (tmp_path / "m.toml").write_text('[defaults]\nrounds = 3\nencoder = "linear"\n')
    one_line_exit_2(invoke("export", "--store", tmp_path / "s.sqlite", "--out", tmp_path / "x.json.gz",
                           "--matrix", tmp_path / "m.toml"), "no run of this matrix")
    assert not (tmp_path / "x.json.gz").exists()


# --------------------------------------------------------------------------- studies


STUDIES = """
[[study]]
title = "Aux loss"
about = "Does it help?"
matrices = ["m.toml"]
store = "results/s.sqlite"
runs = "baselines/s.json.gz"

[[study]]
title = "The same, MLP only"
level = 2
matrices = ["mlp.toml"]
store = "results/s.sqlite"
runs = "baselines/mlp.json.gz"
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A folder like the repository's: a studies file, its matrices, a store trained here."""
    (tmp_path / "m.toml").write_text('[defaults]\nrounds = 3\n[matrix]\nencoder = ["mlp", "cnn"]\naux_loss = [false, true]\n')
    (tmp_path / "mlp.toml").write_text('[defaults]\nrounds = 3\nencoder = "mlp"\n[matrix]\naux_loss = [false, true]\n')
    (tmp_path / "studies.toml").write_text(STUDIES)
    (tmp_path / "results").mkdir()
    small_store(tmp_path / "results/s.sqlite")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def table_here(*arguments):
    result = CliRunner().invoke(main, ["table", *arguments])
    assert result.exit_code == 0, result.output
    return result


def test_table_with_no_argument_prints_every_study_from_its_committed_runs(project):
    result = invoke("export")
    assert result.exit_code == 0, result.output
    assert "baselines/s.json.gz: 12 runs from results/s.sqlite (code abc123)" in result.output
    assert "baselines/mlp.json.gz: 6 runs" in result.output
    os.rename("results/s.sqlite", "elsewhere.sqlite")  # a fresh clone: only the committed runs
    text = table_here().stdout
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings[0] == "# Aux loss" and "## The same, MLP only" in headings
    assert "## Answers" in headings and "### Answers" in headings  # the part's sections one level down
    assert "Does it help?" in text
    assert "Runs: `baselines/s.json.gz` (committed), trained by `harness run --matrix m.toml --store results/s.sqlite`" in text
    assert "- store: `baselines/mlp.json.gz` (6 runs, 6 done)" in text
    # one document: the study's own configurations only
    mlp_part = text.split("## The same, MLP only")[1]
    assert "cnn" not in mlp_part.split("Provenance")[0]


def test_a_store_trained_here_is_read_before_the_committed_runs_and_said_so(project):
    invoke("export")
    with Store(project / "results/s.sqlite") as store:  # one more round trained here
        stored_run(store, run_config(encoder="mlp", aux_loss=False, rounds=3), 3, 0.5)
    here = table_here()
    assert "from the store results/s.sqlite trained here (--committed: from baselines/s.json.gz)" in here.stderr
    assert "Runs: the store `results/s.sqlite`, trained here" in here.stdout
    committed = table_here("--committed")
    assert committed.stderr == "" and "(committed)" in committed.stdout
    one_line_exit_2(invoke("table", "--committed", "--store", "results/s.sqlite"), "does not go with --store")


def test_a_study_without_runs_says_how_to_train_it(project):
    invoke("export")
    os.remove("baselines/mlp.json.gz")
    os.remove("results/s.sqlite")
    result = table_here()
    assert "The same, MLP only: no runs here (baselines/mlp.json.gz is missing)" in result.stderr
    assert "No runs of it here: train it with `harness run --matrix mlp.toml --store results/s.sqlite`" in result.stdout


def test_export_refuses_runs_of_uncommitted_code(project):
    small_store(project / "results/dirty.sqlite", code_version="abc123+dirty")
    (project / "studies.toml").write_text(STUDIES.replace("results/s.sqlite", "results/dirty.sqlite"))
    one_line_exit_2(invoke("export"), "runs of uncommitted code (abc123+dirty)")
    assert not (project / "baselines").exists()


@pytest.mark.parametrize("edit, fragment", [
    (lambda text: text.replace("title = \"Aux loss\"", "titel = \"Aux loss\""), "unknown key 'titel'; did you mean 'title'?"),
    (lambda text: text.replace('runs = "baselines/s.json.gz"', ""), "runs is missing"),
    (lambda text: text.replace('runs = "baselines/s.json.gz"', 'runs = "s.json"'), "must name an archive ending in .json.gz"),
    (lambda text: text.replace("level = 2", "level = 3"), "level = 3 is not one of 1, 2"),
    (lambda text: text.replace("The same, MLP only", "Aux loss"), "two studies are titled 'Aux loss'"),
    (lambda text: text.replace('matrices = ["m.toml"]', "matrices = []"), "must list matrix files"),
    (lambda text: text + "[other]\n", "unknown section [other]"),
    (lambda text: "[[study\n", "TOML syntax error"),
])
def test_a_bad_studies_file_is_one_line(project, edit, fragment):
    (project / "studies.toml").write_text(edit(STUDIES))
    one_line_exit_2(invoke("table"), fragment)


# --------------------------------------------------------------------------- the repository's own


def test_the_repository_declares_its_studies_and_commits_clean_runs():
    """What RESULTS.md rests on: each study's committed runs, made by committed code."""
    studies = load_studies(ROOT / "studies.toml")
    assert studies[0].title == "Ablations and the reports' systems"
    for study in studies:
        for matrix in study.matrices:
            assert (ROOT / matrix).is_file(), matrix
        archive = ROOT / study.runs
        if not archive.is_file():
            continue
        versions = set(api.runs(archive)["code_version"])
        assert versions and not any(str(v).endswith("+dirty") for v in versions), (study.runs, versions)


@pytest.mark.slow
def test_the_committed_results_file_is_what_harness_table_prints(monkeypatch):
    """`harness table > RESULTS.md` in a fresh clone regenerates the committed file."""
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(main, ["table", "--committed"])
    assert result.exit_code == 0, result.output
    committed = (ROOT / "RESULTS.md").read_text()
    assert result.stdout == committed, "RESULTS.md differs from `harness table --committed`: regenerate it"


# --------------------------------------------------------------------------- answers on sand


def curve_store(path, *, final_train, fall, epochs=20):
    """Two configurations (aux off/on) whose train error ends at `final_train` after falling
    by `fall` over the last quarter of `epochs`."""
    with Store(path) as store:
        for aux in (False, True):
            config = run_config(encoder="mlp", aux_loss=aux, rounds=3, epochs=epochs)
            for round_index in range(3):
                curve = [(e, final_train + fall * (epochs - e) / (epochs / 4)) for e in range(5, epochs + 1, 5)]
                stored_run(store, config, round_index, 0.2 - 0.02 * aux + 0.01 * round_index, curve=curve)
        return store.runs(), store.epochs()


def test_late_fall_is_measured_over_the_last_quarter_of_the_epochs(tmp_path):
    runs, epochs = curve_store(tmp_path / "s.sqlite", final_train=0.10, fall=0.05)
    falls = late_fall(epochs)
    assert len(falls) == 6 and falls["late_fall"].round(6).eq(5.0).all() and falls["late_epochs"].eq(5).all()


@pytest.mark.parametrize("final_train, fall, flagged", [
    (0.10, 0.05, "still learning (train error 10.0 %, −5.0 pp over its last 5 epochs)"),
    (0.01, 0.05, None),  # fitted: below 2 % however it got there
    (0.10, 0.01, None),  # flat: converged where it is
    (0.20, 0.00, "train error high (20.0 % at the end)"),
])
def test_configurations_far_from_converged_are_flagged_and_so_are_the_answers_on_them(tmp_path, final_train, fall,
                                                                                      flagged):
    runs, epochs = curve_store(tmp_path / "s.sqlite", final_train=final_train, fall=fall)
    summary = summarize(runs, epochs)
    assert set(summary["unsettled"].map(lambda v: v if isinstance(v, str) else None)) == {flagged}
    text = write(results_document(runs, store_path="s", epochs=epochs), "markdown")
    answer = next(line for line in text.splitlines() if line.startswith("- **auxiliary digit losses**"))
    if flagged:
        assert answer.endswith("; ⏳ 2 of 2 configurations behind it far from converged")
        assert "train longer (`--set epochs=N`)" in text and f"⏳ {flagged}" in text
    else:
        assert "⏳" not in text


# --------------------------------------------------------------------------- never pooled


def epochs_store(path):
    """aux_loss hurts by 5 pp at 5 epochs and helps by 2 pp at 20: a rerun with other epochs."""
    with Store(path) as store:
        for epochs, change in ((5, +0.05), (20, -0.02)):
            for encoder in ("mlp", "cnn"):
                for aux in (False, True):
                    config = run_config(encoder=encoder, aux_loss=aux, rounds=3, epochs=epochs)
                    for round_index in range(3):
                        stored_run(store, config, round_index, 0.2 + (change if aux else 0) + 0.01 * round_index)
        return store.runs()


def test_answers_are_split_by_a_setting_that_varies_never_pooled(tmp_path):
    runs = epochs_store(tmp_path / "s.sqlite")
    assert context_settings(runs) == ["epochs"]
    frame = split_effects(runs).set_index(["factor", "context"])
    assert frame.loc[("aux_loss", "epochs = 5"), "effect"] == pytest.approx(5.0)
    assert frame.loc[("aux_loss", "epochs = 20"), "effect"] == pytest.approx(-2.0)
    assert ("aux_loss", "") not in frame.index  # no pooled +1.5
    assert frame.loc[("epochs", ""), "effect"] == pytest.approx(-3.5)  # epochs' own effect, over every run
    text = api.table(tmp_path / "s.sqlite")
    assert "**auxiliary digit losses** (False → True) at epochs = 5: +5.00 pp" in text
    assert "**auxiliary digit losses** (False → True) at epochs = 20: -2.00 pp" in text
    assert "Other settings vary among these runs (epochs)" in text
    assert "| at " in text.split("## Effects")[1]


def test_a_factor_explains_the_settings_it_alone_gives_meaning():
    frame = pd.DataFrame({"status": ["done"] * 4, "transfer": ["none", "none", "frozen", "frozen"],
                          "pretrain_epochs": [0, 0, 60, 60], "encoder": ["mlp", "cnn", "mlp", "cnn"]})
    assert context_settings(frame) == []


# --------------------------------------------------------------------------- names typed back


def test_show_takes_back_every_name_and_id_a_table_prints(tmp_path):
    runs = epochs_store(tmp_path / "s.sqlite")
    text = api.table(tmp_path / "s.sqlite")
    rows = [line for line in text.split("## Configurations")[1].splitlines() if line.startswith("| mlp siamese ws aux")]
    assert len(rows) == 2
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        name, short_id = cells[0], cells[-1]
        assert re.fullmatch(r"[0-9a-f]{10}", short_id) and "(epochs=" in name
        by_name = api.show(tmp_path / "s.sqlite", name)
        assert by_name == api.show(tmp_path / "s.sqlite", short_id)
        assert by_name.startswith(name) and short_id in by_name
    both = invoke("show", "mlp siamese ws aux", "--store", tmp_path / "s.sqlite")
    one_line_exit_2(both, "2 configurations match 'mlp siamese ws aux': 'mlp siamese ws aux (epochs=")
    assert len(set(runs["config_id"])) == 8


def test_the_json_of_the_studies_holds_each_study(project):
    invoke("export")
    data = json.loads(table_here("--format", "json").stdout)
    assert [study["study"] for study in data["studies"]] == ["Aux loss", "The same, MLP only"]
    assert data["studies"][0]["configurations"]


def test_interactions_among_the_factors_are_not_pooled_across_a_setting_that_varies(tmp_path):
    epochs_store(tmp_path / "s.sqlite")
    text = api.table(tmp_path / "s.sqlite")
    interactions = text.split("## Interactions")[1].split("## Effects")[0]
    header = next(line for line in interactions.splitlines() if line.startswith("| factor"))
    assert "| at " in header
    rows = [line for line in interactions.splitlines() if line.startswith("| aux_loss") and "encoder = " in line]
    assert {"epochs = 5" in row for row in rows} == {True, False}  # one row at each epochs, none pooled
    assert any("epochs = 20" in row for row in rows)


def test_studies_that_share_their_committed_runs_are_exported_together(project):
    """A fraction read from the full study's runs: one archive holds both studies' runs."""
    (project / "cnn.toml").write_text('[defaults]\nrounds = 3\nencoder = "cnn"\naux_loss = true\n')
    (project / "studies.toml").write_text(STUDIES.replace('matrices = ["m.toml"]', 'matrices = ["cnn.toml"]')
                                          .replace("baselines/mlp.json.gz", "baselines/s.json.gz"))
    result = invoke("export")
    assert result.exit_code == 0, result.output
    assert result.output.count("baselines/s.json.gz: 9 runs") == 1  # cnn with aux (3) and the mlp pair (6)
    text = table_here("--committed").stdout
    assert "# Aux loss" in text and "## The same, MLP only" in text


def test_a_study_may_show_some_sections_only(project):
    invoke("export")
    (project / "studies.toml").write_text(STUDIES.replace('level = 2', 'level = 2\nsections = ["Answers", "Provenance"]'))
    text = table_here("--committed").stdout
    part = text.split("## The same, MLP only")[1]
    assert "### Answers" in part and "### Provenance" in part and "### Configurations" not in part
    (project / "studies.toml").write_text(STUDIES.replace('level = 2', 'level = 2\nsections = ["Answer"]'))
    one_line_exit_2(invoke("table"), "did you mean 'Answers'?")


def test_a_transfer_variants_fall_is_read_on_its_pair_stage_not_its_pretraining():
    epochs = pd.DataFrame({
        "config_id": ["a"] * 6, "round": [0] * 6,
        "stage": ["pairs", "pairs", "pairs", "pretrain", "pretrain", "pretrain"],
        "epoch": [10, 15, 20, 5, 10, 15], "train_error": [0.30, 0.20, 0.10, 0.5, 0.4, 0.39],
    })
    falls = late_fall(epochs)
    assert falls["late_fall"].tolist() == pytest.approx([10.0]) and falls["late_epochs"].tolist() == [5]


def test_an_archive_is_never_trained_into(tmp_path, fake_mnist):
    small_store(tmp_path / "s.sqlite")
    api.export(tmp_path / "s.sqlite", tmp_path / "s.json.gz")
    before = (tmp_path / "s.json.gz").read_bytes()
    (tmp_path / "m.toml").write_text('[defaults]\nrounds = 1\nepochs = 1\npairs = 50\nencoder = "linear"\n')
    one_line_exit_2(invoke("run", "--matrix", tmp_path / "m.toml", "--store", tmp_path / "s.json.gz", "--device", "cpu"),
                    "an archive is read only")
    assert (tmp_path / "s.json.gz").read_bytes() == before
