"""The shipped example workflows (``workflows/*.json`` + ``.jpg``), described once and generated.

``python -m tests.host.example_workflows`` (with ComfyUI at $COMFYUI_PATH or ~/ComfyUI) rewrites
the files listed in ``EXAMPLES`` (or only the names given as arguments); the basic/plus/FaceID examples
are maintained by hand. Each graph uses the demo reference picture name and carries
``properties.models`` download hints on its loaders. Most are SD1.5; the ``DIT`` ones show the
transformer adapters on Flux.1-dev and SD3.5-Large with ComfyUI's own split-file loaders.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.host.workflow_builder import N, build, save, thumbnail

REPO = Path(__file__).resolve().parents[2]
REFERENCE = "ipadapter_demo_reference.png"
HF = "https://huggingface.co/h94/IP-Adapter/resolve/main/models/"
CKPT = "v1-5-pruned-emaonly-fp16.safetensors"
CKPT_HINT = [{"name": CKPT, "directory": "checkpoints", "url": "https://huggingface.co/Comfy-Org/stable-diffusion-v1"
              "-5-archive/resolve/main/v1-5-pruned-emaonly-fp16.safetensors?download=true"}]
CLIP_HINT = {"name": "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors", "url": HF + "image_encoder/model.safetensors",
             "directory": "clip_vision"}
STANDARD = [{"name": "ip-adapter_sd15.safetensors", "url": HF + "ip-adapter_sd15.safetensors",
             "directory": "ipadapter"}, CLIP_HINT]
PLUS = [{"name": "ip-adapter-plus_sd15.safetensors", "url": HF + "ip-adapter-plus_sd15.safetensors",
         "directory": "ipadapter"}, CLIP_HINT]
NEGATIVE = "blurry, noisy, lowres, jpeg artifacts, distorted, malformed"


def common(prompt: str, model_from: tuple[int, int | str], batch: int = 1, x: int = 1180) -> tuple[list, list]:
    """Checkpoint, prompts, latent, sampler, decode, save; the sampler's model comes from ``model_from``."""
    nodes = [
        N(1, "CheckpointLoaderSimple", (40, 320), {"ckpt_name": CKPT}, models=CKPT_HINT, size=(315, 98)),
        N(5, "CLIPTextEncode", (420, 420), {"text": prompt}, title="Positive prompt", size=(400, 150)),
        N(6, "CLIPTextEncode", (420, 620), {"text": NEGATIVE}, title="Negative prompt", size=(400, 150)),
        N(7, "EmptyLatentImage", (420, 820), {"width": 512, "height": 512, "batch_size": batch}, size=(315, 106)),
        N(8, "KSampler", (x, 60), {"seed": 42, "steps": 20, "cfg": 6.5, "sampler_name": "dpmpp_2m",
                                   "scheduler": "karras"}, size=(315, 262)),
        N(9, "VAEDecode", (x + 360, 60), size=(210, 46)),
        N(10, "SaveImage", (x + 360, 160), {"filename_prefix": "IPAdapterSuite"}, size=(420, 460)),
    ]
    links = [(1, "CLIP", 5, "clip"), (1, "CLIP", 6, "clip"), (5, 0, 8, "positive"), (6, 0, 8, "negative"),
             (7, 0, 8, "latent_image"), (8, 0, 9, "samples"), (1, "VAE", 9, "vae"), (9, 0, 10, "images"),
             (model_from[0], model_from[1], 8, "model")]
    return nodes, links


def note(node_id: int, text: str) -> N:
    return N(node_id, "Note", (40, 60), [text], size=(340, 200))


def loader(node_id: int, preset: str, hints: list[dict], pos=(420, 60)) -> N:
    return N(node_id, "IPAdapterUnifiedLoader", pos, {"preset": preset}, models=hints, size=(315, 78))


def image(node_id: int, pos=(40, 520), name: str = REFERENCE, title: str | None = None) -> N:
    return N(node_id, "LoadImage", pos, {"image": name}, title=title, size=(315, 314))


