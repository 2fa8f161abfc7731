"""The three generic encoder families the ablations cross: linear, mlp and cnn (LeNet-style).

Each builds a digit encoder with 10 outputs per digit (siamese) or 20 for the pair (joint),
followed by the same comparison head on those logits, so the aux loss changes the loss only
(declared `loss_only`: configurations differing in it alone can train as one vectorised model).
"""

from __future__ import annotations

from torch import nn

from architectures.pairs import Joint, Siamese, comparison_head
from architectures.registry import ModelOptions, register

HEAD_HIDDEN = 32


def _scaled(width: float, *sizes: int) -> list[int]:
    return [max(1, round(size * width)) for size in sizes]


def _hidden_block(fan_in: int, fan_out: int, options: ModelOptions) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Linear(fan_in, fan_out)]
    if options.batch_norm:
        layers.append(nn.BatchNorm1d(fan_out))
    layers.append(nn.ReLU())
    if options.dropout:
        layers.append(nn.Dropout(options.dropout))
    return layers


def _pair_model(options: ModelOptions, make_encoder) -> nn.Module:
    head = comparison_head(options, HEAD_HIDDEN)
    if options.pairing == "joint":
        return Joint(make_encoder(2, 20), head)
    return Siamese(lambda: make_encoder(1, 10), head, options.weight_sharing)


def _linear_check(options: ModelOptions) -> str | None:
    if options.batch_norm or options.dropout:
        return "a linear encoder has no hidden layer for batch norm or dropout"
    return None


@register("linear", check=_linear_check, loss_only=("aux_loss",))
def linear(options: ModelOptions) -> nn.Module:
    """One linear layer per encoder: pixels -> digit logits."""
    return _pair_model(options, lambda channels, outputs: nn.Sequential(nn.Flatten(), nn.Linear(channels * 196, outputs)))


@register("mlp", loss_only=("aux_loss",))
def mlp(options: ModelOptions) -> nn.Module:
    """A two-hidden-layer perceptron per encoder (256 and 128 units at width 1)."""

    def encoder(channels: int, outputs: int) -> nn.Module:
        first, second = _scaled(options.width, 256, 128)
        return nn.Sequential(
            nn.Flatten(),
            *_hidden_block(channels * 196, first, options),
            *_hidden_block(first, second, options),
            nn.Linear(second, outputs),
        )

    return _pair_model(options, encoder)


@register("cnn", loss_only=("aux_loss",))
def cnn(options: ModelOptions) -> nn.Module:
    """LeNet-style convnet per encoder, as the course handout's: conv 32, conv 64, fc 200."""

    def encoder(channels: int, outputs: int) -> nn.Module:
        conv1, conv2, hidden = _scaled(options.width, 32, 64, 200)
        norm = nn.BatchNorm2d if options.batch_norm else (lambda _: nn.Identity())
        # max-pooling before the ReLU: the same function and the same gradients, bit for bit
        # (a ReLU is monotone, so it commutes with a max), with the ReLU on a quarter of the
        # values; a training step measured 10 to 17 % faster on a 2-core x86 CPU in NHWC
        return nn.Sequential(
            nn.Conv2d(channels, conv1, kernel_size=3),  # (B, c1, 12, 12)
            norm(conv1),
            nn.MaxPool2d(2),  # (B, c1, 6, 6)
            nn.ReLU(),
            nn.Conv2d(conv1, conv2, kernel_size=3),  # (B, c2, 4, 4)
            norm(conv2),
            nn.MaxPool2d(2),  # (B, c2, 2, 2)
            nn.ReLU(),
            nn.Flatten(),
            *_hidden_block(conv2 * 4, hidden, options),
            nn.Linear(hidden, outputs),
        )

    return _pair_model(options, encoder)
