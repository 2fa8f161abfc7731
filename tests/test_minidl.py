"""minidl, the from-scratch framework: every backward against torch.autograd, the optimiser
against torch.optim.SGD (a whole training run against the same network in torch.nn is the disk
task's: tests/test_disk.py)."""

import ast
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import minidl

MINIDL = Path(minidl.__file__)


def autograd_gradients(function, *inputs):
    """d(sum(function(inputs) * weights))/d(inputs) by autograd, with fixed random weights."""
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    output = function(*leaves)
    weights = torch.randn(output.shape, generator=torch.Generator().manual_seed(9), dtype=output.dtype)
    (output * weights).sum().backward()
    return output.detach(), weights, [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_linear_backward_matches_autograd(dtype, tolerance):
    generator = torch.Generator().manual_seed(0)
    layer = minidl.Linear(7, 5, init="he", generator=generator, dtype=dtype)
    x = torch.randn(11, 7, generator=generator, dtype=dtype)
    expected, weights, (grad_x, grad_w, grad_b) = autograd_gradients(
        lambda x, w, b: F.linear(x, w, b), x, layer.weight, layer.bias)
    output = layer.forward(x)
    torch.testing.assert_close(output, expected, rtol=tolerance, atol=tolerance)
    grad_input = layer.backward(weights)
    torch.testing.assert_close(grad_input, grad_x, rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(layer.grad_weight, grad_w, rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(layer.grad_bias, grad_b, rtol=tolerance, atol=tolerance)
    layer.backward(weights)  # gradients accumulate until zeroed, as torch's do
    torch.testing.assert_close(layer.grad_weight, 2 * grad_w, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("module,function", [(minidl.ReLU, torch.relu), (minidl.Tanh, torch.tanh)])
def test_activation_backward_matches_autograd(module, function):
    x = torch.randn(20, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x[0, :3] = 0.0  # ReLU's kink: autograd's subgradient there is 0
    expected, weights, (grad_x,) = autograd_gradients(function, x)
    layer = module()
    torch.testing.assert_close(layer.forward(x), expected)
    torch.testing.assert_close(layer.backward(weights), grad_x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_backward_matches_autograd(reduction):
    generator = torch.Generator().manual_seed(2)
    prediction = torch.randn(13, 1, generator=generator, dtype=torch.float64)
    target = torch.randint(0, 2, (13,), generator=generator)
    leaf = prediction.clone().requires_grad_(True)
    loss = F.mse_loss(leaf, target.view(13, 1).double(), reduction=reduction)
    loss.backward()
    criterion = minidl.LossMSE(reduction)
    torch.testing.assert_close(criterion.forward(prediction, target), loss.detach())
    torch.testing.assert_close(criterion.backward(), leaf.grad, rtol=1e-12, atol=1e-12)


def test_sequential_backward_matches_autograd_through_every_layer():
    generator = torch.Generator().manual_seed(3)
    network = minidl.Sequential(
        minidl.Linear(2, 25, init="xavier", generator=generator, dtype=torch.float64), minidl.Tanh(),
        minidl.Linear(25, 25, init="he", generator=generator, dtype=torch.float64), minidl.ReLU(),
        minidl.Linear(25, 1, init="xavier", generator=generator, dtype=torch.float64), minidl.Tanh(),
    )
    x = torch.rand(50, 2, generator=generator, dtype=torch.float64)
    target = torch.randint(0, 2, (50,), generator=generator)
    criterion = minidl.LossMSE()
    loss = criterion.forward(network.forward(x), target)
    grad_x = network.backward(criterion.backward())

    leaves = [p.clone().requires_grad_(True) for p, _ in network.param()]
    x_leaf = x.clone().requires_grad_(True)
    w1, b1, w2, b2, w3, b3 = leaves
    h = torch.tanh(torch.relu(torch.tanh(x_leaf @ w1.T + b1) @ w2.T + b2) @ w3.T + b3)
    expected = F.mse_loss(h, target.view(50, 1).double())
    expected.backward()
    torch.testing.assert_close(loss, expected.detach())
    torch.testing.assert_close(grad_x, x_leaf.grad, rtol=1e-10, atol=1e-12)
    for (_, gradient), leaf in zip(network.param(), leaves):
        torch.testing.assert_close(gradient, leaf.grad, rtol=1e-10, atol=1e-12)


def test_sgd_with_weight_decay_steps_as_torch_optim_sgd():
    generator = torch.Generator().manual_seed(4)
    parameter = torch.randn(5, 3, generator=generator)
    gradient = torch.randn(5, 3, generator=generator)
    reference = parameter.clone().requires_grad_(True)
    reference.grad = gradient.clone()
    torch.optim.SGD([reference], lr=0.05, weight_decay=1e-3).step()
    optimiser = minidl.SGD([(parameter, gradient)], lr=0.05, weight_decay=1e-3)
    optimiser.step()
    assert torch.equal(parameter, reference.detach())
    optimiser.zero_grad()
    assert not gradient.any()
    with pytest.raises(ValueError):
        minidl.SGD([], lr=0.0)


def test_initialisation_follows_the_reports_standard_deviations():
    layer = minidl.Linear(400, 600, init="he", generator=torch.Generator().manual_seed(5))
    assert abs(layer.weight.std().item() - (2 / 1000) ** 0.5) < 2e-3
    assert abs(minidl.init_std(2, 25, "xavier") - (1 / 27) ** 0.5) < 1e-12
    with pytest.raises(ValueError, match="unknown initialisation"):
        minidl.init_std(2, 3, "orthogonal")


def test_minidl_uses_no_autograd_and_no_torch_nn():
    tree = ast.parse(MINIDL.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "math", "torch"}
    source = MINIDL.read_text()
    for forbidden in ("torch.nn", "autograd", "requires_grad", ".backward()"):
        assert forbidden not in source.replace('"""', "").split("__all__")[1], forbidden
    generator = torch.Generator().manual_seed(6)
    network = minidl.Sequential(minidl.Linear(2, 4, generator=generator), minidl.ReLU(), minidl.Linear(4, 1, generator=generator))
    with torch.enable_grad():
        output = network.forward(torch.rand(3, 2, requires_grad=True))
    assert output.grad_fn is None  # no graph recorded, even with grad mode on
    assert all(not p.requires_grad for p, _ in network.param())