def style_transfer() -> tuple[list, list]:
    nodes, links = common("a lighthouse on a cliff at dusk, high quality", (4, 0))
    nodes += [loader(2, "PLUS (high strength)", PLUS), image(3),
              N(4, "IPAdapterAdvanced", (800, 60), {"weight": 1.0, "weight_type": "style transfer"}, size=(315, 278)),
              note(11, "Style transfer (SD1.5, PLUS): the 'style transfer' weight type feeds the reference only to "
                       "the layers that carry colour and texture, so the prompt keeps the subject and layout.")]
    links += [(1, "MODEL", 2, "model"), (2, "model", 4, "model"), (2, "ipadapter", 4, "ipadapter"),
              (3, "IMAGE", 4, "image")]
    return nodes, links


def style_composition() -> tuple[list, list]:
    nodes, links = common("a small house in a forest clearing, high quality", (4, 0))
    nodes += [loader(2, "PLUS (high strength)", PLUS), image(3, title="Style reference"),
              image(12, (40, 860), title="Composition reference"),
              N(4, "IPAdapterStyleComposition", (800, 60), {"weight_style": 1.0, "weight_composition": 0.8},
                size=(315, 318)),
              note(11, "Style & composition: one picture gives the look (style layers), the other the layout "
                       "(composition layers). Use the same picture twice to keep both.")]
    links += [(1, "MODEL", 2, "model"), (2, "model", 4, "model"), (2, "ipadapter", 4, "ipadapter"),
              (3, "IMAGE", 4, "image_style"), (12, "IMAGE", 4, "image_composition")]
    return nodes, links


def regional() -> tuple[list, list]:
    nodes, links = common("two paintings side by side in a gallery, high quality", (15, 0))
    nodes += [
        loader(2, "STANDARD (medium strength)", STANDARD), image(3, title="Left reference"),
        image(12, (40, 860), title="Right reference"),
        N(20, "SolidMask", (40, 1200), {"value": 0.0, "width": 512, "height": 512}, title="Canvas (black)",
          size=(315, 106)),
        N(21, "SolidMask", (40, 1340), {"value": 1.0, "width": 256, "height": 512}, title="Half (white)",
          size=(315, 106)),
        N(22, "MaskComposite", (420, 1200), {"x": 0, "y": 0, "operation": "add"}, title="Left mask",
          size=(315, 130)),
        N(23, "InvertMask", (420, 1360), title="Right mask", size=(210, 26)),
        N(13, "IPAdapterRegionalConditioning", (800, 400), {"image_weight": 0.8}, title="Left region",
          size=(315, 220)),
        N(14, "IPAdapterRegionalConditioning", (800, 660), {"image_weight": 0.8}, title="Right region",
          size=(315, 220)),
        N(16, "IPAdapterCombineParams", (800, 920), size=(250, 120)),
        N(15, "IPAdapterFromParams", (800, 60), size=(315, 140)),
        note(11, "Regional prompting: each reference acts only inside its mask (left / right half). Masks "
                 "are drawn here with core mask nodes; paint your own with 'Load Image (as Mask)'."),
    ]
    links += [(1, "MODEL", 2, "model"), (20, 0, 22, "destination"), (21, 0, 22, "source"), (22, 0, 23, "mask"),
              (3, "IMAGE", 13, "image"), (22, 0, 13, "mask"), (12, "IMAGE", 14, "image"), (23, 0, 14, "mask"),
              (13, 0, 16, "params_1"), (14, 0, 16, "params_2"), (2, "model", 15, "model"),
              (2, "ipadapter", 15, "ipadapter"), (16, 0, 15, "ipadapter_params")]
    return nodes, links


def batch_schedule() -> tuple[list, list]:
    nodes, links = common("an animation frame of a windmill in a field, high quality", (4, 0), batch=4)
    nodes += [
        loader(2, "STANDARD (medium strength)", STANDARD), image(3, title="Frame reference A"),
        image(12, (40, 860), title="Frame reference B"),
        N(13, "ImageBatch", (420, 1000), title="References", size=(210, 46)),
        N(14, "IPAdapterWeights", (800, 420), {"weights": "1.0, 0.2", "timing": "linear", "frames": 4},
          size=(315, 260)),
        N(4, "IPAdapterBatch", (800, 60), {"weight": 1.0}, size=(315, 300)),
        note(11, "Batch / animation: one latent per frame (batch 4). 'IPAdapter Weights' turns '1.0, 0.2' into "
                 "a per-frame weight schedule; 'IPAdapter Batch' gives frame i its own reference and weight."),
    ]
    links += [(1, "MODEL", 2, "model"), (3, "IMAGE", 13, "image1"), (12, "IMAGE", 13, "image2"),
              (13, 0, 14, "image"), (2, "model", 4, "model"), (2, "ipadapter", 4, "ipadapter"),
              (14, "image_1", 4, "image"), (14, "weights", 4, "weight")]
    return nodes, links


