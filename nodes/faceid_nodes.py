"""FaceID nodes: InsightFace loader, FaceID unified loader (with the paired LoRA), FaceID apply nodes."""

from __future__ import annotations

import logging
import os

import torch

from ..ipadapter_core import config, lora
from ..ipadapter_core.errors import IPAdapterError
from ..ipadapter_core.face import PACKS, PROVIDERS, SELECT, load_face_model
from ..ipadapter_core.presets import find_file, not_found
from . import base, host, host_progress
from .apply_core import ApplyOptions, adapter_of, apply_images, apply_tokens, check_model
from .faceid_embeds import PLUS_VERSIONS, face_tokens
from .host_paths import pack_name
from .loaders import model_family
from .pipeline import CLIP_VISIONS, Pipeline, load_adapter

log = logging.getLogger("ipadapter_suite.faceid")
host.register_insightface_folder()

DOCS = "docs/faceid.md"
LORA_SOURCES = ["lora file (models/loras)", "embedded in the adapter file", "none"]
_FACE_MODELS: dict[tuple, object] = {}

T_PROVIDER = ("Where InsightFace runs. A choice this onnxruntime build lacks falls back to CPU with a warning; "
              "the provider actually used is reported.")
T_INSIGHTFACE = "Face model from 'IPAdapter InsightFace Loader'; overrides the unified FaceID loader's."
T_FACEIDV2 = ("FaceID-Plus v2 only: weight of the CLIP (face structure) branch added to the identity tokens. "
              "0 = identity tokens only. Other FaceID models ignore it.")
T_PLUS_VERSION = ("FaceID-Plus v1 and v2 files have the same layout, so the file cannot tell which it is. 'auto' "
                  "uses the FaceID preset, else 'plusv2' in the file name; pick v1/v2 to decide explicitly.")
T_SELECT = "Which face to use when a picture shows several: the largest (default) or the most confident detection."


def face_model(pack: str, provider: str):
    """A loaded InsightFace pack, shared by every node asking for the same pack and provider."""
    pack = pack_name(pack)  # a prompt may carry any string here: never a path
    if provider not in PROVIDERS:
        raise IPAdapterError(f"'{str(provider)[:100]}' is not an InsightFace provider.", input="provider",
                             expected=", ".join(PROVIDERS), fix="Pick the provider from the list.")
    roots = host.insightface_roots()
    key = (tuple(roots), pack, provider)
    if key not in _FACE_MODELS:
        _FACE_MODELS[key] = load_face_model(roots, pack, provider)
    return _FACE_MODELS[key]


def with_notes(result: tuple, notes: list[str]):
    """Show notes (warnings) under the node in the UI and in the console; plain outputs otherwise."""
    if not notes:
        return result
    for note in notes:
        (log.warning if note.startswith("WARNING") or "not available" in note else log.info)(note)
    return {"ui": {"text": list(notes)}, "result": result}


class IPAdapterInsightFaceLoader(base.Node):
    DISPLAY_NAME = "IPAdapter InsightFace Loader"
    DESCRIPTION = "Load an InsightFace pack (detector + recognizer only) from models/insightface for FaceID."
    CATEGORY = "ipadapter/loaders"
    RETURN_TYPES = ("INSIGHTFACE",)
    RETURN_NAMES = ("INSIGHTFACE",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "provider": (PROVIDERS, {"tooltip": T_PROVIDER}),
            "model_name": (PACKS, {"tooltip": "InsightFace pack in models/insightface/models/: buffalo_l for the "
                                   "h94 FaceID models, antelopev2 for Kolors FaceID."}),
        }}

    def run(self, provider, model_name):
        model = face_model(model_name, provider)
        return with_notes((model,), list(model.warnings))


