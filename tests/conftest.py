import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fixtures import constructed_store, write_mnist  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_mnist(tmp_path_factory):
    """A synthetic MNIST data dir and its checksums (600 train, 400 test digits)."""
    directory = tmp_path_factory.mktemp("mnist")
    checksums = write_mnist(directory)
    return directory, checksums


@pytest.fixture
def fake_mnist(synthetic_mnist, monkeypatch):
    """The synthetic MNIST, accepted as the real one: its checksums replace the official sums."""
    directory, checksums = synthetic_mnist
    monkeypatch.setattr("harness.mnist.MNIST_SHA256", checksums)
    monkeypatch.setenv("HARNESS_DATA_DIR", str(directory))
    return directory


@pytest.fixture
def constructed(tmp_path):
    """A store of made-up runs with known effects (fixtures.constructed_store)."""
    store = constructed_store(tmp_path / "s.sqlite")
    yield store
    store.close()