def embeds_save() -> tuple[list, list]:
    nodes, links = common("a bowl of fruit on a wooden table, high quality", (4, 0))
    nodes += [
        loader(2, "STANDARD (medium strength)", STANDARD), image(3),
        N(12, "IPAdapterEncoder", (800, 420), {"weight": 1.0}, size=(315, 120)),
        N(13, "IPAdapterSaveEmbeds", (800, 600), {"filename_prefix": "IP_embeds"}, size=(315, 80)),
        N(4, "IPAdapterEmbeds", (800, 60), {"weight": 0.8}, size=(315, 250)),
        note(11, "Encode once, reuse: the encoder's embeds are applied and saved to output/IP_embeds_00001_"
                 ".safetensors. Then open 'embeds_load_sd15': its Load Embeds node picks that file (listed as "
                 "'IP_embeds_00001_.safetensors [output]') to reuse the embeds without the reference picture or "
                 "CLIP vision. Press R first if the list does not show it yet."),
    ]
    links += [(1, "MODEL", 2, "model"), (2, "ipadapter", 12, "ipadapter"), (3, "IMAGE", 12, "image"),
              (12, "pos_embed", 13, "embeds"), (2, "model", 4, "model"), (2, "ipadapter", 4, "ipadapter"),
              (12, "pos_embed", 4, "pos_embed"), (12, "neg_embed", 4, "neg_embed")]
    return nodes, links


EMBEDS_FILE = "IP_embeds_00001_.safetensors [output]"  # what embeds_save_sd15 writes, as Load Embeds lists it


def embeds_load() -> tuple[list, list]:
    nodes, links = common("a bowl of fruit on a wooden table, high quality", (4, 0))
    nodes += [
        loader(2, "STANDARD (medium strength)", STANDARD),
        N(12, "IPAdapterLoadEmbeds", (420, 200), {"embeds": EMBEDS_FILE}, size=(315, 60)),
        N(4, "IPAdapterEmbeds", (800, 60), {"weight": 0.8}, size=(315, 250)),
        note(11, "Apply saved embeds: run 'embeds_save_sd15' first; its file is picked here (marked [output]). "
                 "Any other file saved by 'IPAdapter Save Embeds', or a ComfyUI_IPAdapter_plus .ipadpt file put "
                 "in the input folder, can be picked in 'IPAdapter Load Embeds' too (press R to refresh the list)."),
    ]
    links += [(1, "MODEL", 2, "model"), (2, "model", 4, "model"), (2, "ipadapter", 4, "ipadapter"),
              (12, 0, 4, "pos_embed")]
    return nodes, links


def tiled() -> tuple[list, list]:
    nodes, links = common("a wide mountain panorama at sunrise, high quality", (4, 0))
    nodes += [
        loader(2, "PLUS (high strength)", PLUS), image(3),
        N(4, "IPAdapterTiled", (800, 60), {"weight": 0.8, "sharpening": 0.1}, size=(315, 300)),
        note(11, "Tiled: a large or non-square reference is cut into square tiles, each encoded on its own, so "
                 "details survive CLIP's 224 px input and nothing is cropped away."),
    ]
    links += [(1, "MODEL", 2, "model"), (2, "model", 4, "model"), (2, "ipadapter", 4, "ipadapter"),
              (3, "IMAGE", 4, "image")]
    return nodes, links


# --- diffusion transformers: Flux.1-dev and SD3.5-Large with split model files --------------------------

