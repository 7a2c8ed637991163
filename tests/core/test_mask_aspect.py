"""When is an attn_mask stretched enough to warn about (ipadapter_core.mask_aspect)?"""

from __future__ import annotations

import pytest

from ipadapter_core.mask_aspect import TOLERANCE, stretch, stretch_warning


@pytest.mark.parametrize("mask_hw, latent_hw", [
    ((512, 512), (64, 64)),      # same shape at another scale
    ((600, 1000), (75, 125)),    # 5:3 at pixel and latent size
    ((768, 1360), (96, 170)),    # 1360 is not a multiple of 16: still within rounding
    ((1024, 1024), (129, 128)),  # one latent row of rounding
])
def test_masks_of_the_latents_shape_are_not_reported(mask_hw, latent_hw):
    assert stretch_warning(mask_hw, latent_hw) is None


@pytest.mark.parametrize("mask_hw, latent_hw, factor", [
    ((64, 256), (64, 64), 4.0),      # 4:1 on 1:1
    ((256, 64), (64, 64), 4.0),      # 1:4 (portrait) on 1:1
    ((512, 512), (96, 128), 4 / 3),  # square mask on a 4:3 latent
    ((96, 128), (128, 96), 16 / 9),  # landscape mask on a portrait latent
])
def test_stretched_masks_are_reported_with_both_sizes_and_the_factor(mask_hw, latent_hw, factor):
    assert stretch(mask_hw, latent_hw) == pytest.approx(factor)
    text = stretch_warning(mask_hw, latent_hw, who="node 5")
    assert text is not None and text.startswith("node 5: ")
    assert f"{mask_hw[1]}x{mask_hw[0]}" in text and f"{latent_hw[1]}x{latent_hw[0]}" in text
    assert f"{factor:.2f}x" in text and "Make the mask" in text


def test_the_tolerance_is_a_few_percent_either_way():
    just_inside = (100, round(100 * (1 + TOLERANCE) - 1))
    just_outside = (100, round(100 * (1 + TOLERANCE) + 1))
    assert stretch_warning(just_inside, (64, 64)) is None
    assert stretch_warning(just_outside, (64, 64)) is not None
    assert stretch_warning((just_outside[1], 100), (64, 64)) is not None


def test_empty_sizes_are_never_reported():
    assert stretch((0, 64), (64, 64)) == 1.0 and stretch_warning((64, 64), (0, 0)) is None
