"""Weight types: per-layer factors for SD1.5 and SDXL, checked against incumbent.md §4.3.

Expectations are written out from the spec's formulas and tables, not read from the code.
"""

from __future__ import annotations

import pytest

from ipadapter_core.errors import IPAdapterError
from ipadapter_core.sites import Site
from ipadapter_core.weighting import WEIGHT_TYPES, LayerWeight, parse_layer_weights, resolve


def sd15_sites() -> list[Site]:
    """SD1.5 attn2 sites in ComfyUI run order (incumbent.md §3.1): 16 blocks, one per transformer index."""
    rows = [("input", 1, 320), ("input", 2, 320), ("input", 4, 640), ("input", 5, 640), ("input", 7, 1280),
            ("input", 8, 1280), ("middle", 0, 1280), ("output", 3, 1280), ("output", 4, 1280), ("output", 5, 1280),
            ("output", 6, 640), ("output", 7, 640), ("output", 8, 640), ("output", 9, 320), ("output", 10, 320),
            ("output", 11, 320)]  # fmt: skip
    return [Site((block, bid, 0), t, width, 8) for t, (block, bid, width) in enumerate(rows)]


def sdxl_sites() -> list[Site]:
    """SDXL: 11 SpatialTransformers (t 0..10) holding 70 transformer blocks; heads = width / 64."""
    rows = [("input", 4, 2, 640), ("input", 5, 2, 640), ("input", 7, 10, 1280), ("input", 8, 10, 1280),
            ("middle", 0, 10, 1280), ("output", 0, 10, 1280), ("output", 1, 10, 1280), ("output", 2, 10, 1280),
            ("output", 3, 2, 640), ("output", 4, 2, 640), ("output", 5, 2, 640)]  # fmt: skip
    return [
        Site((block, bid, i), t, width, width // 64)
        for t, (block, bid, depth, width) in enumerate(rows)
        for i in range(depth)
    ]


SITES = {"sd15": sd15_sites(), "sdxl": sdxl_sites()}
DEPTH = {"sd15": 16, "sdxl": 11}

# incumbent.md §4.3 "Resulting factors per t_idx" (3 decimals): ease in, ease out, in-out, reverse.
SPEC_TABLE = {
    "sd15": """1.000 0.050 0.050 1.000 | 0.941 0.109 0.169 0.881 | 0.881 0.169 0.287 0.762 | 0.822 0.228 0.406 0.644 |
               0.762 0.287 0.525 0.525 | 0.703 0.347 0.644 0.406 | 0.644 0.406 0.762 0.287 | 0.584 0.466 0.881 0.169 |
               0.525 0.525 1.000 0.050 | 0.466 0.584 0.881 0.169 | 0.406 0.644 0.762 0.287 | 0.347 0.703 0.644 0.406 |
               0.287 0.762 0.525 0.525 | 0.228 0.822 0.406 0.644 | 0.169 0.881 0.287 0.762 | 0.109 0.941 0.169 0.881""",
    "sdxl": """1.000 0.050 0.050 1.000 | 0.914 0.136 0.223 0.827 | 0.827 0.223 0.395 0.655 | 0.741 0.309 0.568 0.482 |
               0.655 0.395 0.741 0.309 | 0.568 0.482 0.914 0.136 | 0.482 0.568 0.914 0.136 | 0.395 0.655 0.741 0.309 |
               0.309 0.741 0.568 0.482 | 0.223 0.827 0.395 0.655 | 0.136 0.914 0.223 0.827""",
}
CURVE_COLUMNS = ["ease in", "ease out", "ease in-out", "reverse in-out"]


def spec_table(family: str) -> dict[str, list[float]]:
    rows = [[float(v) for v in row.split()] for row in SPEC_TABLE[family].split("|")]
    return {name: [row[i] for row in rows] for i, name in enumerate(CURVE_COLUMNS)}


def curve_factor(name: str, t: int, depth: int) -> float:
    """The spec's formulas, written out independently."""
    half = depth / 2
    return {
        "ease in": 0.05 + 0.95 * (1 - t / depth),
        "ease out": 0.05 + 0.95 * (t / depth),
        "ease in-out": 0.05 + 0.95 * (1 - abs(t - half) / half),
        "reverse in-out": 0.05 + 0.95 * (abs(t - half) / half),
    }[name]


def by_t(weights: dict[tuple, LayerWeight], sites: list[Site]) -> dict[int, set[LayerWeight]]:
    """Group the resolved weights by transformer index (all blocks of one SDXL transformer agree)."""
    out: dict[int, set[LayerWeight]] = {}
    for site in sites:
        out.setdefault(site.transformer_index, set()).add(weights[site.key])
    return out


def single(weights: dict[tuple, LayerWeight], sites: list[Site]) -> dict[int, LayerWeight]:
    grouped = by_t(weights, sites)
    assert all(len(v) == 1 for v in grouped.values()), "blocks sharing a transformer index disagree"
    return {t: next(iter(v)) for t, v in grouped.items()}


# --- curves -------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
@pytest.mark.parametrize("name", CURVE_COLUMNS)
def test_curves_follow_the_formula_and_the_spec_table(family: str, name: str) -> None:
    sites = SITES[family]
    weight = 0.8
    got = single(resolve(name, weight, sites, family), sites)
    table = spec_table(family)[name]
    assert sorted(got) == list(range(DEPTH[family]))  # every layer, the middle block included
    for t, lw in got.items():
        assert lw.weight == pytest.approx(weight * curve_factor(name, t, DEPTH[family]), abs=1e-9)
        assert lw.weight / weight == pytest.approx(table[t], abs=6e-4)
        assert not lw.swap and not lw.alt


def test_spot_values_from_the_spec() -> None:
    sd15 = single(resolve("ease in", 1.0, SITES["sd15"], "sd15"), SITES["sd15"])
    assert sd15[6].weight == pytest.approx(0.644, abs=5e-4)  # t=6 is SD1.5's middle block
    sdxl = single(resolve("reverse in-out", 1.0, SITES["sdxl"], "sdxl"), SITES["sdxl"])
    assert sdxl[4].weight == pytest.approx(0.309, abs=5e-4)  # t=4 is SDXL's middle block


def test_middle_block_is_weighted() -> None:
    """The incumbent never patches the middle block (§8 bug 1); here it gets its weight."""
    for family, sites in SITES.items():
        middle = [s for s in sites if s.block_type == "middle"]
        assert middle
        weights = resolve("linear", 0.5, sites, family)
        assert all(weights[s.key].weight == 0.5 for s in middle)


def test_kolors_uses_the_sdxl_depth() -> None:
    sites = SITES["sdxl"]
    assert resolve("ease out", 1.0, sites, "kolors") == resolve("ease out", 1.0, sites, "sdxl")


@pytest.mark.parametrize(
    ("name", "factors"),
    [
        ("linear", {"input": 1.0, "middle": 1.0, "output": 1.0}),
        ("weak input", {"input": 0.2, "middle": 1.0, "output": 1.0}),
        ("weak middle", {"input": 1.0, "middle": 0.2, "output": 1.0}),
        ("weak output", {"input": 1.0, "middle": 1.0, "output": 0.2}),
        ("strong middle", {"input": 0.2, "middle": 1.0, "output": 0.2}),
    ],
)
@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_block_types(family: str, name: str, factors: dict[str, float]) -> None:
    sites = SITES[family]
    weights = resolve(name, 1.5, sites, family)
    for site in sites:
        assert weights[site.key].weight == pytest.approx(1.5 * factors[site.block_type])


# --- layer tables -------------------------------------------------------------------------------

W, C, S, B = 0.9, 0.6, 1.7, 1.3  # weight, composition weight, style boost, composition boost
SD15_STYLE = [0, 1, 2, 3, 9, 10, 11, 12, 13, 14, 15]

# incumbent.md §4.3 dict types: t -> weight; every t not listed is 0. Swaps: where the reference
# feeds only the negative branch.
EXPECTED_TABLES = {
    ("sdxl", "style transfer"): ({6: W}, set()),
    ("sdxl", "composition"): ({3: W}, set()),
    ("sdxl", "strong style transfer"): ({t: W for t in range(11) if t != 3}, set()),
    ("sdxl", "style and composition"): ({3: C, 6: W}, set()),
    ("sdxl", "strong style and composition"): ({**{t: W for t in range(11)}, 3: C}, set()),
    ("sdxl", "style transfer precise"): ({3: S, 6: W}, {3}),
    ("sdxl", "composition precise"): ({**{t: 0.1 * B for t in range(11)}, 3: W, 6: B}, set(range(11)) - {3}),
    ("sd15", "style transfer"): ({t: W for t in SD15_STYLE}, set()),
    ("sd15", "composition"): ({4: 0.25 * W, 5: W}, set()),
    ("sd15", "strong style transfer"): ({t: W for t in range(16) if t not in (4, 5)}, set()),
    ("sd15", "style and composition"): ({**{t: W for t in SD15_STYLE}, 4: 0.25 * C, 5: C}, set()),
    ("sd15", "strong style and composition"): ({**{t: W for t in range(16)}, 4: C, 5: C}, set()),
    ("sd15", "style transfer precise"): ({**{t: W for t in SD15_STYLE}, 4: 0.25 * S, 5: S}, {4, 5}),
    ("sd15", "composition precise"): (
        {**{t: B for t in SD15_STYLE}, 6: 0.1 * B, 7: 0.1 * B, 8: 0.1 * B, 4: 0.25 * W, 5: W},
        set(range(16)) - {4, 5},
    ),
}


@pytest.mark.parametrize(("family", "name"), list(EXPECTED_TABLES))
def test_layer_tables(family: str, name: str) -> None:
    sites = SITES[family]
    expected, swaps = EXPECTED_TABLES[(family, name)]
    got = single(resolve(name, W, sites, family, composition_weight=C, style_boost=S, composition_boost=B), sites)
    for t in range(DEPTH[family]):
        assert got[t].weight == pytest.approx(expected.get(t, 0.0)), f"t={t}"
        if got[t].weight:
            assert got[t].swap == (t in swaps), f"t={t}"


def test_sdxl_style_transfer_acts_only_at_t6() -> None:
    sites = SITES["sdxl"]
    weights = resolve("style transfer", 1.0, sites, "sdxl")
    active = {s.key for s in sites if weights[s.key].weight != 0}
    assert active == {("output", 1, i) for i in range(10)}  # up_blocks.0.attentions.1


def test_composition_weight_marks_the_alternate_image_layers() -> None:
    """Style & Composition: the layers using the composition weight take the composition image."""
    sites = SITES["sdxl"]
    got = single(resolve("style and composition", W, sites, "sdxl", composition_weight=C), sites)
    assert got[3].alt and not got[6].alt


@pytest.mark.parametrize(("family", "style_t"), [("sdxl", 6), ("sd15", 0)])
def test_precise_boosts_default_to_the_weight(family: str, style_t: int) -> None:
    sites = SITES[family]
    plain = single(resolve("style transfer precise", W, sites, family), sites)
    comp_t = 3 if family == "sdxl" else 5
    assert plain[comp_t].weight == pytest.approx(W) and plain[style_t].weight == pytest.approx(W)
    comp = single(resolve("composition precise", W, sites, family), sites)
    assert comp[comp_t].weight == pytest.approx(W)


def test_every_listed_type_resolves() -> None:
    for family, sites in SITES.items():
        for name in WEIGHT_TYPES:
            weights = resolve(name, 1.0, sites, family)
            assert set(weights) == {s.key for s in sites}


def test_unknown_type_is_an_error() -> None:
    with pytest.raises(IPAdapterError) as err:
        resolve("ease sideways", 1.0, SITES["sd15"], "sd15")
    assert "ease sideways" in str(err.value)
    assert err.value.input == "weight_type"


# --- Mad Scientist layer weights ----------------------------------------------------------------


def test_layer_weights_replace_the_type() -> None:
    sites = SITES["sdxl"]
    got = single(resolve("linear", 2.0, sites, "sdxl", layer_weights={0: 0.5, 6: 1.0}), sites)
    assert {t: lw.weight for t, lw in got.items() if lw.weight} == {0: 1.0, 6: 2.0}
    assert not any(lw.swap for lw in got.values())


def test_layer_weights_keep_the_swaps_of_precise_types() -> None:
    sites = SITES["sdxl"]
    got = single(resolve("style transfer precise", 1.0, sites, "sdxl", layer_weights={3: 0.5, 6: 1.0}), sites)
    assert got[3].weight == 0.5 and got[3].swap
    assert got[6].weight == 1.0 and not got[6].swap


def test_parse_layer_weights() -> None:
    assert parse_layer_weights("0:0.5, 6:1.0\n3: 2") == {0: 0.5, 6: 1.0, 3: 2.0}
    assert parse_layer_weights(" , ") == {}
    with pytest.raises(IPAdapterError) as err:
        parse_layer_weights("0:0.5, six:1")
    assert "six:1" in str(err.value)
