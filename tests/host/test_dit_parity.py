"""The whole transformer with an adapter applied, against an independent implementation (dit-adapters.md
§6.3 P2, P3, P6): XLabs and SD3.5 against diffusers, loaded through diffusers' own loaders from the same
published-layout file; InstantX Flux (no diffusers code) against a reference written here from §2.2.

Both sides get the same encoder outputs (the image encoder is bypassed) and a CFG-like batch: row 0 the
positive (cond) embeds, row 1 the negative (uncond), routed on our side by ``cond_or_uncond`` [0, 1] and
in diffusers per batch row. Compared: the IP deltas ``out(adapter) − out(no adapter)``, max abs ≤ 1e-4 ·
max|reference delta| per row, and the full outputs at P0's tolerance. The masks have no peer (diffusers'
Flux processor ignores ``ip_adapter_masks``): they are checked as a property at the injection site.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.host import dit_cases as dc
from tests.host import harness

REL_TOL = 1e-4
SIGMA = 0.7
GUIDANCE = 3.5
CLIP_V2 = 64  # the 16-token XLabs file at clip width 64: 65536 x 64 instead of x 768 (diffusers keys on the rows)


@pytest.fixture(scope="module")
def mods(pack):
    from tests.fixtures import dit_adapters, dit_models, dit_twins

    return dit_adapters, dit_models, dit_twins


def _inputs(family: str, seed: int = 21):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 16, dc.LATENT, dc.LATENT, generator=gen)
    context = torch.randn(2, 8, 4096, generator=gen)
    return x, context, torch.randn(2, 768 if family == "flux" else 2048, generator=gen)


def _ours(patched, family: str, inputs, sigma=SIGMA) -> torch.Tensor:
    """Our prediction through ``apply_model`` and its wrappers, for a batch [cond, uncond]."""
    from tests.fixtures import dit_models

    x, context, y = inputs
    denoised = dit_models.run_comfy(patched, x, sigma, context, y, guidance=GUIDANCE if family == "flux" else None,
                                    cond_or_uncond=[0, 1])
    return dit_models.velocity(x, denoised, sigma)


def _apply(model, pipeline, cond, uncond, weight=1.0, layer_weights="", v_norm=False, mask=None):
    """What the apply nodes do after encoding; ``layer_weights`` in IPAdapterMS's 'entry:value' text."""
    core = harness.pack_module("nodes.apply_core")
    parse = harness.pack_module("ipadapter_core.parsing").layer_weights
    opts = core.ApplyOptions(weight=weight, v_norm=v_norm,
                             layer_weights=parse(layer_weights, range(pipeline.adapter.kind.blocks)))
    with torch.inference_mode():  # as ComfyUI runs nodes (the loaded weights are inference tensors)
        return core.apply_embeds(model, pipeline, cond, uncond, opts, attn_mask=mask)


def _assert_parity(ours, ours_base, ref, ref_base, what: str) -> None:
    for row, name in enumerate(("cond", "uncond")):
        d_ours, d_ref = ours[row] - ours_base[row], ref[row] - ref_base[row]
        scale = d_ref.abs().max().item()
        # The term must move the output well beyond the base parity noise, or the check proves nothing.
        assert scale > 1e-2 * ref_base[row].abs().max().item(), f"{what} ({name}): delta too small ({scale:.3g})"
        err = (d_ours - d_ref).abs().max().item()
        assert err <= REL_TOL * scale, f"{what} ({name}): delta differs by {err:.3g} > {REL_TOL} x {scale:.3g}"
    err, scale = (ours - ref).abs().max().item(), ref.abs().max().item()
    assert err <= REL_TOL * scale, f"{what}: outputs differ by {err:.3g} > {REL_TOL} x {scale:.3g}"


def _embeds(seed: int, *shape) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --- Flux: the shared model, its twin and the base outputs -----------------------------------------------


@pytest.fixture(scope="module")
def flux(mods):
    _, dit_models, dit_twins = mods
    model = dc.model("flux")

    def make():
        twin = dit_twins.flux_twin(model)
        inputs = _inputs("flux")
        x, context, y = inputs
        return dict(twin=twin, inputs=inputs, base=_ours(model, "flux", inputs),
                    ref_base=dit_twins.run_diffusers_flux(twin, x, SIGMA, context, y, GUIDANCE))
    return dict(model=model, **dc.cached("dit-parity-flux", make))