BFL = "https://huggingface.co/black-forest-labs/FLUX.1-dev/resolve/main/"
FLUX_TE = "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/"
SAI = "https://huggingface.co/stabilityai/stable-diffusion-3.5-large/resolve/main/"
SD35_TE = "https://huggingface.co/Comfy-Org/stable-diffusion-3.5-fp8/resolve/main/text_encoders/"
VIT_L = {"name": "clip-vit-large-patch14.safetensors", "directory": "clip_vision",
         "url": "https://huggingface.co/openai/clip-vit-large-patch14/resolve/main/model.safetensors"}
SIGLIP = {"name": "siglip-so400m-patch14-384.safetensors", "directory": "clip_vision",
          "url": "https://huggingface.co/google/siglip-so400m-patch14-384/resolve/main/model.safetensors"}
XLABS_V1 = {"name": "flux-ip-adapter.safetensors", "directory": "ipadapter",
            "url": "https://huggingface.co/XLabs-AI/flux-ip-adapter/resolve/main/ip_adapter.safetensors"}
INSTANTX_FLUX = {"name": "FLUX.1-dev-IP-Adapter.bin", "directory": "ipadapter",
                 "url": "https://huggingface.co/InstantX/FLUX.1-dev-IP-Adapter/resolve/main/ip-adapter.bin"}
INSTANTX_SD35 = {"name": "SD3.5-Large-IP-Adapter.bin", "directory": "ipadapter",
                 "url": "https://huggingface.co/InstantX/SD3.5-Large-IP-Adapter/resolve/main/ip-adapter.bin"}
SD35_VAE = "sd3.5_vae.safetensors"  # SAI ships it as vae/diffusion_pytorch_model.safetensors: saved under this name
GATED = ("FLUX.1-dev and SD3.5-Large are gated on Hugging Face: accept the licence on the model page and log in "
         "before downloading.")
TRANSFORMER_SETTINGS = ("Transformer adapters take weight_type 'linear' and embeds_scaling 'V only' (other values "
                        "are refused); start_at / end_at work as usual.")


def _file(name: str, directory: str, url: str) -> dict:
    return {"name": name, "directory": directory, "url": url}


def dit_common(prompt: str, text_encoders: N, negative: list[N], negative_links: list, latent_values: dict,
               sampler: dict, unet: dict, vae: dict) -> tuple[list, list]:
    """Split-file loaders, prompt, latent, sampler, decode, save; the sampler's model is IPAdapterAdvanced's (4)."""
    nodes = [
        N(1, "UNETLoader", (40, 400), {"unet_name": unet["name"]}, models=[unet], size=(315, 82)),
        text_encoders,
        N(13, "VAELoader", (40, 700), {"vae_name": vae["name"]}, models=[vae], size=(315, 58)),
        N(5, "CLIPTextEncode", (440, 200), {"text": prompt}, title="Positive prompt", size=(400, 150)),
        N(7, "EmptySD3LatentImage", (440, 620), latent_values, size=(315, 106)),
        N(8, "KSampler", (1280, 60), {"seed": 42, **sampler}, size=(315, 262)),
        N(9, "VAEDecode", (1640, 60), size=(210, 46)),
        N(10, "SaveImage", (1640, 160), {"filename_prefix": "IPAdapterSuite"}, size=(420, 460)),
        *negative,
    ]
    links = [(1, "MODEL", 2, "model"), (2, "model", 4, "model"), (2, "ipadapter", 4, "ipadapter"),
             (3, "IMAGE", 4, "image"), (12, 0, 5, "clip"), (7, 0, 8, "latent_image"), (4, 0, 8, "model"),
             (8, 0, 9, "samples"), (13, 0, 9, "vae"), (9, 0, 10, "images"), *negative_links]
    return nodes, links


