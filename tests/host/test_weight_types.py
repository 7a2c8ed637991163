"""Each weight type acts on exactly the layers it names, with the factor incumbent.md §4.3 tabulates.

Run on UNets with the published block layout (16 attn2 sites for SD1.5, 70 for SDXL, the middle
block included), so transformer indices mean what the spec's tables say. Every site's contribution
is measured on identical captured inputs (``probe``) and compared with the ``linear``, weight-1
contribution scaled by the hand-written expectation below; sites a type does not name must add
exactly nothing. "precise" types move the reference to the negative branch at their swap layers.
"""

from __future__ import annotations

import pytest
import torch

from tests.fixtures.comfy_models import attn2_sites, transformer_indices
from tests.host import adapters, harness, probe

W = 0.7  # the node's weight; composition weight c = 1.0 from the drop-down; style/composition boost = W
DEPTH = {"sd15": 16, "sdxl": 11}
MIDDLE_T = {"sd15": 6, "sdxl": 4}

CURVES = {
    "linear": lambda t, L: 1.0,
    "ease in": lambda t, L: 0.05 + 0.95 * (1 - t / L),
    "ease out": lambda t, L: 0.05 + 0.95 * (t / L),
    "ease in-out": lambda t, L: 0.05 + 0.95 * (1 - abs(t - L / 2) / (L / 2)),
    "reverse in-out": lambda t, L: 0.05 + 0.95 * (abs(t - L / 2) / (L / 2)),
}
BLOCK_CURVES = {  # factor by block type: input, middle, output
    "weak input": {"input": 0.2, "middle": 1.0, "output": 1.0},
    "weak middle": {"input": 1.0, "middle": 0.2, "output": 1.0},
    "weak output": {"input": 1.0, "middle": 1.0, "output": 0.2},
    "strong middle": {"input": 0.2, "middle": 1.0, "output": 0.2},
}


def _ts(*ranges) -> list[int]:
    out: list[int] = []
    for r in ranges:
        out += list(r) if isinstance(r, range) else [r]
    return out


SD15_STYLE = _ts(range(0, 4), range(9, 16))
# weight type -> {t: absolute weight}; absent t = no effect. (incumbent.md §4.3, "Dict types")
TABLES = {
    "sdxl": {
        "style transfer": {6: W},
        "composition": {3: W},
        "strong style transfer": {t: W for t in range(11) if t != 3},
        "style and composition": {3: 1.0, 6: W},
        "style transfer precise": {3: W, 6: W},
        "composition precise": {**{t: 0.1 * W for t in range(11)}, 3: W, 6: W},
    },
    "sd15": {
        "style transfer": {t: W for t in SD15_STYLE},
        "composition": {4: 0.25 * W, 5: W},
        "strong style transfer": {t: W for t in range(16) if t not in (4, 5)},
        "style and composition": {**{t: W for t in SD15_STYLE}, 4: 0.25, 5: 1.0},
        "style transfer precise": {**{t: W for t in SD15_STYLE}, 4: 0.25 * W, 5: W},
        "composition precise": {**{t: W for t in SD15_STYLE}, 4: 0.25 * W, 5: W, 6: 0.1 * W, 7: 0.1 * W,
                                8: 0.1 * W},
    },
}
SWAPS = {  # layers where the reference feeds only the negative (uncond) branch
    "sdxl": {"style transfer precise": lambda t: t == 3, "composition precise": lambda t: t != 3},
    "sd15": {"style transfer precise": lambda t: t in (4, 5), "composition precise": lambda t: t not in (4, 5)},
}
WEIGHT_TYPES = list(CURVES) + list(BLOCK_CURVES) + list(TABLES["sd15"])


def expected_weight(weight_type: str, family: str, t: int, block: str) -> float:
    if weight_type in CURVES:
        return W * CURVES[weight_type](t, DEPTH[family])
    if weight_type in BLOCK_CURVES:
        return W * BLOCK_CURVES[weight_type][block]
    return TABLES[family][weight_type].get(t, 0.0)


