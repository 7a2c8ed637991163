"""Apply-node variants: batch, tiled, style & composition, precise, Mad Scientist, enhancer, from params.

Declarations over apply_core, with inputs picked by name (``declared.py``); a "Batch" variant is its
node with ``UNFOLD = True`` (image i conditions latent i) and its own input list.
"""

from __future__ import annotations

import torch

from ..ipadapter_core import enhancer, parsing, tiling
from ..ipadapter_core.embeds import COMBINE_METHODS
from . import base, encoding, host, host_progress, mask_watch
from .apply import IPAdapterEmbeds
from .apply_core import ApplyOptions, adapter_of, apply_embeds, apply_tokens, check_mask, check_model, check_not_face
from .declared import BATCH, OPTIONAL, STANDARD, Declared
from .faceid_embeds import face_tokens
from .model_family import model_layout


def _prepare(model, ipadapter, clip_vision):
    """The adapter, its kind and the CLIP vision to use, after the checks every image node makes."""
    pipeline = adapter_of(ipadapter)
    kind = pipeline.adapter.kind
    check_not_face(kind)
    check_model(model, kind)
    return pipeline, kind, encoding.require_clip_vision(clip_vision or pipeline.clip_vision, kind)


def encode_chunks(clip_vision, kind, image: torch.Tensor, batch_size: int = 0, input: str = "image",
                  bar: host_progress.Progress | None = None) -> torch.Tensor:
    """Encode ``batch_size`` images at a time (0 = all at once): long batches fit in memory, the node shows
    progress per chunk (on ``bar`` when given) and Cancel stops it between chunks."""
    encoding.check_image(image, input)
    return encoding.encode(clip_vision, kind, image, batch_size=batch_size, bar=bar)


def _negative(clip_vision, kind, cond, image_negative, batch_size: int = 0) -> torch.Tensor:
    if image_negative is not None:
        return encode_chunks(clip_vision, kind, image_negative, batch_size, "image_negative")
    return encoding.negative(clip_vision, kind, cond, None)


class _ImageVariant(Declared):
    """Encode the reference image(s), then one application: the shared flow, with two hooks."""

    def run(self, model, ipadapter, image, image_negative=None, attn_mask=None, clip_vision=None,
            encode_batch_size=0, **inputs):
        pipeline, kind, cv = self.prepare(model, ipadapter, clip_vision, inputs)
        opts = self.options(model, **inputs)
        cond = self.encode(cv, kind, image, encode_batch_size, **inputs)
        uncond = _negative(cv, kind, cond, image_negative, encode_batch_size)
        return (apply_embeds(model, pipeline, cond, uncond, opts, attn_mask),)

    def prepare(self, model, ipadapter, clip_vision, inputs: dict):
        return _prepare(model, ipadapter, clip_vision)

    def options(self, model, weight=1.0, weight_type="linear", combine_embeds="concat", start_at=0.0, end_at=1.0,
                embeds_scaling="V only", **_) -> ApplyOptions:
        return ApplyOptions(weight=weight, weight_type=weight_type, combine_embeds=combine_embeds, start_at=start_at,
                            end_at=end_at, embeds_scaling=embeds_scaling, unfold=self.UNFOLD)

    def encode(self, clip_vision, kind, image, batch_size: int, **_) -> torch.Tensor:
        return encode_chunks(clip_vision, kind, image, batch_size)


class IPAdapterBatch(_ImageVariant):
    DISPLAY_NAME = "IPAdapter Batch (Adv.)"
    DESCRIPTION = ("Image i conditions latent i (the last image repeats for extra latents). 'weight' also takes a "
                   "per-frame list from 'IPAdapter Weights'.")
    UNFOLD = True
    REQUIRED = BATCH


class _Precise(_ImageVariant):
    """Precise style/composition: a fixed weight type and one boost input."""

    WEIGHT_TYPE = ""
    BOOST = ""

    def options(self, model, **inputs) -> ApplyOptions:
        opts = super().options(model, **inputs)
        opts.weight_type = self.WEIGHT_TYPE
        setattr(opts, self.BOOST, inputs[self.BOOST])
        return opts


