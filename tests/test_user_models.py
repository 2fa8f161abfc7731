"""A user's model runs as written (architectures.external): every output form and signature the
contract accepts trains to the numbers of its canonical form; every form it refuses is one line
at plan time with nothing stored; constructor arguments come from the matrix; names say only
what the model takes; the layout is the one the model was written for; the user's code that
runs in a worker is the text the driver read and recorded."""

import itertools
import sqlite3
import textwrap

import pytest
import torch
from click.testing import CliRunner

from harness import api
from harness.cli import main
from harness.config import expand, load_matrix
from harness.errors import ConfigError

_names = itertools.count()

# One computation, every way a student returns it. `Canonical` returns (comparison (B, 2),
# digits (B, 2, 10)); each variant computes the same numbers from the same layers, drawn in the
# same order, and only hands them over differently.
MODELS = """
import torch
from torch import nn


class Digits(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, kernel_size=3)                  # (8, 12, 12)
        self.pool = nn.MaxPool2d(2)                                   # (8, 6, 6)
        self.fc = nn.Linear(8 * 6 * 6, hidden)
        self.out = nn.Linear(hidden, 10)

    def forward(self, x):                                             # (b, 1, 14, 14)
        x = self.pool(torch.relu(self.conv(x)))
        x = x.view(x.size(0), -1)                                     # a view after a convolution
        return self.out(torch.relu(self.fc(x)))


class Canonical(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.digit_encoder = Digits(hidden)
        self.head = nn.Linear(20, 2)

    def parts(self, first, second):
        a, b = self.digit_encoder(first), self.digit_encoder(second)
        return self.head(torch.cat([a, b], 1)), a, b

    def forward(self, x):
        comparison, a, b = self.parts(x[:, 0:1], x[:, 1:2])
        return comparison, torch.stack([a, b], 1)


class Flat(Canonical):
    def forward(self, x):
        comparison, a, b = self.parts(x[:, 0:1], x[:, 1:2])
        return comparison, torch.cat([a, b], 1)                       # digits (B, 20)


class DigitsFirst(Canonical):
    def forward(self, x):
        comparison, a, b = self.parts(x[:, 0:1], x[:, 1:2])
        return a, b, comparison                                       # (d1, d2, comparison)


class Triple(Canonical):
    def forward(self, x):
        comparison, a, b = self.parts(x[:, 0:1], x[:, 1:2])
        return comparison, a, b


class Keyed(Canonical):
    def forward(self, x):
        comparison, a, b = self.parts(x[:, 0:1], x[:, 1:2])
        return {"logits": comparison, "digit1": a, "digit2": b}


class OneHead(Canonical):
    def forward(self, x):
        comparison, a, b = self.parts(x[:, 0:1], x[:, 1:2])
        return comparison, [torch.stack([a, b], 1)]                   # a list of one auxiliary head


class TwoImages(Canonical):
    def forward(self, first, second):                                 # (B, 1, 14, 14) each
        comparison, a, b = self.parts(first, second)
        return comparison, torch.stack([a, b], 1)


class Softmaxed(Canonical):
    def forward(self, x):
        comparison, a, b = self.parts(x[:, 0:1], x[:, 1:2])
        return torch.softmax(comparison, 1), torch.stack([a, b], 1)  # probabilities (B, 2)


class Score(Canonical):                                               # one score: (B, 1) logits
    def __init__(self, hidden=32):
        super().__init__(hidden)
        self.head = nn.Linear(20, 1)


class Squeezed(Score):
    def forward(self, x):
        comparison, a, b = self.parts(x[:, 0:1], x[:, 1:2])
        return torch.sigmoid(comparison).squeeze(), torch.stack([a, b], 1)   # a probability (B,)


class TwoHeads(Canonical):
    def __init__(self, hidden=32):
        super().__init__(hidden)
        self.other = nn.Linear(20, 20)

    def forward(self, x):
        comparison, a, b = self.parts(x[:, 0:1], x[:, 1:2])
        other = self.other(torch.cat([a, b], 1))
        return {"out": comparison, "aux": [torch.stack([a, b], 1), other]}
"""