def _ref_flux(flux, **kwargs) -> torch.Tensor:
    from tests.fixtures import dit_twins

    x, context, y = flux["inputs"]
    return dit_twins.run_diffusers_flux(flux["twin"], x, SIGMA, context, y, GUIDANCE, joint_attention_kwargs=kwargs)


# --- P2: XLabs v1 / v2 against diffusers' FluxIPAdapterAttnProcessor --------------------------------------


@pytest.fixture(scope="module")
def xlabs(mods, ipadapter_dir):
    """{tokens: (our pipeline, the published flat dict, clip width)}: v1 is the shared fixture file, v2 one
    written here at clip width 64 (its projection keeps 65536 rows, so diffusers reads 16 tokens)."""
    from safetensors.torch import load_file

    dit_adapters = mods[0]

    def make_v2():
        flat = dit_adapters.xlabs_state_dict(seed=3, dtype=torch.float32, hidden=256, tokens=16, n_double=2,
                                             clip_dim=CLIP_V2)
        rel = "dit/parity-xlabs-v2-clip64-seed3.safetensors"
        dit_adapters.write_file(flat, ipadapter_dir / rel)
        return harness.run_node("IPAdapterModelLoader", ipadapter_file=rel)[0], flat

    v1_flat = load_file(str(dit_adapters.cached_dit_adapter("xlabs-v1", "safetensors", seed=0)))
    v2, v2_flat = dc.cached("dit-parity-xlabs-v2", make_v2)
    out = {4: (dc.load(ipadapter_dir, "xlabs"), v1_flat, 768), 16: (v2, v2_flat, CLIP_V2)}
    assert [out[n][0].adapter.kind.tokens for n in (4, 16)] == [4, 16]
    return out


def _xlabs_embeds(clip: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, negative) image_embeds [1, clip]; the negative stands for the black image's embeds."""
    return _embeds(seed, 1, clip), _embeds(seed + 100, 1, clip)


def _xlabs_ref(flux, adapters: list[tuple[dict, torch.Tensor, torch.Tensor]], scale) -> torch.Tensor:
    """diffusers with these adapters (flat file, positive, negative) loaded, at ``set_ip_adapter_scale(scale)``."""
    from tests.fixtures import dit_twins

    twin = flux["twin"]
    dit_twins.load_flux_ip_adapters(twin, [dit_twins.xlabs_for_diffusers(flat) for flat, _, _ in adapters])
    try:
        dit_twins.set_ip_scale(twin, scale)
        # one [batch, images, clip] tensor per adapter: row 0 cond, row 1 uncond
        embeds = [torch.stack([pos, neg]) for _, pos, neg in adapters]
        return _ref_flux(flux, ip_adapter_image_embeds=embeds)
    finally:
        dit_twins.reset_flux_processors(twin)


@pytest.mark.parametrize("tokens", [4, 16])
@pytest.mark.parametrize("weight", [0.5, 1.0])
def test_xlabs_matches_diffusers(flux, xlabs, tokens, weight):
    pipeline, flat, clip = xlabs[tokens]
    pos, neg = _xlabs_embeds(clip, seed=tokens)
    ours = _ours(_apply(flux["model"], pipeline, pos, neg, weight), "flux", flux["inputs"])
    ref = _xlabs_ref(flux, [(flat, pos, neg)], weight)
    _assert_parity(ours, flux["base"], ref, flux["ref_base"], f"XLabs {tokens} tokens, weight {weight}")


def test_xlabs_weight_zero_is_the_base_model_on_both_sides(flux, xlabs):
    """Ours is bit-identical (no block is hooked). diffusers adds a zero term but its IP processor runs the
    block's own attention through other reshapes (no ``contiguous()`` before ``to_out``), so its base moves
    by float32 rounding only."""
    pipeline, flat, clip = xlabs[4]
    pos, neg = _xlabs_embeds(clip, seed=4)
    assert torch.equal(_ours(_apply(flux["model"], pipeline, pos, neg, 0.0), "flux", flux["inputs"]), flux["base"])
    ref = _xlabs_ref(flux, [(flat, pos, neg)], 0.0)
    assert (ref - flux["ref_base"]).abs().max() <= 1e-6 * flux["ref_base"].abs().max()