class IPAdapterPreciseStyleTransfer(_Precise):
    DISPLAY_NAME = "IPAdapter Precise Style Transfer"
    DESCRIPTION = ("Style transfer that also steers the negative away from the reference's composition, so the "
                   "layout follows the prompt more closely.")
    REQUIRED = ("image", "weight", "style_boost", "combine_embeds", "start_at", "end_at", "embeds_scaling")
    WEIGHT_TYPE, BOOST = "style transfer precise", "style_boost"


class IPAdapterPreciseStyleTransferBatch(IPAdapterPreciseStyleTransfer):
    DISPLAY_NAME = "IPAdapter Precise Style Transfer Batch"
    UNFOLD = True


class IPAdapterPreciseComposition(_Precise):
    DISPLAY_NAME = "IPAdapter Precise Composition"
    DESCRIPTION = "Composition transfer that also steers the negative away from the reference's style."
    REQUIRED = ("image", "weight", "composition_boost", "combine_embeds", "start_at", "end_at", "embeds_scaling")
    WEIGHT_TYPE, BOOST = "composition precise", "composition_boost"


class IPAdapterPreciseCompositionBatch(IPAdapterPreciseComposition):
    DISPLAY_NAME = "IPAdapter Precise Composition Batch"
    UNFOLD = True


class IPAdapterMS(_ImageVariant):
    DISPLAY_NAME = "IPAdapter Mad Scientist"
    DESCRIPTION = "Set the weight of every UNet layer by hand with layer_weights."
    CATEGORY = "ipadapter/dev"
    REQUIRED = ("image", "weight", "weight_faceidv2", "weight_type", "combine_embeds", "start_at", "end_at",
                "embeds_scaling", "layer_weights")
    OPTIONAL = OPTIONAL + ("insightface",)

    def run(self, model, ipadapter, image, weight_faceidv2=1.0, insightface=None, image_negative=None,
            attn_mask=None, clip_vision=None, **inputs):
        pipeline = adapter_of(ipadapter)
        kind = pipeline.adapter.kind
        if not kind.face:
            return super().run(model, ipadapter, image, image_negative, attn_mask, clip_vision, **inputs)
        check_model(model, kind)  # FaceID: face embeddings (and CLIP of the crops) -> tokens, then the layers
        opts = self.options(model, **inputs)
        cond, uncond, _ = face_tokens(pipeline, kind, image, image_negative, clip_vision, weight_faceidv2, opts,
                                      insightface=insightface, model=model)
        return (apply_tokens(model, pipeline.adapter, cond, uncond, opts, attn_mask),)

    def options(self, model, layer_weights="", **inputs) -> ApplyOptions:
        opts = super().options(model, **inputs)
        layout = model_layout(model)
        if layout is not None:  # transformers: the adapter's block entries (Flux: double, then single blocks)
            layers = range(layout.double + layout.single)
        else:
            layers = (site.transformer_index for site in host.model_sites(model))
        opts.layer_weights = parsing.layer_weights(layer_weights, layers)
        if opts.layer_weights is not None and opts.weight_type not in ("style transfer precise", "composition precise"):
            opts.weight_type = "linear"
        return opts


class IPAdapterClipVisionEnhancer(_ImageVariant):
    DISPLAY_NAME = "IPAdapter ClipVision Enhancer"
    DESCRIPTION = "Adds the encoding of an n x n grid of crops to the full image's, for references with fine detail."
    CATEGORY = "ipadapter/dev"
    REQUIRED = STANDARD + ("enhance_tiles", "enhance_ratio")

    def encode(self, clip_vision, kind, image, batch_size: int, enhance_tiles=1, enhance_ratio=1.0, **_):
        n = enhancer.clamp_tiles(enhance_tiles)
        if n == 1:
            return super().encode(clip_vision, kind, image, batch_size)
        encoding.check_image(image, "image")
        crops = enhancer.split_tiles(image, n)
        crops = crops.reshape(-1, *crops.shape[2:])
        bar = host_progress.progress(encoding.chunk_count(image.shape[0], batch_size)
                                     + encoding.chunk_count(crops.shape[0], batch_size))
        full = encode_chunks(clip_vision, kind, image, batch_size, bar=bar)
        tile_embeds = encode_chunks(clip_vision, kind, crops, batch_size, bar=bar)
        return enhancer.mix(full, enhancer.merge(tile_embeds, n), enhance_ratio, self.UNFOLD)


