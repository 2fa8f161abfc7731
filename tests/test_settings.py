"""Settings declared once (harness.settings): the common ones and each task's own, their
checks, a configuration's flat view, its id and its name; the README's table."""

import dataclasses
import pickle
import re
from pathlib import Path

import pytest
from fixtures import run_config

from harness.errors import ConfigError
from harness.settings import (
    APPLIED,
    COMMON,
    FROM_BASELINE,
    STRUCTURE,
    TRAINING,
    RunConfig,
    check_value,
    declare,
    setting,
)
from harness.tasks import declared, factors, get_task, settings_table
from harness.tasks.pairs.settings import MODEL_OPTIONS, ModelOptions, PairsSettings, model_options

ROOT = Path(__file__).resolve().parent.parent


def test_readme_settings_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- settings:begin -->\n(.*?)\n<!-- settings:end -->", readme, re.S)
    assert found, "README.md lost its <!-- settings:begin/end --> markers"
    assert found.group(1) == settings_table(), "README settings table is stale: paste `harness settings` into it"


def test_every_setting_is_declared_with_metadata_and_derived_lists_follow():
    known = declared()
    assert set(COMMON) <= set(known) and set(get_task("pairs").declared()) <= set(known)
    assert {f.name for f in dataclasses.fields(RunConfig)} == {*COMMON, "task_settings"}
    for name, declaration in known.items():
        assert declaration.meta.help, f"{name} has no help"
        assert declaration.type in (bool, int, float, str, dict), name
        if declaration.meta.effect == FROM_BASELINE:
            check_value(known, name, declaration.meta.baseline, "test")  # a baseline is a legal value
        if declaration.meta.has_neutral:
            check_value(known, name, declaration.meta.neutral, "test")
            # a setting in the id must default to its neutral value, or every stored id would
            # change; a presentation setting's neutral only says what older runs did
            assert declaration.meta.presentation or declaration.meta.neutral == declaration.default, name
    assert known["rounds"].meta.presentation and not known["lr"].meta.presentation
    assert known["ema_decay"].meta.neutral == 0.0 and not known["lr"].meta.has_neutral
    assert factors()[:3] == ["encoder", "pairing", "weight_sharing"]
    assert {name: d.meta.dependent for name, d in known.items() if d.meta.dependent} == {
        "transfer": ("pretrain_epochs", "epochs")}
    assert known["points"].task == "disk" and known["encoder"].task == "pairs" and known["lr"].task is None


def test_model_options_are_derived_from_the_settings_flagged_as_such():
    flagged = [name for name, d in declare(PairsSettings).items() if d.meta.model_option]
    assert list(MODEL_OPTIONS) == flagged == ["pairing", "weight_sharing", "aux_loss", "batch_norm", "dropout",
                                               "transfer", "width", "head_hidden", "model_args", "model_output",
                                               "weight_init", "bias_init"]
    assert {f.name: f.default for f in dataclasses.fields(ModelOptions)} == {
        name: d.default for name, d in declare(PairsSettings).items() if name in flagged}
    kinds = {f.name: f.metadata["model_option"] for f in dataclasses.fields(ModelOptions)}
    assert [name for name, kind in kinds.items() if kind == TRAINING] == ["aux_loss", "transfer"]
    assert [name for name, kind in kinds.items() if kind == APPLIED] == ["model_args", "model_output", "weight_init", "bias_init"]
    from architectures.external import STRUCTURAL

    assert list(STRUCTURAL) == [name for name, kind in kinds.items() if kind == STRUCTURE]
    options = model_options(run_config(pairing="joint", dropout=0.25))
    assert (options.pairing, options.weight_sharing, options.dropout) == ("joint", False, 0.25)
    assert pickle.loads(pickle.dumps(options)) == options  # workers receive them


def test_a_setting_without_declaration_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Settings:
        fine: int = setting(1, "declared")
        bare: int = 2

    with pytest.raises(TypeError, match="Settings.bare has no Setting"):
        declare(Settings)


