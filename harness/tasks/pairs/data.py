"""The digit-pair sets, made exactly as the course helper makes them, and the data a run sees.

`generate_pair_sets(n, seed=...)` is a drop-in for `dlc_practical_prologue.generate_pair_sets(n)`:
same six tensors, same order, same semantics, but drawn from its own `torch.Generator`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.errors import DataError
from harness.mnist import MnistSplits, load_mnist


@dataclass(frozen=True)
class PairSets:
    """The six tensors of `generate_pair_sets`, named."""

    train_input: torch.Tensor  # (N, 2, 14, 14) float 0..255
    train_target: torch.Tensor  # (N,) long, 1 where classes[:, 0] <= classes[:, 1]
    train_classes: torch.Tensor  # (N, 2) long
    test_input: torch.Tensor
    test_target: torch.Tensor
    test_classes: torch.Tensor

    def as_tuple(self) -> tuple[torch.Tensor, ...]:
        return (
            self.train_input,
            self.train_target,
            self.train_classes,
            self.test_input,
            self.test_target,
            self.test_classes,
        )


def downsample(images: torch.Tensor) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (N, 1, 14, 14) float 0..255, by 2x2 averaging as the helper does."""
    return F.avg_pool2d(images.view(-1, 1, 28, 28).float(), kernel_size=2)


def max_pairs(splits: MnistSplits) -> int:
    """The most pairs per set the smaller split can supply without reusing an image."""
    return min(len(splits.train_images), len(splits.test_images)) // 2


def _to_pairs(n, images, labels, generator):
    indices = torch.randperm(images.size(0), generator=generator)[: 2 * n].view(n, 2)
    pair_input = torch.cat((images[indices[:, 0]], images[indices[:, 1]]), 1)  # (n, 2, 14, 14)
    classes = labels[indices]  # (n, 2)
    target = (classes[:, 0] <= classes[:, 1]).long()
    return pair_input, target, classes


class PairSource:
    """Draws pair sets from MNIST already loaded and downsampled once (for many rounds)."""

    def __init__(self, splits: MnistSplits):
        self.train_images = downsample(splits.train_images)
        self.train_labels = splits.train_labels
        self.test_images = downsample(splits.test_images)
        self.test_labels = splits.test_labels
        self.max_pairs = max_pairs(splits)

    def check(self, config) -> str | None:
        """Why this source cannot serve a configuration (more pairs than MNIST holds), or None."""
        if config.pairs > self.max_pairs:
            return f"{config.pairs} pairs asked, the data holds {self.max_pairs} per set"
        return None

    def pairs(self, n: int, seed: int) -> PairSets:
        if not 1 <= n <= self.max_pairs:
            raise DataError(
                f"{n} pairs asked, but a set holds 1 to {self.max_pairs} "
                f"(2 images a pair, no image twice, {len(self.test_images)} test images)"
            )
        generator = torch.Generator().manual_seed(seed)
        train = _to_pairs(n, self.train_images, self.train_labels, generator)
        test = _to_pairs(n, self.test_images, self.test_labels, generator)
        return PairSets(*train, *test)


def load_pair_source(data_dir: str | os.PathLike | None = None) -> PairSource:
    """The pairs task's loader: MNIST fetched if needed, verified, read and downsampled once."""
    return PairSource(load_mnist(data_dir))


def generate_pair_sets(n: int, seed: int = 0, data_dir: str | os.PathLike | None = None):
    """The course helper's six tensors for `n` train and `n` test pairs, from `seed`.

    Returns (train_input, train_target, train_classes, test_input, test_target, test_classes):
    inputs (n, 2, 14, 14) float 0..255, targets (n,) long = classes[:, 0] <= classes[:, 1],
    classes (n, 2) long. Train pairs come from MNIST train, test pairs from MNIST test.
    """
    return PairSource(load_mnist(data_dir)).pairs(n, seed).as_tuple()


# --------------------------------------------------------------------------- transforms


def standardize(train_input: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Standardise every tensor with the train input's mean and std (one scalar each)."""
    mean, std = train_input.mean(), train_input.std()
    return tuple((tensor - mean) / std for tensor in (train_input, *others))


def swap_pairs(pair_input: torch.Tensor, classes: torch.Tensor, ties: str = "stay"):
    """The pairs with the two digits swapped. The target is recomputed, so ties stay 1; with
    `ties="flip"` every target is the original's flipped, so a tie's twin is labelled 0."""
    swapped_classes = classes.flip(1)
    swapped_target = (swapped_classes[:, 0] <= swapped_classes[:, 1]).long()
    if ties == "flip":
        swapped_target = 1 - (classes[:, 0] <= classes[:, 1]).long()
    return pair_input.flip(1), swapped_target, swapped_classes


def swap_augment(pair_input: torch.Tensor, target: torch.Tensor, classes: torch.Tensor, ties: str = "stay"):
    """The original pairs followed by their swapped twins (twice as many pairs); `ties` as in
    `swap_pairs`."""
    swapped_input, swapped_target, swapped_classes = swap_pairs(pair_input, classes, ties)
    return (
        torch.cat((pair_input, swapped_input)),
        torch.cat((target, swapped_target)),
        torch.cat((classes, swapped_classes)),
    )


def digit_view(pair_input: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 2n single digits of n pairs: images (2n, 1, 14, 14) and classes (2n,)."""
    return pair_input.reshape(-1, 1, *pair_input.shape[2:]), classes.reshape(-1)


# --------------------------------------------------------------------------- the data a run sees


@dataclass
class RunData:
    train_input: torch.Tensor  # (N, 2, 14, 14), standardised when asked, swapped twins appended
    train_target: torch.Tensor  # (N,)
    train_classes: torch.Tensor  # (N, 2)
    eval_sets: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # train / validation / test
    digits: torch.Tensor  # (2N, 1, 14, 14) single digits of the original training pairs
    digit_classes: torch.Tensor  # (2N,)


def prepare_data(config, sets: PairSets, device: torch.device) -> RunData:
    """The training pairs (less the validation pairs held out), standardised with their own
    statistics, swapped twins appended when asked; the evaluation sets; the single digits."""
    train_input, train_target, train_classes = sets.train_input, sets.train_target, sets.train_classes
    test_input = sets.test_input
    held_out = config.validation
    fit = slice(0, config.pairs - held_out)
    valid = slice(config.pairs - held_out, config.pairs)
    if config.normalize:
        train_input, test_input = standardize(train_input[fit], train_input, test_input)[1:]
    to = lambda *tensors: tuple(t.to(device) for t in tensors)  # noqa: E731
    fit_set = to(train_input[fit], train_target[fit], train_classes[fit])
    eval_sets = {"train": fit_set, "test": to(test_input, sets.test_target, sets.test_classes)}
    if held_out:
        eval_sets["validation"] = to(train_input[valid], train_target[valid], train_classes[valid])
    digits, digit_classes = digit_view(fit_set[0], fit_set[2])
    training = swap_augment(*fit_set, ties=config.swap_ties) if config.swap_augment else fit_set
    return RunData(*training, eval_sets, digits, digit_classes)
