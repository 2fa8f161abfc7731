"""Figures from the store (harness.plots): box plots in panels, learning curves, the forest plot."""

import pytest
from click.testing import CliRunner
from fixtures import fill, run_config

from harness.cli import main
from harness.store import Store


def test_plots_are_written(constructed, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "plots"
    result = CliRunner().invoke(main, ["plot", "--store", str(constructed.path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    for stem in ("test_error_boxplot_1", "learning_curves_1", "effects_forest"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names
    assert all(p.stat().st_size > 1000 for p in out.iterdir())


def test_the_box_plot_keeps_configurations_that_share_a_name_apart(tmp_path):
    pytest.importorskip("matplotlib")
    from harness import plots

    with Store(tmp_path / "s.sqlite") as store:  # two stored configurations under one name
        fill(store, run_config(label="same", lr=1e-3, rounds=2), [0.1, 0.2])
        fill(store, run_config(label="same", lr=1e-2, rounds=2), [0.3, 0.4])
        runs = store.runs()
    (svg,) = [p for p in plots.box_plot(runs, tmp_path) if p.suffix == ".svg"]
    assert "2 configurations" in svg.read_text()


def test_box_plots_come_in_panels_of_at_most_25_with_published_figures_marked(tmp_path):
    pytest.importorskip("matplotlib")
    from harness import plots

    with Store(tmp_path / "s.sqlite") as store:
        for width in range(1, 31):  # 30 cnn siamese configurations: two panels of 15
            fill(store, run_config(width=width / 10, rounds=2), [0.1, 0.2])
        fill(store, run_config(encoder="mlp", rounds=2, report="001", reference_test_error=17.0), [0.15, 0.16])
        runs = store.runs()
    panels = plots.box_groups(runs[runs["status"] == "done"])
    assert [len(ids) for ids in panels.values()] == [15, 15, 1]
    assert list(panels) == ["cnn siamese (1/2)", "cnn siamese (2/2)", "report 001"]
    svgs = sorted(p for p in plots.box_plot(runs, tmp_path) if p.suffix == ".svg")
    assert len(svgs) == 3 and "published" in svgs[-1].read_text()


def test_without_matplotlib_plot_is_one_line_and_writes_no_folder(constructed, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = tmp_path / "plots"
    result = CliRunner().invoke(main, ["plot", "--store", str(constructed.path), "--out", str(out)])
    assert result.exit_code == 2 and result.output == "error: plotting needs matplotlib: pip install -e '.[plot]'\n"
    assert not out.exists()
