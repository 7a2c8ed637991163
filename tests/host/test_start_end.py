"""``start_at``/``end_at`` on the SD UNet path: the attn2 patch acts exactly at the steps whose sigma lies in
[sigma(end_at), sigma(start_at)] of the model's own ``model_sampling.percent_to_sigma``.

Every other host test and shipped workflow uses 0 and 1 (always on), and the core tests check the gate for
a given sigma, never the percent -> sigma mapping; this checks the mapping (the DiT path has its own test
in test_dit_apply.py).
"""

from __future__ import annotations

from tests.host import adapters, harness

UNET = "sd15-reduced"


def test_start_end_use_the_models_own_percent_to_sigma(pack, unet, ipadapter_dir, clip_vision, reference_image,
                                                       monkeypatch):
    # 4 "normal" steps run at timesteps 999, 666, 333, 0: the window [0.5, 0.7] holds only the third, and moving
    # either end (e.g. squaring it) moves a step in or out.
    start_at, end_at = 0.5, 0.7
    attention = harness.pack_module("ipadapter_core.attention")
    decided: dict[float, set[bool]] = {}
    original = attention.Application.window

    def spy(self, q, extra):
        active, gate = original(self, q, extra)
        assert gate is None  # CPU sigmas: decided on the host
        decided.setdefault(round(float(extra["sigmas"].reshape(-1)[0]), 5), set()).add(active)
        return active, gate

    monkeypatch.setattr(attention.Application, "window", spy)
    model = unet(UNET)
    patched = adapters.apply(model, adapters.load(adapters.adapter_file(ipadapter_dir, UNET, model)),
                             reference_image, clip_vision, start_at=start_at, end_at=end_at)
    seen: list[float] = []

    def record(apply_model, args):
        seen.append(round(float(args["timestep"][0]), 5))
        return apply_model(args["input"], args["timestep"], **args["c"])

    patched.set_model_unet_function_wrapper(record)
    harness.sample(patched, steps=4)
    sampling = model.get_model_object("model_sampling")
    hi, lo = float(sampling.percent_to_sigma(start_at)), float(sampling.percent_to_sigma(end_at))
    expected = {s: lo <= s <= hi for s in seen}
    assert all(len(v) == 1 for v in decided.values()), f"sites disagree within one step: {decided}"
    assert {s: v.pop() for s, v in decided.items()} == expected
    assert any(expected.values()) and not all(expected.values()), "the window should cover some steps, not all"
