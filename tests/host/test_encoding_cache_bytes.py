"""The encoding cache is bounded by bytes (issue 14 §2): the sum of its tensors' ``nbytes`` never exceeds the
bound, large batches still hit, an entry larger than the bound is not kept, and ``IPAS_ENCODING_CACHE_MB`` sets
the bound (0 turns the cache off). The same-pixels / other-encoder guarantees are in test_fast_path.py."""

from __future__ import annotations

import logging

import pytest
import torch

from tests.host import harness


@pytest.fixture
def encoding(pack):
    return harness.pack_module("nodes.encoding")


@pytest.fixture
def kind(pack, unet, ipadapter_dir):
    from tests.host import adapters

    model = unet("sd15-reduced")
    return adapters.load(adapters.adapter_file(ipadapter_dir, "sd15-reduced", model)).adapter.kind


class Encoder:
    """A stand-in encoder object: the cache keys on the object, ``compute`` makes the value."""


def _value(rows: int, width: int = 256) -> dict[str, torch.Tensor]:
    return {"image_embeds": torch.rand(rows, width), "penultimate_hidden_states": torch.rand(rows, 4, width)}


def _held(cache) -> int:
    """Bytes of every tensor the cache holds, counted from its entries (not from its own counter)."""
    return sum(t.nbytes for _, value in cache._items.values() for t in value.values())


def test_large_batches_stay_under_the_bound_and_still_hit(encoding, kind, host_dirs, monkeypatch):
    from tests.fixtures.comfy_models import tiny_clip_vision

    cv = tiny_clip_vision(host_dirs["work"], seed=6)  # an encoder no other test used
    cache = encoding.EncodingCache()
    monkeypatch.setattr(encoding, "ENCODINGS", cache)
    runs: list[int] = []
    original = cv.encode_image
    monkeypatch.setattr(cv, "encode_image", lambda image, **kw: runs.append(image.shape[0]) or original(image, **kw))
    gen = torch.Generator().manual_seed(3)
    batches = [torch.rand(16, 32, 32, 3, generator=gen) for _ in range(6)]
    first = encoding.encode(cv, kind, batches[0])
    one = cache.bytes
    assert one == _held(cache) > 0
    cache.max_bytes = 3 * one + one // 2  # room for three of these 16-frame batches
    outputs = [first] + [encoding.encode(cv, kind, b) for b in batches[1:]]
    assert len(runs) == 6
    assert _held(cache) <= cache.max_bytes and cache.bytes == _held(cache) and len(cache) == 3
    assert torch.equal(encoding.encode(cv, kind, batches[-1].clone()), outputs[-1]) and len(runs) == 6, \
        "the newest batch was not served from the cache"
    assert torch.equal(encoding.encode(cv, kind, batches[0]), first) and len(runs) == 7, \
        "the oldest batch should have been evicted"
    assert _held(cache) <= cache.max_bytes


def test_bytes_evict_least_recently_used_first(encoding):
    cache = encoding.EncodingCache(max_bytes=3 * 5120)  # each value below is 5120 bytes
    enc = Encoder()
    images = [torch.full((1, 4, 4, 3), float(i)) for i in range(4)]
    values = [cache.get(enc, im, None, lambda: _value(1)) for im in images[:3]]
    assert cache.get(enc, images[0], None, lambda: pytest.fail("evicted too early")) is values[0]  # now newest
    cache.get(enc, images[3], None, lambda: _value(1))
    assert cache.bytes == _held(cache) == 3 * 5120
    assert cache.get(enc, images[0], None, lambda: pytest.fail("recently used, must stay")) is values[0]
    fresh = _value(1)
    assert cache.get(enc, images[1], None, lambda: fresh) is fresh  # the least recently used went first


def test_an_entry_larger_than_the_bound_is_not_kept_and_evicts_nothing(encoding):
    cache = encoding.EncodingCache(max_bytes=20_000)
    enc = Encoder()
    small_image, big_image = torch.zeros(1, 4, 4, 3), torch.ones(1, 4, 4, 3)
    small = cache.get(enc, small_image, None, lambda: _value(1))
    big = _value(8)  # 40960 bytes > 20000
    assert cache.get(enc, big_image, None, lambda: big) is big
    assert len(cache) == 1 and cache.bytes == _held(cache) == 5120
    computed: list[int] = []
    again = cache.get(enc, big_image, None, lambda: computed.append(1) or _value(8))
    assert computed == [1] and again is not big, "an over-size entry was cached"
    assert cache.get(enc, small_image, None, lambda: pytest.fail("the small entry was evicted")) is small


def test_failed_compute_leaves_nothing(encoding):
    cache = encoding.EncodingCache(max_bytes=1 << 20)

    def boom():
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError):
        cache.get(Encoder(), torch.zeros(1, 4, 4, 3), None, boom)
    assert len(cache) == 0 and cache.bytes == 0


def test_environment_variable_sets_the_bound(encoding, monkeypatch, caplog):
    monkeypatch.delenv(encoding.CACHE_ENV, raising=False)
    assert encoding.EncodingCache().max_bytes == encoding.DEFAULT_CACHE_MB << 20 == 1 << 30
    monkeypatch.setenv("IPAS_ENCODING_CACHE_MB", "2")
    cache = encoding.EncodingCache()
    assert cache.max_bytes == 2 << 20
    monkeypatch.setenv("IPAS_ENCODING_CACHE_MB", "0.5")
    assert encoding.EncodingCache().max_bytes == 1 << 19
    monkeypatch.setenv("IPAS_ENCODING_CACHE_MB", "lots")
    with caplog.at_level(logging.WARNING):
        assert encoding.EncodingCache().max_bytes == 1 << 30
    assert "IPAS_ENCODING_CACHE_MB" in caplog.text and "expected a number" in caplog.text


def test_zero_turns_the_cache_off(encoding, monkeypatch):
    monkeypatch.setenv("IPAS_ENCODING_CACHE_MB", "0")
    cache = encoding.EncodingCache()
    enc, image = Encoder(), torch.zeros(1, 4, 4, 3)
    computed: list[int] = []
    for _ in range(2):
        cache.get(enc, image, None, lambda: computed.append(1) or _value(1))
    assert computed == [1, 1] and len(cache) == 0 and cache.bytes == 0