def test_xlabs_per_block_weights_are_diffusers_per_block_scales(flux, xlabs):
    """Mad Scientist's 'entry:value' multiplies the node weight: 0.8 x (1.0, 0.3) = diffusers' [0.8, 0.24]."""
    pipeline, flat, clip = xlabs[4]
    pos, neg = _xlabs_embeds(clip, seed=9)
    ours = _ours(_apply(flux["model"], pipeline, pos, neg, 0.8, layer_weights="0:1.0, 1:0.3"), "flux",
                 flux["inputs"])
    ref = _xlabs_ref(flux, [(flat, pos, neg)], [0.8, 0.24])
    _assert_parity(ours, flux["base"], ref, flux["ref_base"], "XLabs per-block weights")
    # The other reading (block weights replacing the node weight) is far outside the tolerance.
    other = _xlabs_ref(flux, [(flat, pos, neg)], [1.0, 0.3])
    assert (other - ref).abs().max() > 100 * REL_TOL * (ref - flux["ref_base"]).abs().max()


def test_two_xlabs_adapters_match_diffusers_with_two_loaded(flux, xlabs):
    """Stacked on one model (v1 at 0.7, then v2 at 0.4) = diffusers' processor with two K/V entries."""
    (p1, flat1, clip1), (p2, flat2, clip2) = xlabs[4], xlabs[16]
    pos1, neg1 = _xlabs_embeds(clip1, seed=31)
    pos2, neg2 = _xlabs_embeds(clip2, seed=32)
    patched = _apply(_apply(flux["model"], p1, pos1, neg1, 0.7), p2, pos2, neg2, 0.4)
    ours = _ours(patched, "flux", flux["inputs"])
    ref = _xlabs_ref(flux, [(flat1, pos1, neg1), (flat2, pos2, neg2)], [0.7, 0.4])
    _assert_parity(ours, flux["base"], ref, flux["ref_base"], "two XLabs adapters")


# --- P3: InstantX Flux against a reference written from §2.2 ----------------------------------------------


def _instantx_tokens(raw: dict, pooled: torch.Tensor) -> torch.Tensor:
    """§2.2's projection in float64 from the file's tensors: Linear, exact GELU, Linear, reshape, LayerNorm
    (eps 1e-5)."""
    proj = {k: t.double() for k, t in raw["image_proj"].items()}
    width = proj["norm.weight"].shape[0]
    hidden = torch.nn.functional.gelu(pooled.double() @ proj["proj.0.weight"].T + proj["proj.0.bias"])
    tokens = (hidden @ proj["proj.2.weight"].T + proj["proj.2.bias"]).reshape(pooled.shape[0], -1, width)
    return torch.nn.functional.layer_norm(tokens, (width,), proj["norm.weight"], proj["norm.bias"], eps=1e-5)


def _instantx_kv(raw: dict, tokens: torch.Tensor, entry: int, heads: int, v_norm: bool):
    """Bias-free K/V of one entry per head; K (and with ``v_norm`` V) RMS-normalised over the head width
    (eps 1e-5, no weight)."""
    def heads_of(name: str) -> torch.Tensor:
        t = tokens @ raw["ip_adapter"][f"{entry}.{name}.weight"].double().T
        return t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)

    def rms(t: torch.Tensor) -> torch.Tensor:
        return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + 1e-5)

    k, v = heads_of("to_k_ip"), heads_of("to_v_ip")
    return rms(k), (rms(v) if v_norm else v)


