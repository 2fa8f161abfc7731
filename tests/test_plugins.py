"""A user's own model (harness.plugins, architectures.external): plugin files and modules,
`module:Class` names, entry points, the options a model takes, through the Python API."""

import importlib.metadata
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from harness import api
from harness.cli import main
from harness.config import expand, load_matrix
from harness.errors import ConfigError
from harness.store import Store

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# Written against the documented contract only: a plain module returning comparison logits.
PLAIN_MODEL = """
    import torch
    from torch import nn


    class PlainNet(nn.Module):
        def __init__(self, hidden=16):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(2 * 14 * 14, hidden), nn.ReLU(), nn.Linear(hidden, 2))

        def forward(self, pairs):
            return self.net(pairs)
"""


def study(tmp_path, body: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


@pytest.fixture
def example(tmp_path):
    """The examples/ study copied away from the repository: plugins resolve beside the matrix."""
    for name in ("lenet_siamese.py", "dropout_study.toml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    return tmp_path / "dropout_study.toml"


@pytest.mark.slow
def test_a_plugin_file_registers_a_model_that_runs_with_aux_loss_on_and_off(fake_mnist, example, tmp_path):
    plan = expand(load_matrix(example), "smoke", {"pairs": 100}, only={"swap_augment": False, "dropout": 0.0})
    assert [c.encoder for c in plan.configs] == ["lenet_siamese"] * 2
    assert plan.matrix.plugins[0].path == str(example.parent / "lenet_siamese.py")
    summary = api.run(plan, tmp_path / "s.sqlite", device="cpu", workers=2)
    assert summary.finished == 4 and not summary.failed
    table = api.summary(tmp_path / "s.sqlite", plan)
    assert set(table["params"]) == {56_492} and table["test_error_mean"].notna().all()
    assert table["test_digit_error_mean"].notna().sum() == 1  # only the aux configuration has digit errors


@pytest.mark.slow
def test_runs_record_the_plugin_and_the_store_keeps_its_source_once(fake_mnist, example, tmp_path):
    plan = expand(load_matrix(example), "smoke", {"pairs": 100}, only={"swap_augment": False, "aux_loss": False})
    api.run(plan, tmp_path / "s.sqlite", device="cpu", workers=1)
    with Store.open_readonly(tmp_path / "s.sqlite") as store:
        runs, sources = store.runs(), store.sources()
    plugin = sources[sources["kind"] == "plugin"]
    assert len(plugin) == 1 and plugin.iloc[0]["text"] == (example.parent / "lenet_siamese.py").read_text()
    assert all(plugin.iloc[0]["sha256"] in text for text in runs["plugins"])
    result = CliRunner().invoke(main, ["show", "--store", str(tmp_path / "s.sqlite"), runs["config_id"][0][:10], "--code"])
    assert result.exit_code == 0, result.output
    assert "lenet_siamese" in result.output and "class LeNetSiamese" in result.output


def test_factors_a_user_model_does_not_take_are_dropped_with_the_reason(tmp_path):
    (tmp_path / "plain.py").write_text(textwrap.dedent(PLAIN_MODEL) + "\nfrom architectures import register\n"
                                       "register('plain_net')(PlainNet)\n")
    path = study(tmp_path, """
        plugins = ["plain.py"]
        [matrix]
        encoder = ["plain_net"]
        batch_norm = [false, true]
    """)
    plan = expand(load_matrix(path))
    assert len(plan.configs) == 1
    assert plan.dropped[0].reason == "plain_net takes no 'batch_norm' option, so batch_norm = True cannot apply"


@pytest.mark.slow
def test_a_module_class_reference_and_a_plain_tensor_output_train(fake_mnist, tmp_path, monkeypatch):
    (tmp_path / "user_models.py").write_text(textwrap.dedent(PLAIN_MODEL))
    monkeypatch.syspath_prepend(str(tmp_path))
    plan = api.plan(configs=[{"encoder": "user_models:PlainNet", "epochs": 1, "rounds": 1, "pairs": 100}])
    summary = api.run(plan, tmp_path / "s.sqlite", device="cpu", workers=1)
    assert summary.finished == 1 and not summary.failed
    assert api.summary(tmp_path / "s.sqlite")["params"].iloc[0] == 2 * 14 * 14 * 16 + 16 + 16 * 2 + 2
    with pytest.raises(ConfigError, match="returns no digit logits, only the comparison: aux_loss needs them"):
        api.plan(configs=[{"encoder": "user_models:PlainNet", "aux_loss": True, "epochs": 1, "rounds": 1, "pairs": 100}])


def test_an_installed_entry_point_is_found_by_name_and_imported_only_when_used(tmp_path, monkeypatch):
    from architectures import FAMILIES, ModelOptions, family, names

    (tmp_path / "installed_models.py").write_text(textwrap.dedent(PLAIN_MODEL))
    monkeypatch.syspath_prepend(str(tmp_path))
    point = importlib.metadata.EntryPoint("entry_net", "installed_models:PlainNet", "harness.architectures")
    original = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: [point] if kw.get("group") == "harness.architectures" else original(**kw))
    assert "entry_net" in names() and "installed_models" not in sys.modules  # listed, not imported
    model = family("entry_net").builder(ModelOptions())
    assert model(torch.randn(3, 2, 14, 14)).comparison.shape == (3, 2)
    FAMILIES.unregister("entry_net")


@pytest.mark.parametrize(
    ("plugin", "message"),
    [("broken.py", "importing .*broken.py failed at line 2: RuntimeError: broken on purpose"),
     ("missing.py", "cannot read .*missing.py"),
     ("no_such_module_here", "cannot import the module \\(ModuleNotFoundError")],
)
def test_a_bad_plugin_is_one_line_and_exit_2_with_nothing_written(tmp_path, plugin, message):
    (tmp_path / "broken.py").write_text("import torch\nraise RuntimeError('broken on purpose')\n")
    path = study(tmp_path, "[defaults]\nepochs = 1\n")
    store = tmp_path / "s.sqlite"
    result = CliRunner().invoke(main, ["run", "--matrix", str(path), "--plugin", str(tmp_path / plugin)
                                       if plugin.endswith(".py") else plugin, "--store", str(store)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --plugin: plugin ")
    assert __import__("re").search(message, lines[0]), lines[0]
    assert not store.exists()


def test_a_module_that_cannot_be_imported_is_a_model_error_in_one_line():
    from architectures import UnknownModelError, family

    with pytest.raises(UnknownModelError, match=r"^model no_such_module:Net: no module 'no_such_module' \(looked for "
                                                r"no_such_module.py beside the matrix file, in the working directory"):
        family("no_such_module:Net")
