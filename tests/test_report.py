import csv
import io
import json
import math

import pandas as pd
import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.config import RunConfig
from harness.report import ReportError, check_against, results_report
from harness.results import RunResult
from harness.stats import benjamini_hochberg, effects, summarize, t_quantile, t_two_sided_p
from harness.store import Store
from harness.training import seeds

PROVENANCE = {"torch_version": "2.x", "code_version": "abc", "python_version": "3.11", "matrix": "m.toml", "command": "harness run"}


def fill(store: Store, config: RunConfig, test_errors, *, failed_rounds=(), params=1000):
    """Store made-up finished runs of `config`, one per test error."""
    for round_index, test_error in enumerate(test_errors):
        data_seed, model_seed = seeds(config, round_index)
        status = "failed" if round_index in failed_rounds else "done"
        result = RunResult(
            config.config_id, round_index, data_seed, model_seed, status,
            reason="TrainingDiverged: nan" if status == "failed" else None,
            metrics={"train_error": test_error / 2, "test_error": test_error, "train_loss": 0.1},
            epochs=[{"stage": "pairs", "epoch": e, "train_loss": 0.1, "train_error": test_error, "test_error": test_error} for e in (1, 2)],
            params=params, seconds=1.5,
        )
        store.write(result, config, PROVENANCE)


@pytest.fixture
def constructed(tmp_path):
    """aux_loss lowers test error by exactly 2, 4, 6 points in rounds 0, 1, 2 for both encoders;
    batch_norm changes nothing."""
    store = Store(tmp_path / "s.sqlite")
    base = {"mlp": [0.20, 0.22, 0.24], "cnn": [0.10, 0.12, 0.14]}
    for encoder, errors in base.items():
        for batch_norm in (False, True):
            off = RunConfig(encoder=encoder, batch_norm=batch_norm, rounds=3)
            on = RunConfig(encoder=encoder, batch_norm=batch_norm, aux_loss=True, rounds=3)
            fill(store, off, errors)
            fill(store, on, [e - d for e, d in zip(errors, (0.02, 0.04, 0.06))])
    yield store
    store.close()


