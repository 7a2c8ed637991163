"""Square crop/pad, resize and contrast-adaptive sharpening (incumbent.md §5.1), on [B,H,W,C] tensors.

Expected values are written out from the spec's formulas, not read from the code.
"""

from __future__ import annotations

import math

import pytest
import torch

from ipadapter_core import images
from ipadapter_core.errors import IPAdapterError


def ramp(b: int, h: int, w: int) -> torch.Tensor:
    """An image whose every pixel value is unique: value = (y*w + x) / (h*w), same on the 3 channels."""
    v = torch.arange(h * w, dtype=torch.float32).reshape(1, h, w, 1) / (h * w)
    return v.expand(b, h, w, 3).clone()


@pytest.mark.parametrize(
    "position,shape,rows,cols",
    [
        ("top", (4, 6), (0, 4), (1, 5)),  # wide: top only moves vertically (no-op), x is centred
        ("center", (4, 6), (0, 4), (1, 5)),
        ("left", (4, 6), (0, 4), (0, 4)),
        ("right", (4, 6), (0, 4), (2, 6)),
        ("bottom", (4, 6), (0, 4), (1, 5)),
        ("top", (7, 4), (0, 4), (0, 4)),  # tall
        ("center", (7, 4), (1, 5), (0, 4)),  # (7-4)//2 = 1
        ("bottom", (7, 4), (3, 7), (0, 4)),
        ("left", (7, 4), (1, 5), (0, 4)),  # left only moves horizontally (no-op), y is centred
    ],
)
def test_crop_square_positions(position, shape, rows, cols):
    img = ramp(2, *shape)
    out = images.crop_square(img, position)
    assert torch.equal(out, img[:, rows[0]:rows[1], cols[0]:cols[1], :])


@pytest.mark.parametrize("h,w", [(5, 8), (8, 5), (6, 8), (3, 3)])
def test_pad_square_is_exactly_square_and_keeps_the_image(h, w):
    img = ramp(1, h, w) + 0.1
    out = images.pad_square(img)
    side = max(h, w)
    assert out.shape == (1, side, side, 3)  # the incumbent left odd differences one pixel short
    before = (side - min(h, w)) // 2
    if h < w:
        assert torch.equal(out[:, before:before + h], img)
        assert out[:, :before].abs().sum() == 0 and out[:, before + h:].abs().sum() == 0
    else:
        assert torch.equal(out[:, :, before:before + w], img)
        assert out[:, :, :before].abs().sum() == 0 and out[:, :, before + w:].abs().sum() == 0


def test_resize_nearest_and_box():
    img = ramp(1, 4, 4)
    # NEAREST samples pixel centres (PIL): 4 -> 2 keeps source pixels 1 and 3 on each axis.
    assert torch.equal(images.resize(img, 2, "NEAREST"), img[:, 1::2, 1::2])
    # BOX averages each 2x2 block.
    expected = img.reshape(1, 2, 2, 2, 2, 3).mean(dim=(2, 4))
    assert torch.allclose(images.resize(img, 2, "BOX"), expected, atol=1e-6)


@pytest.mark.parametrize("interp", images.INTERPOLATIONS)
def test_resize_keeps_constant_images_and_range(interp):
    const = torch.full((2, 30, 50, 3), 0.25)
    out = images.resize(const, 224, interp)
    assert out.shape == (2, 224, 224, 3)
    assert torch.allclose(out, const[:, :1, :1].expand_as(out), atol=1e-5)
    edge = torch.zeros(1, 16, 16, 3)
    edge[:, :, 8:] = 1.0  # a hard edge makes bicubic overshoot; the result is clamped to [0, 1]
    up = images.resize(edge, 40, interp)
    assert up.min() >= 0 and up.max() <= 1


def test_resize_unknown_interpolation():
    with pytest.raises(IPAdapterError) as err:
        images.resize(ramp(1, 4, 4), 2, "SINC")
    assert err.value.input == "interpolation" and "LANCZOS" in str(err.value)


def test_cas_matches_the_formula_by_hand():
    # 3x3 neighbourhood a..i around e (spec §5.1), amount = 1.
    a, b, c, d, e, f, g, h, i = 0.2, 0.4, 0.3, 0.6, 0.5, 0.7, 0.1, 0.8, 0.9
    img = torch.zeros(1, 5, 5, 3)
    img[0, 1:4, 1:4, :] = torch.tensor([[a, b, c], [d, e, f], [g, h, i]]).unsqueeze(-1)
    out = images.contrast_adaptive_sharpening(img, 1.0)
    # cross {b,d,e,f,h}: min .4 max .8; diag {a,c,g,i}: min .1 max .9 -> mn = .5, mx = 1.7
    # amp = sqrt(min(.5, 2-1.7)/1.7) = sqrt(.3/1.7); w = -amp * (1*(1/5-1/8) + 1/8) = -amp/5
    amp = math.sqrt(0.3 / 1.7)
    w = -amp / 5
    expected = ((b + d + f + h) * w + e) / (1 + 4 * w)
    assert expected == pytest.approx(0.436728, abs=1e-6)
    assert out[0, 2, 2].tolist() == pytest.approx([expected] * 3, abs=1e-6)
    # amount 0.5: w = -amp * (0.5*0.075 + 0.125)
    w = -amp * (0.5 * (1 / 5 - 1 / 8) + 1 / 8)
    half = images.contrast_adaptive_sharpening(img, 0.5)
    assert half[0, 2, 2, 0].item() == pytest.approx(((b + d + f + h) * w + e) / (1 + 4 * w), abs=1e-6)


def test_cas_leaves_the_border_flat_areas_and_zero_amount_alone():
    img = torch.rand(1, 8, 8, 3, generator=torch.Generator().manual_seed(0))
    out = images.contrast_adaptive_sharpening(img, 1.0)
    # zero outside the image -> min = 0 -> amp = 0 -> the border pixel is unchanged
    assert torch.allclose(out[:, 0], img[:, 0]) and torch.allclose(out[:, :, -1], img[:, :, -1])
    assert not torch.allclose(out[:, 1:-1, 1:-1], img[:, 1:-1, 1:-1])
    flat = torch.full((1, 6, 6, 3), 0.4)
    assert torch.allclose(images.contrast_adaptive_sharpening(flat, 1.0), flat, atol=1e-6)
    assert images.contrast_adaptive_sharpening(img, 0.0) is img


@pytest.mark.parametrize("size", [224, 336])
def test_prep_for_clip_vision(size):
    img = torch.rand(2, 120, 90, 4, generator=torch.Generator().manual_seed(1))
    before = img.clone()
    for position in images.CROP_POSITIONS:
        out = images.prep_for_clip_vision(img, size, "LANCZOS", position, 0.0)
        assert out.shape == (2, size, size, 3)
        assert out.min() >= 0 and out.max() <= 1
    sharp = images.prep_for_clip_vision(img, size, "BICUBIC", "center", 1.0)
    assert not torch.allclose(sharp, images.prep_for_clip_vision(img, size, "BICUBIC", "center", 0.0))
    assert torch.equal(img, before)  # inputs are never modified


def test_prep_at_the_target_size_returns_a_new_tensor():
    img = torch.rand(1, 224, 224, 3)
    out = images.prep_for_clip_vision(img, 224, "BICUBIC", "center", 0.0)
    assert torch.equal(out, img) and out.data_ptr() != img.data_ptr()