def flux(preset: str, hints: list[dict], weight: float, text: str) -> tuple[list, list]:
    """Flux.1-dev: distilled guidance on the positive, cfg 1 (so the zeroed negative is never sampled)."""
    encoders = N(12, "DualCLIPLoader", (40, 520), {"clip_name1": "clip_l.safetensors",
                                                   "clip_name2": "t5xxl_fp16.safetensors", "type": "flux"},
                 models=[_file("clip_l.safetensors", "text_encoders", FLUX_TE + "clip_l.safetensors"),
                         _file("t5xxl_fp16.safetensors", "text_encoders", FLUX_TE + "t5xxl_fp16.safetensors")],
                 size=(315, 130))
    negative = [N(14, "FluxGuidance", (880, 400), {"guidance": 3.5}, size=(315, 58)),
                N(6, "ConditioningZeroOut", (880, 520), title="Negative (unused at cfg 1)", size=(315, 26))]
    nodes, links = dit_common(
        "a ceramic teapot on a wooden table by a window, soft daylight, high quality", encoders, negative,
        [(5, 0, 14, "conditioning"), (14, 0, 8, "positive"), (5, 0, 6, "conditioning"), (6, 0, 8, "negative")],
        {"width": 1024, "height": 1024, "batch_size": 1},
        {"steps": 20, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple"},
        _file("flux1-dev.safetensors", "diffusion_models", BFL + "flux1-dev.safetensors"),
        _file("ae.safetensors", "vae", BFL + "ae.safetensors"))
    nodes += [loader(2, preset, hints, pos=(440, 60)), image(3, pos=(40, 800)),
              N(4, "IPAdapterAdvanced", (880, 60), {"weight": weight, "weight_type": "linear",
                                                     "embeds_scaling": "V only"}, size=(315, 302)),
              N(11, "Note", (40, 60), [text], size=(380, 300))]
    return nodes, links


def flux_xlabs() -> tuple[list, list]:
    return flux("FLUX XLABS v1 (ViT-L)", [XLABS_V1, VIT_L], 0.9, (
        "Flux.1-dev + XLabs IP-Adapter v1 (CLIP ViT-L/14, 224 px). The unified loader finds "
        "flux-ip-adapter.safetensors (models/ipadapter) and clip-vit-large-patch14.safetensors (models/clip_vision; "
        "not the text encoder clip_l). Flux-dev here uses ComfyUI's usual cfg 1.0 + FluxGuidance 3.5, so only the "
        "positive pass is sampled. XLabs v1 is reported best with a true CFG around 3 (InvokeAI's tests; that "
        "needs a negative pass, e.g. KSampler cfg 3); at cfg 1 start with weight 0.8-1.0, lower it if the reference "
        "overrides the prompt. For XLabs v2 pick the preset "
        "'FLUX XLABS v2 (ViT-L)' (flux-ip-adapter-v2.safetensors). " + TRANSFORMER_SETTINGS + " "
        + GATED))


def flux_instantx() -> tuple[list, list]:
    return flux("FLUX INSTANTX (SigLIP)", [INSTANTX_FLUX, SIGLIP], 0.7, (
        "Flux.1-dev + InstantX FLUX.1-dev IP-Adapter (SigLIP so400m, 384 px). The unified loader finds "
        "FLUX.1-dev-IP-Adapter.bin (models/ipadapter) and siglip-so400m-patch14-384.safetensors (models/clip_vision). "
        "Use Google's full model.safetensors: it contains the vision tower's attention-pooling head "
        "(vision_model.head.*) that this adapter needs (ComfyUI drops it; the pack reads it from the file). "
        "Recommended weight 0.6-0.8 (0.7 here) at cfg 1.0 with FluxGuidance 3.5; switch instantx_v_norm on to "
        "reproduce ComfyUI-IPAdapter-Flux's images. " + TRANSFORMER_SETTINGS + " "
        + GATED))


def sd35_instantx() -> tuple[list, list]:
    encoders = N(12, "TripleCLIPLoader", (40, 520), {"clip_name1": "clip_l.safetensors",
                                                     "clip_name2": "clip_g.safetensors",
                                                     "clip_name3": "t5xxl_fp16.safetensors"},
                 models=[_file(name, "text_encoders", SD35_TE + name)
                         for name in ("clip_l.safetensors", "clip_g.safetensors", "t5xxl_fp16.safetensors")],
                 size=(315, 106))
    negative = [N(6, "CLIPTextEncode", (440, 400), {"text": NEGATIVE}, title="Negative prompt", size=(400, 150))]
    nodes, links = dit_common(
        "a ceramic teapot on a wooden table by a window, soft daylight, high quality", encoders, negative,
        [(12, 0, 6, "clip"), (5, 0, 8, "positive"), (6, 0, 8, "negative")],
        {"width": 1024, "height": 1024, "batch_size": 1},
        {"steps": 28, "cfg": 4.5, "sampler_name": "euler", "scheduler": "sgm_uniform"},
        _file("sd3.5_large.safetensors", "diffusion_models", SAI + "sd3.5_large.safetensors"),
        _file(SD35_VAE, "vae", SAI + "vae/diffusion_pytorch_model.safetensors"))
    nodes += [loader(2, "SD3.5-LARGE INSTANTX (SigLIP)", [INSTANTX_SD35, SIGLIP], pos=(440, 60)),
              image(3, pos=(40, 800)),
              N(4, "IPAdapterAdvanced", (880, 60), {"weight": 0.5, "weight_type": "linear",
                                                     "embeds_scaling": "V only"}, size=(315, 302)),
              N(11, "Note", (40, 60), [(
                  "SD3.5-Large + InstantX SD3.5-Large IP-Adapter (SigLIP so400m, 384 px). The unified loader finds "
                  "SD3.5-Large-IP-Adapter.bin (models/ipadapter) and siglip-so400m-patch14-384.safetensors "
                  "(models/clip_vision). The model is loaded from Stability's split files: sd3.5_large.safetensors "
                  "in models/diffusion_models, the three text encoders in models/text_encoders, and the VAE from "
                  f"the same repository (vae/diffusion_pytorch_model.safetensors, saved as {SD35_VAE} in models/vae). "
                  "Recommended weight 0.5 (0.4-0.7) with cfg 4.5, 28 steps, euler / sgm_uniform. "
                  + TRANSFORMER_SETTINGS + " " + GATED)], size=(380, 300))]
    return nodes, links


EXAMPLES = {
    "style_transfer_sd15": style_transfer,
    "style_composition_sd15": style_composition,
    "regional_masks_sd15": regional,
    "batch_schedule_sd15": batch_schedule,
    "embeds_save_sd15": embeds_save,
    "embeds_load_sd15": embeds_load,
    "tiled_sd15": tiled,
    "flux_xlabs_ipadapter": flux_xlabs,
    "flux_instantx_ipadapter": flux_instantx,
    "sd35_instantx_ipadapter": sd35_instantx,
}
DIT = ("flux_xlabs_ipadapter", "flux_instantx_ipadapter", "sd35_instantx_ipadapter")


def write_all(classes: dict[str, type], folder: Path = REPO / "workflows",
              names: list[str] | None = None) -> list[Path]:
    """Write the examples (all, or ``names``) and their thumbnails; also draws missing thumbnails of hand-kept ones."""
    unknown = set(names or []) - set(EXAMPLES)
    if unknown:
        raise SystemExit(f"no example named {sorted(unknown)}; known: {', '.join(EXAMPLES)}")
    written = []
    for number, (name, describe) in enumerate(EXAMPLES.items(), start=10):
        if names and name not in names:
            continue
        nodes, links = describe()
        workflow = build(classes, nodes, links, f"00000000-0000-4000-8000-{number:012d}")
        save(workflow, folder / f"{name}.json")
        thumbnail(workflow, folder / f"{name}.jpg")
        written.append(folder / f"{name}.json")
    import json

    for path in sorted(folder.glob("*.json")):
        if not path.with_suffix(".jpg").exists():
            thumbnail(json.loads(path.read_text()), path.with_suffix(".jpg"))
            written.append(path.with_suffix(".jpg"))
    return written


def main(names: list[str] | None = None) -> None:
    import asyncio
    import tempfile

    from tests.conftest import find_comfyui
    from tests.host import harness

    root = find_comfyui()
    if root is None:
        raise SystemExit("needs ComfyUI (set COMFYUI_PATH)")
    work = Path(tempfile.mkdtemp(prefix="ipas-examples-"))
    nodes = harness.boot(root, work / "models")
    asyncio.run(nodes.init_builtin_extra_nodes())
    harness.load_pack(work)
    for path in write_all(dict(nodes.NODE_CLASS_MAPPINGS), names=names):
        print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main(sys.argv[1:] or None)
