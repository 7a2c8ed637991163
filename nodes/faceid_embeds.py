"""FaceID reference images -> image tokens: face analysis, the CLIP branch of the Plus kinds, projection.

``face_tokens`` is shared by the FaceID nodes and by any apply node (Advanced, MS ...) that receives
a FaceID adapter with a face model in its pipeline; the tokens then go through ``apply_tokens``.
"""

from __future__ import annotations

import logging
import os

import torch

from ..ipadapter_core.attention import fit_rows
from ..ipadapter_core.embeds import check_finite, combine
from ..ipadapter_core.errors import IPAdapterError
from ..ipadapter_core.kinds import ModelKind
from . import encoding, host, host_progress
from .apply_options import ApplyOptions
from .pipeline import Pipeline

log = logging.getLogger("ipadapter_suite.faceid")

PLUS_VERSIONS = ["auto (from file name)", "v2 (shortcut)", "v1 (no shortcut)"]


def plus_shortcut(pipeline: Pipeline, kind: ModelKind, choice: str = PLUS_VERSIONS[0]) -> tuple[bool, str | None]:
    """Whether FaceID-Plus uses the v2 shortcut, and a note when only the file name could tell.

    v1 and v2 files have identical layouts, so content cannot decide: an explicit choice wins, then
    the FaceID preset that loaded the file, then 'plusv2' in the file name.
    """
    if kind.shortcut:
        return True, None
    if not kind.plus_v2_possible:
        return False, None
    if choice.startswith("v2"):
        return True, None
    if choice.startswith("v1"):
        return False, None
    if pipeline.faceid_v2 is not None:
        return pipeline.faceid_v2, None
    name = os.path.basename(pipeline.adapter_file or pipeline.adapter.name)
    v2 = "plusv2" in name.lower()
    note = (f"FaceID-Plus v1 and v2 files have the same layout, so the version comes from the file name: "
            f"'{name}' {'contains' if v2 else 'does not contain'} 'plusv2' -> "
            f"{'v2 (weight_faceidv2 scales the CLIP branch)' if v2 else 'v1 (weight_faceidv2 has no effect)'}. "
            "Set faceid_plus_version to choose explicitly.")
    return v2, note


def face_model_of(pipeline: Pipeline, insightface):
    face_model = insightface if insightface is not None else pipeline.insightface
    if face_model is None:
        raise IPAdapterError(
            f"This is a FaceID adapter ({pipeline.adapter.kind.label}); it needs a face model (InsightFace) and "
            "none reached this node.",
            expected="an INSIGHTFACE input, or a pipeline from 'IPAdapter Unified Loader FaceID'",
            fix="Load the adapter with 'IPAdapter Unified Loader FaceID', or connect 'IPAdapter InsightFace "
            "Loader' to the insightface input of 'IPAdapter FaceID'.", input="insightface",
        )
    if not hasattr(face_model, "analyze_batch"):
        raise IPAdapterError(f"The insightface input is a {type(face_model).__name__}, not this pack's face model.",
                             expected="the output of 'IPAdapter InsightFace Loader'",
                             fix="Connect 'IPAdapter InsightFace Loader' (other packs' INSIGHTFACE values differ).",
                             input="insightface")
    return face_model


def analyze(face_model, image: torch.Tensor, size: int, select: str, input: str):
    """``analyze_batch`` with the node's progress bar, and Cancel checked between pictures."""
    return face_model.analyze_batch(image, size, select, input, progress=host_progress.reporter())


def crop_size(kind: ModelKind, clip_vision) -> int:
    """Face crops are aligned at the encoder's input size (224, 336 for Kolors) so nothing is rescaled."""
    if clip_vision is not None:
        return int(getattr(clip_vision, "image_size", kind.image_size))
    return kind.image_size


def _clip_weight(weight_faceidv2, unfold: bool, rows: int):
    if isinstance(weight_faceidv2, (list, tuple, torch.Tensor)):
        values = torch.as_tensor(weight_faceidv2, dtype=torch.float32).reshape(-1)
        if values.numel() == 0:
            raise IPAdapterError("weight_faceidv2 is an empty list.", expected="a number or per-frame list",
                                 fix="Check the node feeding weight_faceidv2.", input="weight_faceidv2")
        return fit_rows(values, rows).reshape(-1, 1, 1) if unfold else float(values[0])
    return float(weight_faceidv2)


def _project(adapter, kind: ModelKind, ids: torch.Tensor, clip: torch.Tensor | None, clip_weight, shortcut: bool):
    if kind.kind == "faceid_portrait_unnorm":  # a Resampler over one raw face token
        return adapter.project(ids.unsqueeze(1))
    if clip is not None:
        return adapter.project(ids, clip, clip_weight=clip_weight, shortcut=shortcut)
    return adapter.project(ids)