def _instantx_processor(k: torch.Tensor, v: torch.Tensor, scale: float):
    from diffusers.models.transformers.transformer_flux import FluxAttnProcessor

    class InstantXReference(FluxAttnProcessor):
        """diffusers' Flux attention plus the InstantX term: q after the block's q norm, before RoPE."""

        def term(self, attn, hidden_states):
            q = attn.norm_q(attn.to_q(hidden_states).unflatten(-1, (-1, attn.head_dim))).transpose(1, 2).double()
            weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
            return (scale * (weights @ v)).transpose(1, 2).flatten(2).to(hidden_states.dtype)

        def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                     image_rotary_emb=None):
            term = self.term(attn, hidden_states)
            if encoder_hidden_states is None:  # single block: the whole text+image sequence, before proj_out
                return super().__call__(attn, hidden_states, None, attention_mask, image_rotary_emb) + term
            # double block: the image attention output, before attn.to_out
            handle = attn.to_out[0].register_forward_pre_hook(lambda module, args: (args[0] + term,))
            try:
                return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
            finally:
                handle.remove()

    return InstantXReference()


def _instantx_ref(flux, raw: dict, pos, neg, scales: list[float], v_norm: bool) -> torch.Tensor:
    from tests.fixtures import dit_twins

    twin = flux["twin"]
    heads = twin.config.num_attention_heads
    names = list(twin.attn_processors)  # double blocks, then single blocks: the file's entry order
    assert len(names) == len(scales) == len(raw["ip_adapter"]) // 2
    tokens = _instantx_tokens(raw, torch.cat([pos, neg]))  # row 0 cond, row 1 uncond
    procs = {}
    for entry, name in enumerate(names):
        k, v = _instantx_kv(raw, tokens, entry, heads, v_norm)
        procs[name] = _instantx_processor(k, v, scales[entry])
    twin.set_attn_processor(procs)
    try:
        return _ref_flux(flux)
    finally:
        dit_twins.reset_flux_processors(twin)


@pytest.fixture(scope="module")
def instantx(mods, ipadapter_dir):
    raw = torch.load(mods[0].cached_dit_adapter("instantx-flux", "bin", seed=0), weights_only=True)
    return dc.load(ipadapter_dir, "instantx"), raw


@pytest.mark.parametrize("v_norm", [False, True], ids=["k-norm", "kv-norm"])
@pytest.mark.parametrize("weight, layer_weights", [(1.0, ""), (0.5, "1:0.6, 3:1.0")], ids=["all", "per-block"])
def test_instantx_matches_the_reference(flux, instantx, v_norm, weight, layer_weights):
    """All 4 entries (2 double + 2 single blocks), or one double and one single block at their own weights;
    the negative row gets a zero pooled vector (DiffSynth's negative)."""
    pipeline, raw = instantx
    pos = _embeds(41, 1, pipeline.adapter.kind.encoder_width)
    neg = torch.zeros_like(pos)
    ours = _ours(_apply(flux["model"], pipeline, pos, neg, weight, layer_weights, v_norm), "flux", flux["inputs"])
    per_block = {int(k): float(w) for k, w in (p.split(":") for p in layer_weights.split(","))} if layer_weights \
        else dict.fromkeys(range(4), 1.0)
    scales = [weight * per_block.get(entry, 0.0) for entry in range(4)]
    ref = _instantx_ref(flux, raw, pos, neg, scales, v_norm)
    _assert_parity(ours, flux["base"], ref, flux["ref_base"], f"InstantX v_norm={v_norm} {layer_weights or 'all'}")
    if not layer_weights:  # the two V readings differ far beyond the tolerance: each case tells them apart
        other = _instantx_ref(flux, raw, pos, neg, scales, not v_norm)
        assert (other - ref).abs().max() > 100 * REL_TOL * (ref - flux["ref_base"]).abs().max()


# --- P6: InstantX SD3.5 against diffusers' SD3IPAdapterJointAttnProcessor2_0 -----------------------------


@pytest.fixture(scope="module")
def sd3(mods, ipadapter_dir):
    dit_adapters, _, dit_twins = mods
    model = dc.model("sd3")
    raw = torch.load(dit_adapters.cached_dit_adapter("instantx-sd3", "bin", seed=0), weights_only=True)

    def make():
        twin = dit_twins.sd3_twin(model)
        inputs = _inputs("sd3")
        x, context, y = inputs
        bases = {s: (_ours(model, "sd3", inputs, s), dit_twins.run_diffusers_sd3(twin, x, s, context, y))
                 for s in (0.8, 0.3)}
        twin._load_ip_adapter_weights({k: dict(v) for k, v in raw.items()}, low_cpu_mem_usage=False)
        return dict(twin=twin, inputs=inputs, bases=bases)
    return dict(model=model, pipeline=dc.load(ipadapter_dir, "sd3"), **dc.cached("dit-parity-sd3", make))


