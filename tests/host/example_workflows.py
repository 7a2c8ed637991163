"""The shipped example workflows (``workflows/*.json`` + ``.jpg``), described once and generated.

``python -m tests.host.example_workflows`` (with ComfyUI at $COMFYUI_PATH or ~/ComfyUI) rewrites
the files listed in ``EXAMPLES``; the basic/plus/FaceID examples are maintained by hand. Each graph
is SD1.5, uses the demo reference picture name, and carries ``properties.models`` download hints
on its loaders.
"""

from __future__ import annotations

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
                 ".safetensors. Move that file to the input folder and open 'embeds_load_sd15' to reuse them "
                 "without the reference picture or CLIP vision."),
    ]
    links += [(1, "MODEL", 2, "model"), (2, "ipadapter", 12, "ipadapter"), (3, "IMAGE", 12, "image"),
              (12, "pos_embed", 13, "embeds"), (2, "model", 4, "model"), (2, "ipadapter", 4, "ipadapter"),
              (12, "pos_embed", 4, "pos_embed"), (12, "neg_embed", 4, "neg_embed")]
    return nodes, links


EMBEDS_FILE = "IP_embeds_00001_.safetensors"


def embeds_load() -> tuple[list, list]:
    nodes, links = common("a bowl of fruit on a wooden table, high quality", (4, 0))
    nodes += [
        loader(2, "STANDARD (medium strength)", STANDARD),
        N(12, "IPAdapterLoadEmbeds", (420, 200), {"embeds": EMBEDS_FILE}, size=(315, 60)),
        N(4, "IPAdapterEmbeds", (800, 60), {"weight": 0.8}, size=(315, 250)),
        note(11, "Apply saved embeds: put a file saved by 'IPAdapter Save Embeds' (or a ComfyUI_IPAdapter_plus "
                 ".ipadpt file) in the input folder and pick it in 'IPAdapter Load Embeds'."),
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


EXAMPLES = {
    "style_transfer_sd15": style_transfer,
    "style_composition_sd15": style_composition,
    "regional_masks_sd15": regional,
    "batch_schedule_sd15": batch_schedule,
    "embeds_save_sd15": embeds_save,
    "embeds_load_sd15": embeds_load,
    "tiled_sd15": tiled,
}


def write_all(classes: dict[str, type], folder: Path = REPO / "workflows") -> list[Path]:
    """Write every example and its thumbnail; also (re)draws thumbnails of hand-kept workflows lacking one."""
    written = []
    for number, (name, describe) in enumerate(EXAMPLES.items(), start=10):
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


def main() -> None:
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
    for path in write_all(dict(nodes.NODE_CLASS_MAPPINGS)):
        print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
