"""ClipVision Enhancer (incumbent.md §5.4): crops, the merged token grid, pooled embeds of any width.

Expectations are computed by hand from the spec: each crop's g x g patch tokens go back to their
place in a (g*n) x (g*n) grid, which is average-pooled to g x g; CLS = mean of the crops' CLS.
"""

from __future__ import annotations

import pytest
import torch

from ipadapter_core.enhancer import clamp_tiles, merge, merge_hidden_states, merge_pooled, mix, split_tiles
from ipadapter_core.errors import IPAdapterError


def test_split_tiles_is_row_major_and_drops_the_remainder():
    image = torch.arange(5 * 7, dtype=torch.float32).reshape(1, 5, 7, 1)  # 5 rows, 7 columns
    crops = split_tiles(image, 2)
    assert crops.shape == (1, 4, 2, 3, 1)  # 5//2 x 7//2
    assert torch.equal(crops[0, 1], image[0, 0:2, 3:6])  # top-right
    assert torch.equal(crops[0, 2], image[0, 2:4, 0:3])  # bottom-left


def test_split_tiles_refuses_an_image_smaller_than_the_grid():
    with pytest.raises(IPAdapterError, match="too small"):
        split_tiles(torch.zeros(1, 3, 3, 3), 4)


def _grid_states(n: int, g: int, dim: int) -> torch.Tensor:
    """n*n crops' states: patch token (r, c) of crop (i, j) holds its global grid position y*(g*n)+x;
    crop k's CLS token holds k."""
    states = torch.zeros(n * n, 1 + g * g, dim)
    for i in range(n):
        for j in range(n):
            states[i * n + j, 0] = i * n + j
            for r in range(g):
                for c in range(g):
                    states[i * n + j, 1 + r * g + c] = (i * g + r) * (g * n) + (j * g + c)
    return states


def test_merged_grid_pools_blocks_across_crop_borders():
    # n = 3 crops of g = 2: the 6x6 grid v(y, x) = 6y + x is pooled to 2x2 blocks of 3x3, so each output
    # token averages parts of four crops: mean = 6*(3R+1) + (3C+1).
    merged = merge_hidden_states(_grid_states(3, 2, 4), 3)
    assert merged.shape == (1, 5, 4)
    assert merged[0, 0].tolist() == [4.0] * 4  # mean of CLS 0..8
    assert merged[0, 1:, 0].tolist() == [7.0, 10.0, 25.0, 28.0]


def test_merge_keeps_images_apart():
    a, b = _grid_states(2, 2, 3), _grid_states(2, 2, 3) + 100.0
    merged = merge_hidden_states(torch.cat([a, b]), 2)
    assert merged.shape == (2, 5, 3)
    assert torch.equal(merged[1], merged[0] + 100.0)


@pytest.mark.parametrize("tokens", [257, 577])  # ViT-H/bigG at 224 (g = 16), ViT-L at 336 (g = 24)
@pytest.mark.parametrize("width", [768, 1024, 1280])
def test_real_encoder_shapes_merge_for_every_width(tokens, width):
    states = torch.randn(2 * 4, tokens, width, generator=torch.Generator().manual_seed(width))
    merged = merge(states, 2)
    assert merged.shape == (2, tokens, width)
    g = round((tokens - 1) ** 0.5)
    top_left = states[:4, 1:, :].reshape(2, 2, g, g, width)[0, 0, :2, :2].mean(dim=(0, 1))  # crop (0,0), 2x2 block
    torch.testing.assert_close(merged[0, 1], top_left)


@pytest.mark.parametrize("width", [768, 1024, 1280])
def test_pooled_embeds_are_the_mean_over_each_images_crops(width):
    embeds = torch.arange(2 * 4 * width, dtype=torch.float32).reshape(8, width)
    merged = merge_pooled(embeds, 2)
    assert merged.shape == (2, width)
    assert torch.equal(merged[0], (embeds[0] + embeds[1] + embeds[2] + embeds[3]) / 4)
    assert torch.equal(merged[1], embeds[4:].mean(0))
    assert torch.equal(merge(embeds, 2), merged)


def test_states_without_a_square_patch_grid_are_refused():
    with pytest.raises(IPAdapterError, match="clip_vision"):
        merge_hidden_states(torch.zeros(4, 255, 8), 2)


def test_siglip_states_have_no_cls_token_and_merge_as_a_patch_grid():
    """SigLIP (SD3.5's encoder): g*g tokens, no CLS. Tile (i, j)'s token block lands at grid block (i, j)."""
    g, n = 3, 2
    tiles = torch.stack([torch.full((g * g, 1), float(t)) for t in range(n * n)])  # tile t: all values t
    merged = merge_hidden_states(tiles, n)
    assert merged.shape == (1, g * g, 1)
    grid = torch.arange(n * n, dtype=torch.float32).reshape(n, n).repeat_interleave(g, 0).repeat_interleave(g, 1)
    expected = torch.nn.functional.adaptive_avg_pool2d(grid[None, None], (g, g)).reshape(1, g * g, 1)
    torch.testing.assert_close(merged, expected)


def test_mix_blends_per_image_when_unfolded_and_adds_entries_otherwise():
    full, tiles = torch.full((2, 3), 2.0), torch.full((2, 3), 10.0)
    assert torch.equal(mix(full, tiles, 0.25, unfold=True), torch.full((2, 3), 0.5 + 7.5))
    stacked = mix(full, tiles, 0.25, unfold=False)
    assert stacked.shape == (4, 3)
    assert torch.equal(stacked[:2], full * 0.25) and torch.equal(stacked[2:], tiles)


def test_tile_count_is_capped_at_16():
    assert clamp_tiles(40) == 16 and clamp_tiles(0) == 1 and clamp_tiles(3) == 3
