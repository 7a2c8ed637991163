"""The Encoder node's ``mask`` input: it changes what the encoder sees, and the encoding cache keys on it.

A re-queue that changes only the mask must run the encoder again; serving the unmasked (or another mask's)
encoding from the cache would silently ignore the new mask.
"""

from __future__ import annotations

import pytest
import torch

from tests.host import adapters, harness

UNET = "sd15-reduced"


@pytest.fixture
def encoder_case(pack, unet, ipadapter_dir, clip_vision, reference_image, monkeypatch):
    """A fresh encoding cache and a count of the encoder's runs (with the mask each one got)."""
    encoding, host = harness.pack_module("nodes.encoding"), harness.pack_module("nodes.host")
    monkeypatch.setattr(encoding, "ENCODINGS", encoding.EncodingCache())
    runs: list = []
    original = host.encode_image

    def counted(cv, image, mask=None, crop=True):
        runs.append(mask)
        return original(cv, image, mask, crop=crop)

    monkeypatch.setattr(host, "encode_image", counted)
    model = unet(UNET)
    ipadapter = adapters.load(adapters.adapter_file(ipadapter_dir, UNET, model))

    def encode(mask=None) -> torch.Tensor:
        kwargs = {} if mask is None else {"mask": mask}
        return harness.run_node("IPAdapterEncoder", ipadapter=ipadapter, image=reference_image, weight=1.0,
                                clip_vision=clip_vision, **kwargs)[0]

    return dict(encode=encode, runs=runs, original=original, clip_vision=clip_vision, image=reference_image)


def _half(side: str) -> torch.Tensor:
    """A [1, 224, 224] mask keeping the left or the right half of the reference."""
    mask = torch.zeros(1, 224, 224)
    mask[..., slice(0, 112) if side == "left" else slice(112, 224)] = 1.0
    return mask


def test_a_different_mask_gives_different_embeds_and_runs_the_encoder_again(encoder_case):
    encode, runs = encoder_case["encode"], encoder_case["runs"]
    plain = encode()
    left = encode(_half("left"))
    right = encode(_half("right"))
    assert len(runs) == 3, f"the encoder ran {len(runs)} times for three different masks"
    assert runs[0] is None and runs[1] is not None and runs[2] is not None
    for a, b, what in ((plain, left, "no mask / left half"), (left, right, "left / right half"),
                       (plain, right, "no mask / right half")):
        assert not torch.allclose(a, b, atol=1e-4), f"{what}: the same embeds"
    # The masked embeds are the encoder's output for the masked pixels, not some other cached entry.
    direct = encoder_case["original"](encoder_case["clip_vision"], encoder_case["image"], _half("left"))
    torch.testing.assert_close(left, direct["image_embeds"])


def test_the_same_mask_again_is_served_from_the_cache(encoder_case):
    encode, runs = encoder_case["encode"], encoder_case["runs"]
    first = encode(_half("left"))
    again = encode(_half("left").clone())  # another tensor with the same content
    assert len(runs) == 1 and torch.equal(first, again)
    encode()
    assert len(runs) == 2, "dropping the mask must encode the unmasked image"
