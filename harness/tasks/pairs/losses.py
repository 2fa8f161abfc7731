"""The pairs task's losses: the comparison's (harness.training.protocol.decision_loss), the
digits' (the aux loss), the single-digit stage's, self-distillation's and mixed digits'."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.settings import RunConfig
from harness.training.protocol import cross_entropy, decision_loss


def digit_loss(digits: torch.Tensor, classes: torch.Tensor, kind: str, smoothing: float = 0.0, *,
               vectorised: bool = False) -> torch.Tensor:
    """The sum of the two digits' losses: digits (B, 2, 10) logits, or (B, H, 2, 10) for H
    auxiliary heads (their losses averaged), classes (B, 2). `vectorised`: under vmap
    (protocol.cross_entropy)."""
    if digits.dim() == classes.dim() + 2:  # heads: every head answers for the same classes
        classes = classes.unsqueeze(-2).expand(digits.shape[:-1])  # (B, H, 2)
    logits, labels = digits.reshape(-1, 10), classes.reshape(-1)  # (2B[H], 10), (2B[H],)
    if kind == "cross_entropy":
        return 2 * cross_entropy(logits, labels, smoothing, vectorised=vectorised)
    one_hot = F.one_hot(labels, 10).float()
    return 2 * F.mse_loss(logits.softmax(1) if kind == "mse" else logits, one_hot)


def uses_aux(config: RunConfig) -> bool:
    return config.aux_loss and config.aux_weight > 0


def pair_objective(config: RunConfig, comparison, digits, target, classes, *, vectorised: bool = False) -> torch.Tensor:
    """One member's pair-stage loss: comparison loss + aux_weight x the digits' losses.
    `vectorised`: called under vmap, on one member of a vectorised model (protocol.cross_entropy)."""
    loss = decision_loss(comparison, target, config.loss, config.label_smoothing, vectorised=vectorised)
    if uses_aux(config):
        loss = loss + config.aux_weight * digit_loss(digits, classes, config.loss, config.label_smoothing,
                                                     vectorised=vectorised)
    return loss


def digit_objective(config: RunConfig, logits: torch.Tensor, labels: torch.Tensor, *,
                    vectorised: bool = False) -> torch.Tensor:
    """One member's pretraining loss: logits (b, 10) of single digits, labels (b,)."""
    return cross_entropy(logits, labels, config.label_smoothing, vectorised=vectorised)


def distillation_loss(config: RunConfig, logits: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher || model) between predictions softened by the temperature T, times T^2 so that
    its gradients keep their scale whatever T (Hinton et al.): logits (b, 10), teacher (b, 10)
    the teachers' averaged probabilities at T."""
    temperature = config.distill_temperature
    log_probabilities = F.log_softmax(logits / temperature, -1)
    return F.kl_div(log_probabilities, teacher, reduction="batchmean") * temperature**2


def mixed_digit_objective(config: RunConfig, logits: torch.Tensor, labels: torch.Tensor, partner_labels: torch.Tensor,
                          weight: torch.Tensor, *, vectorised: bool = False) -> torch.Tensor:
    """One member's pretraining loss on mixed digits: `weight` x the loss on the digits' own
    labels + (1 - weight) x the loss on their partners' (mixup's and cutmix's rule)."""
    own = digit_objective(config, logits, labels, vectorised=vectorised)
    return weight * own + (1 - weight) * digit_objective(config, logits, partner_labels, vectorised=vectorised)

