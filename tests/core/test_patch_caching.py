"""The fast path changes nothing but speed: cached K/V give the bit-identical output of per-call
recomputation, no sigma is read when the window is the whole schedule, and cached copies follow the
model when ComfyUI moves it."""

from __future__ import annotations

import torch

from ipadapter_core.attention import CrossAttentionPatch, sdpa_attention
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


def _naive_patch(model, w: float):
    """What the incumbent does: project the image tokens through to_k_ip/to_v_ip at every call."""

    def patch(q, k, v, extra):
        out = sdpa_attention(q, k, v, extra["n_heads"])
        wk, wv = (t.float() for t in model.kv_weights(FILE_NUMBER[OUT.key]))
        per_chunk = q.shape[0] // len(extra["cond_or_uncond"])
        rows_k, rows_v = [], []
        for chunk in extra["cond_or_uncond"]:
            tokens = UNCOND if chunk == 1 else COND
            rows_k += [tokens @ wk.T] * per_chunk
            rows_v += [tokens @ wv.T] * per_chunk
        ip = sdpa_attention(q, torch.cat(rows_k), torch.cat(rows_v), extra["n_heads"])
        return (out + ip * w).to(q.dtype)

    return patch


def test_cached_kv_is_bit_identical_to_per_call_recomputation(adapter):  # noqa: F811
    ours = CrossAttentionPatch(OUT.key).stacked(make_app(adapter, 0.8))
    naive = _naive_patch(adapter, 0.8)
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
