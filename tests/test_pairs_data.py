"""The pairs task's data (harness.tasks.pairs.data): the course helper's pair sets, drawn from
their own generator, standardised, swapped, viewed as single digits."""

import pytest
import torch
from fixtures import run_config

from harness.errors import DataError
from harness.mnist import load_mnist
from harness.tasks.pairs import data
from harness.tasks.pairs.data import PairSource


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
    stay = run_config(swap_augment=True)
    flip = run_config(swap_augment=True, swap_ties="flip")
    assert stay.config_id == run_config(swap_augment=True, swap_ties="stay").config_id  # neutral
    assert flip.config_id != stay.config_id and "flip-ties" in flip.name and "flip-ties" not in stay.name
    sets = source.pairs(40, seed=3)
    ties = (sets.train_classes[:, 0] == sets.train_classes[:, 1])
    assert ties.any()
    kept = data.prepare_data(stay, sets, torch.device("cpu")).train_target[40:]
    flipped = data.prepare_data(flip, sets, torch.device("cpu")).train_target[40:]
    assert torch.equal(kept[~ties], flipped[~ties]) and (kept[ties] == 1).all() and (flipped[ties] == 0).all()


def test_digit_view_interleaves_pairs():
    pair_input = torch.randn(4, 2, 14, 14)
    classes = torch.tensor([[0, 1], [2, 3], [4, 5], [6, 7]])
    digits, digit_classes = data.digit_view(pair_input, classes)
    assert digits.shape == (8, 1, 14, 14)
    assert digit_classes.tolist() == list(range(8))
    assert torch.equal(digits[3, 0], pair_input[1, 1])
