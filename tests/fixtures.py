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


def run_config(**settings):
    """A configuration from settings, checked and completed as a matrix file's are."""
    from harness.config import make_config

    return make_config(settings, "test")


PROVENANCE = {"torch_version": "2.x", "code_version": "abc", "python_version": "3.11", "matrix": "m.toml", "command": "harness run"}


def fill(store, config, test_errors, *, failed_rounds=(), params=1000):
    """Store made-up finished runs of `config`, one per test error."""
    from harness.results import RunResult
    from harness.training.protocol import seeds

    for round_index, test_error in enumerate(test_errors):
        data_seed, model_seed = seeds(config, round_index)
        status = "failed" if round_index in failed_rounds else "done"
        result = RunResult(
            config.config_id, round_index, data_seed, model_seed, status,
            reason="TrainingDiverged: nan" if status == "failed" else None,
            metrics={"train_error": test_error / 2, "test_error": test_error, "train_loss": 0.1},
            epochs=[{"stage": "pairs", "epoch": e, "train_loss": 0.1, "train_error": test_error, "test_error": test_error} for e in (1, 2)],
            params=params, seconds=1.5,
        )
        store.write(result, config, PROVENANCE)


def constructed_store(path):
    """aux_loss lowers test error by exactly 2, 4, 6 points in rounds 0, 1, 2 for both encoders;
    batch_norm changes nothing."""
    from harness.store import Store

    store = Store(path)
    base = {"mlp": [0.20, 0.22, 0.24], "cnn": [0.10, 0.12, 0.14]}
    for encoder, errors in base.items():
        for batch_norm in (False, True):
            off = run_config(encoder=encoder, batch_norm=batch_norm, rounds=3)
            on = run_config(encoder=encoder, batch_norm=batch_norm, aux_loss=True, rounds=3)
            fill(store, off, errors)
            fill(store, on, [e - d for e, d in zip(errors, (0.02, 0.04, 0.06))])
    return store


# a small matrix many tests train: 4 configurations, 2 rounds, 2 epochs
TINY = """
[defaults]
epochs = 2
rounds = 2
pairs = 100
batch_size = 25
[matrix]
encoder = ["mlp", "cnn"]
aux_loss = [false, true]
"""


def stored_results(store_path):
    """The numbers a store holds, by configuration and round (equal stores: equal frames)."""
    from harness.store import Store

    with Store.open_readonly(store_path) as store:
        frame = store.runs()
    return frame.set_index(["config_id", "round"])[["status", "test_error", "train_error", "train_loss"]].sort_index()


def invoke(*arguments):
    """The command line, in this process, every argument as text."""
    from click.testing import CliRunner

    from harness.cli import main

    return CliRunner().invoke(main, [str(a) for a in arguments])


def one_line_exit_2(result, fragment):
    """Exit 2 with one line on stderr that names the problem; no traceback anywhere."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
    assert "Traceback" not in result.output