def _faceid_preset(preset: str, family: str) -> tuple[dict, dict]:
    presets = config.load_config()["faceid_presets"]
    if preset not in presets:
        raise IPAdapterError(f"Unknown FaceID preset '{preset}'.", expected=", ".join(presets),
                             fix="Pick a preset from the list.", input="preset")
    entry = presets[preset]
    fam = entry.get(family)
    if fam is None or "unsupported" in fam:
        raise IPAdapterError(f"The preset '{preset}' cannot be used with this checkpoint: "
                             f"{fam['unsupported'] if fam else 'no file for ' + family}",
                             expected="a preset available for this base model", fix="Pick another preset.",
                             input="preset")
    return entry, fam


def _find(folder: str, what: str, patterns, file: str, url: str) -> str:
    names = host.list_files(folder)
    found = find_file(names, patterns)
    if found is None:
        raise not_found(what, folder, host.folder_paths_for(folder), names, patterns, file, url)
    return host.full_path(folder, found)


def paired_lora(adapter, fam: dict) -> tuple[str | None, str]:
    """The LoRA file paired with the adapter: by content first, then by the preset's name patterns."""
    names = host.list_files("loras")
    paths = {n: host.full_path("loras", n) for n in names}
    ia = adapter.weights.ip_adapter
    widths = lora.adapter_widths(ia)
    context = adapter.kind.context_dim
    layouts: dict[str, lora.LoraLayout | None] = {}
    exact: set[str] = set()
    embedded_key, _ = lora.first_block_key()
    # One step per file (its header, and one tensor when its layout fits): a folder of large LoRAs on a slow
    # disk takes a while, so the node shows progress and Cancel stops between files.
    for name in host_progress.each(names, len(names)):
        shapes = host.lora_shapes(paths[name])
        lay = layouts[name] = lora.describe_lora(shapes) if shapes else None
        if embedded_key not in ia or lay is None or not lora.fits_adapter(lay, context, widths):
            continue
        key = lora.kohya_first_block(shapes)
        if key and torch.equal(host.lora_tensor(paths[name], key).float(), ia[embedded_key].float()):
            exact.add(name)
    by_name = [n for pattern in fam.get("lora_patterns", []) for n in sorted(names) if _search(pattern, n)]
    choice = lora.choose_lora(layouts, context, widths, by_name, exact)
    return (paths[choice.name], choice.reason) if choice else (None, "")


def _search(pattern: str, name: str) -> bool:
    import re

    return re.search(pattern, name, re.IGNORECASE) is not None