@pytest.mark.parametrize("sigma", [0.8, 0.3])
@pytest.mark.parametrize("weight", [0.5, 1.0])
def test_sd3_matches_diffusers(sd3, sigma, weight):
    """Penultimate SigLIP features [1, 16, 64] for cond, zeros for uncond; the resampler runs at 1000·σ."""
    from tests.fixtures import dit_twins

    pipeline, twin = sd3["pipeline"], sd3["twin"]
    feats = _embeds(51, 1, 16, pipeline.adapter.kind.encoder_width)
    ours = _ours(_apply(sd3["model"], pipeline, feats, torch.zeros_like(feats), weight), "sd3", sd3["inputs"],
                 sigma)
    x, context, y = sd3["inputs"]
    dit_twins.set_ip_scale(twin, weight)
    ref = dit_twins.run_diffusers_sd3(twin, x, sigma, context, y, joint_attention_kwargs={
        "ip_adapter_image_embeds": torch.cat([feats, torch.zeros_like(feats)])})
    base, ref_base = sd3["bases"][sigma]
    _assert_parity(ours, base, ref, ref_base, f"SD3.5 sigma {sigma}, weight {weight}")


# --- masks: no peer; a property at the injection site ---------------------------------------------------


def _watch(name: str, dm, seen: list):
    """Record the image tokens just after the first acting block's term was added (no token mixing since)."""
    if name == "xlabs":  # XLabs adds to double block 0's output: the image input of double block 1
        return dm.double_blocks[1].register_forward_pre_hook(
            lambda module, args, kwargs: seen.append(kwargs["img"].clone()), with_kwargs=True)
    module = dm.double_blocks[0].img_attn.proj if name == "instantx" else dm.joint_blocks[0].x_block.attn.proj
    return module.register_forward_hook(lambda module, args, out: seen.append(out.clone()))


@pytest.mark.parametrize("name", ["xlabs", "instantx", "sd3"])
def test_mask_keeps_the_term_to_its_half_of_the_image(flux, xlabs, instantx, sd3, name):
    """A mask that is 1 on the left half: where the term enters, it is zero on the right half of the token
    grid and the unmasked term on the left. (Later blocks mix tokens, so whole outputs carry no such split.)"""
    family = "sd3" if name == "sd3" else "flux"
    model = sd3["model"] if name == "sd3" else flux["model"]
    pipeline = {"xlabs": xlabs[4][0], "instantx": instantx[0], "sd3": sd3["pipeline"]}[name]
    width = pipeline.adapter.kind.encoder_width
    pos = _embeds(61, 1, 16, width) if name == "sd3" else _embeds(61, 1, width)
    neg = _embeds(62, *pos.shape)
    mask = torch.zeros(1, 64, 64)
    mask[:, :, :32] = 1.0  # exactly 1 / 0 on the 8x8 token grid (bilinear, cell centres in one half)
    seen: list[torch.Tensor] = []
    handle = _watch(name, model.model.diffusion_model, seen)
    try:
        for m in (model, _apply(model, pipeline, pos, neg), _apply(model, pipeline, pos, neg, mask=mask)):
            _ours(m, family, (sd3 if name == "sd3" else flux)["inputs"])
    finally:
        handle.remove()
    assert len(seen) == 3
    base, full, masked = (t.reshape(2, 8, 8, -1) for t in seen)
    d_full, d_masked = full - base, masked - base
    scale = d_full.abs().max().item()
    assert d_full[:, :, 4:].abs().max() > 0.1 * scale  # unmasked, the right half does get the term
    assert d_masked[:, :, 4:].abs().max() <= 1e-6 * scale
    torch.testing.assert_close(d_masked[:, :, :4], d_full[:, :, :4], atol=1e-6 * scale, rtol=0)