CANONICAL_FORMS = ["Flat", "DigitsFirst", "Triple", "Keyed", "OneHead", "TwoImages"]
PROBABILITY_FORMS = [("Softmaxed", "Canonical"), ("Squeezed", "Score")]


def module(tmp_path, body: str = MODELS) -> str:
    """A module of the user's beside the matrix, under a name of its own (modules are imported
    once per process)."""
    name = f"user_models_{next(_names)}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    return name


def matrix(tmp_path, body: str) -> str:
    path = tmp_path / "study.toml"
    path.write_text(textwrap.dedent(body))
    return str(path)


QUICK = {"epochs": 2, "rounds": 1, "pairs": 120, "batch_size": 40}


@pytest.fixture
def one_model_seed(monkeypatch):
    """Every configuration's model seed the same (it derives from the configuration id, which
    differs between the forms), so that the forms start from the same weights."""
    monkeypatch.setattr("harness.training.protocol.seeds", lambda config, round_index: (config.seed + round_index, 1234))


def trained(tmp_path, encoder: str, **settings) -> dict:
    """One run of a model, in this process (one_model_seed's patch holds here alone, and a user's
    model runs in a worker process under api.run): its stored row."""
    from inline_backend import InlineBackend

    from harness.device import policy_for
    from harness.runner import run_plan
    from harness.store import Store

    plan = api.plan(configs=[{"encoder": encoder, **QUICK, **settings}])
    store = tmp_path / f"{encoder.replace(':', '_')}-{next(_names)}.sqlite"
    with Store(store) as opened:
        summary = run_plan(plan, opened, policy=policy_for("cpu", workers=1), backend=InlineBackend())
    assert summary.finished == 1 and not summary.failed, summary.failed
    return api.runs(store).iloc[0].to_dict()


# --------------------------------------------------------------------------- accepted forms


@pytest.mark.slow
def test_every_accepted_output_form_and_signature_trains_to_the_canonical_numbers(fake_mnist, tmp_path, monkeypatch,
                                                                                 one_model_seed):
    monkeypatch.chdir(tmp_path)  # the working directory is where a module:Class is found
    name = module(tmp_path)
    canonical = trained(tmp_path, f"{name}:Canonical", aux_loss=True)
    assert canonical["test_digit_error"] is not None
    for form in CANONICAL_FORMS:
        run = trained(tmp_path, f"{name}:{form}", aux_loss=True)
        for metric in ("train_loss", "test_error", "train_error", "test_digit_error"):
            assert run[metric] == canonical[metric], (form, metric)
        assert run["params"] == canonical["params"]