class IPAdapterUnifiedLoaderFaceID(base.Node):
    DISPLAY_NAME = "IPAdapter Unified Loader FaceID"
    DESCRIPTION = ("Pick a FaceID preset: finds the adapter for your checkpoint's family, its paired LoRA (by "
                   "content), the CLIP vision it needs and the InsightFace pack.")
    CATEGORY = "ipadapter/faceid"
    RETURN_TYPES = ("MODEL", "IPADAPTER")
    RETURN_NAMES = ("MODEL", "ipadapter")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": base.MODEL,
                "preset": (list(config.load_config()["faceid_presets"]), {"tooltip": "Which FaceID adapter; the "
                           "file is chosen for the model's family (SD1.5 or SDXL)."}),
                "lora_strength": base.float_input(0.6, 0.0, 1.0, 0.01, "Strength of the FaceID LoRA applied to the "
                                                  "model (FaceID and FaceID-Plus need it). 0 = no LoRA."),
                "provider": (PROVIDERS, {"tooltip": T_PROVIDER}),
            },
            "optional": {
                "ipadapter": ("IPADAPTER", {"tooltip": "Chain loaders: encoders already loaded are reused."}),
                "lora_source": (LORA_SOURCES, {"tooltip": "Where the FaceID LoRA comes from: the paired file in "
                                "models/loras (found by content), the copy inside the FaceID .bin (the reference "
                                "implementation's way, no second file), or none."}),
            },
        }

    def run(self, model, preset, lora_strength, provider, ipadapter=None, lora_source=LORA_SOURCES[0]):
        family = model_family(model)
        entry, fam = _faceid_preset(preset, family)
        chained = ipadapter if isinstance(ipadapter, Pipeline) else Pipeline()
        path = _find(host.FOLDER, "FaceID IP-Adapter", fam["patterns"], fam["file"], fam["url"])
        adapter = load_adapter(path)
        if adapter.kind.kind != entry["kind"]:
            raise IPAdapterError(
                f"'{os.path.basename(path)}' matches the preset's file name, but its content is a "
                f"{adapter.kind.label} adapter, not the {entry['kind']} kind '{preset}' needs.",
                expected=fam["file"], fix=f"Replace the file with {fam['file']} from {fam['url']}.", input="preset")
        clip_vision, cv_path = chained.clip_vision, chained.clip_vision_file
        if adapter.kind.uses_hidden_states:
            encoder = config.encoders()[entry.get("encoder", "vit-h")]
            if clip_vision is None or not (cv_path and find_file([os.path.basename(cv_path)], [encoder["pattern"]])):
                cv_path = _find("clip_vision", "CLIP vision", [encoder["pattern"]], encoder["file"], encoder["url"])
                clip_vision = CLIP_VISIONS.get(cv_path, host.load_clip_vision)
        faces = face_model(entry.get("pack", "buffalo_l"), provider)
        notes = list(faces.warnings) + [f"InsightFace '{faces.pack}' runs on {faces.provider_used}."]
        model, lora_note = self._lora(model, adapter, fam, lora_strength, lora_source)
        if lora_note:
            notes.append(lora_note)
        pipeline = chained.with_(adapter=adapter, adapter_file=path, clip_vision=clip_vision,
                                 clip_vision_file=cv_path, insightface=faces, faceid_v2=entry.get("plus_v2"),
                                 notes=tuple(notes))
        return with_notes((model, pipeline), notes)

    @staticmethod
    def _lora(model, adapter, fam: dict, strength: float, source: str):
        kind = adapter.kind
        if not kind.needs_lora:
            return model, None
        if strength == 0 or source == "none":
            return model, (f"{kind.label} was trained with a LoRA and runs without it (lora_strength 0 or source "
                           f"'none'): likeness will be weaker. See {DOCS}.")
        if source.startswith("embedded"):
            converted = lora.convert_embedded_lora(adapter.weights.ip_adapter, host.transformer_block_paths(model))
            return host.apply_lora(model, converted, strength), (
                f"Applied the LoRA embedded in {adapter.name} at strength {strength:g}.")
        path, reason = paired_lora(adapter, fam)
        if path is None:
            return model, (
                f"WARNING: no LoRA for {kind.label} was found in models/loras, so it runs without its LoRA (weaker "
                f"likeness). Download {fam.get('lora_file', 'the paired LoRA')} ({fam.get('lora_url', '')}) into "
                f"models/loras, or set lora_source to 'embedded in the adapter file'. See {DOCS}.")
        patched = host.apply_lora(model, host.load_lora_file(path), strength)
        return patched, f"Applied LoRA {os.path.basename(path)} at strength {strength:g} ({reason})."


def _faceid_inputs(kolors: bool = False) -> dict:
    required = {
        "model": base.MODEL,
        "ipadapter": base.IPADAPTER,
        "image": ("IMAGE", {"tooltip": "Photo(s) of the face. Several images: one face each (concat keeps them "
                            "all, e.g. for Portrait)."}),
        "weight": base.weight_input(hi=3.0),
        "weight_faceidv2": base.float_input(1.0, -1.0, 5.0, 0.05, T_FACEIDV2),
    }
    if kolors:
        required["weight_kolors"] = base.float_input(1.0, -1.0, 5.0, 0.05, "Scales the UNet's encoder_hid_proj "
                                                     "that maps Kolors FaceID tokens into the UNet's context.")
    required.update({"weight_type": base.WEIGHT_TYPE, "combine_embeds": base.COMBINE, "start_at": base.START_AT,
                     "end_at": base.END_AT, "embeds_scaling": base.SCALING})
    optional = {
        "image_negative": ("IMAGE", {"tooltip": "Optional face(s) to move away from; default: a zero face "
                                     "embedding (the reference implementation's)."}),
        "attn_mask": base.ATTN_MASK,
        "clip_vision": base.CLIP_VISION,
        "insightface": ("INSIGHTFACE", {"tooltip": T_INSIGHTFACE}),
        "faceid_plus_version": (PLUS_VERSIONS, {"tooltip": T_PLUS_VERSION}),
        "face_select": (SELECT, {"tooltip": T_SELECT}),
    }
    return {"required": required, "optional": optional}