def kolors_projection(model) -> tuple[torch.Tensor, torch.Tensor]:
    """The UNet's encoder_hid_proj (weight, bias), checked before any face or CLIP work is done."""
    proj = host.encoder_hid_proj(model) if model is not None else None
    if proj is None:
        raise IPAdapterError(
            "Kolors FaceID needs the UNet's encoder_hid_proj (ChatGLM 4096 -> 2048), and this model has none: "
            "ComfyUI's own loaders drop it.",
            expected="a Kolors UNet loaded by a loader that keeps encoder_hid_proj (e.g. MinusZone's "
            "'MZ_KolorsUNETLoaderV2')", fix="Load the Kolors UNet with such a loader and connect its MODEL.",
            input="model",
        )
    return proj


def kolors_context(tokens: torch.Tensor, proj: tuple[torch.Tensor, torch.Tensor], weight_kolors: float):
    """Kolors FaceID tokens live in ChatGLM's 4096 space: map them with the UNet's encoder_hid_proj."""
    weight, bias = proj
    if weight.shape[1] != tokens.shape[-1]:
        raise IPAdapterError(f"The model's encoder_hid_proj reads {weight.shape[1]}-wide inputs, the adapter makes "
                             f"{tokens.shape[-1]}-wide tokens.", expected="a Kolors UNet (4096 -> 2048)",
                             fix="Use the Kolors base model with this adapter.", input="model")
    return weight_kolors * (tokens @ weight.float().T.to(tokens.device) + bias.float().to(tokens.device))


def face_tokens(pipeline: Pipeline, kind: ModelKind, image: torch.Tensor, image_negative, clip_vision,
                weight_faceidv2, opts: ApplyOptions, *, insightface=None, model=None, weight_kolors: float = 1.0,
                plus_version: str = PLUS_VERSIONS[0], face_select: str = "largest",
                notes: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(cond tokens, uncond tokens, aligned face crops) for a FaceID adapter.

    Uncond is the projection of a zero face embedding (the reference's), or of ``image_negative``'s
    faces; the Plus kinds' CLIP branch uses a black image's (or the negative crops') hidden states.
    ``model`` is needed for Kolors FaceID only (its encoder_hid_proj). Notes for the user are
    appended to ``notes``.
    """
    adapter = pipeline.adapter
    hid_proj = kolors_projection(model) if kind.kind == "kolors_faceid_plus" else None
    encoding.check_image(image, "image")
    face_model = face_model_of(pipeline, insightface)
    cv = encoding.require_clip_vision(clip_vision or pipeline.clip_vision, kind) if kind.uses_hidden_states else None
    size = crop_size(kind, cv)
    faces = analyze(face_model, image, size, face_select, "image")
    crops = faces.crops()
    cond_ids = faces.embeddings(kind.face_embedding or "normed")
    neg_crops = None
    if image_negative is not None:
        encoding.check_image(image_negative, "image_negative")
        negatives = analyze(face_model, image_negative, size, face_select, "image_negative")
        uncond_ids, neg_crops = negatives.embeddings(kind.face_embedding or "normed"), negatives.crops()
    else:
        uncond_ids = torch.zeros_like(cond_ids[:1])
    cond_clip = uncond_clip = None
    if cv is not None:
        cond_clip = encoding.encode(cv, kind, crops)
        uncond_clip = encoding.negative(cv, kind, cond_clip, neg_crops)
    check_finite(cond_ids, "face embedding", "image")
    if not opts.unfold:
        cond_ids = combine(cond_ids, opts.combine_embeds)
        cond_clip = combine(cond_clip, opts.combine_embeds) if cond_clip is not None else None
        if opts.combine_embeds != "concat":
            uncond_ids = uncond_ids[:1]
            uncond_clip = uncond_clip[:1] if uncond_clip is not None else None
    rows = cond_ids.shape[0]
    uncond_ids = fit_rows(uncond_ids, rows)
    uncond_clip = fit_rows(uncond_clip, rows) if uncond_clip is not None else None
    shortcut, note = plus_shortcut(pipeline, kind, plus_version) if cv is not None else (False, None)
    if note:
        log.info(note)
        if notes is not None:
            notes.append(note)
    clip_weight = _clip_weight(weight_faceidv2, opts.unfold, rows)
    cond = _project(adapter, kind, cond_ids, cond_clip, clip_weight, shortcut)
    uncond = _project(adapter, kind, uncond_ids, uncond_clip, clip_weight, shortcut)
    if hid_proj is not None:
        cond, uncond = kolors_context(cond, hid_proj, weight_kolors), kolors_context(uncond, hid_proj, weight_kolors)
    return cond, uncond, crops