@pytest.mark.slow
@pytest.mark.parametrize(("form", "logits"), PROBABILITY_FORMS)
def test_probabilities_train_as_their_logits_would(fake_mnist, tmp_path, monkeypatch, one_model_seed, form, logits):
    monkeypatch.chdir(tmp_path)
    name = module(tmp_path)
    reference = trained(tmp_path, f"{name}:{logits}", aux_loss=True)
    run = trained(tmp_path, f"{name}:{form}", aux_loss=True, model_output="probability")
    # log(softmax(z)) and logit(sigmoid(z)) give z back up to float rounding
    assert run["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-4)
    assert abs(run["test_error"] - reference["test_error"]) <= 0.02


def test_the_reader_takes_every_form_to_one_pair_output():
    from architectures.external import read_output

    comparison, first, second = torch.randn(6, 2), torch.randn(6, 10), torch.randn(6, 10)
    digits = torch.stack([first, second], 1)
    for output in [(comparison, digits), (comparison, digits.flatten(1)), (first, second, comparison),
                   {"out": comparison, "d1": first, "d2": second}, [comparison, [digits]], (comparison, (first, second))]:
        read = read_output(output, 6, "m")
        assert torch.equal(read.comparison, comparison) and torch.equal(read.digits, digits)
    score = torch.randn(6)
    assert read_output(score, 6, "m").comparison.shape == (6, 1) and read_output(score, 6, "m").digits is None
    assert read_output(torch.randn(()), 1, "m").comparison.shape == (1, 1)  # a squeezed batch of one
    heads = read_output((comparison, [digits, digits.flatten(1) * 2]), 6, "m").digits
    assert heads.shape == (6, 2, 2, 10) and torch.equal(heads[:, 1], 2 * digits)
    p = torch.tensor([[0.2], [0.9]])
    assert torch.allclose(read_output(p, 2, "m", probability=True).comparison, torch.logit(p))


def test_the_aux_loss_of_several_heads_is_the_mean_of_their_losses():
    from harness.tasks.pairs.losses import digit_loss

    heads, classes = torch.randn(5, 3, 2, 10), torch.randint(0, 10, (5, 2))
    mean = sum(digit_loss(heads[:, h], classes, "cross_entropy") for h in range(3)) / 3
    assert torch.allclose(digit_loss(heads, classes, "cross_entropy"), mean)


# --------------------------------------------------------------------------- refused forms

REFUSED = {
    "three classes": ("return self.fc(x.flatten(1))[:, :3]",
                      r"returned \(6, 3\) float32: the comparison must have two classes or one score; expected"),
    "two comparisons": ("y = self.fc(x.flatten(1))[:, :2]\nreturn y, y",
                        r"2 outputs shaped like a comparison"),
    "one digit": ("y = self.fc(x.flatten(1))\nreturn y[:, :2], y[:, :10]",
                  r"1 single-digit output\(s\) \(B, 10\), not pairs"),
    "decisions": ("return self.fc(x.flatten(1))[:, :2].argmax(1)",
                  r"output is torch.int64, not floating point"),
    "text": ("return self.fc(x.flatten(1))[:, :2], 'digits'", r"output\[1\] is a str"),
    "features": ("y = self.fc(x.flatten(1))\nreturn y[:, :2], y",
                 r"output\[1\] is neither; expected the comparison"),
    "a crash": ("return self.fc(x.view(-1, 300))", r"calling it on \(6, 2, 14, 14\) in training mode failed "
                r"\(at line 12 of .*\): RuntimeError: shape '\[-1, 300\]'"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_model_that_breaks_the_contract_is_refused_in_one_line_at_plan_time(tmp_path, case):
    body, message = REFUSED[case]
    body = body.replace("\n", "\n" + " " * 16)  # the lines of forward's body, as indented below
    name = module(tmp_path, f"""
        import torch
        from torch import nn


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(392, 30)

            def forward(self, x):
                {body}
    """)
    path = matrix(tmp_path, f'[defaults]\nencoder = "{name}:Net"\nepochs = 1\n')
    store = tmp_path / "s.sqlite"
    for command in (["plan", "--matrix", path], ["run", "--matrix", path, "--store", str(store)]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: model check: {name}:Net"), lines
        assert __import__("re").search(message, lines[0]), lines[0]
    assert not store.exists()


def test_a_constructor_is_checked_against_the_matrix_in_one_line(tmp_path):
    name = module(tmp_path, """
        from torch import nn


        class Net(nn.Module):
            def __init__(self, channels, hidden_units=64):
                super().__init__()
                if channels < 0:
                    raise ValueError("channels must be positive")
                self.fc = nn.Linear(392, 2)

            def forward(self, x):
                return self.fc(x.flatten(1))
    """)
    cases = {
        "": r"Net needs 'channels': give it in the matrix, model_args = \{ channels = ... \}",
        "model_args = { channels = 4, hiden_units = 8 }": r"model_args.hiden_units: .*Net takes no argument "
                                                          r"'hiden_units'; did you mean 'hidden_units'\? \(it takes: channels, hidden_units\)",
        "model_args = { channels = -1 }": r"Net\(channels=-1\) failed \(at line 9 of .*\): ValueError: channels must be positive",
        "model_args = { channels = 4, dropout = 0.5 }": r"model_args.dropout: .*Net takes no argument 'dropout'",
        "model_args = { channels = 4 }\nmodel_output = \"probability\"": r"model_output = \"probability\", but its "
                                                                        r"comparison outputs leave \[0, 1\]",
        "model_args = { channels = \"$aux_los\" }": r"model_args.channels = '\$aux_los': no setting 'aux_los'; did you "
                                                    r"mean 'aux_loss'\?",
    }
    for extra, message in cases.items():
        path = matrix(tmp_path, f'[defaults]\nencoder = "{name}:Net"\n{extra}\n')
        with pytest.raises(ConfigError, match=message):
            expand(load_matrix(path))


def test_a_plan_notes_outputs_that_look_like_probabilities_and_heads_it_averages(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = module(tmp_path)
    plan = api.plan(configs=[{"encoder": f"{name}:Squeezed"}, {"encoder": f"{name}:TwoHeads", "aux_loss": True}])
    assert plan.notes == [
        f"{name}:Squeezed: its comparison outputs stay in [0, 1] for inputs of every scale tried: if they are "
        "probabilities (after a sigmoid or softmax), set model_output = \"probability\"",
        f"{name}:TwoHeads returns 2 digit heads: the aux loss averages their losses, and the digit error is that of "
        "their averaged probabilities"]
    assert api.plan(configs=[{"encoder": f"{name}:Canonical"}]).notes == []  # logits: nothing to say


# --------------------------------------------------------------------------- arguments and names


def test_model_args_cross_enter_ids_and_names_and_reach_the_constructor(tmp_path):
    name = module(tmp_path, """
        import torch
        from torch import nn


        class Net(nn.Module):
            def __init__(self, channels, hidden_units, use_auxiliary_loss, dropout=0.25):
                super().__init__()
                self.aux = use_auxiliary_loss
                self.body = nn.Sequential(nn.Conv2d(1, channels, 3), nn.ReLU(), nn.Flatten(),
                                          nn.Linear(channels * 144, hidden_units), nn.Dropout(dropout),
                                          nn.Linear(hidden_units, 10))
                self.head = nn.Linear(20, 2)

            def forward(self, x):
                a, b = self.body(x[:, :1]), self.body(x[:, 1:])
                comparison = self.head(torch.cat([a, b], 1))
                return (comparison, torch.stack([a, b], 1)) if self.aux else comparison
    """)
    path = matrix(tmp_path, f"""
        [defaults]
        encoder = "{name}:Net"
        model_args = {{ channels = 4, use_auxiliary_loss = "$aux_loss" }}

        [matrix]
        model_args.hidden_units = [8, 16]
        aux_loss = [false, true]
        batch_norm = [false, true]
    """)
    plan = expand(load_matrix(path))
    assert [c.name for c in plan.configs] == [
        f"{name}:Net drop0.25 channels=4 hidden_units=8", f"{name}:Net aux drop0.25 channels=4 hidden_units=8",
        f"{name}:Net drop0.25 channels=4 hidden_units=16", f"{name}:Net aux drop0.25 channels=4 hidden_units=16"]
    assert len({c.config_id for c in plan.configs}) == 4
    assert [c.dropout for c in plan.configs] == [0.25] * 4  # the constructor's default, taken as the setting
    assert {d.reason for d in plan.dropped} == {f"{name}:Net takes no 'batch_norm' option, so batch_norm = True "
                                                "cannot apply"}
    from architectures import build, count_parameters
    from harness.tasks.pairs.settings import model_options

    built = [build(c.encoder, model_options(c)) for c in plan.configs]
    assert [m.model.aux for m in built] == [False, True, False, True]  # "$aux_loss" follows the factor
    assert [count_parameters(m) for m in built][::2] == [4 * 10 + 4 * 144 * 8 + 8 + 8 * 10 + 10 + 42,
                                                         4 * 10 + 4 * 144 * 16 + 16 + 16 * 10 + 10 + 42]
    with pytest.raises(ConfigError, match=r"model_args.dropout: 'dropout' is a setting of its own: set dropout = 0.5 "
                                          r"instead \(it reaches the model under that name\)"):
        api.plan(path, sets=["model_args.dropout=0.5"])
    # a list of tables crosses whole tables; --set and --only reach one entry
    listed = matrix(tmp_path, f"""
        [defaults]
        encoder = "{name}:Net"
        model_args = {{ use_auxiliary_loss = false }}
        [matrix]
        model_args = [{{ channels = 2, hidden_units = 4 }}, {{ channels = 3, hidden_units = 4 }}]
    """)
    crossed = api.plan(listed, sets=["model_args.hidden_units=[5, 6]"], only=["model_args.channels=3"])
    assert [c.model_args for c in crossed.configs] == [
        {"channels": 3, "hidden_units": 5, "use_auxiliary_loss": False},
        {"channels": 3, "hidden_units": 6, "use_auxiliary_loss": False}]


def test_names_show_only_what_a_model_takes_and_effects_name_models_as_models(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = module(tmp_path)
    plan = api.plan(configs=[{"encoder": f"{name}:Canonical"}, {"encoder": "cnn"}])
    assert [c.name for c in plan.configs] == [f"{name}:Canonical", "cnn siamese ws"]  # no "siamese ws": not taken
    from harness.tasks import declared

    encoder = declared()["encoder"].meta
    assert encoder.titled("encoder", "cnn -> linear") == "encoder family (linear, MLP, CNN)"
    assert encoder.titled("encoder", f"cnn -> {name}:Canonical") == "model"


def test_a_function_registered_as_a_model_is_called_like_a_class(tmp_path):
    plugin = tmp_path / "factories.py"
    plugin.write_text(textwrap.dedent("""
        from torch import nn
        from architectures import register


        @register("factory_net")
        def factory_net(hidden=16, dropout=0.0):
            return nn.Sequential(nn.Flatten(), nn.Linear(392, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, 2))
    """))
    path = matrix(tmp_path, """
        plugins = ["factories.py"]
        [defaults]
        encoder = "factory_net"
        model_args = { hidden = 8 }
        [matrix]
        dropout = [0.0, 0.5]
    """)
    plan = expand(load_matrix(path))
    assert [c.name for c in plan.configs] == ["factory_net hidden=8", "factory_net drop0.5 hidden=8"]
    from architectures import build, count_parameters
    from harness.tasks.pairs.settings import model_options

    assert count_parameters(build("factory_net", model_options(plan.configs[1]))) == 392 * 8 + 8 + 8 * 2 + 2


def test_init_redraws_weights_and_biases_reproducibly_for_any_model(tmp_path, monkeypatch):
    from architectures import build
    from harness.tasks.pairs.settings import model_options

    monkeypatch.chdir(tmp_path)
    name = module(tmp_path)
    configs = api.plan(configs=[{"encoder": e, "weight_init": init, "bias_init": bias}
                                for e in (f"{name}:Canonical", "cnn")
                                for init, bias in (("default", None), ("xavier_uniform", 0.01))]).configs
    assert [c.name for c in configs][1::2] == [f"{name}:Canonical xavier_uniform bias0.01",
                                               "cnn siamese ws xavier_uniform bias0.01"]

    def weights(config):
        torch.manual_seed(3)
        return [p.detach().clone() for p in build(config.encoder, model_options(config)).parameters()]

    for plain, drawn in (configs[0:2], configs[2:4]):
        first, again, default = weights(drawn), weights(drawn), weights(plain)
        assert all(torch.equal(a, b) for a, b in zip(first, again))
        assert not all(torch.equal(a, b) for a, b in zip(first, default))
        assert all(bool((p == 0.01).all()) for p in first if p.dim() == 1 and p.shape[0] in (2, 10, 32, 8))


# --------------------------------------------------------------------------- layout and imports


def one_round_study(tmp_path, encoder: str, factors: str = "") -> str:
    """A matrix of one short round of `encoder`, crossing the [matrix] lines given."""
    return matrix(tmp_path, f'[defaults]\nencoder = "{encoder}"\nepochs = 1\nrounds = 1\npairs = 100\n'
                            + (f"[matrix]\n{factors}\n" if factors else ""))


@pytest.mark.slow
def test_a_view_after_a_convolution_trains_in_the_layout_it_was_written_for(fake_mnist, tmp_path):
    path = one_round_study(tmp_path, f"{module(tmp_path)}:Canonical")
    store = tmp_path / "s.sqlite"
    result = CliRunner().invoke(main, ["run", "--matrix", path, "--store", str(store), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    execution = sqlite3.connect(store).execute("SELECT execution FROM runs").fetchone()[0]
    assert '"channels_last": false' in execution
    forced = CliRunner().invoke(main, ["plan", "--matrix", path, "--set", "layout=channels_last"])
    assert forced.exit_code == 2 and "in training mode failed" in forced.output and "view" in forced.output
    builtin = api.plan(configs=[{"encoder": "cnn", **QUICK}])
    summary = api.run(builtin, tmp_path / "cnn.sqlite", device="cpu", workers=1)
    assert summary.finished == 1
    assert '"channels_last": true' in sqlite3.connect(tmp_path / "cnn.sqlite").execute(
        "SELECT execution FROM runs").fetchone()[0]


def test_module_class_is_found_beside_the_matrix_without_pythonpath(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    name = module(folder)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = matrix(folder, f'[defaults]\nencoder = "{name}:Canonical"\n')
    result = CliRunner().invoke(main, ["plan", "--matrix", path, "--no-estimate"])
    assert result.exit_code == 0, result.output
    assert f"{name}:Canonical" in result.output


@pytest.mark.slow
def test_run_says_how_many_combinations_were_dropped(fake_mnist, tmp_path):
    path = one_round_study(tmp_path, f"{module(tmp_path)}:Canonical", "batch_norm = [false, true]\ndropout = [0.0, 0.5]")
    result = CliRunner().invoke(main, ["run", "--matrix", path, "--store", str(tmp_path / "s.sqlite")])
    assert result.exit_code == 0, result.output
    assert "dropped 3 combinations: see harness plan" in result.output


@pytest.mark.slow
def test_a_model_that_cannot_run_vectorised_trains_its_rounds_one_by_one(fake_mnist, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = module(tmp_path, """
        from torch import nn


        class Branchy(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(392, 2)

            def forward(self, x):
                out = self.fc(x.flatten(1))
                return out * 0 if out.sum().item() > 1e9 else out
    """)
    plan = api.plan(configs=[{"encoder": f"{name}:Branchy", **QUICK, "rounds": 2}])
    summary = api.run(plan, tmp_path / "s.sqlite", device="cpu", workers=1, batched=True)
    assert summary.finished == 2 and not summary.failed
    runs = api.runs(tmp_path / "s.sqlite")
    assert all('"batched": false' in e and "item()" in e for e in runs["execution"])


def test_a_model_with_tied_weights_trains_its_rounds_vectorised_as_one_by_one(fake_mnist, tmp_path, monkeypatch):
    """One tensor under two names: the vectorised forward gives both names the one stacked tensor
    (tied_names, read on the model before its meta copy unties it), so the rounds train
    vectorised as their runs do one by one."""
    from harness.tasks.pairs.batched import tied_names

    monkeypatch.chdir(tmp_path)
    name = module(tmp_path, """
        import torch
        from torch import nn


        class Tied(nn.Module):
            def __init__(self):
                super().__init__()
                self.first = nn.Linear(392, 392)
                self.second = nn.Linear(392, 392)
                self.second.weight = self.first.weight  # one tensor, two names
                self.out = nn.Linear(392, 2)

            def forward(self, x):
                return self.out(torch.relu(self.second(torch.relu(self.first(x.flatten(1))))))
    """)
    plan = api.plan(configs=[{"encoder": f"{name}:Tied", **QUICK, "rounds": 2}])
    api.run(plan, tmp_path / "batched.sqlite", device="cpu", workers=1, batched=True)
    api.run(plan, tmp_path / "alone.sqlite", device="cpu", workers=1, batched=False)
    batched, alone = api.runs(tmp_path / "batched.sqlite"), api.runs(tmp_path / "alone.sqlite")
    assert list(batched["status"]) == list(alone["status"]) == ["done", "done"]
    assert all('"batched": true' in e for e in batched["execution"])
    assert batched["train_loss"].tolist() == pytest.approx(alone["train_loss"].tolist(), rel=2e-3)
    from architectures import build

    assert tied_names(build(f"{name}:Tied", {})) == {"model.second.weight": "model.first.weight"}
    assert tied_names(build("cnn", {})) == {}


# --------------------------------------------------------------------------- the user's code travels

WIDTH_MODEL = """
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(392, {hidden}), nn.ReLU(), nn.Linear({hidden}, 2))

    def forward(self, x):
        return self.fc(x)
"""
WIDTH_PLUGIN = """
from torch import nn
from architectures import register


@register("{name}")
class Plugged(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(392, {hidden}), nn.ReLU(), nn.Linear({hidden}, 2))

    def forward(self, x):
        return self.fc(x)
"""


def params(hidden: int) -> int:
    return 392 * hidden + hidden + hidden * 2 + 2


def changed_after_planning(tmp_path, *, remove: bool):
    """A plan of a `module:Class` model and a plugin's model, each 16 hidden units wide when
    planned; then their files rewritten to 4 units (or removed), as a file edited during a run,
    or stale or missing on another node, would be."""
    module_name, plugin_name = f"travel_{next(_names)}", f"plugged_{next(_names)}"
    model_text = f"# {module_name}\n" + WIDTH_MODEL  # a text of its own: the store keeps one text per SHA-256
    (tmp_path / f"{module_name}.py").write_text(model_text.format(hidden=16))
    (tmp_path / "plugin.py").write_text(WIDTH_PLUGIN.format(name=plugin_name, hidden=16))
    path = matrix(tmp_path, f"""
        plugins = ["plugin.py"]
        [defaults]
        epochs = 1
        rounds = 2
        pairs = 100
        [matrix]
        encoder = ["{module_name}:Net", "{plugin_name}"]
    """)
    plan = expand(load_matrix(path))
    for name, text in ((f"{module_name}.py", model_text), ("plugin.py", WIDTH_PLUGIN.replace("{name}", plugin_name))):
        if remove:
            (tmp_path / name).unlink()
        else:
            (tmp_path / name).write_text(text.format(hidden=4))
    return plan


def trains_the_recorded_text(store_path) -> None:
    runs = api.runs(store_path)
    assert len(runs) == 4 and set(runs["status"]) == {"done"}
    assert set(runs["params"]) == {params(16)}  # the text the driver read, not the disk's
    with sqlite3.connect(store_path) as connection:  # this study's modules (a process keeps every one it ran)
        texts = [text for (text,) in connection.execute("SELECT text FROM sources WHERE name LIKE ?",
                                                           (f"{store_path.parent}%",))]
    assert len(texts) == 2 and all("392, 16" in text for text in texts)


@pytest.mark.slow
@pytest.mark.parametrize("remove", [False, True], ids=["edited", "removed"])
def test_worker_processes_train_the_text_the_driver_read_and_recorded(fake_mnist, tmp_path, remove):
    plan = changed_after_planning(tmp_path, remove=remove)
    summary = api.run(plan, tmp_path / "s.sqlite", device="cpu", workers=2)
    assert summary.finished == 4 and not summary.failed, summary.failed
    trains_the_recorded_text(tmp_path / "s.sqlite")
    shown = api.show(tmp_path / "s.sqlite", api.runs(tmp_path / "s.sqlite")["config_id"].iloc[0], code=True)
    assert "392, 16" in shown and "392, 4" not in shown


def test_a_worker_running_other_harness_code_refuses_in_one_line(tmp_path):
    from harness.backends import WorkerSetupError
    from harness.backends.local import LocalBackend
    from harness.device import CPU
    from harness.runner import WorkerContext, execute, prepare_worker

    context = WorkerContext({}, CPU, code="0" * 64, version="abc123")
    with pytest.raises(WorkerSetupError) as raised:
        list(LocalBackend().launch(["task"], execute, context, prepare_worker))
    message = str(raised.value)
    assert "\n" not in message and message.startswith("OtherHarnessCode: the worker on ")
    assert "runs other harness code than the driver (driver abc123" in message and "fingerprints 000000000000" in message


def test_a_parameter_named_like_a_setting_of_another_type_stays_the_models_own():
    from architectures.external import options_taken

    class Net(torch.nn.Module):
        def __init__(self, width=16, depth: int = 2, dropout: float = 0.1, batch_norm=True, pairing="two-towers",
                     head_hidden=None):
            super().__init__()

    def plain(dropout, weight_sharing):
        return torch.nn.Linear(1, 1)

    # width=16 is a channel count (the setting is a float multiplier); "two-towers" is no pairing
    assert options_taken(Net) == {"dropout", "batch_norm", "head_hidden"}
    assert options_taken(plain) == {"dropout", "weight_sharing"}  # nothing said: the settings' own


def test_stored_runs_are_filtered_on_one_entry_of_their_model_args():
    import pandas as pd

    runs = pd.DataFrame({"model_args": [{"hidden_units": 8}, {"hidden_units": 16}, None], "round": [0, 0, 0]})
    assert list(api.filtered(runs, ["model_args.hidden_units=16"]).index) == [1]