def test_summary_mean_std_and_flags(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        fill(store, RunConfig(rounds=4), [0.10, 0.20, 0.30], failed_rounds=(2,))
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


def test_markdown_shape_and_sections(constructed):
    text = results_report(constructed.runs(), store_path="s.sqlite", figures="docs")
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    # the answers lead; the configurations come last, before provenance, folded
    assert headings == ["## Answers", "## Interactions", "## Effects", "## Configurations", "## Provenance"]
    answers = text.split("## Interactions")[0]
    assert "- **encoder family (linear, MLP, CNN)** (mlp → cnn): -10.00 pp" in answers
    assert "![Paired effects on test error with 95% intervals](docs/effects_forest.svg)" in answers
    folded = text.split("## Configurations")[1].split("## Provenance")[0]
    assert "<details><summary>8 configurations</summary>" in folded and "</details>" in folded
    table = [line for line in folded.splitlines() if line.startswith("|")]
    widths = {line.count("|") for line in table}
    assert len(widths) == 1 and len(table) == 2 + 8  # header, rule, 8 configurations
    assert "cnn siamese ws aux bn" in text
    assert "| 22.00 ± 2.00 " in text  # mlp without aux: 20, 22, 24
    assert "| 18.00 ± 0.00 " in text  # mlp with aux: 20 - 2, 22 - 4, 24 - 6


def test_csv_parses_with_one_row_per_configuration(constructed):
    text = results_report(constructed.runs(), store_path="s.sqlite", output_format="csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 8
    assert {"name", "params", "test_error_mean", "test_error_std", "rounds_done"} <= set(rows[0])


def test_latex_is_booktabs_tables_with_everything_escaped(constructed):
    text = results_report(constructed.runs(), store_path="s.sqlite", output_format="latex")
    assert text.count("\\begin{longtable}") == 3 and text.count("\\end{longtable}") == 3  # interactions, effects, configurations
    assert "\\toprule" in text and "\\midrule" in text and "\\bottomrule" in text
    assert "\\section*{Configurations}" in text and "\\section*{Provenance}" in text
    assert "Errors in \\%, mean $\\pm$ std" in text and "$\\Delta$ test error" in text
    assert "±" not in text and "Δ" not in text and "–" not in text and "\n- " not in text
    assert "\\item commands: harness run" in text and "\\texttt{s.sqlite}" in text


def test_latex_escapes_what_latex_would_read_as_commands():
    from harness.report import latex_escape

    assert latex_escape("50% & more_#1 {x} ~ ^ $ \\") == (
        "50\\% \\& more\\_\\#1 \\{x\\} \\textasciitilde{} \\textasciicircum{} \\$ \\textbackslash{}"
    )
    assert latex_escape("--fresh 1–2 a -> b") == "-{}-fresh 1--2 a $\\rightarrow$ b"


def test_latex_compiles_in_a_document(tmp_path):
    import shutil
    import subprocess

    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed (Debian: texlive-latex-base); the escaping tests above still run")
    with Store(tmp_path / "s.sqlite") as store:
        fill(store, RunConfig(label="50% of {x} & y_1 | #2 ~ ^ $", rounds=2), [0.1, 0.2])
        fill(store, RunConfig(encoder="mlp", rounds=2), [0.2, 0.3])
        fill(store, RunConfig(report="000", label="000 x", reference_test_error=12.5, reference_test_std=1.0, rounds=2), [0.1, 0.2])
        fill(store, RunConfig(aux_loss=True, rounds=2), [0.05, 0.15])
        fill(store, RunConfig(encoder="linear", rounds=2), [0.9, 0.2])  # a degenerate round: its marker too
        runs = store.runs()
    (tmp_path / "table.tex").write_text(results_report(runs, store_path="a_b/s%.sqlite", output_format="latex"))
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{booktabs,longtable}\n"
        "\\begin{document}\n\\input{table.tex}\n\\end{document}\n"
    )
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


def test_reproductions_show_published_figures(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        fill(store, RunConfig(label="001 WS", report="001", reference_test_error=15.26, reference_test_std=1.06, reference_params=50454), [0.15, 0.16])
        text = results_report(store.runs(), store_path="s.sqlite")
    assert "## Reproductions of the reports" in text
    assert "15.26 ± 1.06" in text and "50,454" in text


def test_empty_store_is_an_error(tmp_path):
    with Store(tmp_path / "s.sqlite") as store, pytest.raises(ReportError, match="no finished runs"):
        results_report(store.runs(), store_path="s.sqlite")
    result = CliRunner().invoke(main, ["table", "--store", str(tmp_path / "s.sqlite")])
    assert result.exit_code == 2 and "no finished runs" in result.output
    missing = CliRunner().invoke(main, ["table", "--store", str(tmp_path / "none.sqlite")])
    assert missing.exit_code == 2 and "no store here" in missing.output


def test_check_names_configuration_and_both_counts(constructed, tmp_path):
    text = results_report(constructed.runs(), store_path="s.sqlite")
    assert check_against(text, constructed.runs(), plan=None, source="RESULTS.md") == []
    edited = text.replace("| 1,000 ", "| 1,234 ", 1)
    problems = check_against(edited, constructed.runs(), plan=None, source="RESULTS.md")
    assert len(problems) == 1 and "1,234 parameters in RESULTS.md, 1,000 now" in problems[0]
    path = tmp_path / "RESULTS.md"
    path.write_text(edited)
    result = CliRunner().invoke(main, ["table", "--store", str(constructed.path), "--check", str(path)])
    assert result.exit_code == 1 and "1,234 parameters" in result.output


def test_plots_are_written(constructed, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "plots"
    result = CliRunner().invoke(main, ["plot", "--store", str(constructed.path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    for stem in ("test_error_boxplot_1", "learning_curves_1", "effects_forest"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names
    assert all(p.stat().st_size > 1000 for p in out.iterdir())


def test_store_rows_are_self_describing(constructed):
    frame = constructed.runs()
    row = frame.iloc[0]
    config = json.loads(row["config"])
    assert config["encoder"] in ("mlp", "cnn") and "lr" in config
    for column in ("data_seed", "model_seed", "code_version", "torch_version", "device", "seconds", "finished_at"):
        assert not pd.isna(row[column])


def test_transfer_effect_matches_despite_its_pretraining_setting(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        fill(store, RunConfig(aux_loss=True, rounds=2), [0.10, 0.12])
        fill(store, RunConfig(aux_loss=True, transfer="rule", pretrain_epochs=10, rounds=2), [0.04, 0.05])
        frame = effects(store.runs()).set_index("factor")
    assert frame.loc["transfer", "change"] == "none -> rule"
    assert frame.loc["transfer", "effect"] == pytest.approx(-6.5)


def test_check_picks_the_matching_table_in_a_file_of_several():
    from harness.report import _committed_rows, _parts

    document = "# A\n\n## Configurations\n\n| configuration | params |\n|---|---|\n| one | 1,000 |\n\n# B\n\n## Configurations\n\n| configuration | params |\n|---|---|\n| two | 2,000 |\n"
    parts = [_committed_rows(part) for part in _parts(document)]
    assert parts == [{False: {"one": 1000}}, {False: {"two": 2000}}]


def test_a_label_with_a_bar_keeps_its_row_whole(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        fill(store, RunConfig(label="cnn | aux", rounds=2), [0.1, 0.2])
        fill(store, RunConfig(encoder="mlp", rounds=2), [0.2, 0.3])
        runs = store.runs()
    document = results_report(runs, store_path="s.sqlite")
    rows = [line for line in document.splitlines() if line.startswith("| cnn")]
    assert rows == [rows[0]] and "cnn \\| aux" in rows[0]
    header = next(line for line in document.splitlines() if line.startswith("| configuration"))
    assert rows[0].replace("\\|", "").count("|") == header.count("|")
    assert check_against(document, runs, plan=None, source="R.md") == []


def test_runs_stored_before_a_setting_existed_table_and_pair_with_newer_ones(tmp_path):
    import sqlite3

    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        fill(store, RunConfig(rounds=3), [0.10, 0.20, 0.30])
        fill(store, RunConfig(rounds=3, aux_loss=True), [0.05, 0.10, 0.20])
    newer = ("augment_shift", "augment_rotate", "lr_schedule", "label_smoothing", "ema_decay", "test_time_augment",
             "curve_train_error")
    with sqlite3.connect(path) as connection:  # the aux-off rows as a harness before those settings wrote them
        for rowid, text in connection.execute("SELECT rowid, config FROM runs").fetchall():
            settings = json.loads(text)
            if not settings["aux_loss"]:
                connection.execute("UPDATE runs SET config = ? WHERE rowid = ?",
                                   (json.dumps({k: v for k, v in settings.items() if k not in newer}), rowid))
    with Store.open_readonly(path) as store:
        runs = store.runs()
    assert runs["augment_shift"].eq(0).all() and runs["lr_schedule"].eq("constant").all()
    # what the code did before the setting: learning curves scored the training pairs
    older = runs[runs["aux_loss"] == False]  # noqa: E712
    assert older["curve_train_error"].eq("pass").all() and runs.loc[runs["aux_loss"] == True, "curve_train_error"].eq("running").all()  # noqa: E712
    frame = effects(runs)
    row = frame[frame["factor"] == "aux_loss"].iloc[0]
    assert row["rounds"] == 3 and row["effect"] == pytest.approx(-100 * (0.05 + 0.10 + 0.10) / 3)
    assert "## Effects" in results_report(runs, store_path=str(path))


def test_the_box_plot_keeps_configurations_that_share_a_name_apart(tmp_path):
    pytest.importorskip("matplotlib")
    from harness import plots

    with Store(tmp_path / "s.sqlite") as store:  # two stored configurations under one name
        fill(store, RunConfig(label="same", lr=1e-3, rounds=2), [0.1, 0.2])
        fill(store, RunConfig(label="same", lr=1e-2, rounds=2), [0.3, 0.4])
        runs = store.runs()
    (svg,) = [p for p in plots.box_plot(runs, tmp_path) if p.suffix == ".svg"]
    assert "2 configurations" in svg.read_text()


def test_box_plots_come_in_panels_of_at_most_25_with_published_figures_marked(tmp_path):
    pytest.importorskip("matplotlib")
    from harness import plots

    with Store(tmp_path / "s.sqlite") as store:
        for width in range(1, 31):  # 30 cnn siamese configurations: two panels of 15
            fill(store, RunConfig(width=width / 10, rounds=2), [0.1, 0.2])
        fill(store, RunConfig(encoder="mlp", rounds=2, report="001", reference_test_error=17.0), [0.15, 0.16])
        runs = store.runs()
    panels = plots.box_groups(runs[runs["status"] == "done"])
    assert [len(ids) for ids in panels.values()] == [15, 15, 1]
    assert list(panels) == ["cnn siamese (1/2)", "cnn siamese (2/2)", "report 001"]
    svgs = sorted(p for p in plots.box_plot(runs, tmp_path) if p.suffix == ".svg")
    assert len(svgs) == 3 and "published" in svgs[-1].read_text()


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


def test_json_holds_every_table_for_machines(constructed):
    import json

    document = json.loads(results_report(constructed.runs(), store_path="s.sqlite", output_format="json"))
    assert {"configurations", "effects", "interactions", "runs", "provenance"} <= set(document)
    assert len(document["configurations"]) == 8 and len(document["runs"]) == 24
    assert {row["factor"] for row in document["effects"]} >= {"encoder", "aux_loss"}


def test_html_page_is_self_contained_and_renders_in_a_browser(constructed, tmp_path):
    """`harness report --html`: one page with its sections and figures inline; where Chromium is
    installed (Debian's `chromium`), it is rendered headless: a screenshot, the DOM's sections,
    and no console error."""
    import re
    import shutil
    import subprocess

    from click.testing import CliRunner

    from harness.cli import main

    constructed.close()
    folder = tmp_path / "report"
    result = CliRunner().invoke(main, ["report", "--store", str(tmp_path / "s.sqlite"), "--html", str(folder)])
    assert result.exit_code == 0, result.output
    page = (folder / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<h2>Answers</h2>" in page and "<h2>Provenance</h2>" in page
    assert not re.findall(r'(?:src|href)="(?!#)', page)  # nothing to fetch: the figures are inline
    if "<h2>Figures</h2>" in page:  # with matplotlib
        assert page.count("<svg") >= 2
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium here: the page was checked as text only")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,2000"]
    shot = tmp_path / "shot.png"
    rendered = subprocess.run([*flags, f"--screenshot={shot}", "--enable-logging=stderr", "--v=0",
                               (folder / "index.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    console = [line for line in rendered.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    dom = subprocess.run([*flags, "--dump-dom", (folder / "index.html").as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    headings = re.findall(r"<h2>(.*?)</h2>", dom)
    assert headings[:2] == ["Answers", "Interactions"] and headings[-1] == "Provenance", headings


def test_without_matplotlib_plot_is_one_line_and_writes_no_folder(constructed, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = tmp_path / "plots"
    result = CliRunner().invoke(main, ["plot", "--store", str(constructed.path), "--out", str(out)])
    assert result.exit_code == 2 and result.output == "error: plotting needs matplotlib: pip install -e '.[plot]'\n"
    assert not out.exists()
