"""From reference images to the encoder outputs an adapter consumes, with the checks users need."""

from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict

import torch

from ..ipadapter_core import config
from ..ipadapter_core.embeds import check_finite
from ..ipadapter_core.errors import IPAdapterError
from ..ipadapter_core.kinds import ModelKind
from . import host, siglip_heads


def encoder_label(name: str | None, width: int | None = None) -> str:
    if name is None:
        return f"an unknown encoder ({width}-wide output)" if width else "an unknown encoder"
    return config.encoders()[name]["label"]


def required_encoder(kind: ModelKind) -> str | None:
    return config.encoder_for_kind(kind)


def check_image(image: torch.Tensor | None, input: str) -> None:
    if image is None or image.shape[0] == 0:
        raise IPAdapterError("The image batch is empty.", expected="at least one image",
                             fix="Connect a Load Image node (or a non-empty batch).", input=input)
    if image.dim() != 4 or image.shape[-1] not in (3, 4):
        raise IPAdapterError(f"The image has shape {tuple(image.shape)}.", expected="an IMAGE [batch, H, W, 3]",
                             fix="Connect an IMAGE output (Load Image, VAE Decode, ...).", input=input)
    check_finite(image, "image", input)


def require_clip_vision(clip_vision, kind: ModelKind):
    if clip_vision is None:
        enc = required_encoder(kind)
        file = config.encoders()[enc]["file"] if enc else "the matching CLIP vision file"
        raise IPAdapterError(
            f"The {kind.label} adapter needs a CLIP vision encoder and none is connected.",
            expected=f"{encoder_label(enc)} ({file}) on the clip_vision input, or a unified loader pipeline",
            fix=f"Add a 'Load CLIP Vision' node with {file} and connect it to clip_vision, or load the adapter "
            "with 'IPAdapter Unified Loader', which finds the encoder for you.",
            input="clip_vision",
        )
    return clip_vision


class EncodingCache:
    """CLIP outputs by (encoder object, image content, mask content), so a re-queue that only changes a
    weight runs no encoder. Bounded; an entry is only served to the very encoder object that made it."""

    def __init__(self, capacity: int = 32) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple, tuple[weakref.ref, dict]] = OrderedDict()

    @staticmethod
    def digest(t: torch.Tensor | None) -> str | None:
        if t is None:
            return None
        t = t.detach().to("cpu", torch.float32).contiguous()
        return hashlib.blake2b(str(tuple(t.shape)).encode() + t.numpy().tobytes(), digest_size=16).hexdigest()

    def get(self, clip_vision, image: torch.Tensor, mask: torch.Tensor | None, compute,
            crop: bool = True) -> dict[str, torch.Tensor]:
        key = (id(clip_vision), self.digest(image), self.digest(mask), crop)
        hit = self._items.get(key)
        if hit is not None and hit[0]() is clip_vision:
            self._items.move_to_end(key)
            return hit[1]
        value = compute()
        self._items[key] = (weakref.ref(clip_vision), value)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return value


ENCODINGS = EncodingCache()


# InstantX's adapters were trained with SigLIP's processor, which squashes the image to its square;
# every other adapter's CLIP processor centre-crops.
SQUASHED_KINDS = ("instantx_flux", "instantx_sd3")


def encode(clip_vision, kind: ModelKind, image: torch.Tensor, mask: torch.Tensor | None = None,
           clip_vision_file: str | None = None) -> torch.Tensor:
    """Encode (or reuse the encoding of the same pixels) and return the output this adapter consumes,
    after checking the encoder fits. ``clip_vision_file`` (the unified loader's) is where a SigLIP
    pooling head is looked for first."""
    image = image[..., :3]
    crop = kind.kind not in SQUASHED_KINDS
    out = ENCODINGS.get(clip_vision, image, mask, lambda: host.encode_image(clip_vision, image, mask, crop=crop),
                        crop=crop)
    if kind.encoder_output == "siglip_pooled":
        tokens = out["image_embeds"]
        if tokens.dim() != 3 or tokens.shape[-1] != kind.encoder_width:
            raise wrong_encoder(clip_vision, kind, out, tokens.shape[-1])
        return siglip_heads.pooled(clip_vision, tokens, clip_vision_file)
    embeds = out[kind.encoder_output]
    if embeds.shape[-1] != kind.encoder_width or (kind.encoder_output == "image_embeds" and embeds.dim() != 2):
        raise wrong_encoder(clip_vision, kind, out, embeds.shape[-1])
    got = identify(clip_vision, out)
    need = required_encoder(kind)
    if kind.is_transformer and got is not None and need is not None and got != need:  # same widths, other size
        raise wrong_encoder(clip_vision, kind, out, embeds.shape[-1])
    return embeds


def identify(clip_vision, out: dict[str, torch.Tensor]) -> str | None:
    """Which known encoder made ``out``, from its output widths and input size (None if unknown)."""
    return config.encoder_from_widths(out["image_embeds"].shape[-1], out["penultimate_hidden_states"].shape[-1],
                                      image_size=getattr(clip_vision, "image_size", None))


def wrong_encoder(clip_vision, kind: ModelKind, out: dict[str, torch.Tensor], width: int) -> IPAdapterError:
    got = identify(clip_vision, out)
    need = required_encoder(kind)
    file = config.encoders()[need]["file"] if need else "the matching encoder"
    return IPAdapterError(
        f"Wrong CLIP vision for this adapter: the {kind.label} adapter needs {encoder_label(need)}, "
        f"but the connected encoder is {encoder_label(got, width)} "
        f"({width}-wide {kind.encoder_output}, the adapter reads {kind.encoder_width}).",
        expected=f"{encoder_label(need)}: {file}",
        fix=f"Load {file} in 'Load CLIP Vision' (or use the unified loader, which picks the right one).",
        input="clip_vision",
    )


def negative_needs_encoder(kind: ModelKind) -> bool:
    """Whether ``negative`` runs the encoder (a black image) when no negative image or embeds are given."""
    return kind.kind == "xlabs_flux" or (kind.uses_hidden_states and not kind.is_transformer)


def negative(clip_vision, kind: ModelKind, cond: torch.Tensor, image_negative: torch.Tensor | None,
             clip_vision_file: str | None = None) -> torch.Tensor:
    """The unconditional embeds: the negative image's, else zeros (pooled) or a black image's states."""
    if image_negative is not None:
        check_image(image_negative, "image_negative")
        return encode(clip_vision, kind, image_negative, clip_vision_file=clip_vision_file)
    if kind.is_transformer:  # each reference's negative (docs/dit.md): XLabs a black image, InstantX zeros
        if kind.kind == "xlabs_flux":
            return encode(clip_vision, kind, host.black_image(clip_vision))
        return torch.zeros_like(cond[:1])
    if kind.uses_hidden_states:
        return encode(clip_vision, kind, host.black_image(clip_vision))
    return torch.zeros_like(cond[:1])