def test_ranges_come_from_the_declarations():
    cases = {
        ("augment_shift", 5): "must be in 0..4 pixels (a 14x14 digit moved further leaves the image)",
        ("augment_rotate", 91.0): "must be in [0, 90] degrees",
        ("head_hidden", 5000): "must be in 0..4096 units",
        ("momentum", 1.0): "must be in [0, 1)",
        ("weight_decay", -0.1): "must not be negative",
        ("pairs", 0): "must be greater than 0",
        ("optimizer", "adan"): "must be one of adam, adamw, sgd; did you mean 'adam'?",
        ("encoder", "cnm"): "not a known model; did you mean 'cnn'?",
        ("activations", "tanh,sigmoid"): "'sigmoid' is not an activation",
    }
    for (key, value), message in cases.items():
        with pytest.raises(ConfigError) as error:
            check_value(declared(), key, value, "here")
        assert str(error.value).startswith(f"here: '{key}' = {value!r}: {message}")


def test_a_configuration_reads_flat_and_keys_common_and_task_settings_together():
    pairs = run_config(encoder="mlp", lr=0.01, aux_loss=True)
    assert (pairs.encoder, pairs.lr, pairs.task) == ("mlp", 0.01, "pairs")
    assert isinstance(pairs.task_settings, PairsSettings)
    flat = pairs.settings()
    assert list(flat)[: len(COMMON)] == list(COMMON) and flat["encoder"] == "mlp" and flat["lr"] == 0.01
    identity = pairs.identity()
    assert identity["lr"] == 0.01 and identity["encoder"] == "mlp" and "rounds" not in identity
    assert "ema_decay" not in identity and "task" not in identity  # neutral values stay out of the id
    assert "points" not in identity  # another task's setting is none of a pairs configuration's
    changed = pairs.replace(aux_loss=False, lr=0.1)
    assert (changed.aux_loss, changed.lr, changed.encoder) == (False, 0.1, "mlp")
    with pytest.raises(AttributeError, match="no setting 'points'"):
        _ = pairs.points
    assert pickle.loads(pickle.dumps(pairs)) == pairs and pickle.loads(pickle.dumps(pairs)).config_id == pairs.config_id


def test_ids_of_the_default_and_the_disk_task_are_the_stored_ones():
    # the hash of the flat settings: the pairs task's at the defaults...
    assert run_config().config_id == "1c869e89c8294a1ecf3ecc4c150dec42fa6c20a6b0f41033f0d87d87090c7e58"
    assert run_config(aux_loss=True).config_id == "83e68affed8e66536af2ffe625f390f20e80aab7386cb2eaf5f23e01b1bd9e97"
    # ...and the disk task's carry the pairs settings it was first keyed with (its ID_CONSTANTS)
    disk = run_config(task="disk")
    assert disk.identity()["encoder"] == "cnn" and disk.identity()["task"] == "disk"
    assert disk.config_id == "3834b7d5cf3712f49a865e39736d3c25319035338de818f477c78615969cf784"
    torch_tanh = run_config(task="disk", framework="torch", activations="tanh")
    assert torch_tanh.config_id == "0392ca13e9b9b2e98c9bcb7adbf8d23cb72ceb46b80e59c110063a98027580a2"


def test_a_task_keeps_its_settings_and_refuses_the_others_in_one_line():
    with pytest.raises(ConfigError, match="^test: 'aux_loss' is a setting of the pairs task, and this configuration's "
                                          "task is 'disk': remove it or set task = \"pairs\"$"):
        run_config(task="disk", aux_loss=True)
    with pytest.raises(ConfigError, match="'hidden_units' is a setting of the disk task"):
        run_config(hidden_units=10)
    with pytest.raises(ConfigError, match="'validation' = 400 must be below 'points' = 300"):
        run_config(task="disk", points=300, validation=400)
    with pytest.raises(ConfigError, match="'task' = 'dsik': must be one of pairs, disk; did you mean 'disk'"):
        run_config(task="dsik")
    with pytest.raises(ConfigError, match="unknown setting 'epoch'; did you mean 'epochs'"):
        run_config(epoch=3)


def test_names_are_the_tags_of_the_common_settings_then_the_tasks():
    assert run_config(encoder="cnn", aux_loss=True, batch_norm=True, dropout=0.25).name == "cnn siamese ws aux bn drop0.25"
    assert run_config(task="disk", activations="tanh,relu,relu,tanh", loss_reduction="sum", loss="mse_linear",
                  optimizer="sgd").name == "disk minidl tanh,relu,relu,tanh summed-loss"
    assert run_config(label="mine").name == "mine"
