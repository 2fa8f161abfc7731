"""The matrix file (harness.config): loading, crossing, excluding, including, profiles,
--set, the configurations it expands to and the errors it refuses with."""

from pathlib import Path

import pytest
from click.testing import CliRunner
from fixtures import run_config

from harness.cli import main
from harness.config import Plan, combinations, expand, load_matrix, parse_assignments, with_sets
from harness.errors import ConfigError

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
    a = run_config(label="x", rounds=3)
    b = run_config(label="y", rounds=10, reference_test_error=5.0)
    assert a.config_id == b.config_id
    assert run_config(lr=0.01).config_id != a.config_id


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

    import harness.config as matrix_module

    values = "[" + ", ".join(str(v) for v in (0.0, 0.1, 0.2, 0.3, 0.4)) + "]"
    factors = ["dropout", "label_smoothing", "momentum", "ema_decay", "aux_weight", "lr", "weight_decay",
               "augment_rotate", "width", "batch_size"]
    lines = ["[matrix]"] + [f"{key} = {values if key != 'batch_size' else '[10, 20, 30, 40, 50]'}" for key in factors]
    path = write(tmp_path, "\n".join(lines).replace("width = [0.0, ", "width = [0.5, ").replace("lr = [0.0, ", "lr = [0.5, "))
    monkeypatch.setattr(matrix_module, "make_config", lambda *a: pytest.fail("a configuration was made"))
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
    plan = Plan.from_configs(
        [run_config(encoder="mlp", rounds=2), {"encoder": "cnn", "aux_loss": True, "rounds": 3},
         run_config(encoder="mlp", rounds=2), {"transfer": "rule"}],
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
    assert "mlp siamese ws aux (lr=0.01, aux_weight=0.5)" in names  # the common settings first
    reference = expand(load_matrix(write(tmp_path, "[defaults]\nencoder = 'mlp'\naux_loss = true\n", "one.toml")))
    assert reference.configs[0].name == "mlp siamese ws aux"  # a name alone in its plan stays as it was
    unlabelled = {run_config(encoder="mlp", aux_loss=True, lr=lr, aux_weight=w).config_id
                  for lr in (1e-3, 1e-2) for w in (0.5, 1.0)}
    assert {c.config_id for c in plan.configs} == unlabelled  # the names are presentation: ids unchanged


def study(tmp_path, body: str, name: str = "study.toml") -> Path:
    import textwrap

    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def test_set_overrides_values_and_turns_lists_into_factors(tmp_path):
    path = study(tmp_path, """
        [defaults]
        epochs = 25
        dropout = 0.25
        [matrix]
        encoder = ["mlp", "cnn"]
        [profiles.quick]
        epochs = 3
    """)
    matrix, overrides = with_sets(load_matrix(path), ("epochs=5", "dropout=[0, 0.5]", "encoder=cnn"))
    plan = expand(matrix, "quick", overrides)
    assert sorted((c.encoder, c.epochs, c.dropout) for c in plan.configs) == [("cnn", 5, 0.0), ("cnn", 5, 0.5)]
    assert matrix.describe("quick") == f"{path} --profile quick --set epochs=5 --set dropout=[0, 0.5] --set encoder=cnn"
    with pytest.raises(ConfigError, match=r"^--set dropout=\[0, 2\]: 'dropout' = 2.0: must be in \[0, 1\)$"):
        with_sets(load_matrix(path), ("dropout=[0, 2]",))
    result = CliRunner().invoke(main, ["plan", "--matrix", str(path), "--set", "epoch=3", "--no-estimate"])
    assert result.exit_code == 2 and result.output.strip() == "error: --set epoch=3: unknown setting 'epoch'; did you mean 'epochs'?"


def test_a_set_list_crosses_every_include_of_a_preset_matrix(tmp_path):
    """A file of [[matrix.include]] entries only (as the reports' presets are): `--set` with a
    list doubles every entry, instead of the includes all extending one combination."""
    path = study(tmp_path, """
        [[matrix.include]]
        label = "A"
        encoder = "mlp"
        [[matrix.include]]
        label = "B"
        encoder = "cnn"
        normalize = false
    """)
    matrix, overrides = with_sets(load_matrix(path), ("normalize=[true, false]", "epochs=[1, 2]"))
    plan = expand(matrix, None, overrides)
    assert sorted((c.label[0], c.normalize, c.epochs) for c in plan.configs) == [
        (label, normalize, epochs) for label in "AB" for normalize in (False, True) for epochs in (1, 2)
    ]
    assert "A (epochs=2, normalize=false)" in {c.name for c in plan.configs}  # the common settings first
    # a single value afterwards takes the key back from the crossing
    matrix, overrides = with_sets(load_matrix(path), ("normalize=[true, false]", "normalize=false"))
    assert sorted((c.name, c.normalize) for c in expand(matrix, None, overrides).configs) == [("A", False), ("B", False)]
