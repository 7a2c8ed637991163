"""Noise images for image_negative (incumbent.md §4.8): formulas, determinism, no global RNG use."""

from __future__ import annotations

import random

import pytest
import torch

from ipadapter_core import noise
from ipadapter_core.errors import IPAdapterError


def picture(seed: int = 3, shape=(2, 40, 60, 3)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", noise.NOISE_TYPES)
def test_deterministic_and_leaves_global_rng_alone(kind):
    img = picture()
    torch_state, py_state = torch.random.get_rng_state(), random.getstate()
    first = noise.make_noise(kind, 0.6, 3, img)
    second = noise.make_noise(kind, 0.6, 3, img)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert random.getstate() == py_state
    assert torch.equal(first, second)
    assert first.shape == (2, 224, 224, 3) and first.min() >= 0 and first.max() <= 1
    assert not torch.equal(first, noise.make_noise(kind, 0.6, 3, picture(seed=4)))  # seeded by content


def test_seed_depends_on_content_and_shape():
    img = picture()
    assert noise.seed_from_image(img) == noise.seed_from_image(img.clone())
    assert noise.seed_from_image(img) != noise.seed_from_image(img.flip(1))
    zeros = torch.zeros(1, 4, 4, 3)
    assert noise.seed_from_image(zeros) != noise.seed_from_image(torch.zeros(1, 4, 8, 3))


def test_black_base_without_image():
    out = noise.make_noise("fade", 0.0, 0, None)
    assert out.shape == (1, 224, 224, 3) and out.abs().sum() == 0


@pytest.mark.parametrize("kind", ["fade", "dissolve", "gaussian"])
def test_strength_zero_returns_the_base_image(kind):
    img = picture()
    base = noise.base_image(img)
    assert torch.allclose(noise.make_noise(kind, 0.0, 0, img), base.clamp(0, 1), atol=1e-6)


def test_fade_is_a_lerp_towards_uniform_noise():
    base = noise.base_image(None)
    full = noise.make_noise("fade", 1.0, 0, None)  # lerp(0, U, 1) = U
    assert 0.48 < full.mean().item() < 0.52
    half = noise.make_noise("fade", 0.5, 0, None)  # same generator stream: lerp(0, U, .5) = U/2
    assert torch.allclose(half, full * 0.5, atol=1e-6)
    assert base.shape == full.shape


def test_dissolve_replaces_a_strength_fraction_of_values():
    out = noise.make_noise("dissolve", 0.3, 0, None)  # on black: changed values are U[0,1) > 0 almost surely
    changed = (out > 0).float().mean().item()
    assert changed == pytest.approx(0.3, abs=0.01)


def test_gaussian_adds_scaled_normal_noise():
    img = torch.full((1, 224, 224, 3), 0.5)
    out = noise.make_noise("gaussian", 0.1, 0, img)  # 0.5 + 0.1 N(0,1) rarely leaves [0, 1]
    delta = out - 0.5
    assert delta.mean().abs().item() < 0.003
    assert delta.std().item() == pytest.approx(0.1, rel=0.02)


def test_shuffle_warps_and_flips():
    img = torch.zeros(1, 224, 224, 3)
    img[:, :112, :112] = 1.0  # a white top-left quadrant ...
    out = noise.make_noise("shuffle", 0.0, 0, img)  # strength 0: smooth warp, no added noise
    # ... ends up bottom-right after the vertical and horizontal flips
    assert out[:, 112:, 112:].mean() > 0.8 and out[:, :112, :112].mean() < 0.2


def test_elastic_with_zero_alpha_is_the_identity():
    img = picture(shape=(1, 3, 16, 16))
    out = noise.elastic(img, 0.0, 2.0, torch.Generator().manual_seed(0))
    assert torch.allclose(out, img, atol=1e-5)


def test_blur_rounds_even_sizes_up_and_keeps_constants():
    img = picture()
    assert torch.equal(noise.make_noise("fade", 0.5, 2, img), noise.make_noise("fade", 0.5, 3, img))
    assert not torch.equal(noise.make_noise("fade", 0.5, 0, img), noise.make_noise("fade", 0.5, 3, img))
    const = torch.full((1, 3, 10, 10), 0.7)
    assert torch.allclose(noise.gaussian_blur(const, 5), const, atol=1e-6)


def test_gaussian_kernel():
    k = noise.gaussian_kernel(5)  # torchvision default sigma = 0.3*((5-1)*0.5-1)+0.8 = 1.1
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])
    expected = torch.exp(-0.5 * (x / 1.1) ** 2)
    assert torch.allclose(k, expected / expected.sum(), atol=1e-7)


def test_non_square_image_is_centre_cropped():
    img = torch.zeros(1, 100, 300, 3)
    img[:, :, 100:200] = 1.0  # only the centre square is white
    assert torch.allclose(noise.base_image(img), torch.ones(1, 224, 224, 3), atol=1e-5)


def test_unknown_type():
    with pytest.raises(IPAdapterError) as err:
        noise.make_noise("pink", 0.5)
    assert err.value.input == "type"
