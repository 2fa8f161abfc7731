"""Small synthetic MNIST written as real IDX files, so the tests never need the real data."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import torch

NAMES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def idx_bytes(tensor: torch.Tensor) -> bytes:
    """An IDX file holding a uint8 tensor."""
    header = struct.pack(">BBBB", 0, 0, 0x08, tensor.dim())
    header += b"".join(struct.pack(">I", size) for size in tensor.shape)
    return header + tensor.to(torch.uint8).contiguous().numpy().tobytes()


def synthetic_digits(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` 28x28 'digits': class c is a bright bar at a class-specific place, plus noise.

    Learnable in a few epochs, so training code can be checked for doing something.
    """
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 10
    labels = labels[torch.randperm(count, generator=generator)]
    images = torch.randint(0, 60, (count, 28, 28), generator=generator)
    for index, label in enumerate(labels.tolist()):
        row = 2 + 2 * label
        images[index, row : row + 4, 4 + label : 20 + label] = 255
    return images.to(torch.uint8), labels.to(torch.uint8)


def write_mnist(directory: Path, train: int = 600, test: int = 400, compress: bool = False) -> dict[str, str]:
    """Write a synthetic MNIST into `directory` (torchvision layout); return its SHA-256 sums."""
    raw = directory / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    checksums = {}
    for split, count, seed in (("train", train, 1), ("test", test, 2)):
        images, labels = synthetic_digits(count, seed)
        for kind, tensor in (("images", images), ("labels", labels)):
            name = NAMES[(split, kind)]
            content = idx_bytes(tensor)
            checksums[name] = hashlib.sha256(content).hexdigest()
            if compress:
                (raw / f"{name}.gz").write_bytes(gzip.compress(content))
            else:
                (raw / name).write_bytes(content)
    return checksums
