"""What `harness table` prints (harness.report): the results document in every format, the
check against a committed file, and the one registry of formats every command's output uses."""

import csv
import io
import json

import pytest
from click.testing import CliRunner
from fixtures import fill, run_config

from harness.cli import main
from harness.report.check import check_against, committed_rows, document_parts
from harness.report.formats import latex_escape, names, write
from harness.report.results import ReportError, results_document
from harness.stats import effects
from harness.store import Store
from harness.training import protocol


def results_report(runs, *, output_format="markdown", **options):
    """`harness table`'s text: the results document in a format."""
    return write(results_document(runs, **options), output_format)


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
    assert latex_escape("50% & more_#1 {x} ~ ^ $ \\") == (
        "50\\% \\& more\\_\\#1 \\{x\\} \\textasciitilde{} \\textasciicircum{} \\$ \\textbackslash{}"
    )
    assert latex_escape("--fresh 1–2 a -> b") == "-{}-fresh 1--2 a $\\rightarrow$ b"
@pytest.mark.slow
def test_latex_compiles_in_a_document(tmp_path):
    import shutil
    import subprocess

    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed (Debian: texlive-latex-base); the escaping tests above still run")
    with Store(tmp_path / "s.sqlite") as store:
        fill(store, run_config(label="50% of {x} & y_1 | #2 ~ ^ $", rounds=2), [0.1, 0.2])
        fill(store, run_config(encoder="mlp", rounds=2), [0.2, 0.3])
        fill(store, run_config(report="000", label="000 x", reference_test_error=12.5, reference_test_std=1.0, rounds=2), [0.1, 0.2])
        fill(store, run_config(aux_loss=True, rounds=2), [0.05, 0.15])
        fill(store, run_config(encoder="linear", rounds=2), [0.9, 0.2])  # a degenerate round: its marker too
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
        fill(store, run_config(label="001 WS", report="001", reference_test_error=15.26, reference_test_std=1.06, reference_params=50454), [0.15, 0.16])
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


def test_check_picks_the_matching_table_in_a_file_of_several():
    document = "# A\n\n## Configurations\n\n| configuration | params |\n|---|---|\n| one | 1,000 |\n\n# B\n\n## Configurations\n\n| configuration | params |\n|---|---|\n| two | 2,000 |\n"
    parts = [committed_rows(part) for part in document_parts(document)]
    assert parts == [{False: {"one": 1000}}, {False: {"two": 2000}}]


