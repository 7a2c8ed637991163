"""The sigma gate off the CPU: decided on the device, never read back (issue 6 §5).

No GPU is needed. A tensor subclass that reports a non-CPU device (its data stays on the CPU) takes the
on-device branch of ``Application.window``, so its gate values can be checked numerically while any
read back to Python raises. Running the whole patch on the ``meta`` device then shows nothing in it copies
a tensor to the host: a meta tensor has no data, so ``.item()``/``.cpu()``/``float()`` on one fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

from ipadapter_core.attention import CrossAttentionPatch, sdpa_attention
from tests.core.test_attention import (
    OUT,
    adapter,  # noqa: F401  (the shared fixture)
    block_inputs,
    make_app,
)

START, END = 8.0, 2.0  # the adapter acts while END <= sigma <= START
READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__index__", "__bool__")


class OnAccelerator(torch.Tensor):
    """CPU data that says it lives on a GPU: what ``contribution`` checks to decide where to gate."""

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return torch.device("cuda", 0)


@contextmanager
def no_host_reads(monkeypatch) -> Iterator[None]:
    def failing(name: str):
        def read(self, *args, **kwargs):
            raise AssertionError(f"host read Tensor.{name} in the per-step path")

        return read

    with monkeypatch.context() as m:
        for name in READS:
            m.setattr(torch.Tensor, name, failing(name))
        yield


def _plain(t: torch.Tensor) -> torch.Tensor:
    return t.as_subclass(torch.Tensor) if isinstance(t, OnAccelerator) else t


@pytest.mark.parametrize("sigma, inside", [(9.0, False), (8.0, True), (5.0, True), (2.0, True), (1.0, False)])
def test_on_device_gate_matches_the_window_without_reading_the_sigma(adapter, monkeypatch, sigma, inside):  # noqa: F811
    windowed = make_app(adapter, 0.9, sigma_start=START, sigma_end=END)
    always = make_app(adapter, 0.9)
    assert not windowed.always_on and always.always_on
    q, _, _, extra = block_inputs(OUT, [1, 0], seed=5)
    reference = always.contribution(always.sites[OUT.key], q, extra, sdpa_attention)

    extra["sigmas"] = torch.full((4,), sigma).as_subclass(OnAccelerator)
    with no_host_reads(monkeypatch):
        active, gate = windowed.window(q, extra)
        assert active and gate is not None  # on a device the window is a 0/1 factor, never a branch
        out = windowed.contribution(windowed.sites[OUT.key], q, extra, sdpa_attention, gate)
    out = _plain(out)
    if inside:
        assert torch.equal(out, reference)
    else:
        assert torch.equal(out, torch.zeros_like(reference))


@pytest.mark.parametrize("few_tokens", [None, lambda q, extra, heads, tokens: True], ids=["library", "few-token"])
def test_on_device_gate_through_the_stacked_patch(adapter, monkeypatch, few_tokens):  # noqa: F811
    on = make_app(adapter, 0.6, sigma_start=START, sigma_end=END)
    off = make_app(adapter, 1.3, sigma_start=1.5, sigma_end=0.5)  # outside at sigma 5
    q, k, v, extra = block_inputs(OUT, [1, 0], seed=6)
    expected = CrossAttentionPatch(OUT.key, few_tokens=few_tokens).stacked(make_app(adapter, 0.6))(q, k, v, dict(extra))
    extra["sigmas"] = torch.full((4,), 5.0).as_subclass(OnAccelerator)
    with no_host_reads(monkeypatch):
        out = CrossAttentionPatch(OUT.key, few_tokens=few_tokens).stacked(on).stacked(off)(q, k, v, extra)
    torch.testing.assert_close(_plain(out), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("few_tokens", [None, lambda q, extra, heads, tokens: True], ids=["library", "few-token"])
def test_whole_patch_runs_on_the_meta_device(adapter, few_tokens):  # noqa: F811
    """Meta tensors hold no data: any copy to the host or read of a value inside the patch would raise."""
    windowed = make_app(adapter, 0.7, sigma_start=START, sigma_end=END)
    patch = CrossAttentionPatch(OUT.key, few_tokens=few_tokens).stacked(windowed)
    patch = patch.stacked(make_app(adapter, 0.4))
    q, k, v, extra = block_inputs(OUT, [1, 0], seed=7)
    q, k, v = (t.to("meta") for t in (q, k, v))
    extra["sigmas"] = torch.full((4,), 5.0, device="meta")
    out = patch(q, k, v, extra)
    assert out.device.type == "meta" and out.shape == q.shape
    patch.to(torch.device("cpu"))  # the host offloads: the meta copies are dropped
    kv = patch.applications[0].sites[OUT.key]
    assert all(key[2].type == "cpu" for key in kv._layouts)