class IPAdapterClipVisionEnhancerBatch(IPAdapterClipVisionEnhancer):
    DISPLAY_NAME = "IPAdapter ClipVision Enhancer Batch"
    UNFOLD = True
    REQUIRED = BATCH[:-1] + ("enhance_tiles", "enhance_ratio", "encode_batch_size")
    OVERRIDES = {"enhance_ratio": base.float_input(0.5, 0.0, 1.0, 0.05, "Weight of the full-image encoding: "
                                                   "full*ratio + crops*(1-ratio), per image.")}


class IPAdapterStyleComposition(Declared):
    DISPLAY_NAME = "IPAdapter Style & Composition"
    DESCRIPTION = ("Style from one image and composition from another, each at its own layers (SD1.5 and SDXL; "
                   "the incumbent's node was SDXL-only).")
    CATEGORY = "ipadapter/style_composition"
    REQUIRED = ("image_style", "image_composition", "weight_style", "weight_composition", "expand_style",
                "combine_embeds", "start_at", "end_at", "embeds_scaling")
    OVERRIDES = {"combine_embeds": (COMBINE_METHODS, {"default": "average", "tooltip": base.T_COMBINE})}

    def run(self, model, ipadapter, image_style, image_composition, weight_style, weight_composition, expand_style,
            start_at, end_at, embeds_scaling, combine_embeds="concat", image_negative=None, attn_mask=None,
            clip_vision=None):
        pipeline, kind, cv = _prepare(model, ipadapter, clip_vision)
        style = encode_chunks(cv, kind, image_style, input="image_style")
        composition = encode_chunks(cv, kind, image_composition, input="image_composition")
        uncond = _negative(cv, kind, style, image_negative)
        weight_type = "strong style and composition" if expand_style else "style and composition"
        opts = ApplyOptions(weight=weight_style, weight_type=weight_type, combine_embeds=combine_embeds,
                            start_at=start_at, end_at=end_at, embeds_scaling=embeds_scaling, unfold=self.UNFOLD,
                            composition_weight=weight_composition)
        return (apply_embeds(model, pipeline, style, uncond, opts, attn_mask, alt_cond=composition),)


class IPAdapterStyleCompositionBatch(IPAdapterStyleComposition):
    DISPLAY_NAME = "IPAdapter Style & Composition Batch"
    UNFOLD = True
    REQUIRED = tuple(n for n in IPAdapterStyleComposition.REQUIRED if n != "combine_embeds")


class IPAdapterTiled(Declared):
    DISPLAY_NAME = "IPAdapter Tiled"
    DESCRIPTION = ("For large or non-square references: cuts them into 256 px tiles and applies one adapter per "
                   "tile, masked to the tile's part of the picture.")
    CATEGORY = "ipadapter/tiled"
    RETURN_TYPES = ("MODEL", "IMAGE", "MASK")
    RETURN_NAMES = ("MODEL", "tiles", "masks")
    REQUIRED = ("image", "weight", "weight_type", "combine_embeds", "start_at", "end_at", "sharpening",
                "embeds_scaling")
    OVERRIDES = {"weight": base.weight_input(hi=3.0)}

    def run(self, model, ipadapter, image, weight, weight_type, start_at, end_at, sharpening, embeds_scaling,
            combine_embeds="concat", encode_batch_size=0, image_negative=None, attn_mask=None, clip_vision=None):
        pipeline, kind, cv = _prepare(model, ipadapter, clip_vision)
        encoding.check_image(image, "image")
        reference, mask = tiling.prepare(image[..., :3], check_mask(attn_mask), sharpening=sharpening)
        tiles, masks = tiling.cut(reference, mask, tiling.grid_for(reference.shape[1], reference.shape[2]))
        opts = ApplyOptions(weight=weight, weight_type=weight_type, combine_embeds=combine_embeds, start_at=start_at,
                            end_at=end_at, embeds_scaling=embeds_scaling, unfold=self.UNFOLD)
        patched, uncond = model, None
        bar = host_progress.progress(len(tiles) * encoding.chunk_count(tiles[0].shape[0], encode_batch_size))
        for i, (tile, tile_mask) in enumerate(zip(tiles, masks, strict=True)):
            cond = encode_chunks(cv, kind, tile, encode_batch_size, bar=bar)
            if uncond is None:
                uncond = _negative(cv, kind, cond, image_negative, encode_batch_size)
            patched = apply_embeds(patched, pipeline, cond, uncond, opts, tile_mask, clone=i == 0, watch_mask=False)
        # Tile masks place tiles of the reference by design; only the user's own mask is checked.
        mask_watch.watch(patched, check_mask(attn_mask), pipeline.adapter.name)
        return (patched, torch.cat(tiles), torch.cat(masks))