def test_a_label_with_a_bar_keeps_its_row_whole(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        fill(store, run_config(label="cnn | aux", rounds=2), [0.1, 0.2])
        fill(store, run_config(encoder="mlp", rounds=2), [0.2, 0.3])
        runs = store.runs()
    document = results_report(runs, store_path="s.sqlite")
    rows = [line for line in document.splitlines() if line.startswith("| cnn")]
    assert rows == [rows[0]] and "cnn \\| aux" in rows[0]
    header = next(line for line in document.splitlines() if line.startswith("| configuration"))
    assert rows[0].replace("\\|", "").count("|") == header.count("|")
    assert check_against(document, runs, plan=None, source="R.md") == []


def test_json_holds_every_table_for_machines(constructed):
    import json

    document = json.loads(results_report(constructed.runs(), store_path="s.sqlite", output_format="json"))
    assert {"configurations", "effects", "interactions", "runs", "provenance"} <= set(document)
    assert len(document["configurations"]) == 8 and len(document["runs"]) == 24
    assert {row["factor"] for row in document["effects"]} >= {"encoder", "aux_loss"}
@pytest.mark.slow
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


def test_the_table_shows_the_validation_digit_error_choices_are_made_on(tmp_path):
    config = run_config(**{"validation": 200, "transfer": "rule", "rounds": 2})
    with Store(tmp_path / "s.sqlite") as store:
        for round_index, (pair_error, digit_error) in enumerate(((0.01, 0.02), (0.03, 0.04))):
            result = protocol.new_result(config, round_index, "cpu")
            result.status, result.seconds, result.params = "done", 1.0, 10
            result.metrics = {"train_error": 0.0, "test_error": 0.02, "validation_error": pair_error,
                              "validation_digit_error": digit_error, "test_digit_error": 0.03}
            store.write(result, config, {})
        runs = store.runs()
    text = results_report(runs, store_path=str(tmp_path / "s.sqlite"))
    header = next(line for line in text.splitlines() if line.startswith("| configuration"))
    assert "| validation error % | validation digit error % |" in header.replace("  ", " ").replace("  ", " ")
    assert "3.00 ± 1.41" in text  # the digit error's mean ± std, in %


def test_effects_can_be_measured_on_the_validation_error(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        for elastic in (0.0, 0.5):
            config = run_config(**{"validation": 200, "transfer": "rule", "rounds": 3, "augment_elastic": elastic})
            for round_index in range(3):
                result = protocol.new_result(config, round_index, "cpu")
                result.status, result.seconds, result.params = "done", 1.0, 10
                result.metrics = {"train_error": 0.0, "test_error": 0.02, "test_digit_error": 0.03,  # no effect on test
                                  "validation_error": 0.03 - elastic * 0.02 + round_index * 0.001,
                                  "validation_digit_error": 0.04 - elastic * 0.04}
                store.write(result, config, {})
        runs = store.runs()
    on_test = effects(runs).set_index("factor").loc["augment_elastic"]
    on_validation = effects(runs, metric="validation_error").set_index("factor").loc["augment_elastic"]
    assert on_test["effect"] == 0 and on_validation["effect"] == pytest.approx(-1.0)
    text = results_report(runs, store_path="s", metric="validation_digit_error")
    assert "Δ validation digit error (pp)" in text and "-2.00" in text


def test_a_matrix_names_its_configurations_whatever_label_they_were_stored_under(tmp_path):
    from harness.config import Plan
    stored = run_config(**{"transfer": "rule", "aux_loss": True, "rounds": 1, "label": "best"})
    with Store(tmp_path / "s.sqlite") as store:
        result = protocol.new_result(stored, 0, "cpu")
        result.status, result.seconds, result.params = "done", 1.0, 10
        result.metrics = {"train_error": 0.0, "test_error": 0.02}
        store.write(result, stored, {})
        runs = store.runs()
    renamed = run_config(**{"transfer": "rule", "aux_loss": True, "rounds": 1, "label": "the first search's recipe"})
    assert renamed.config_id == stored.config_id  # a label is presentation
    text = results_report(runs, store_path="s", plan=Plan.from_configs([renamed], source="m.toml"))
    assert "| the first search's recipe" in text and "| best" not in text


def test_every_command_writes_every_registered_format(constructed, tmp_path):
    """One registry of formats: every command's --format choices are its names, and each
    format writes each command's document."""
    from harness.config import Plan
    from harness.estimate import cost_frame
    from harness.report.plan import plan_document
    from harness.report.show import show_document

    for command in ("table", "plan", "compare", "show", "bench"):
        option = next(p for p in main.commands[command].params if p.name == "output_format")
        assert list(option.type.choices) == names() == ["markdown", "text", "latex", "html", "csv", "json"]
    runs = constructed.runs()
    plan = Plan.from_configs([run_config(encoder="mlp", rounds=2), run_config(encoder="cnn", rounds=2)], source="m.toml")
    from harness.bench import Launches, Timing
    from harness.report.bench import bench_document
    from harness.report.compare import compare_document
    from harness.stats import compare, compare_effects

    timings = [Timing("plain", 4, 8.0, 0.1, 300.0, 10e9), Timing("workers", 4, 4.0, 0.1, 400.0, 15e9, (1.0,) * 4, 2)]
    documents = {
        "results": results_document(runs, store_path="s.sqlite"),
        "plan": plan_document(cost_frame(plan, estimate=False), plan, estimate=False),
        "show": show_document(runs[runs["config_id"] == runs["config_id"].iloc[0]], constructed.sources()),
        "compare": compare_document(compare(runs, runs), before="a", after="b", threshold=0,
                                    effect_frame=compare_effects(runs, runs)),
        "bench": bench_document(timings, machine="m", command="harness bench", projection=("a.toml", 10.0, 4),
                                launches=[Launches("plain", 1000.0, 10.0, 100)]),
    }
    for name, document in documents.items():
        for output_format in names():
            text = write(document, output_format)
            assert text.strip(), (name, output_format)
            if output_format == "json":
                json.loads(text)
            if output_format == "csv":
                assert len(list(csv.reader(io.StringIO(text)))) >= 2, name
            if output_format == "html":
                assert text.startswith("<!DOCTYPE html>") and text.endswith("</html>")
    assert "\\begin{longtable}" in write(documents["plan"], "latex")
    assert write(documents["plan"], "text").splitlines()[1].startswith("----")  # tabulate's plain table


def test_an_unknown_format_is_refused_with_the_known_ones():
    from harness.registry import UnknownName
    from harness.report.formats import FORMATS

    with pytest.raises(UnknownName, match="unknown format 'markdwon'; did you mean 'markdown'"):
        FORMATS.get("markdwon")
