"""From reference images to the encoder outputs an adapter consumes, with the checks users need."""

from __future__ import annotations

import hashlib
import logging
import os
import weakref
from collections import OrderedDict

import torch

from ..ipadapter_core import config
from ..ipadapter_core.embeds import check_finite
from ..ipadapter_core.errors import IPAdapterError
from ..ipadapter_core.kinds import ModelKind
from ..ipadapter_core.limits import MAX_ENCODE_BATCH, bounded_int
from . import host, host_progress, siglip_heads


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


# The default bound: 1 GiB. A 64-frame ViT-H batch with its hidden states is 84 MB (64 x 257 x 1280 x 4 bytes,
# plus the pooled rows), so about 12 such batches, or hundreds of single references, stay warm for re-queues.
# The cache lives where the encoder's outputs land (system RAM, unless ComfyUI runs with --gpu-only), and a
# user of an 8 GB GPU usually has 16-32 GB of RAM, most of it needed for offloaded model weights: 1 GiB is a
# small share. The old bound (32 entries) could hold 32 x 84 MB = 2.7 GB, or 4x that with 256-frame batches.
DEFAULT_CACHE_MB = 1024
CACHE_ENV = "IPAS_ENCODING_CACHE_MB"
log = logging.getLogger("ipadapter_suite.encoding")


def cache_bytes_from_env() -> int:
    """The cache bound in bytes from ``IPAS_ENCODING_CACHE_MB`` (megabytes; 0 turns the cache off)."""
    raw = os.environ.get(CACHE_ENV, "").strip()
    if not raw:
        return DEFAULT_CACHE_MB << 20
    try:
        mb = float(raw)
        if not mb >= 0 or mb == float("inf"):
            raise ValueError(raw)
    except ValueError:
        log.warning("%s=%r is not a size in megabytes (expected a number such as 512, or 0 to turn the encoding "
                    "cache off); using the default %d MB. Fix the variable and restart ComfyUI.",
                    CACHE_ENV, raw, DEFAULT_CACHE_MB)
        return DEFAULT_CACHE_MB << 20
    return int(mb * (1 << 20))


def entry_bytes(value: dict) -> int:
    """The tensor bytes an entry holds (what the bound counts)."""
    return sum(t.nbytes for t in value.values() if isinstance(t, torch.Tensor))


class EncodingCache:
    """CLIP outputs by (encoder object, image content, mask content, crop, chunking), so a re-queue that only
    changes a weight runs no encoder. An entry is only served to the very encoder object that made it.

    Bounded by the bytes of the cached tensors (``max_bytes``; default from ``IPAS_ENCODING_CACHE_MB``), least
    recently used first out; an entry bigger than the whole bound is not kept. ``capacity`` also caps the entry
    count, for the Python overhead of very many tiny entries. An entry is stored only once ``compute`` returned,
    so an encode that raised (Cancel, out of memory) leaves nothing behind.
    """

    def __init__(self, capacity: int = 1024, max_bytes: int | None = None) -> None:
        self.capacity = capacity
        self.max_bytes = cache_bytes_from_env() if max_bytes is None else int(max_bytes)
        self.bytes = 0
        self._items: OrderedDict[tuple, tuple[weakref.ref, dict]] = OrderedDict()
        self._sizes: dict[tuple, int] = {}

    def __len__(self) -> int:
        return len(self._items)

    @staticmethod
    def digest(t: torch.Tensor | None) -> str | None:
        if t is None:
            return None
        t = t.detach().to("cpu", torch.float32).contiguous()
        return hashlib.blake2b(str(tuple(t.shape)).encode() + t.numpy().tobytes(), digest_size=16).hexdigest()

    def get(self, clip_vision, image: torch.Tensor, mask: torch.Tensor | None, compute,
            crop: bool = True, chunk: int = 0) -> dict[str, torch.Tensor]:
        key = (id(clip_vision), self.digest(image), self.digest(mask), crop, chunk)
        hit = self._items.get(key)
        if hit is not None and hit[0]() is clip_vision:
            self._items.move_to_end(key)
            return hit[1]
        value = compute()
        self._drop(key)
        size = entry_bytes(value)
        if size > self.max_bytes:
            return value  # larger than the whole bound (or the cache is off): keeping it would evict everything
        self._items[key] = (weakref.ref(clip_vision), value)
        self._sizes[key] = size
        self.bytes += size
        while self._items and (self.bytes > self.max_bytes or len(self._items) > self.capacity):
            self._drop(next(iter(self._items)))
        return value

    def _drop(self, key: tuple) -> None:
        if self._items.pop(key, None) is not None:
            self.bytes -= self._sizes.pop(key, 0)

    def clear(self) -> None:
        self._items.clear()
        self._sizes.clear()
        self.bytes = 0


ENCODINGS = EncodingCache()


# InstantX's adapters were trained with SigLIP's processor, which squashes the image to its square;
# every other adapter's CLIP processor centre-crops.
SQUASHED_KINDS = ("instantx_flux", "instantx_sd3")


def chunk_count(images: int, batch_size: int = 0) -> int:
    """How many encoder calls ``images`` take at ``batch_size`` a time (0 = all at once)."""
    batch_size = bounded_int(batch_size, "encode_batch_size", 0, MAX_ENCODE_BATCH)
    return 1 if batch_size <= 0 or batch_size >= images else -(-images // batch_size)


def encode_images(clip_vision, image: torch.Tensor, mask: torch.Tensor | None = None, crop: bool = True,
                  batch_size: int = 0, bar: host_progress.Progress | None = None) -> dict[str, torch.Tensor]:
    """Run the encoder ``batch_size`` images at a time, checking Cancel before each chunk and advancing ``bar``
    (a bar of its own when None) after it. A mask with one entry per image is cut with the images."""
    n = image.shape[0]
    count = chunk_count(n, batch_size)
    size = n if count == 1 else batch_size
    bar = bar if bar is not None else host_progress.progress(count)
    outs = []
    for start in range(0, n, size):
        host_progress.interrupted()
        part = mask
        if mask is not None and count > 1 and mask.dim() == 3 and mask.shape[0] == n:
            part = mask[start:start + size]
        outs.append(host.encode_image(clip_vision, image[start:start + size], part, crop=crop))
        bar.update(1)
    return outs[0] if count == 1 else {k: torch.cat([o[k] for o in outs]) for k in outs[0]}


def encode(clip_vision, kind: ModelKind, image: torch.Tensor, mask: torch.Tensor | None = None,
           clip_vision_file: str | None = None, batch_size: int = 0,
           bar: host_progress.Progress | None = None) -> torch.Tensor:
    """Encode (or reuse the encoding of the same pixels) and return the output this adapter consumes,
    after checking the encoder fits. ``clip_vision_file`` (the unified loader's) is where a SigLIP
    pooling head is looked for first. ``batch_size`` images go through the encoder at a time (0 = all);
    ``bar`` is a shared progress bar (a cache hit advances it by the chunks it saved)."""
    image = image[..., :3]
    crop = kind.kind not in SQUASHED_KINDS
    batch_size = bounded_int(batch_size, "encode_batch_size", 0, MAX_ENCODE_BATCH)  # may arrive by a link
    chunks = chunk_count(image.shape[0], batch_size)
    ran: list[bool] = []

    def compute() -> dict[str, torch.Tensor]:
        ran.append(True)
        return encode_images(clip_vision, image, mask, crop, batch_size, bar)

    out = ENCODINGS.get(clip_vision, image, mask, compute, crop=crop, chunk=0 if chunks == 1 else batch_size)
    if bar is not None and not ran:
        bar.update(chunks)
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