def test_hand_tables_match_the_spec_printout():
    """Guard the transcription of the formulas against incumbent.md's printed factors."""
    assert CURVES["ease in"](6, 16) == pytest.approx(0.644, abs=6e-4)
    assert CURVES["ease out"](15, 16) == pytest.approx(0.941, abs=6e-4)
    assert CURVES["ease in-out"](8, 16) == pytest.approx(1.0)
    assert CURVES["reverse in-out"](4, 11) == pytest.approx(0.309, abs=6e-4)
    assert CURVES["ease in-out"](5, 11) == pytest.approx(0.914, abs=6e-4)


def _setup(family: str, unet, ipadapter_dir, clip_vision, image):
    if ("weight-types", family) not in harness.CACHE:
        name = f"{family}-topology"
        model = unet(name)
        ipadapter = adapters.load(adapters.adapter_file(ipadapter_dir, name, model))
        inputs = probe.capture(model)
        reference = adapters.apply(model, ipadapter, image, clip_vision, weight=1.0, weight_type="linear")
        ref = probe.contributions(reference, inputs)
        ref_all_cond = probe.contributions(reference, inputs, cond_or_uncond=[0] * len(
            next(iter(inputs.values())).extra["cond_or_uncond"]))
        for key, value in ref.items():
            assert value.abs().max() > 0, f"linear weight 1 adds nothing at {key}: nothing can be measured there"
        harness.CACHE[("weight-types", family)] = dict(
            model=model, ipadapter=ipadapter, inputs=inputs, ref=ref, ref_all_cond=ref_all_cond,
            t_of=transformer_indices(model),
        )
    return harness.CACHE[("weight-types", family)]


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_topology_models_have_the_published_site_layout(family, unet):
    model = unet(f"{family}-topology")
    t_of = transformer_indices(model)
    assert len(attn2_sites(model)) == {"sd15": 16, "sdxl": 70}[family]
    assert max(t_of.values()) + 1 == DEPTH[family]
    assert {t for key, t in t_of.items() if key[0] == "middle"} == {MIDDLE_T[family]}


@pytest.mark.parametrize("weight_type", WEIGHT_TYPES)
@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_weight_type_acts_on_exactly_its_layers(family, weight_type, unet, ipadapter_dir, clip_vision,
                                                reference_image):
    s = _setup(family, unet, ipadapter_dir, clip_vision, reference_image)
    patched = adapters.apply(s["model"], s["ipadapter"], reference_image, clip_vision, weight=W,
                             weight_type=weight_type)
    got = probe.contributions(patched, s["inputs"])
    cond, uncond = probe.chunk_rows(s["inputs"], 0), probe.chunk_rows(s["inputs"], 1)
    swap = SWAPS[family].get(weight_type, lambda t: False)
    problems = []
    for key, actual in got.items():
        t = s["t_of"][key]
        weight = expected_weight(weight_type, family, t, key[0])
        if weight == 0.0:
            if actual.abs().max() != 0:
                problems.append(f"{key} (t={t}) should be untouched, adds {actual.abs().max().item():.3g}")
            continue
        if swap(t):  # positive branch gets nothing, negative branch gets the reference tokens
            expected = torch.zeros_like(actual)
            expected[uncond] = weight * s["ref_all_cond"][key][uncond]
        else:
            expected = weight * s["ref"][key]
        scale = expected.abs().max().item() + 1e-12
        error = (actual - expected).abs().max().item()
        if error > 1e-4 * scale:
            measured = (actual * expected).sum() / (expected * expected).sum() * weight
            problems.append(f"{key} (t={t}, {'swap' if swap(t) else 'no swap'}): expected weight {weight:.4f}, "
                            f"measured ~{measured.item():.4f} (max error {error:.3g} of {scale:.3g})")
    assert not problems, f"{weight_type} on {family}:\n" + "\n".join(problems)
    assert cond.start != uncond.start
