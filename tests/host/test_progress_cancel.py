"""Progress and Cancel in real ComfyUI (in-process, CPU): every chunked encode and file loop reports through
``comfy.utils.ProgressBar`` and stops between steps once ``comfy.model_management``'s interrupt flag is set.

The progress hook is ComfyUI's own global one (``comfy.utils.PROGRESS_BAR_HOOK``, what the server installs),
replaced for the test by a recorder that can press Cancel at a chosen step, as ``POST /interrupt`` does.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tests.host import harness
from tests.host import variant_fixtures as vf


@pytest.fixture
def s(pack, unet, ipadapter_dir, clip_vision, reference_image):
    return vf.setup("sd15-reduced", unet, ipadapter_dir, clip_vision, reference_image)


@pytest.fixture
def hook(pack, monkeypatch):
    """Records ``(value, total)`` of every bar update; ``cancel_at`` = the value at which Cancel is pressed."""
    import comfy.model_management as mm
    import comfy.utils

    rec = SimpleNamespace(calls=[], cancel_at=None)

    def record(value, total, preview=None, node_id=None, **_):
        rec.calls.append((value, total))
        if rec.cancel_at is not None and value == rec.cancel_at:
            mm.interrupt_current_processing(True)

    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", record)
    yield rec
    mm.interrupt_current_processing(False)  # never leak a pressed Cancel into other tests


@pytest.fixture
def cache(pack, monkeypatch):
    """A fresh, empty encoding cache for this test (the pack's is process-wide)."""
    encoding = harness.pack_module("nodes.encoding")
    fresh = encoding.EncodingCache()
    monkeypatch.setattr(encoding, "ENCODINGS", fresh)
    return fresh


@pytest.fixture
def encoder_runs(pack, monkeypatch) -> list[int]:
    """The batch size of every CLIP vision run (``host.encode_image`` is the one door to the encoder)."""
    host = harness.pack_module("nodes.host")
    runs: list[int] = []
    original = host.encode_image
    monkeypatch.setattr(host, "encode_image", lambda cv, image, mask=None, **kw: runs.append(image.shape[0])
                        or original(cv, image, mask, **kw))
    return runs


def _frames(n: int, seed: int = 5) -> torch.Tensor:
    return torch.rand(n, 64, 64, 3, generator=torch.Generator().manual_seed(seed))


def _batch(s, image, **options):
    inputs = dict(model=s["model"], ipadapter=s["basic"], image=image, weight=1.0, weight_type="linear",
                  start_at=0.0, end_at=1.0, embeds_scaling="V only", encode_batch_size=0, clip_vision=s["clip_vision"])
    return harness.run_node("IPAdapterBatch", **{**inputs, **options})[0]


def test_batch_encode_reports_one_step_per_chunk(s, hook, cache, encoder_runs):
    _batch(s, _frames(6), encode_batch_size=2)
    assert encoder_runs == [2, 2, 2]
    assert hook.calls == [(1, 3), (2, 3), (3, 3)]


def test_single_encode_shows_no_bar(s, hook, cache):
    _batch(s, _frames(3), encode_batch_size=0)
    assert hook.calls == []


def test_cancel_mid_encode_stops_within_one_chunk_and_caches_nothing(s, hook, cache, encoder_runs):
    import comfy.model_management as mm

    frames = _frames(6, seed=9)
    hook.cancel_at = 1  # Cancel pressed while the first chunk's progress is reported
    with pytest.raises(mm.InterruptProcessingException):
        _batch(s, frames, encode_batch_size=2)
    assert encoder_runs == [2], "the encoder ran on after Cancel"
    assert len(cache) == 0 and cache.bytes == 0, "an interrupted encode left an entry in the cache"
    assert not mm.processing_interrupted(), "the interrupt was not consumed"

    hook.cancel_at = None
    after = harness.sample(_batch(s, frames, encode_batch_size=2), batch=6)
    assert encoder_runs == [2, 2, 2, 2], "the re-run did not encode every chunk afresh"
    assert len(cache) == 1

    cache.clear()  # a clean run: nothing cached, never interrupted
    clean = harness.sample(_batch(s, frames, encode_batch_size=2), batch=6)
    assert torch.equal(after, clean), "the run after Cancel differs from a clean run"


def test_enhancer_tiles_share_one_bar(s, hook, cache, encoder_runs):
    inputs = dict(model=s["model"], ipadapter=s["basic"], image=torch.cat([s["big"], s["big"].flip(1)]), weight=1.0,
                  weight_type="linear", start_at=0.0, end_at=1.0, embeds_scaling="V only", enhance_tiles=2,
                  enhance_ratio=0.5, encode_batch_size=3, clip_vision=s["clip_vision"])
    harness.run_node("IPAdapterClipVisionEnhancerBatch", **inputs)
    assert encoder_runs == [2, 3, 3, 2]  # 2 full images in one chunk, then 8 crops 3 at a time
    assert hook.calls == [(i, 4) for i in range(1, 5)]


def test_tiled_reports_every_tile_and_cancels_between_them(s, hook, cache, encoder_runs):
    import comfy.model_management as mm

    inputs = dict(model=s["model"], ipadapter=s["basic"], image=s["wide"], weight=1.0, weight_type="linear",
                  start_at=0.0, end_at=1.0, sharpening=0.0, embeds_scaling="V only", clip_vision=s["clip_vision"])
    _, tiles, _ = harness.run_node("IPAdapterTiled", **inputs)
    count = tiles.shape[0]
    assert count > 1 and hook.calls == [(i, count) for i in range(1, count + 1)]
    hook.calls.clear()
    cache.clear()
    encoder_runs.clear()
    hook.cancel_at = 1
    with pytest.raises(mm.InterruptProcessingException):
        harness.run_node("IPAdapterTiled", **inputs)
    assert encoder_runs == [1] and len(cache) == 1  # the finished tile's encoding is whole; nothing else


def test_faceid_lora_pairing_reads_file_by_file_and_stops_on_cancel(pack, hook, monkeypatch):
    import comfy.model_management as mm

    host, faceid = harness.pack_module("nodes.host"), harness.pack_module("nodes.faceid_nodes")
    names = [f"lora_{i}.safetensors" for i in range(4)]
    read: list[str] = []
    monkeypatch.setattr(host, "list_files", lambda folder: list(names))
    monkeypatch.setattr(host, "full_path", lambda folder, name: f"/loras/{name}")
    monkeypatch.setattr(host, "lora_shapes", lambda path: read.append(path) or None)
    adapter = SimpleNamespace(weights=SimpleNamespace(ip_adapter={}), kind=SimpleNamespace(context_dim=768))
    assert faceid.paired_lora(adapter, {}) == (None, "")
    assert len(read) == 4 and hook.calls == [(i, 4) for i in range(1, 5)]
    read.clear()
    hook.cancel_at = 2
    with pytest.raises(mm.InterruptProcessingException):
        faceid.paired_lora(adapter, {})
    assert len(read) == 2, "files were read after Cancel"


def test_doctor_node_scan_reports_each_file(pack, hook, monkeypatch, tmp_path):
    import comfy.model_management as mm

    host = harness.pack_module("nodes.host")
    for i in range(3):
        (tmp_path / f"junk_{i}.safetensors").write_bytes(b"not a model")
    monkeypatch.setattr(host, "folder_paths_for", lambda key: [str(tmp_path)] if key == "ipadapter" else [])
    cls = pack.NODE_CLASS_MAPPINGS["IPAdapterDoctor"]
    text = cls().run()["result"][0]
    assert text.count("BROKEN") == 3 and hook.calls == [(1, 3), (2, 3), (3, 3)]
    hook.calls.clear()
    hook.cancel_at = 1
    with pytest.raises(mm.InterruptProcessingException):
        cls().run()
    assert hook.calls == [(1, 3)]
