"""The pairs task's augmentation: each training digit moved, rotated, scaled, sheared,
distorted and erased on its own; digits mixed in the single-digit stage (mixup, cutmix); the
shifted copies test-time augmentation averages over. Every draw comes from a member's own
generator, in a fixed order, so a batched member draws what its sequential run draws.

Shapes: (R?, ...) is an optional leading member dimension.
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F

from harness.settings import RunConfig


def resamples(config: RunConfig) -> bool:
    """Whether training digits are moved (shift, rotation, scale, shear, elastic distortion)."""
    return bool(config.augment_shift or config.augment_rotate or config.augment_scale or config.augment_shear
                or config.augment_elastic)


def augments(config: RunConfig) -> bool:
    return resamples(config) or bool(config.augment_erase)


def random_affine(count: int, config: RunConfig, generator: torch.Generator) -> torch.Tensor:
    """(count, 2, 3) affine maps on the CPU: a random whole number of pixels in [-shift, shift]
    per axis and a random angle in [-rotate, rotate] degrees, drawn from `generator`; then, when
    asked, a scale in [1 - s, 1 + s] and a shear along the rows (drawn after, so that the maps
    of configurations without them are the same draws as before they existed)."""
    shift = torch.randint(-config.augment_shift, config.augment_shift + 1, (count, 2), generator=generator)
    angle = (torch.rand(count, generator=generator) * 2 - 1) * math.radians(config.augment_rotate)
    cos, sin = angle.cos(), angle.sin()
    translate = shift.float() * 2 / 14  # pixels -> normalised [-1, 1] coordinates of a 14-pixel side
    theta = torch.stack((cos, -sin, translate[:, 0], sin, cos, translate[:, 1]), 1).view(count, 2, 3)
    if config.augment_scale or config.augment_shear:
        # grid_sample reads the input at theta @ (output position): a digit drawn s times larger
        # is read at positions divided by s
        scale = 1 + (torch.rand(count, generator=generator) * 2 - 1) * config.augment_scale  # (count,)
        shear = ((torch.rand(count, generator=generator) * 2 - 1) * math.radians(config.augment_shear)).tan()
        linear = torch.zeros(count, 2, 2)
        linear[:, 0, 0] = linear[:, 1, 1] = 1 / scale
        linear[:, 0, 1] = shear / scale
        theta = torch.cat((theta[:, :, :2] @ linear, theta[:, :, 2:]), 2)
    return theta


ELASTIC_SIGMA = 2.0  # pixels of a 14x14 digit: Simard et al.'s 4 at 28x28
ERASE_AREA, ERASE_ASPECT = (0.02, 0.2), (0.3, 3.3)  # random erasing's rectangle: share of the image, h / w


def gaussian_smoothed(noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """noise (n, C, H, W) convolved with a normalised Gaussian of `sigma` pixels, per channel,
    the border repeated. Two grouped convolutions rather than torchvision's gaussian_blur: the
    workers never import torchvision, and stored runs with elastic distortion depend on this
    field to the last bit (torchvision reflects the border)."""
    radius = math.ceil(3 * sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=noise.dtype)
    kernel = torch.exp(-offsets**2 / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = noise.shape[1]
    rows = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    columns = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    smoothed = F.conv2d(F.pad(noise, (0, 0, radius, radius), mode="replicate"), rows, groups=channels)
    return F.conv2d(F.pad(smoothed, (radius, radius, 0, 0), mode="replicate"), columns, groups=channels)


def random_displacement(count: int, config: RunConfig, generator: torch.Generator) -> torch.Tensor:
    """(count, 14, 14, 2) elastic displacements in grid_sample's normalised coordinates: uniform
    noise smoothed by a Gaussian of ELASTIC_SIGMA pixels, each digit's field scaled to an RMS of
    `augment_elastic` pixels."""
    noise = torch.rand(count, 2, 14, 14, generator=generator) * 2 - 1
    field = gaussian_smoothed(noise, ELASTIC_SIGMA)  # (count, 2, 14, 14), in pixels once scaled
    rms = field.pow(2).mean((1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)
    return (field / rms * config.augment_elastic * 2 / 14).permute(0, 2, 3, 1)


def random_erasing(count: int, config: RunConfig, generator: torch.Generator) -> torch.Tensor:
    """(count, 14, 14) bool: the pixels each digit loses; a digit is erased with probability
    `augment_erase`, a rectangle of ERASE_AREA of the image with aspect (h / w) in ERASE_ASPECT."""
    erased = torch.rand(count, generator=generator) < config.augment_erase
    area = (ERASE_AREA[0] + torch.rand(count, generator=generator) * (ERASE_AREA[1] - ERASE_AREA[0])) * 196
    low, high = math.log(ERASE_ASPECT[0]), math.log(ERASE_ASPECT[1])
    aspect = torch.exp(low + torch.rand(count, generator=generator) * (high - low))
    height = (area * aspect).sqrt().round().clamp(1, 14)
    width = (area / aspect).sqrt().round().clamp(1, 14)
    top = (torch.rand(count, generator=generator) * (15 - height)).floor()
    left = (torch.rand(count, generator=generator) * (15 - width)).floor()
    position = torch.arange(14.0)
    rows = (position >= top[:, None]) & (position < (top + height)[:, None])  # (count, 14)
    columns = (position >= left[:, None]) & (position < (left + width)[:, None])
    return erased[:, None, None] & rows[:, :, None] & columns[:, None, :]


def apply_affine(images: torch.Tensor, theta: torch.Tensor, displacement: torch.Tensor | None = None) -> torch.Tensor:
    """Images (n, 1, 14, 14) resampled through the maps theta (n, 2, 3), plus an elastic
    displacement (n, 14, 14, 2) of the sampling grid when given."""
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    if displacement is not None:
        grid = grid + displacement.to(grid)
    # border padding repeats the background, which is not zero once inputs are standardised
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment_digits(images: torch.Tensor, config: RunConfig, generators: list[torch.Generator]) -> torch.Tensor:
    """Every digit of `images` (R?, n, C, 14, 14) moved, rotated, scaled, sheared, distorted and
    erased on its own, as the configuration asks; member r's draws come from generators[r] in
    its sequential order (the affine maps, then the displacements, then the erasures)."""
    if not augments(config):
        return images
    count = images.numel() // (images.shape[-2] * images.shape[-1] * len(generators))  # digits per member
    geometric = resamples(config)
    draws = []
    for generator in generators:
        theta = random_affine(count, config, generator) if geometric else None  # (n*C, 2, 3)
        displacement = random_displacement(count, config, generator) if config.augment_elastic else None
        erased = random_erasing(count, config, generator) if config.augment_erase else None
        draws.append((theta, displacement, erased))
    flat = images.reshape(-1, 1, *images.shape[-2:])  # (R*n*C, 1, 14, 14)
    moved = flat
    if geometric:
        theta = torch.cat([d[0] for d in draws])  # (R*n*C, 2, 3)
        displacement = torch.cat([d[1] for d in draws]) if config.augment_elastic else None  # (R*n*C, 14, 14, 2)
        moved = apply_affine(flat, theta, displacement)
    if config.augment_erase:
        erased = torch.cat([d[2] for d in draws]).to(moved.device)  # (R*n*C, 14, 14)
        background = flat.amin((-2, -1), keepdim=True)  # each digit's own background level
        moved = torch.where(erased[:, None], background, moved)
    return moved.reshape(images.shape)


def mix_digits(images: torch.Tensor, config: RunConfig, generators: list[torch.Generator]):
    """`digit_mix` on a batch of single digits (R?, b, 1, 14, 14): each member blends its batch
    with a permutation of itself (mixup) or pastes a rectangle of the permuted digits into it
    (cutmix). Returns (mixed images, partner (R?, b): the permuted positions, weight (R?,): the
    share of the loss that the digits' own labels carry). Member r draws from generators[r]:
    the permutation, then the weight from Beta(mix_alpha, mix_alpha) (Python's betavariate,
    seeded from the generator: torch draws Beta from its global generator only), then the
    rectangle."""
    batch = images.shape[-4]
    partners, weights, masks = [], [], []
    for generator in generators:
        partners.append(torch.randperm(batch, generator=generator))
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        weight = random.Random(seed).betavariate(config.mix_alpha, config.mix_alpha)
        mask = None
        if config.digit_mix == "cutmix":
            side = round(14 * math.sqrt(1 - weight))
            centre = torch.randint(0, 14, (2,), generator=generator).tolist()
            top, left = (min(max(c - side // 2, 0), 14 - side) for c in centre)
            mask = torch.zeros(14, 14, dtype=torch.bool)
            mask[top : top + side, left : left + side] = True
            weight = 1 - side * side / 196  # the labels weighted by the area each digit shows
        weights.append(weight)
        masks.append(mask)
    device = images.device
    partner = torch.stack(partners).reshape(*images.shape[:-4], batch).to(device)  # (R?, b)
    weight = torch.tensor(weights, dtype=images.dtype).reshape(images.shape[:-4]).to(device)  # (R?,)
    others = images.gather(-4, partner.reshape(*partner.shape, 1, 1, 1).expand(images.shape))
    if config.digit_mix == "mixup":
        shaped = weight.reshape(*weight.shape, 1, 1, 1, 1)
        return shaped * images + (1 - shaped) * others, partner, weight
    mask = torch.stack(masks).reshape(*images.shape[:-4], 1, 1, 14, 14).to(device)
    return torch.where(mask, others, images), partner, weight


TEST_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def shifted(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Images (..., H, W) moved by (dy, dx) pixels, the border repeated into the gap."""
    height, width = images.shape[-2:]
    padded = F.pad(images.reshape(-1, 1, height, width), (1, 1, 1, 1), mode="replicate")
    return padded[..., 1 - dy : 1 - dy + height, 1 - dx : 1 - dx + width].reshape(images.shape)

