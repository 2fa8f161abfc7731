"""Every registered model and every report preset, checked the same way (as timm's test_models)."""

from pathlib import Path

import pytest
import torch

from architectures import (
    ModelOptions,
    UnknownModelError,
    UnsupportedOptionError,
    build,
    count_parameters,
    names,
    why_invalid,
)
from harness.config import expand, load_matrix
from harness.plugins import load_plugin
from harness.tasks.pairs.losses import digit_loss
from harness.tasks.pairs.settings import model_options
from harness.training.protocol import decision_loss

ROOT = Path(__file__).resolve().parent.parent
REPORT_CONFIGS = expand(load_matrix(ROOT / "matrices" / "reports.toml")).configs


# the user's model of examples/, registered from its own file as `harness run` registers it:
# every registered model is tested here, built-in or not
load_plugin(str(ROOT / "examples" / "lenet_siamese.py"))
REGISTERED = names()


def variants():
    """Every registered family under every option combination it accepts (a small grid)."""
    for name in REGISTERED:
        for pairing in ("joint", "siamese"):
            for weight_sharing in ((False,) if pairing == "joint" else (True, False)):
                for aux_loss in (False, True):
                    for batch_norm, dropout in ((False, 0.0), (True, 0.25)):
                        options = ModelOptions(pairing, weight_sharing, aux_loss, batch_norm, dropout)
                        if why_invalid(name, options) is None:
                            yield pytest.param(name, options, id=f"{name}-{pairing}-ws{int(weight_sharing)}-aux{int(aux_loss)}-bn{int(batch_norm)}")


VARIANTS = list(variants())


def test_every_family_has_variants():
    assert {v.values[0] for v in VARIANTS} == set(REGISTERED) and "lenet_siamese" in REGISTERED


def _batch(size=6):
    torch.manual_seed(0)
    return torch.randn(size, 2, 14, 14), torch.randint(0, 10, (size, 2))


@pytest.mark.parametrize("name,options", VARIANTS)
def test_forward_shapes_finite_and_every_parameter_learns(name, options):
    torch.manual_seed(0)
    model = build(name, options)
    pairs, classes = _batch()
    output = model(pairs)
    assert output.comparison.shape in ((6, 2), (6, 1))
    assert torch.isfinite(output.comparison).all()
    if output.digits is not None:
        assert output.digits.shape == (6, 2, 10)
        assert torch.isfinite(output.digits).all()
    target = (classes[:, 0] <= classes[:, 1]).long()
    loss = decision_loss(output.comparison, target, "cross_entropy")
    if output.digits is not None:
        loss = loss + digit_loss(output.digits, classes, "cross_entropy")
    loss.backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not silent, f"no (finite) gradient for {silent}"


@pytest.mark.parametrize("name,options", VARIANTS)
def test_batch_norm_and_dropout_exist_exactly_when_asked(name, options):
    model = build(name, options)
    has_norm = any(type(m).__name__.startswith("BatchNorm") for m in model.modules())
    # a dropout layer of rate 0 is off (some models always carry theirs)
    dropping = any(isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())
    assert has_norm == options.batch_norm
    assert dropping == (options.dropout > 0)


def _both_sharings(name):
    return all(why_invalid(name, ModelOptions(weight_sharing=ws)) is None for ws in (True, False))


@pytest.mark.parametrize("name", [n for n in REGISTERED if _both_sharings(n)])
def test_weight_sharing_shares_and_no_sharing_does_not(name):
    shared = build(name, ModelOptions(weight_sharing=True))
    separate = build(name, ModelOptions(weight_sharing=False))
    assert len(shared.encoders) == 1
    assert len(separate.encoders) == 2
    first, second = (set(map(id, e.parameters())) for e in separate.encoders)
    assert not first & second
    # sharing is the only difference: one encoder's worth of parameters apart
    assert count_parameters(separate) - count_parameters(shared) == count_parameters(shared.encoders[0])
    shared.eval()
    pairs, _ = _batch()
    with torch.no_grad():
        straight, swapped = shared(pairs), shared(pairs.flip(1))
    assert torch.allclose(straight.digits, swapped.digits.flip(1), atol=1e-6)


@pytest.mark.parametrize("name", [n for n in REGISTERED if not _both_sharings(n) and why_invalid(n, ModelOptions()) is None])
def test_a_siamese_model_without_the_option_reads_both_digits_alike(name):
    """A model that always shares (a user's siamese net): swapping the digits swaps their logits."""
    model = build(name, ModelOptions())
    model.eval()
    pairs, _ = _batch()
    with torch.no_grad():
        straight, swapped = model(pairs), model(pairs.flip(1))
    if straight.digits is None:
        pytest.skip(f"{name} has no digit outputs")
    assert torch.allclose(straight.digits, swapped.digits.flip(1), atol=1e-6)


def test_rule_transfer_has_no_trained_head_and_compares_digits():
    model = build("cnn", ModelOptions(transfer="rule"))
    assert count_parameters(model) == count_parameters(model.digit_encoder)
    digit_logits = torch.full((1, 20), -20.0)
    digit_logits[0, 3] = digit_logits[0, 10 + 7] = 20.0  # first is 3, second is 7
    assert model.head(digit_logits).argmax(1).item() == 1
    digit_logits = torch.full((1, 20), -20.0)
    digit_logits[0, 8] = digit_logits[0, 10 + 2] = 20.0
    assert model.head(digit_logits).argmax(1).item() == 0


def test_unknown_name_lists_names_and_closest():
    with pytest.raises(UnknownModelError) as error:
        build("cnnn")
    assert "did you mean 'cnn'" in str(error.value)
    assert "mlp" in str(error.value)


