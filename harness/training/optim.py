"""Adam, AdamW and SGD stepped through torch's functional optimisers, without a
`torch.optim.Optimizer`.

Constructing any `torch.optim.Optimizer` imports `torch._dynamo` (its `add_param_group` is
wrapped by `torch._disable_dynamo`, which imports it on first call), and so does every
`step` (`_use_grad_for_differentiable`): 2 to 3 s of CPU in every fresh process, about as
much again as importing torch itself, paid by each worker at its first run. The functions
those optimisers' `step` calls, `torch.optim.adam.adam`, `torch.optim.adamw.adamw` and
`torch.optim.sgd.sgd` (public, listed in their modules' `__all__`), import nothing: called
here with the state `torch.optim` would create, in the order it would create it, they run
the same kernels on the same tensors, so every number is bit-identical to `torch.optim`'s
(tests/test_optim.py steps both side by side).

`FunctionalOptimizer` holds only what the protocol uses: `step()` and
`zero_grad(set_to_none=True)`. A learning-rate schedule needs a real `torch.optim.Optimizer`
(torch's schedulers check the type), so `harness.training.protocol.make_optimizer` builds one
of these for a constant rate only.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.optim.adam import adam
from torch.optim.adamw import adamw
from torch.optim.sgd import sgd

from harness.settings import OPTIMIZERS

ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's and AdamW's defaults
ADAM_EPS = 1e-8


class FunctionalOptimizer:
    """`kind` ("adam", "adamw" or "sgd") on `parameters` with a constant learning rate,
    stepping like `torch.optim.<Kind>(parameters, lr=lr, weight_decay=weight_decay,
    momentum=momentum (SGD only), foreach=foreach)` with every other argument at torch's
    default. Parameters whose gradient is None at a step are left alone, as torch does."""

    def __init__(self, kind: str, parameters: Iterable[torch.Tensor], *, lr: float, weight_decay: float = 0.0,
                 momentum: float = 0.0, foreach: bool = True):
        if kind not in OPTIMIZERS:
            raise ValueError(f"unknown optimiser {kind!r}: one of {', '.join(OPTIMIZERS)}")
        self.kind = kind
        self.parameters = list(parameters)
        self.lr, self.weight_decay, self.momentum, self.foreach = lr, weight_decay, momentum, foreach
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for parameter in self.parameters:
            if parameter.grad is None:
                continue
            if set_to_none:
                parameter.grad = None
            else:
                parameter.grad.detach_()
                parameter.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        with_grad = [p for p in self.parameters if p.grad is not None]
        if self.kind == "sgd":
            self._sgd(with_grad)
        else:
            self._adam(with_grad)

    def _sgd(self, parameters: list[torch.Tensor]) -> None:
        buffers = [self.state.get(p, {}).get("momentum_buffer") for p in parameters]
        sgd(parameters, [p.grad for p in parameters], buffers, foreach=self.foreach,
            weight_decay=self.weight_decay, momentum=self.momentum, lr=self.lr, dampening=0.0,
            nesterov=False, maximize=False)
        if self.momentum != 0:  # sgd() creates the buffers at the first step, in the list
            for parameter, buffer in zip(parameters, buffers, strict=True):
                self.state.setdefault(parameter, {})["momentum_buffer"] = buffer

    def _adam(self, parameters: list[torch.Tensor]) -> None:
        step_dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        for parameter in parameters:
            if parameter not in self.state:  # torch.optim.Adam's lazy state, on its devices
                self.state[parameter] = {
                    "step": torch.tensor(0.0, dtype=step_dtype, device="cpu"),
                    "exp_avg": torch.zeros_like(parameter, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(parameter, memory_format=torch.preserve_format),
                }
        states = [self.state[p] for p in parameters]
        function = adamw if self.kind == "adamw" else adam
        function(parameters, [p.grad for p in parameters], [s["exp_avg"] for s in states],
                 [s["exp_avg_sq"] for s in states], [], [s["step"] for s in states], foreach=self.foreach,
                 has_complex=any(torch.is_complex(p) for p in parameters), amsgrad=False, beta1=ADAM_BETAS[0],
                 beta2=ADAM_BETAS[1], lr=self.lr, weight_decay=self.weight_decay, eps=ADAM_EPS, maximize=False)
