"""The fast path, pinned by behaviour (issue 6 §5): never by timing.

* cached K/V give exactly the latents of per-call recomputation (the incumbent's way), through ComfyUI's sampler;
* ``model.clone()`` (a deep copy of model_options) shares our patch objects and their K/V storage, and cloning a
  model carrying four adapters allocates no tensor memory at all;
* a re-queue that changes only ``weight`` runs no CLIP vision encoder; a new image, or another encoder object,
  does;
* the per-step path makes no host sync: no ``.item()``/``float()``/``.cpu()`` while our patch runs when the
  window is the whole schedule, and exactly one float read per UNet call (CPU only) for a partial window;
* an fp16 UNet (``--fp16-unet``: fp16 storage, and fp16 compute) samples with the patch without dtype errors;
* on a CPU in fp32 every patched site adds its few image tokens through ``few_token_attention``, and with an
  attention-override node active the host's attention sees every image-token call instead.

The on-device gate and the meta-device run (which fails on any copy back to the host) are in
tests/core/test_fast_path_core.py.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from tests.fixtures.comfy_models import UNET_CONFIGS, attn2_sites, seeded_init
from tests.host import adapters, harness, host_drift, probe

NAME = "sd15-reduced"
SYNC_OPS = ("aten::item", "aten::_local_scalar_dense")


def _attention():
    return harness.pack_module("ipadapter_core.attention")


@pytest.fixture(scope="module")
def setup(unet, ipadapter_dir, clip_vision, reference_image) -> dict:
    model = unet(NAME)
    ipadapters = [adapters.load(adapters.adapter_file(ipadapter_dir, NAME, model, seed=s)) for s in range(4)]
    return dict(model=model, ipadapters=ipadapters, clip_vision=clip_vision, image=reference_image)


def _images(image: torch.Tensor, n: int) -> list[torch.Tensor]:
    """n distinct reference images (rolled copies of the fixture image)."""
    return [torch.roll(image, shifts=17 * i, dims=1) for i in range(n)]


def _stack(s: dict, count: int, **options):
    model = s["model"]
    for ipadapter, image in zip(s["ipadapters"][:count], _images(s["image"], count), strict=True):
        model = adapters.apply(model, ipadapter, image, s["clip_vision"], **options)
    return model


def _our_patches(model) -> dict[tuple, object]:
    table = model.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn2", {})
    patch_type = _attention().CrossAttentionPatch
    return {key: patch for key, patch in table.items() if isinstance(patch, patch_type)}


def _tensors_of(patches: dict[tuple, object]) -> dict[str, torch.Tensor]:
    """Every tensor our patches hold: base K/V, per-layout assembled K/V, per-row scales."""
    out: dict[str, torch.Tensor] = {}
    for key, patch in patches.items():
        for a, app in enumerate(patch.applications):
            for site, kv in app.sites.items():
                name = f"{key}/{a}/{site}"
                for field in ("k_cond", "v_cond", "k_uncond", "v_uncond", "scale"):
                    value = getattr(kv, field)
                    if isinstance(value, torch.Tensor):
                        out[f"{name}/{field}"] = value
                for i, hit in enumerate(kv._layouts.values()):
                    for j, value in enumerate(hit):
                        if isinstance(value, torch.Tensor):
                            out[f"{name}/layout{i}.{j}"] = value
    return out


def _pointers(tensors: dict[str, torch.Tensor]) -> dict[str, int]:
    return {name: t.untyped_storage().data_ptr() for name, t in tensors.items()}


def _allocated_bytes(fn) -> int:
    """CPU bytes the allocator handed out while ``fn`` ran (torch's memory profiler)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return sum(e.cpu_memory_usage for e in prof.events() if e.cpu_memory_usage > 0)


# --- cached == uncached ----------------------------------------------------------------------------------


class NaivePatch:
    """The incumbent's per-call path: project the image tokens through to_k_ip/to_v_ip on every call."""

    def __init__(self, wk, wv, cond, uncond, weight: float) -> None:
        self.wk, self.wv, self.cond, self.uncond, self.weight = wk, wv, cond, uncond, weight

    def __call__(self, q, k, v, extra):
        host = harness.pack_module("nodes.host")
        out = host.comfy_attention(q, k, v, extra["n_heads"], extra)
        per_chunk = q.shape[0] // len(extra["cond_or_uncond"])
        rows_k, rows_v = [], []
        for chunk in extra["cond_or_uncond"]:
            tokens = self.uncond if chunk == 1 else self.cond
            rows_k.append((tokens @ self.wk.float().T).expand(per_chunk, -1, -1))
            rows_v.append((tokens @ self.wv.float().T).expand(per_chunk, -1, -1))
        ip_k, ip_v = torch.cat(rows_k).to(q.dtype), torch.cat(rows_v).to(q.dtype)
        heads = extra["n_heads"]
        if host.few_token_path(q, extra, heads, ip_k.shape[1]):  # the same kernel choice as the pack's
            few = harness.pack_module("ipadapter_core.few_token_attention")
            return few.add_attention_(out, q, *few.split_heads(ip_k, ip_v, heads), self.weight)
        ip = host.image_attention(q, ip_k, ip_v, heads, extra)
        return (out + ip * self.weight).to(q.dtype)

    def __deepcopy__(self, memo):
        return self


def test_cached_kv_samples_bit_identical_latents_to_per_call_recomputation(setup):
    s = setup
    weight = 0.8
    ours = adapters.apply(s["model"], s["ipadapters"][0], s["image"], s["clip_vision"], weight=weight)

    encoding = harness.pack_module("nodes.encoding")
    pipeline = s["ipadapters"][0]
    adapter = pipeline.adapter
    cond = encoding.encode(s["clip_vision"], adapter.kind, s["image"])
    uncond = encoding.negative(s["clip_vision"], adapter.kind, cond, None)
    cond_tokens, uncond_tokens = adapter.project(cond), adapter.project(uncond)
    sites = harness.pack_module("nodes.host").model_sites(s["model"])
    numbering = harness.pack_module("ipadapter_core.sites").ip_numbering(sites)
    naive = s["model"].clone()
    for site in sites:
        wk, wv = adapter.kv_weights(numbering[site.key])
        naive.set_model_attn2_replace(NaivePatch(wk, wv, cond_tokens, uncond_tokens, weight), *site.key)

    first = harness.sample(ours, steps=3)
    assert torch.equal(first, harness.sample(naive, steps=3)), "cached K/V changed the latent"
    assert torch.equal(harness.sample(ours, steps=3), first), "a second run (layouts cached) changed the latent"


# --- clone shares storage --------------------------------------------------------------------------------


def test_clone_and_deepcopy_share_our_patches_and_kv_storage(setup):
    patched = _stack(setup, 2)
    harness.sample(patched, steps=1)  # fills the per-layout caches, so they are checked too
    patches = _our_patches(patched)
    assert patches and all(len(p.applications) == 2 for p in patches.values())
    pointers = _pointers(_tensors_of(patches))
    assert any("/layout" in name for name in pointers), "sampling assembled no per-layout K/V"

    clone = patched.clone()
    copied = copy.deepcopy(patched.model_options)
    copied_table = copied["transformer_options"]["patches_replace"]["attn2"]
    for key, patch in patches.items():
        assert probe.patch_at(clone, key) is patch, f"clone() copied the patch at {key}"
        assert copied_table[key] is patch, f"deepcopy(model_options) copied the patch at {key}"
    assert _pointers(_tensors_of(_our_patches(clone))) == pointers


def test_cloning_a_model_with_four_adapters_allocates_no_tensor_storage(setup):
    patched = _stack(setup, 4)
    harness.sample(patched, steps=1)
    before = _pointers(_tensors_of(_our_patches(patched)))
    held = sum(t.untyped_storage().nbytes() for t in _tensors_of(_our_patches(patched)).values())
    assert held > 0

    clones: list = []
    unpatched = _allocated_bytes(setup["model"].clone)  # whatever the host itself allocates per clone (0 today)
    allocated = _allocated_bytes(lambda: clones.append(patched.clone()))
    assert _pointers(_tensors_of(_our_patches(clones[0]))) == before
    assert allocated <= unpatched, f"clone() allocated {allocated - unpatched} bytes (our patches hold {held})"

    # The instrument works: on a host that deep-copies model_options, an incumbent-style patch object (no
    # __deepcopy__) is copied with its tensors. tests/host/test_host_drift.py runs this under the newer clone().
    class DeepCopied:
        def __init__(self, tensor: torch.Tensor) -> None:
            self.tensor = tensor

        def __call__(self, q, k, v, extra):
            return q

    carrier = patched.clone()
    carrier.set_model_attn2_replace(DeepCopied(torch.zeros(4096)), "input", 1, 0)
    if host_drift.host_clone_deep_copies():  # 0.3.64: clone() deep-copies model_options
        assert _allocated_bytes(carrier.clone) >= 4096 * 4
    else:  # newer hosts share every object but dicts and lists (PR #12382): nobody's tensors are copied
        assert _allocated_bytes(carrier.clone) < 4096 * 4


# --- re-queue: no encoder when only the weight changes ----------------------------------------------------


@contextmanager
def counting(clip_vision) -> Iterator[list]:
    """Count ``clip_vision.encode_image`` calls (the encoder forward every encode goes through)."""
    calls: list = []
    original = clip_vision.encode_image

    def wrapped(*args, **kwargs):
        calls.append(args[0].shape if args else None)
        return original(*args, **kwargs)

    clip_vision.encode_image = wrapped
    try:
        yield calls
    finally:
        del clip_vision.encode_image


@pytest.fixture
def fresh_clip_vision(host_dirs):
    """A CLIP vision object no other test has encoded with (the encoding cache is process-wide)."""
    from tests.fixtures.comfy_models import tiny_clip_vision

    return tiny_clip_vision(host_dirs["work"], seed=3)


def test_requeue_with_a_new_weight_runs_no_encoder(setup, fresh_clip_vision):
    s, cv = setup, fresh_clip_vision
    ipadapter = s["ipadapters"][0]
    with counting(cv) as calls:
        first = adapters.apply(s["model"], ipadapter, s["image"], cv, weight=1.0)
        assert len(calls) == 1, calls  # the reference; a basic adapter's negative is zeros, not an encode
        requeued = adapters.apply(s["model"], ipadapter, s["image"], cv, weight=0.5)
        same_pixels = adapters.apply(s["model"], ipadapter, s["image"].clone(), cv, weight=0.3)
        assert len(calls) == 1, f"a weight-only re-queue ran the encoder: {calls}"
        adapters.apply(s["model"], ipadapter, torch.flip(s["image"], dims=[2]), cv, weight=0.5)
        assert len(calls) == 2, "a changed image must be encoded"
    # The re-queue is a real re-application: the new weight reaches the patch.
    inputs = probe.capture(s["model"])
    c1, c05, c03 = (probe.contributions(m, inputs) for m in (first, requeued, same_pixels))
    key = next(iter(inputs))
    torch.testing.assert_close(c05[key], 0.5 * c1[key], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(c03[key], 0.3 * c1[key], rtol=1e-4, atol=1e-6)


def test_another_encoder_object_is_not_served_a_cached_entry(setup, fresh_clip_vision, host_dirs):
    from tests.fixtures.comfy_models import tiny_clip_vision

    s = setup
    other = tiny_clip_vision(host_dirs["work"], seed=4)
    encoding = harness.pack_module("nodes.encoding")
    kind = s["ipadapters"][0].adapter.kind
    with counting(fresh_clip_vision) as calls_a, counting(other) as calls_b:
        a = encoding.encode(fresh_clip_vision, kind, s["image"])
        b = encoding.encode(other, kind, s["image"])
        assert (len(calls_a), len(calls_b)) == (1, 1)
        assert not torch.equal(a, b), "two different encoders gave the same output: was one served the other's?"
        assert torch.equal(encoding.encode(other, kind, s["image"]), b) and len(calls_b) == 1


def test_encoding_cache_checks_the_object_not_only_its_id():
    """A freed encoder's id can be reused by a new object: the weak reference must tell them apart."""
    import weakref

    encoding = harness.pack_module("nodes.encoding")

    class Encoder:
        pass

    cache = encoding.EncodingCache()
    old, new = Encoder(), Encoder()
    image = torch.rand(1, 8, 8, 3)
    stale = {"image_embeds": torch.zeros(1)}
    cache._items[(id(new), cache.digest(image), None)] = (weakref.ref(old), stale)  # as if `new` reused old's id
    fresh = {"image_embeds": torch.ones(1)}
    assert cache.get(new, image, None, lambda: fresh) is fresh
    assert cache.get(new, image, None, lambda: pytest.fail("computed twice")) is fresh


# --- no host sync in the per-step path -------------------------------------------------------------------

READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__index__", "__bool__")


@contextmanager
def host_reads_fail_inside_our_patch(monkeypatch) -> Iterator[list]:
    """While any CrossAttentionPatch runs, reading a tensor back to Python (or copying it with .cpu()) raises."""
    patch_type = _attention().CrossAttentionPatch
    inside = [0]
    calls: list = []
    original_call = patch_type.__call__

    def guarded_call(self, q, k, v, extra):
        inside[0] += 1
        calls.append(self.site_key)
        try:
            return original_call(self, q, k, v, extra)
        finally:
            inside[0] -= 1

    def failing(name: str):
        original = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            if inside[0]:
                raise AssertionError(f"host sync inside the attn2 patch: Tensor.{name}")
            return original(self, *args, **kwargs)

        return read

    monkeypatch.setattr(patch_type, "__call__", guarded_call)
    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, failing(name))
    try:
        yield calls
    finally:
        monkeypatch.undo()


@contextmanager
def unet_calls(model) -> Iterator[list]:
    calls: list = []
    handle = model.model.diffusion_model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        yield calls
    finally:
        handle.remove()


def _sync_count(model, steps: int) -> tuple[int, int]:
    """(host reads counted by the profiler while sampling ``model``, UNet calls)."""
    with unet_calls(model) as calls, profile(activities=[ProfilerActivity.CPU]) as prof:
        harness.sample(model, steps=steps)
    return sum(1 for e in prof.events() if e.name == "aten::_local_scalar_dense"), len(calls)


def test_full_window_patch_makes_no_host_read(setup, monkeypatch):
    patched = _stack(setup, 2, start_at=0.0, end_at=1.0)
    assert all(app.always_on for p in _our_patches(patched).values() for app in p.applications)
    with host_reads_fail_inside_our_patch(monkeypatch) as calls:
        harness.sample(patched, steps=2)
    assert len(calls) == 2 * len(attn2_sites(setup["model"])), "the guard did not see every patched call"


def test_profiler_sees_no_extra_sync_from_a_full_window_patch(setup):
    base_reads, base_calls = _sync_count(setup["model"], steps=2)
    reads, calls = _sync_count(_stack(setup, 2, start_at=0.0, end_at=1.0), steps=2)
    assert calls == base_calls == 2
    assert reads == base_reads, f"our patch added {reads - base_reads} host reads over {calls} UNet calls"


def test_partial_window_reads_the_sigma_once_per_unet_call_on_cpu(setup):
    """On a CPU the sigma is a host value already: one float read per UNet call, shared by every site and
    adapter (on other devices the gate is computed on the device: tests/core/test_fast_path_core.py)."""
    base_reads, _ = _sync_count(setup["model"], steps=3)
    patched = _stack(setup, 2, start_at=0.0, end_at=0.6)
    assert not any(app.always_on for p in _our_patches(patched).values() for app in p.applications)
    reads, calls = _sync_count(patched, steps=3)
    assert calls == 3
    assert reads - base_reads == calls, f"{reads - base_reads} sigma reads for {calls} UNet calls"


# --- dtypes ----------------------------------------------------------------------------------------------


def _fp16_unet(manual_cast: torch.dtype | None):
    """sd15-reduced stored in fp16; computed in ``manual_cast`` (fp32: what --fp16-unet gives on a CPU) or fp16."""
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models

    key = ("fp16-unet", manual_cast)
    if key not in harness.CACHE:
        config = comfy.supported_models.SD15(dict(UNET_CONFIGS[NAME]))
        config.set_inference_dtype(torch.float16, manual_cast)
        model = config.get_model({})
        seeded_init(model.diffusion_model, 0)
        model.eval()
        harness.CACHE[key] = comfy.model_patcher.ModelPatcher(
            model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device()
        )
    return harness.CACHE[key]


@pytest.mark.parametrize("manual_cast", [torch.float32, None], ids=["fp16-storage-fp32-compute", "fp16-compute"])
def test_fp16_unet_samples_with_the_patch(setup, manual_cast):
    model = _fp16_unet(manual_cast)
    assert model.model.get_dtype() == torch.float16
    patched = adapters.apply(model, setup["ipadapters"][0], setup["image"], setup["clip_vision"], weight=1.0)
    base, latent = harness.sample(model, steps=2), harness.sample(patched, steps=2)
    assert not torch.equal(base, latent), "the adapter had no effect on the fp16 model"
    again = adapters.apply(patched, setup["ipadapters"][1], setup["image"], setup["clip_vision"], weight=0.5)
    assert torch.isfinite(harness.sample(again, steps=2)).all()


# --- which kernel adds the image tokens ------------------------------------------------------------------


@contextmanager
def few_token_calls(monkeypatch) -> Iterator[list]:
    few = harness.pack_module("ipadapter_core.few_token_attention")
    calls: list = []
    real = few.probabilities

    def counted(q, kh, segments):
        calls.append(tuple(kh.shape[1:3]))  # (heads, tokens)
        return real(q, kh, segments)

    with monkeypatch.context() as m:
        m.setattr(few, "probabilities", counted)
        yield calls


def test_cpu_fp32_sampling_adds_few_image_tokens_without_an_attention_call(setup, monkeypatch):
    patched = _stack(setup, 1)
    with few_token_calls(monkeypatch) as calls, unet_calls(patched) as unet:
        harness.sample(patched, steps=2)
    sites = len(attn2_sites(setup["model"]))
    assert len(calls) == len(unet) * sites, "every patched site should take the few-token path on fp32 CPU"
    assert {tokens for _, tokens in calls} == {4}


def test_an_attention_override_node_still_sees_every_image_attention_call(setup, monkeypatch):
    """Nodes that set ``optimized_attention_override`` (attention-backend switches, SageAttention packs...)
    must keep receiving our image-token calls: with one active, the pack uses the host's function."""
    patched = _stack(setup, 1).clone()
    seen: list[int] = []

    def override(func, *args, **kwargs):
        seen.append(int(args[1].shape[1]))  # key length: 77 text tokens, or the adapter's 4 image tokens
        return func(*args, **kwargs)

    patched.model_options["transformer_options"]["optimized_attention_override"] = override
    with few_token_calls(monkeypatch) as calls, unet_calls(patched) as unet:
        harness.sample(patched, steps=2)
    sites = len(attn2_sites(setup["model"]))
    assert calls == [], "the few-token path bypassed an attention override"
    assert seen.count(4) == len(unet) * sites
