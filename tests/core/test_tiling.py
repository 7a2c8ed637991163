"""Tiled references (incumbent.md §5.3): layout, tile counts, overlaps and per-tile mask windows.

Expected numbers are worked out by hand from the spec's rules (short side 256, near-square -> 512,
at most 4:1, ``overlap = (tiles*256 - side) / (tiles - 1)``, start = ``int(i * (256 - overlap))``).
"""

from __future__ import annotations

import pytest
import torch

from ipadapter_core.tiling import TILE, Layout, center_crop, cut, grid_for, layout_for, prepare


@pytest.mark.parametrize(
    "size, layout",
    [
        ((700, 800), Layout(700, (512, 512), None)),  # ratio 0.875: square crop, 2x2 grid
        ((800, 700), Layout(700, (512, 512), None)),
        ((600, 800), Layout(None, (256, 341), None)),  # ratio 0.75 is not "near square" (strict bounds)
        ((1000, 300), Layout(None, (853, 256), None)),  # tall: width to 256, height 256*1000/300 = 853.3
        ((256, 1280), Layout(None, (256, 1280), (256, 1024))),  # 5:1: crop the long side to 4 tiles
        ((2000, 400), Layout(None, (1280, 256), (1024, 256))),
    ],
)
def test_layout_follows_the_spec_rules(size, layout):
    assert layout_for(*size) == layout


def test_square_reference_gives_a_2x2_grid_without_overlap():
    grid = grid_for(512, 512)
    assert (grid.tiles_x, grid.tiles_y, grid.overlap_x, grid.overlap_y, grid.count) == (2, 2, 0.0, 0.0, 4)
    assert grid.windows() == [(0, 0), (0, 256), (256, 0), (256, 256)]


def test_wide_reference_tiles_overlap_evenly():
    grid = grid_for(256, 341)  # 600x800 after resizing
    assert (grid.tiles_x, grid.tiles_y) == (2, 1)
    assert grid.overlap_x == 512 - 341  # (2*256 - 341) / (2 - 1)
    assert grid.windows() == [(0, 0), (0, 85)]  # 256 - 171 = 85: the last tile ends at the edge
    grid = grid_for(256, 853)  # 300x1000 after resizing
    assert grid.tiles_x == 4 and grid.overlap_x == pytest.approx((1024 - 853) / 3)
    assert [left for _, left in grid.windows()] == [0, 199, 398, 597]  # int(i * 199.0)
    assert grid.windows()[-1][1] + TILE == 853


def test_center_crop_puts_the_odd_pixel_at_the_end():
    t = torch.arange(7.0).reshape(1, 1, 7)
    assert center_crop(t, 1, 4).flatten().tolist() == [2.0, 3.0, 4.0, 5.0]  # round(1.5) = 2


def test_prepare_resizes_image_and_mask_together_without_touching_inputs():
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(2, 600, 800, 3, generator=gen)
    mask = torch.zeros(1, 600, 800)
    mask[:, :, 400:] = 1.0  # right half
    before_image, before_mask = image.clone(), mask.clone()
    ref, ref_mask = prepare(image, mask)
    assert ref.shape == (2, 256, 341, 3) and ref_mask.shape == (1, 256, 341)
    assert torch.equal(image, before_image) and torch.equal(mask, before_mask)
    assert ref.min() >= 0 and ref.max() <= 1
    assert ref_mask[:, :, :160].max() < 0.05 and ref_mask[:, :, 182:].min() > 0.95  # the half stays a half


def test_prepare_default_mask_is_ones_and_square_input_is_a_new_tensor():
    image = torch.rand(1, 512, 512, 3, generator=torch.Generator().manual_seed(1))
    ref, mask = prepare(image)
    assert torch.equal(ref, image) and ref.data_ptr() != image.data_ptr()
    assert torch.equal(mask, torch.ones(1, 512, 512))


def test_sharpening_changes_the_reference():
    image = torch.rand(1, 512, 512, 3, generator=torch.Generator().manual_seed(2))
    plain, _ = prepare(image)
    sharp, _ = prepare(image, sharpening=1.0)
    assert not torch.equal(plain, sharp) and sharp.min() >= 0 and sharp.max() <= 1


def test_each_tile_mask_is_the_mask_inside_its_window_and_zero_elsewhere():
    image = torch.rand(1, 256, 341, 3, generator=torch.Generator().manual_seed(3))
    mask = torch.rand(2, 256, 341, generator=torch.Generator().manual_seed(4)) + 0.1  # two masks, none zero
    grid = grid_for(256, 341)
    tiles, masks = cut(image, mask, grid)
    assert len(tiles) == len(masks) == 2
    assert all(t.shape == (1, 256, 256, 3) for t in tiles)
    assert torch.equal(tiles[1], image[:, :, 85:341])
    for m, (_, left) in zip(masks, [(0, 0), (0, 85)], strict=True):
        assert m.shape == (2, 256, 341)
        assert torch.equal(m[:, :, left:left + 256], mask[:, :, left:left + 256])
        outside = torch.ones(341, dtype=torch.bool)
        outside[left:left + 256] = False
        assert m[:, :, outside].abs().max() == 0