class IPAdapterTiledBatch(IPAdapterTiled):
    DISPLAY_NAME = "IPAdapter Tiled Batch"
    UNFOLD = True
    REQUIRED = ("image", "weight", "weight_type", "start_at", "end_at", "sharpening", "embeds_scaling",
                "encode_batch_size")


class IPAdapterFromParams(Declared):
    DISPLAY_NAME = "IPAdapter from Params"
    DESCRIPTION = "Applies every region of 'IPAdapter Regional Conditioning' (its image, mask, weight and timing)."
    CATEGORY = "ipadapter/params"
    REQUIRED = ("ipadapter_params", "combine_embeds", "embeds_scaling")
    OPTIONAL = ("image_negative", "clip_vision")

    def run(self, model, ipadapter, ipadapter_params, combine_embeds, embeds_scaling, image_negative=None,
            clip_vision=None):
        pipeline, kind, cv = _prepare(model, ipadapter, clip_vision)
        patched, uncond = model, None
        for i, region in enumerate(parsing.params_entries(ipadapter_params)):
            cond = encode_chunks(cv, kind, region.image)
            if uncond is None:
                uncond = _negative(cv, kind, cond, image_negative)
            opts = ApplyOptions(weight=region.weight, weight_type=region.weight_type, combine_embeds=combine_embeds,
                                start_at=region.start_at, end_at=region.end_at, embeds_scaling=embeds_scaling)
            patched = apply_embeds(patched, pipeline, cond, uncond, opts, region.attn_mask, clone=i == 0)
        return (patched,)


class IPAdapterEmbedsBatch(IPAdapterEmbeds):
    DISPLAY_NAME = "IPAdapter Embeds Batch"
    DESCRIPTION = "Precomputed embeds, one per latent: embeds row i conditions latent i."
    UNFOLD = True


NODES: dict[str, type] = {
    "IPAdapterBatch": IPAdapterBatch,
    "IPAdapterTiled": IPAdapterTiled,
    "IPAdapterTiledBatch": IPAdapterTiledBatch,
    "IPAdapterEmbedsBatch": IPAdapterEmbedsBatch,
    "IPAdapterStyleComposition": IPAdapterStyleComposition,
    "IPAdapterStyleCompositionBatch": IPAdapterStyleCompositionBatch,
    "IPAdapterMS": IPAdapterMS,
    "IPAdapterClipVisionEnhancer": IPAdapterClipVisionEnhancer,
    "IPAdapterClipVisionEnhancerBatch": IPAdapterClipVisionEnhancerBatch,
    "IPAdapterFromParams": IPAdapterFromParams,
    "IPAdapterPreciseStyleTransfer": IPAdapterPreciseStyleTransfer,
    "IPAdapterPreciseStyleTransferBatch": IPAdapterPreciseStyleTransferBatch,
    "IPAdapterPreciseComposition": IPAdapterPreciseComposition,
    "IPAdapterPreciseCompositionBatch": IPAdapterPreciseCompositionBatch,
}
