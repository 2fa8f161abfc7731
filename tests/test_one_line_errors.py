"""Every input and every output failure is one line (what, where, how to fix), exit 2, and
nothing half-written: the matrix file, the plan-time check of a user's model, the files and
folders the reports and figures go to, and the labels they print."""

import errno
import os
import subprocess
import sys
import textwrap

import pytest
from fixtures import fill, invoke, one_line_exit_2, run_config

from harness.backends.base import RunAborted, guarded
from harness.store import Store


@pytest.fixture
def labelled(tmp_path):
    """A store whose configuration is labelled with text matplotlib would take for a formula."""
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        fill(store, run_config(rounds=3, label=r"a $\x$ b"), [0.1, 0.2, 0.3])
        fill(store, run_config(rounds=3, label="mlp | plain", encoder="mlp"), [0.2, 0.2, 0.3])
    return path


# --------------------------------------------------------------------------- the matrix file

def test_a_matrix_nested_too_deep_to_read_is_one_line(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text("[defaults]\nx = " + "[" * 100_000 + "]" * 100_000 + "\n")
    one_line_exit_2(invoke("plan", "--matrix", path, "--no-estimate"), "nest too deeply to read")
    one_line_exit_2(invoke("plan", "--matrix", path, "--set", "lr=" + "[" * 5000 + "]" * 5000), "nest")


def test_a_matrix_of_included_entries_only_over_the_limit_says_its_sizes(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text("".join(f"[[matrix.include]]\nlr = {i + 1}\n" for i in range(12)))
    one_line_exit_2(invoke("plan", "--matrix", path, "--max-configs", "10"),
                    "crosses 13 combinations (1 + 12 included), over the limit of 10")


def test_a_label_of_more_than_one_line_is_refused(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('[defaults]\nlabel = "two\\nlines"\n')
    one_line_exit_2(invoke("plan", "--matrix", path), "'label' = 'two\\nlines': must be one line of printable text")


# --------------------------------------------------------------------------- a user's model at plan time

def test_a_model_that_exits_hangs_or_crashes_when_checked_is_one_line(tmp_path, monkeypatch):
    """The plan-time check runs in a forked copy of the command: whatever the model does there
    is one line, and the command itself goes on to say it."""
    (tmp_path / "stubborn.py").write_text(textwrap.dedent("""
        import sys, time
        from torch import nn

        class Exits(nn.Module):
            def __init__(self):
                super().__init__()
                sys.exit(0)

        class Waits(nn.Module):
            def __init__(self):
                super().__init__()
                time.sleep(10 ** 6)

        class Crashes(nn.Module):
            def __init__(self):
                super().__init__()
                import ctypes
                ctypes.string_at(0)

        class Leaves(nn.Module):
            def __init__(self):
                super().__init__()
                import os
                os._exit(0)
    """))
    monkeypatch.setattr("architectures.external.PROBE_SECONDS", 1)
    cases = (("Exits", "the model called sys.exit(0) when built"), ("Waits", "took over 1 s"),
             ("Crashes", "its process died of SIGSEGV (a crash in native code)"),
             ("Leaves", "its process ended with exit code 0 (it ended itself, as os._exit does)"))
    for name, said in cases:
        path = tmp_path / f"{name}.toml"
        path.write_text(f'[defaults]\nencoder = "stubborn:{name}"\n')
        one_line_exit_2(invoke("plan", "--matrix", path, "--no-estimate"), said)


def test_work_that_exits_is_its_tasks_failure_in_a_worker():
    def exits(task, context):
        sys.exit(task)

    def interrupts(task, context):
        raise KeyboardInterrupt

    with pytest.raises(RunAborted, match=r"the run's code called sys.exit\(3\)"):
        guarded(exits, 3, None)
    with pytest.raises(RunAborted, match="raised KeyboardInterrupt itself"):
        guarded(interrupts, 0, None)
    assert guarded(lambda task, context: task * 2, 4, None) == 8


# --------------------------------------------------------------------------- outputs

def test_labels_are_printed_as_written_in_figures_and_tables(labelled, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "plots"
    result = invoke("plot", "--store", labelled, "--out", out)
    assert result.exit_code == 0, result.output
    assert "a $\\x$ b" in (out / "test_error_boxplot_1.svg").read_text() or any(
        "$\\x$" in path.read_text() for path in out.glob("*.svg"))
    report = invoke("report", "--store", labelled, "--html", tmp_path / "page")
    assert report.exit_code == 0, report.output
    markdown = invoke("table", "--store", labelled).output
    assert "mlp \\| plain" in markdown


def test_the_latex_output_carries_no_markdown(labelled):
    latex = invoke("table", "--store", labelled, "--format", "latex").output
    assert "**" not in latex and "\\textbf{" in latex


def test_figures_from_a_folder_that_is_not_there_are_refused(labelled, tmp_path):
    one_line_exit_2(invoke("table", "--store", labelled, "--figures", tmp_path / "nowhere"),
                    "--figures {}: no such folder".format(tmp_path / "nowhere"))


def test_outputs_under_a_file_are_one_line_and_write_nothing(labelled, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    one_line_exit_2(invoke("plot", "--store", labelled, "--out", blocker / "plots"), f"--out {blocker / 'plots'}")
    one_line_exit_2(invoke("report", "--store", labelled, "--html", blocker / "page"), f"--html {blocker / 'page'}")
    assert blocker.read_text() == ""


def test_a_full_disk_leaves_no_truncated_figure(labelled, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    real_savefig = Figure.savefig
    written = []

    def savefig(self, target, *arguments, **options):
        if written:  # the second file: half of it written, then the disk is full
            with open(target, "w") as file:
                file.write("<svg")
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(target)
        return real_savefig(self, target, *arguments, **options)

    monkeypatch.setattr(Figure, "savefig", savefig)
    out = tmp_path / "plots"
    one_line_exit_2(invoke("plot", "--store", labelled, "--out", out), "No space left on device")
    left = sorted(path.name for path in out.iterdir())
    assert left == ["test_error_boxplot_1.png"], left  # complete files only, no partial one


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_table_written_to_a_full_device_is_one_line(labelled):
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-c", "from harness.cli import entry; entry()", "table", "--store",
                                 str(labelled)], stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: cannot write standard output: No space left on device; free some space or choose a writable place"]
