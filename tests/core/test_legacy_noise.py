"""The v1 ``noise`` negative (incumbent-v1.md §2.3) with a local generator.

Its geometric steps are compared with torchvision's own functional ops (crop, blur, elastic warp:
no randomness involved), and its randomness with the spec's description: fixed (seed 0, so the
same image always gives the same negative), drawn without touching the global RNG, and with the
effect the v1 README describes (small noise = scrambled, noise 1 = the reference turned upside down).
"""

from __future__ import annotations

import pytest
import torch

from ipadapter_core.errors import IPAdapterError
from ipadapter_core.legacy_noise import _blur, _center_crop_square, _displacement, elastic_transform, v1_noise_image

TF = pytest.importorskip("torchvision.transforms.functional")


def _picture(h: int = 240, w: int = 224, seed: int = 0) -> torch.Tensor:
    """A smooth picture (so a warp changes it measurably but a rotation can be recognised)."""
    gen = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, 6, 6, generator=gen)
    return torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False).movedim(1, -1)


def test_geometric_steps_match_torchvision():
    gen = torch.Generator().manual_seed(3)
    image = torch.rand(2, 3, 224, 224, generator=gen)
    for sigma in (0.035, 0.7, 3.5):
        field = _displacement(224, sigma, torch.Generator().manual_seed(0))
        assert torch.equal(elastic_transform(image, field), TF.elastic_transform(image, field, fill=[0.0] * 3))
    noise_field = torch.rand(1, 1, 224, 224, generator=gen)
    assert torch.equal(_blur(noise_field, 7, 0.7), TF.gaussian_blur(noise_field, [7, 7], [0.7, 0.7]))
    tall = torch.rand(1, 3, 301, 200, generator=gen)
    assert torch.equal(_center_crop_square(tall), TF.center_crop(tall, [200, 200]))


def test_fixed_seed_and_global_rng_untouched():
    image = _picture()
    state = torch.random.get_rng_state()
    first = v1_noise_image(image, 0.3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(first, v1_noise_image(image, 0.3))
    assert first.shape == (1, 224, 224, 3)
    before = image.clone()
    v1_noise_image(image, 0.5)
    assert torch.equal(image, before), "the input image was modified"


def test_effect_strength_follows_noise():
    image = _picture(224, 224)
    turned = image.flip(1).flip(2)

    def distance(n: float) -> float:
        return float((v1_noise_image(image, n).clamp(0, 1) - turned).abs().mean())
    near, far = distance(1.0), distance(0.01)
    assert near < 0.06, f"noise 1.0 should be close to the reference turned 180 degrees ({near})"
    assert far > 2 * near, f"noise 0.01 should scramble much more than 1.0 ({far} vs {near})"
    residual = v1_noise_image(image, 1.0) - v1_noise_image(image, 1.0).clamp(0, 1)
    assert residual.abs().max() > 0, "v1 does not clamp: the host's preprocessing does"


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_out_of_range_noise_is_a_user_error(bad):
    with pytest.raises(IPAdapterError, match="noise"):
        v1_noise_image(_picture(), bad)
