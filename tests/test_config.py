import dataclasses
from pathlib import Path

import pytest

from harness.config import (
    ConfigError,
    RunConfig,
    check_value,
    combinations,
    expand,
    load_matrix,
    parse_assignments,
)

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path, text, name="m.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_cross_exclude_partial_match_and_include(tmp_path):
    matrix = load_matrix(write(tmp_path, """
[matrix]
encoder = ["mlp", "cnn"]
aux_loss = [false, true]
batch_norm = [false, true]
[[matrix.exclude]]
encoder = "mlp"
aux_loss = true
[[matrix.include]]
encoder = "cnn"
dropout = 0.25
[[matrix.include]]
encoder = "linear"
aux_loss = true
"""))
    combos = combinations(matrix)
    assert len(combos) == 2 * 2 * 2 - 2 + 1  # crossed, minus the partial-match exclude, plus one new
    assert not any(c["encoder"] == "mlp" and c["aux_loss"] for c in combos)
    cnn = [c for c in combos if c["encoder"] == "cnn"]
    assert len(cnn) == 4 and all(c["dropout"] == 0.25 for c in cnn)  # include extends matches
    assert {"encoder": "linear", "aux_loss": True} in combos  # include that matches nothing is added


def test_include_only_matrix_adds_each_entry(tmp_path):
    matrix = load_matrix(write(tmp_path, "[[matrix.include]]\nencoder = 'mlp'\n[[matrix.include]]\nencoder = 'cnn'\n"))
    assert [c.encoder for c in expand(matrix).configs] == ["mlp", "cnn"]


def test_meaningless_combinations_dropped_with_reason(tmp_path):
    matrix = load_matrix(write(tmp_path, """
[matrix]
pairing = ["joint", "siamese"]
weight_sharing = [false, true]
transfer = ["none", "rule"]
aux_loss = [true]
"""))
    plan = expand(matrix)
    reasons = [d.reason for d in plan.dropped]
    assert any("siamese pairing only" in r for r in reasons)
    assert any("needs weight sharing" in r for r in reasons)
    # joint; siamese without sharing; siamese with sharing, without and with the rule
    assert len(plan.configs) == 4
    assert len(plan.configs) + len(plan.dropped) == 8


def test_precedence_cli_over_profile_over_matrix_over_defaults(tmp_path):
    matrix = load_matrix(write(tmp_path, """
[defaults]
epochs = 10
lr = 0.01
batch_size = 50
rounds = 4
[matrix]
lr = [0.1]
batch_size = [20]
[profiles.quick]
epochs = 2
batch_size = 30
"""))
    config = expand(matrix, "quick", {"batch_size": 7}).configs[0]
    assert (config.epochs, config.lr, config.batch_size, config.rounds) == (2, 0.1, 7, 4)


def test_default_matrix_and_reports_expand():
    plan = expand(load_matrix(ROOT / "ablations.toml"))
    assert len(plan.configs) > 100
    assert all(c.rounds == 10 and c.epochs == 25 for c in plan.configs)
    assert {c.encoder for c in plan.configs} == {"mlp", "cnn"}
    smoke = expand(load_matrix(ROOT / "ablations.toml"), "smoke")
    assert len(smoke.configs) == len(plan.configs)


