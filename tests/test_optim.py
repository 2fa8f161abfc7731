"""The optimisers a run steps with: torch.optim's numbers to the bit, through its functional
forms when the learning rate is constant, and without importing torch._dynamo."""

import subprocess
import sys

import pytest
import torch
from fixtures import run_config

from harness.results import Stage
from harness.settings import RunConfig
from harness.training.optim import FunctionalOptimizer
from harness.training.protocol import TrainingStage, make_optimizer, make_schedule

SETTINGS = [
    {"optimizer": "adam"},
    {"optimizer": "adam", "weight_decay": 1e-2},
    {"optimizer": "adamw", "weight_decay": 1e-2},
    {"optimizer": "sgd"},
    {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 1e-3},
]


def torch_optimizer(config: RunConfig, parameters, foreach: bool) -> torch.optim.Optimizer:
    """What torch.optim itself builds for the configuration (the reference)."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay, foreach=foreach)
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return kind(parameters, lr=config.lr, weight_decay=config.weight_decay, foreach=foreach)


def tensors(generator: torch.Generator) -> list[torch.Tensor]:
    """Parameters of several shapes, one in channels-last memory (its state keeps the layout)."""
    shapes = [(8, 3), (5,), (4, 2, 3, 3)]
    start = [torch.randn(shape, generator=generator) for shape in shapes]
    start[2] = start[2].contiguous(memory_format=torch.channels_last)
    return start


@pytest.mark.parametrize("foreach", [True, False], ids=["multi-tensor", "per-tensor"])
@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_a_constant_rate_steps_as_torch_optim_to_the_bit(settings, foreach):
    config = run_config(lr=1e-2, **settings)
    start = tensors(torch.Generator().manual_seed(0))
    mine = [p.clone().requires_grad_(True) for p in start]
    reference = [p.clone().requires_grad_(True) for p in start]
    optimizer = make_optimizer(config, mine)
    assert isinstance(optimizer, FunctionalOptimizer)
    theirs = torch_optimizer(config, reference, foreach)  # per-tensor: torch's own default on CPU
    generator = torch.Generator().manual_seed(1)
    for step in range(12):
        for position, (a, b) in enumerate(zip(mine, reference)):
            if step % 4 == 3 and position == 1:  # no gradient this step: left alone, as torch does
                continue
            a.grad = torch.randn(a.shape, generator=generator)
            b.grad = a.grad.clone()
        optimizer.step()
        theirs.step()
        optimizer.zero_grad(set_to_none=True)
        theirs.zero_grad(set_to_none=True)
        assert all(torch.equal(a, b) for a, b in zip(mine, reference)), (settings, step)
        assert all(a.grad is None for a in mine)
    for a, b in zip(mine, reference):
        state, reference_state = optimizer.state.get(a, {}), theirs.state.get(b, {})
        assert set(state) == set(reference_state)
        for key, value in state.items():
            assert torch.equal(value, reference_state[key]) and value.dtype == reference_state[key].dtype, key
            assert value.device == reference_state[key].device, key
            assert value.stride() == reference_state[key].stride(), key


def test_frozen_tensors_are_not_stepped():
    frozen, trained = torch.ones(3), torch.ones(3, requires_grad=True)
    optimizer = make_optimizer(run_config(), [frozen, trained])
    trained.grad = torch.ones(3)
    optimizer.step()
    assert optimizer.parameters == [trained] and torch.equal(frozen, torch.ones(3))
    assert not torch.equal(trained.detach(), torch.ones(3))


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_a_schedule_drives_a_torch_optim_optimiser(schedule):
    config = run_config(lr_schedule=schedule)
    optimizer = make_optimizer(config, [torch.zeros(2, requires_grad=True)], config.lr_schedule)
    assert isinstance(optimizer, torch.optim.Adam)
    stage = TrainingStage(Stage.MAIN, 2, schedule)
    assert make_schedule(config, optimizer, stage, steps_per_epoch=3) is not None


def test_zero_grad_can_keep_the_gradient_tensors():
    parameter = torch.ones(3, requires_grad=True)
    optimizer = FunctionalOptimizer("sgd", [parameter], lr=0.1)
    parameter.grad = torch.ones(3)
    kept = parameter.grad
    optimizer.zero_grad(set_to_none=False)
    assert parameter.grad is kept and torch.equal(kept, torch.zeros(3))


def test_an_unknown_optimiser_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown optimiser 'adagrad': one of adam, adamw, sgd"):
        FunctionalOptimizer("adagrad", [], lr=0.1)


@pytest.mark.slow
def test_a_run_with_a_constant_rate_never_imports_dynamo():
    """The reason the functional path exists: a worker's first run would otherwise import
    torch._dynamo (2 to 3 s of CPU in every fresh process)."""
    script = """
import sys, torch
from harness.bench import reference_config
from harness.training.protocol import make_optimizer
from harness.tasks.pairs.settings import model_options
from architectures import build
config = reference_config()
model = build(config.encoder, model_options(config))
optimizer = make_optimizer(config, model.parameters())
output = model(torch.randn(4, 2, 14, 14))
(output.comparison.sum() + output.digits.sum()).backward()
optimizer.step()
optimizer.zero_grad(set_to_none=True)
print("torch._dynamo" in sys.modules)
"""
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert child.stdout.strip() == "False"
