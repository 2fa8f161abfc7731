"""The pairs task's augmentation (harness.tasks.pairs.augment): each digit's own random maps,
displacements and erasures, mixed digits, each checked against what its setting's help promises."""

import math

import torch
from fixtures import run_config

from harness.tasks.pairs.augment import (
    augment_digits,
    mix_digits,
    random_affine,
    random_displacement,
    random_erasing,
)


def digits(count=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(count, 1, 14, 14, generator=generator)
    images[..., :2, :] = images[..., :, :2] = 0.0  # a background to find
    return images


def test_the_affine_maps_of_shift_and_rotation_are_the_draws_they_were():
    """Scale and shear draw after shift and angle: without them the maps are unchanged."""
    config = run_config(augment_shift=2, augment_rotate=15.0)
    theta = random_affine(50, config, torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    shift = torch.randint(-2, 3, (50, 2), generator=generator)
    angle = (torch.rand(50, generator=generator) * 2 - 1) * math.radians(15.0)
    assert torch.equal(theta[:, 0, 0], angle.cos()) and torch.equal(theta[:, 1, 0], angle.sin())
    assert torch.equal(theta[:, :, 2], shift.float() * 2 / 14)


def test_scale_and_shear_stay_within_their_ranges():
    config = run_config(augment_scale=0.2, augment_shear=20.0)
    theta = random_affine(2000, config, torch.Generator().manual_seed(0))
    linear = theta[:, :, :2]
    # no rotation: the map is (1/s) [[1, tan(shear)], [0, 1]]
    scale = 1 / linear[:, 1, 1]
    shear = torch.rad2deg(torch.atan(linear[:, 0, 1] * scale))
    assert torch.allclose(linear[:, 0, 0], linear[:, 1, 1]) and torch.equal(linear[:, 1, 0], torch.zeros(2000))
    assert scale.min() >= 0.8 - 1e-6 and scale.max() <= 1.2 + 1e-6 and scale.std() > 0.1
    assert shear.abs().max() <= 20.0 + 1e-4 and shear.std() > 8


def test_elastic_displacement_has_the_asked_rms_and_is_smooth():
    config = run_config(augment_elastic=0.7)
    field = random_displacement(40, config, torch.Generator().manual_seed(1)) * 14 / 2  # pixels
    rms = field.pow(2).mean((1, 2, 3)).sqrt()
    assert torch.allclose(rms, torch.full_like(rms, 0.7), rtol=1e-4)
    neighbour = (field[:, 1:] - field[:, :-1]).abs().mean()
    assert neighbour < 0.5 * field.abs().mean()  # neighbouring pixels move together (white noise: ~1.1)


def test_erasing_sets_a_rectangle_to_the_background_with_its_probability():
    never = random_erasing(100, run_config(augment_erase=0.0), torch.Generator().manual_seed(0))
    assert not never.any()
    always = random_erasing(500, run_config(augment_erase=1.0), torch.Generator().manual_seed(0))
    area = always.sum((1, 2)).float() / 196
    assert area.min() > 0 and area.max() <= 0.26  # 2-20 % of the image, after rounding the sides
    for mask in always[:20]:  # each one rectangle
        rows, columns = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert mask.sum() == len(rows) * len(columns)
        assert (rows.diff() == 1).all() and (columns.diff() == 1).all()
    images = digits()
    erased = augment_digits(images, run_config(augment_erase=1.0), [torch.Generator().manual_seed(2)])
    changed = erased != images
    assert changed.any() and (erased[changed] == 0.0).all()  # the background of these digits is 0


def test_mixup_blends_each_digit_with_its_partner_by_the_weight():
    images = digits(8)
    config = run_config(**{"transfer": "rule", "digit_mix": "mixup", "mix_alpha": 0.4})
    mixed, partner, weight = mix_digits(images, config, [torch.Generator().manual_seed(0)])
    assert 0 < float(weight) < 1 and sorted(partner.tolist()) == list(range(8))
    assert torch.allclose(mixed, weight * images + (1 - weight) * images[partner])


def test_cutmix_pastes_a_square_of_the_partner_and_weights_by_area():
    images = torch.rand(8, 1, 14, 14, generator=torch.Generator().manual_seed(9))  # no two pixels alike
    config = run_config(**{"transfer": "rule", "digit_mix": "cutmix"})
    for seed in range(5):
        mixed, partner, weight = mix_digits(images, config, [torch.Generator().manual_seed(seed)])
        moved = partner != torch.arange(8)
        taken = (mixed == images[partner])[moved, 0]  # (m, 14, 14): pixels from the partner
        assert (taken == taken[0]).all()  # one rectangle for the batch
        region = taken[0]
        rows, columns = region.any(1).nonzero().flatten(), region.any(0).nonzero().flatten()
        assert region.sum() == len(rows) * len(columns) and len(rows) == len(columns)  # a square
        assert math.isclose(float(weight), 1 - region.sum().item() / 196, abs_tol=1e-6)
        assert torch.equal(mixed, torch.where(region, images[partner], images))
