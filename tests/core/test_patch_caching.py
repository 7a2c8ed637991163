"""The fast path changes nothing but speed: cached K/V give the bit-identical output of per-call
recomputation, no sigma is read when the window is the whole schedule, and cached copies follow the
model when ComfyUI moves it."""

from __future__ import annotations

import pytest
import torch

from ipadapter_core.attention import CrossAttentionPatch, sdpa_attention
from ipadapter_core.few_token_attention import add_attention_, split_heads
from tests.core.test_attention import (
    COND,
    FILE_NUMBER,
    MID,
    OUT,
    UNCOND,
    adapter,  # noqa: F401  (the shared fixture)
    block_inputs,
    make_app,
)


def _naive_patch(model, w: float, few_tokens: bool = False):
    """What the incumbent does: project the image tokens through to_k_ip/to_v_ip at every call (and,
    for the few-token path, split them into heads at every call too)."""

    def patch(q, k, v, extra):
        out = sdpa_attention(q, k, v, extra["n_heads"])
        wk, wv = (t.float() for t in model.kv_weights(FILE_NUMBER[OUT.key]))
        per_chunk = q.shape[0] // len(extra["cond_or_uncond"])
        rows_k, rows_v = [], []
        for chunk in extra["cond_or_uncond"]:
            tokens = UNCOND if chunk == 1 else COND
            rows_k += [tokens @ wk.T] * per_chunk
            rows_v += [tokens @ wv.T] * per_chunk
        ip_k, ip_v = torch.cat(rows_k), torch.cat(rows_v)
        if few_tokens:
            return add_attention_(out, q, *split_heads(ip_k, ip_v, extra["n_heads"]), w)
        ip = sdpa_attention(q, ip_k, ip_v, extra["n_heads"])
        return (out + ip * w).to(q.dtype)

    return patch


@pytest.mark.parametrize("few_tokens", [False, True], ids=["library", "few-token"])
def test_cached_kv_is_bit_identical_to_per_call_recomputation(adapter, few_tokens):  # noqa: F811
    policy = (lambda q, extra, heads, tokens: True) if few_tokens else None
    ours = CrossAttentionPatch(OUT.key, few_tokens=policy).stacked(make_app(adapter, 0.8))
    naive = _naive_patch(adapter, 0.8, few_tokens)
    for cou in ([1, 0], [0], [0, 1]):
        q, k, v, extra = block_inputs(OUT, cou, seed=3)
        first = ours(q, k, v, extra)
        assert torch.equal(first, naive(q, k, v, extra)), cou
        assert torch.equal(ours(q, k, v, extra), first), "a second call (cached layout) must not differ"


class _Unreadable:
    """A sigmas stand-in that fails if anything reads it."""

    def __getattr__(self, name):
        raise AssertionError(f"sigma was read ({name}) although the window covers every step")


def test_full_window_never_reads_the_sigma(adapter):  # noqa: F811
    app = make_app(adapter, 1.0)
    assert app.always_on
    q, k, v, extra = block_inputs(OUT, [1, 0])
    extra["sigmas"] = _Unreadable()
    CrossAttentionPatch(OUT.key).stacked(app)(q, k, v, extra)


def test_layout_copies_follow_the_model_device(adapter):  # noqa: F811
    app = make_app(adapter, 1.0)
    kv = app.sites[MID.key]
    kv.assembled((1, 0), _rows(2), torch.device("cpu"), torch.float32)
    kv.assembled((1, 0), _rows(2), torch.device("meta"), torch.float32)
    assert {key[2].type for key in kv._layouts} == {"cpu", "meta"}
    patch = CrossAttentionPatch(MID.key).stacked(app)
    assert patch.to(torch.device("cpu")) is patch  # the host keeps using the same (shared) object
    assert {key[2].type for key in kv._layouts} == {"cpu"}
    assert patch.to(torch.float16) is patch  # dtype moves are handled per call


def test_base_kv_is_stored_on_the_cpu(adapter):  # noqa: F811
    app = make_app(adapter, 1.0)
    assert all(t.device.type == "cpu" for kv in app.sites.values() for t in (kv.k_cond, kv.v_cond))


def _rows(per_chunk: int):
    from ipadapter_core.attention import RowLayout

    return RowLayout(per_chunk)


def test_the_projection_model_is_dropped_after_use(adapter, monkeypatch):  # noqa: F811
    """issue 6 §2: the projection runs once per application; its fp32 module must not outlive the call."""
    import dataclasses
    import gc
    import weakref

    built: list[weakref.ref] = []
    real_build = adapter.kind.build

    def tracked_build():
        module = real_build()
        built.append(weakref.ref(module))
        return module

    monkeypatch.setattr(adapter, "kind", dataclasses.replace(adapter.kind, build=tracked_build))
    tokens = adapter.project(torch.randn(1, 1024))
    assert tokens.shape[1:] == (4, 768)
    gc.collect()
    assert len(built) == 1 and built[0]() is None, "the projection model is still referenced after project()"