class IPAdapterFaceID(base.Node):
    DISPLAY_NAME = "IPAdapter FaceID"
    DESCRIPTION = "Apply a FaceID adapter: the face's identity (InsightFace) and, for Plus models, its look (CLIP)."
    CATEGORY = "ipadapter/faceid"
    RETURN_TYPES = ("MODEL", "IMAGE")
    RETURN_NAMES = ("MODEL", "face_image")
    OUTPUT_TOOLTIPS = ("The patched model.", "The aligned face crops that were used (the input image for non-FaceID "
                       "adapters).")
    UNFOLD = False
    KOLORS = False

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return _faceid_inputs(cls.KOLORS)

    def run(self, model, ipadapter, image, weight, weight_faceidv2, weight_type, combine_embeds, start_at, end_at,
            embeds_scaling, weight_kolors=1.0, image_negative=None, attn_mask=None, clip_vision=None,
            insightface=None, faceid_plus_version=PLUS_VERSIONS[0], face_select=SELECT[0]):
        pipeline = adapter_of(ipadapter)
        kind = pipeline.adapter.kind
        opts = ApplyOptions(weight=weight, weight_type=weight_type, combine_embeds=combine_embeds,
                            start_at=start_at, end_at=end_at, embeds_scaling=embeds_scaling, unfold=self.UNFOLD)
        if not kind.face:  # the incumbent accepts any adapter here
            return (apply_images(model, pipeline, image, opts, image_negative, attn_mask, clip_vision), image)
        check_model(model, kind)
        notes: list[str] = []
        cond, uncond, crops = face_tokens(
            pipeline, kind, image, image_negative, clip_vision, weight_faceidv2, opts, insightface=insightface,
            model=model, weight_kolors=weight_kolors, plus_version=faceid_plus_version, face_select=face_select,
            notes=notes)
        if kind.needs_lora and not host.has_attention_lora(model):
            notes.append(f"WARNING: {kind.label} was trained with a LoRA and this model has none applied (weaker "
                         f"likeness). Use 'IPAdapter Unified Loader FaceID' (it applies the LoRA) or a 'LoraLoader"
                         f"ModelOnly' with the paired LoRA. See {DOCS}.")
        patched = apply_tokens(model, pipeline.adapter, cond, uncond, opts, attn_mask)
        return with_notes((patched, crops), notes)


class IPAAdapterFaceIDBatch(IPAdapterFaceID):
    DISPLAY_NAME = "IPAdapter FaceID Batch"
    DESCRIPTION = "FaceID in batch mode: face i conditions latent i."
    UNFOLD = True


class IPAdapterFaceIDKolors(IPAdapterFaceID):
    DISPLAY_NAME = "IPAdapter FaceID Kolors"
    DESCRIPTION = "Kolors FaceID-Plus: needs a Kolors UNet whose loader keeps encoder_hid_proj."
    KOLORS = True


NODES = {
    "IPAdapterInsightFaceLoader": IPAdapterInsightFaceLoader,
    "IPAdapterUnifiedLoaderFaceID": IPAdapterUnifiedLoaderFaceID,
    "IPAdapterFaceID": IPAdapterFaceID,
    "IPAAdapterFaceIDBatch": IPAAdapterFaceIDBatch,
    "IPAdapterFaceIDKolors": IPAdapterFaceIDKolors,
}