def test_meaningless_options_are_refused():
    with pytest.raises(UnsupportedOptionError, match="siamese"):
        build("cnn", pairing="joint", weight_sharing=True)
    with pytest.raises(UnsupportedOptionError, match="linear encoder"):
        build("linear", dropout=0.5)


@pytest.mark.parametrize("config", REPORT_CONFIGS, ids=[c.name for c in REPORT_CONFIGS])
def test_report_presets_build_run_and_match_published_parameters(config):
    model = build(config.encoder, model_options(config))
    output = model(torch.randn(4, 2, 14, 14))
    assert output.comparison.shape[0] == 4
    if config.aux_loss:
        assert output.digits is not None
    if config.reference_params is not None:
        ours = count_parameters(model)
        if config.report == "003":  # their BN variants report the count without batch-norm parameters
            ours -= sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for p in m.parameters())
        assert abs(ours - config.reference_params) <= 0.02 * config.reference_params


def test_report_matrix_holds_every_system():
    assert len(REPORT_CONFIGS) == 22
    assert {c.report for c in REPORT_CONFIGS} == {"000", "001", "002", "003", "004"}
    assert all(c.reference_test_error is not None for c in REPORT_CONFIGS)


# A snapshot: a changed parameter count is a changed model, and must be a deliberate edit here.
PARAMETER_SNAPSHOT = {
    "000 Linear regression": 393,
    "000 Logistic regression": 393,
    "000 NN (1 loss)": 133633,
    "000 NN (2 losses)": 136213,
    "000 CNN (1 loss)": 47695,
    "000 CNN (2 losses)": 51625,
    "001 B1": 48730,
    "001 B2": 51412,
    "001 WS": 50454,
    "001 WSAL": 51604,
    "002 CNN": 71502,
    "002 WS": 77240,
    "002 AL": 77240,
    "003 TransferLearn": 72438,
    "003 Siamese no WS": 145737,
    "003 Siamese WS": 73299,
    "003 Siamese WS+AUX": 73299,
    "003 Siamese WS+AUX+BN": 73691,
    "003 Siamese WS+AUX+BN+DROP": 73691,
    "004 Baseline": 73954,
    "004 CNN": 77530,
    "004 CNN+aux": 70095,
}
GENERIC_SNAPSHOT = {
    ("cnn", "siamese", True): 72964,
    ("cnn", "siamese", False): 145190,
    ("cnn", "joint", False): 75262,
    ("mlp", "siamese", True): 85356,
    ("mlp", "joint", False): 136822,
    ("linear", "siamese", True): 2708,
}


def test_parameter_counts_match_snapshot():
    counts = {c.name: count_parameters(build(c.encoder, model_options(c))) for c in REPORT_CONFIGS}
    assert counts == PARAMETER_SNAPSHOT
    for (name, pairing, sharing), expected in GENERIC_SNAPSHOT.items():
        assert count_parameters(build(name, pairing=pairing, weight_sharing=sharing)) == expected


def _relu_then_pool(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` with every max-pool that precedes a ReLU moved after it: the order
    the reports' code writes, which the built-in convnets swap for speed."""
    import copy

    model = copy.deepcopy(model)
    for block in [m for m in model.modules() if isinstance(m, torch.nn.Sequential)]:
        layers = list(block)
        for i in range(len(layers) - 1):
            if isinstance(layers[i], torch.nn.MaxPool2d) and isinstance(layers[i + 1], torch.nn.ReLU):
                layers[i], layers[i + 1] = layers[i + 1], layers[i]
        for i, layer in enumerate(layers):
            block[i] = layer
    return model


def _pools_before_relu(model: torch.nn.Module) -> bool:
    return any(isinstance(a, torch.nn.MaxPool2d) and isinstance(b, torch.nn.ReLU)
               for block in model.modules() if isinstance(block, torch.nn.Sequential)
               for a, b in zip(list(block), list(block)[1:]))


POOLING_FIRST = [v for v in VARIANTS if _pools_before_relu(build(*v.values))]


def test_the_convnets_pool_before_their_relus():
    assert {v.values[0] for v in POOLING_FIRST} >= {"cnn", "poulsen_clenet", "gardoni_siamese"}


@pytest.mark.slow
@pytest.mark.parametrize("name,options", POOLING_FIRST)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_pooling_before_the_relu_changes_no_bit(name, options, channels_last):
    """Outputs, gradients and the weights after Adam steps equal the relu-then-pool model's
    exactly, in both memory layouts the harness trains in."""
    torch.manual_seed(0)
    model = build(name, options)
    reference = _relu_then_pool(model)
    assert not _pools_before_relu(reference)
    if channels_last:
        for m in (model, reference):
            m.to(memory_format=torch.channels_last)
    optimisers = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in (model, reference)]
    torch.manual_seed(1)
    pairs, classes = _batch(32)
    pairs = pairs.relu() - 0.5  # many negative pixels: whole pooling windows below zero
    target = (classes[:, 0] <= classes[:, 1]).long()
    for step in range(3):
        outputs = []
        for m, optimiser in zip((model, reference), optimisers):
            torch.manual_seed(step)  # the same dropout masks
            output = m(pairs)
            loss = decision_loss(output.comparison, target, "cross_entropy")
            if output.digits is not None:
                loss = loss + digit_loss(output.digits, classes, "cross_entropy")
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            outputs.append((output.comparison.detach(), [p.grad.clone() for p in m.parameters() if p.grad is not None]))
        (ours, our_grads), (theirs, their_grads) = outputs
        assert torch.equal(ours, theirs)
        assert len(our_grads) == len(their_grads) and all(torch.equal(a, b) for a, b in zip(our_grads, their_grads))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