def test_config_id_ignores_presentation_and_rounds():
    a = RunConfig(label="x", rounds=3)
    b = RunConfig(label="y", rounds=10, reference_test_error=5.0)
    assert a.config_id == b.config_id
    assert RunConfig(lr=0.01).config_id != a.config_id


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("[defaults]\nepochz = 3\n", "unknown setting 'epochz'; did you mean 'epochs'"),
        ("[defualts]\nepochs = 3\n", "unknown section [defualts]; did you mean 'defaults'"),
        ("[defaults]\nepochs = 'ten'\n", "'epochs' must be an integer"),
        ("[defaults]\nepochs = 0\n", "'epochs' = 0: must be greater than 0"),
        ("[defaults]\nrounds = -1\n", "must be greater than 0"),
        ("[defaults]\nlr = 0\n", "'lr' = 0"),
        ("[defaults]\ndropout = 1.0\n", "must be in [0, 1)"),
        ("[defaults]\npairs = 6000\n", "at most 5000 pairs"),
        ("[defaults]\nbatch_norm = 1\n", "must be true or false"),
        ("[matrix]\nencoder = []\n", "empty list"),
        ("[matrix]\nencoder = 'cnn'\n", "must be a list"),
        ("[matrix]\nencoder = ['cnm']\n", "did you mean 'cnn'"),
        ("[matrix]\npairing = ['joint']\n[[matrix.exclude]]\npairing = 'joint'\n", "expands to no job"),
        ("[matrix]\npairing = ['joint']\n[[matrix.exclude]]\nencoder = 'cnn'\n", "not a factor"),
        ("[defaults\nepochs = 3\n", "TOML syntax error"),
        ("[defaults]\nvalidation = 1000\n", "must be below 'pairs'"),
        ("[defaults]\nlr = nan\n", "'lr' = nan: must be a finite number"),
        ("[defaults]\naux_weight = inf\n", "must be a finite number"),
        ("[defaults]\nseed = 9223372036854775807\n", "'seed' = 9223372036854775807: must be in 0..4294967295"),
        ("[defaults]\nrounds = 100000\n", "must be at most 1000"),
        ("[defaults]\nwidth = 1000.0\n", "must be at most 16"),
    ],
)
def test_errors_name_file_key_and_fix(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        expand(load_matrix(path))
    message = str(error.value)
    assert str(path) in message
    assert fragment in message


def test_missing_file_and_unknown_profile(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_matrix(tmp_path / "nope.toml")
    matrix = load_matrix(write(tmp_path, "[profiles.smoke]\nepochs = 1\n"))
    with pytest.raises(ConfigError, match="unknown profile 'smoek'; did you mean 'smoke'"):
        expand(matrix, "smoek")


def test_command_line_assignments():
    assert parse_assignments(("encoder=cnn", "aux_loss=true", "dropout=0.25"), "--only") == {
        "encoder": "cnn",
        "aux_loss": True,
        "dropout": 0.25,
    }
    with pytest.raises(ConfigError, match="^--only encodr=cnn: unknown setting 'encodr'"):
        parse_assignments(("encodr=cnn",), "--only")


def test_a_matrix_file_that_is_not_utf8_is_one_error(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes("[defaults]\nlabel = 'Réseau'\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8 text .*save the matrix file as UTF-8"):
        load_matrix(path)


def test_a_huge_matrix_is_refused_before_anything_is_made(tmp_path, monkeypatch):
    import time

    import harness.config as config

    values = "[" + ", ".join(str(v) for v in (0.0, 0.1, 0.2, 0.3, 0.4)) + "]"
    factors = ["dropout", "label_smoothing", "momentum", "ema_decay", "aux_weight", "lr", "weight_decay",
               "augment_rotate", "width", "batch_size"]
    lines = ["[matrix]"] + [f"{key} = {values if key != 'batch_size' else '[10, 20, 30, 40, 50]'}" for key in factors]
    path = write(tmp_path, "\n".join(lines).replace("width = [0.0, ", "width = [0.5, ").replace("lr = [0.0, ", "lr = [0.5, "))
    monkeypatch.setattr(config, "resolve", lambda *a: pytest.fail("a configuration was made"))
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"crosses 9,765,625 combinations \(5 x 5 x 5.*over the limit of 10,000.*--max-configs"):
        expand(load_matrix(path))
    assert time.monotonic() - started < 1


def test_the_limit_can_be_raised(tmp_path):
    path = write(tmp_path, "[matrix]\ndropout = [0.0, 0.1, 0.2]\nlr = [1e-3, 1e-2]\n")
    with pytest.raises(ConfigError, match="crosses 6 combinations"):
        expand(load_matrix(path), max_configs=5)
    assert len(expand(load_matrix(path), max_configs=6).configs) == 6


def test_a_plan_from_configurations_made_in_code():
    from harness.config import Plan

    plan = Plan.from_configs(
        [RunConfig(encoder="mlp", rounds=2), {"encoder": "cnn", "aux_loss": True, "rounds": 3},
         RunConfig(encoder="mlp", rounds=2), {"transfer": "rule"}],
        source="notebook",
    )
    assert [c.name for c in plan.configs] == ["mlp siamese ws", "cnn siamese ws aux"]
    assert len(plan.jobs) == 5 and plan.matrix.path == "notebook"
    assert [d.reason.split(":")[0] for d in plan.dropped] == ["same configuration as 'mlp siamese ws'", "transfer 'rule' trains only the digit classifier"]
    with pytest.raises(ConfigError, match=r"notebook \(configuration 1\): unknown setting 'epoch'; did you mean 'epochs'"):
        Plan.from_configs([{"epoch": 3}], source="notebook")


def test_two_configurations_of_a_plan_never_share_a_name(tmp_path):
    path = write(tmp_path, "[defaults]\nencoder = 'mlp'\naux_loss = true\n[matrix]\nlr = [1e-3, 1e-2]\naux_weight = [0.5, 1.0]\n")
    plan = expand(load_matrix(path))
    names = [c.name for c in plan.configs]
    assert len(set(names)) == 4, names
    assert "mlp siamese ws aux (aux_weight=0.5, lr=0.01)" in names
    reference = expand(load_matrix(write(tmp_path, "[defaults]\nencoder = 'mlp'\naux_loss = true\n", "one.toml")))
    assert reference.configs[0].name == "mlp siamese ws aux"  # a name alone in its plan stays as it was
    unlabelled = {RunConfig(encoder="mlp", aux_loss=True, lr=lr, aux_weight=w).config_id
                  for lr in (1e-3, 1e-2) for w in (0.5, 1.0)}
    assert {c.config_id for c in plan.configs} == unlabelled  # the names are presentation: ids unchanged


# --------------------------------------------------------------------------- settings declared once


def test_readme_settings_table_is_the_generated_one():
    import re
    from pathlib import Path

    from harness.settings import settings_table

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    found = re.search(r"<!-- settings:begin -->\n(.*?)\n<!-- settings:end -->", readme, re.S)
    assert found, "README.md lost its <!-- settings:begin/end --> markers"
    assert found.group(1) == settings_table(), "README settings table is stale: paste `harness settings` into it"


def test_every_setting_is_declared_with_metadata_and_derived_tables_follow():
    from harness import settings

    assert set(settings.DECLARED) == {f.name for f in dataclasses.fields(RunConfig)}
    for name, declared in settings.DECLARED.items():
        assert declared.meta.help, f"{name} has no help"
        assert declared.type in (bool, int, float, str), name
        if declared.meta.effect == settings.FROM_BASELINE:
            check_value(name, declared.meta.baseline, "test")  # a baseline is a legal value
        if declared.meta.has_neutral:
            check_value(name, declared.meta.neutral, "test")
            # a setting in the id must default to its neutral value, or every stored id would
            # change; a presentation setting's neutral only says what older runs did
            assert declared.meta.presentation or declared.meta.neutral == declared.default, name
    assert "rounds" in settings.PRESENTATION_KEYS and "lr" not in settings.PRESENTATION_KEYS
    assert settings.NEUTRAL["ema_decay"] == 0.0 and "lr" not in settings.NEUTRAL
    assert settings.FACTORS[:3] == ("encoder", "pairing", "weight_sharing")
    assert settings.DEPENDENT == {"transfer": ("pretrain_epochs", "epochs")}


def test_a_setting_without_declaration_is_refused():
    from harness.settings import declare, setting

    @dataclasses.dataclass(frozen=True)
    class RunConfig:
        fine: int = setting(1, "declared", "test")
        bare: int = 2

    with pytest.raises(TypeError, match="RunConfig.bare has no Setting"):
        declare(RunConfig)


def test_ranges_come_from_the_declarations():
    cases = {
        ("augment_shift", 5): "must be in 0..4 pixels (a 14x14 digit moved further leaves the image)",
        ("augment_rotate", 91.0): "must be in [0, 90] degrees",
        ("head_hidden", 5000): "must be in 0..4096 units",
        ("momentum", 1.0): "must be in [0, 1)",
        ("weight_decay", -0.1): "must not be negative",
        ("pairs", 0): "must be greater than 0",
        ("optimizer", "adan"): "must be one of adam, adamw, sgd; did you mean 'adam'?",
    }
    for (key, value), message in cases.items():
        with pytest.raises(ConfigError) as error:
            check_value(key, value, "here")
        assert str(error.value) == f"here: '{key}' = {value!r}: {message}"
