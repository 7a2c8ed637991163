"""The FaceID family in-process: synthetic InsightFace packs through the real FaceAnalysis path, random
FaceID adapters fitted to the reduced SD1.5 UNet, LoRAs applied through ComfyUI, and the shipped
FaceID workflows run node by node (sampling replaced by a 2-step in-memory run)."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest
import torch

from tests.fixtures.adapters import adapter_state_dict, image_proj_faceid_plus
from tests.fixtures.comfy_models import diffusers_widths
from tests.host import harness
from tests.host import variant_fixtures as vf

pytest.importorskip("insightface")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # scikit-image deprecation inside insightface

UNET = "sd15-reduced"
SUBDIR = "faceid-sd15-reduced"
FILES = {"faceid": "ip-adapter-faceid_sd15.bin", "plusv2": "ip-adapter-faceid-plusv2_sd15.bin",
         "portrait": "ip-adapter-faceid-portrait-v11_sd15.bin"}
CLIP_FILE = "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"
FACE_LORA = "my_face_lora.safetensors"  # a renamed LoRA: only its content can pair it
FACEID = dict(weight=1.0, weight_faceidv2=1.0, weight_type="linear", combine_embeds="concat", start_at=0.0,
              end_at=1.0, embeds_scaling="V only")


def _faces(*seeds: int, size: int = 256) -> torch.Tensor:
    from tests.fixtures.face_models import face_image

    return torch.stack([torch.from_numpy(face_image(size, size, s)) for s in seeds])


def _unwrap(out):
    return out["result"] if isinstance(out, dict) else out


def _notes(out) -> str:
    return "\n".join(out["ui"]["text"]) if isinstance(out, dict) else ""


def _kohya_lora(model, ip_adapter: dict) -> dict[str, torch.Tensor]:
    """The adapter's embedded LoRA as a kohya file over diffusers names (how the published files are laid out)."""
    import comfy.utils

    host = harness.pack_module("nodes.host")
    lora = harness.pack_module("ipadapter_core.lora")
    to_diffusers = {}
    for diff, ldm in comfy.utils.unet_to_diffusers(model.model.model_config.unet_config).items():
        if diff.endswith(".attn1.to_q.weight"):
            to_diffusers[ldm[: -len(".attn1.to_q.weight")]] = diff[: -len(".attn1.to_q.weight")]
    converted = lora.convert_embedded_lora(ip_adapter, host.transformer_block_paths(model))
    out = {}
    for key, tensor in converted.items():
        path, _, rest = key[len("diffusion_model."):].partition(".attn")
        attn, proj_dir = rest.split(".", 1)
        proj, direction = proj_dir.rsplit(".lora_", 1)
        name = f"lora_unet_{to_diffusers[path].replace('.', '_')}_attn{attn}_{proj.replace('.', '_')}"
        out[f"{name}.lora_{direction}"] = tensor.contiguous()
    return out


@pytest.fixture(scope="module")
def env(pack, unet, host_dirs, ipadapter_dir, clip_vision):
    """Model folders registered through an extra_model_paths.yaml: insightface pack, adapters, LoRAs."""
    import utils.extra_config
    from safetensors.torch import save_file

    from tests.fixtures.face_models import write_pack

    model = unet(UNET)
    widths = diffusers_widths(model)
    root = host_dirs["work"] / "faceid-models"
    write_pack(root / "insightface", "buffalo_l")
    (root / "loras").mkdir(parents=True, exist_ok=True)
    config = root / "extra_model_paths.yaml"
    config.write_text(f"faceid_tests:\n  base_path: {root}\n  insightface: insightface\n  loras: loras\n")
    utils.extra_config.load_extra_path_config(str(config))
    folder = Path(ipadapter_dir) / SUBDIR
    folder.mkdir(parents=True, exist_ok=True)
    sds = {}
    for role, name in FILES.items():
        sd = adapter_state_dict(name, seed=3 + len(sds), sites=widths)  # distinct LoRA values per adapter
        if role == "plusv2":  # the tiny CLIP vision's hidden states are 64 wide, not ViT-H's 1280
            key = "perceiver_resampler.proj_in.weight"
            gen = torch.Generator().manual_seed(zlib.crc32(key.encode()))
            sd["image_proj"][key] = (0.02 * torch.randn(sd["image_proj"][key].shape[0], 64, generator=gen)).half()
        torch.save(sd, folder / name)
        sds[role] = sd
    save_file(_kohya_lora(model, sds["faceid"]["ip_adapter"]), str(root / "loras" / FACE_LORA))
    save_file(_kohya_lora(model, sds["plusv2"]["ip_adapter"]),
              str(root / "loras" / "ip-adapter-faceid-plusv2_sd15_lora.safetensors"))
    clip_dir = host_dirs["models"] / "clip_vision"
    clip_dir.mkdir(parents=True, exist_ok=True)
    if not (clip_dir / CLIP_FILE).exists():
        (clip_dir / CLIP_FILE).write_bytes(b"placeholder: the tests load the tiny encoder instead")
    patcher = pytest.MonkeyPatch()
    patcher.setattr(harness.pack_module("nodes.host"), "load_clip_vision", lambda path: clip_vision)
    key = ("latent", UNET)
    if key not in harness.CACHE:
        harness.CACHE[key] = harness.sample(model)
    yield dict(model=model, root=root, sds=sds, clip_vision=clip_vision, base=harness.CACHE[key])
    patcher.undo()


def _unified(env, preset: str, **kw):
    inputs = dict(model=env["model"], preset=preset, lora_strength=0.6, provider="CPU")
    inputs.update(kw)
    return harness.run_node("IPAdapterUnifiedLoaderFaceID", **inputs)


def _model_loader(role: str):
    return harness.run_node("IPAdapterModelLoader", ipadapter_file=f"{SUBDIR}/{FILES[role]}")[0]


def _insightface():
    return _unwrap(harness.run_node("IPAdapterInsightFaceLoader", provider="CPU", model_name="buffalo_l"))[0]


def _error_type():
    return harness.pack_module("ipadapter_core.errors").IPAdapterError


# --- workflows ------------------------------------------------------------------------------------


def _object_info(types: set[str]) -> dict:
    nodes = harness._state["nodes"]
    info = {}
    for class_type in types:
        cls = nodes.NODE_CLASS_MAPPINGS[class_type]
        spec = cls.INPUT_TYPES()
        info[class_type] = {"input": spec, "input_order": {k: list(v) for k, v in spec.items()
                                                           if k in ("required", "optional")}}
    return info


def run_workflow(name: str, env) -> dict:
    """Convert a shipped UI workflow and evaluate it: pack nodes for real, host-heavy nodes replaced."""
    from ipadapter_cli.convert import convert
    from ipadapter_cli.workflow import load_workflow

    workflow = load_workflow(name)
    types = {n["type"] for n in workflow["nodes"]} - {"Note", "Reroute", "PrimitiveNode"}
    prompt = convert(workflow, _object_info(types))
    pictures = {}
    replaced = {
        "CheckpointLoaderSimple": lambda **kw: (env["model"], "CLIP", "VAE"),
        "LoadImage": lambda image, **kw: (pictures.setdefault(image, _faces(len(pictures))), None),
        "ImageBatch": lambda image1, image2: (torch.cat([image1, image2]),),
        "CLIPTextEncode": lambda clip, text: (text,),
        "EmptyLatentImage": lambda **kw: (kw,),
        "KSampler": lambda model, **kw: (harness.sample(model),),
        "VAEDecode": lambda samples, vae: (samples,),
        "SaveImage": lambda images, **kw: (),
        "PreviewImage": lambda images, **kw: (),
    }
    done: dict[str, tuple] = {}
    calls: dict[str, tuple] = {}

    def evaluate(node_id: str) -> tuple:
        if node_id not in done:
            node = prompt[node_id]
            inputs = {k: evaluate(v[0])[v[1]] if isinstance(v, list) else v for k, v in node["inputs"].items()}
            kind = node["class_type"]
            out = replaced[kind](**inputs) if kind in replaced else harness.run_node(kind, **inputs)
            done[node_id] = _unwrap(out)
            calls[kind] = (inputs, out)
        return done[node_id]

    for node_id in prompt:
        evaluate(node_id)
    return calls


@pytest.mark.parametrize("name, faces, tokens", [("faceid_sd15.json", 1, 4), ("faceid_plusv2_sd15.json", 1, 4),
                                                 ("faceid_portrait_sd15.json", 2, 16)])
def test_shipped_faceid_workflows_run(env, name, faces, tokens):
    calls = run_workflow(name, env)
    latent = calls["KSampler"][1][0]
    assert latent.shape == env["base"].shape and not torch.equal(latent, env["base"]), "the adapter did nothing"
    crops = calls["PreviewImage"][0]["images"]
    assert crops.shape == (faces, 224, 224, 3)
    loader_notes = _notes(calls["IPAdapterUnifiedLoaderFaceID"][1])
    assert "runs on CPUExecutionProvider" in loader_notes
    pipeline = _unwrap(calls["IPAdapterUnifiedLoaderFaceID"][1])[1]
    assert pipeline.adapter.kind.tokens == tokens
    if pipeline.adapter.kind.needs_lora:
        assert "Applied LoRA" in loader_notes, loader_notes


# --- LoRA -----------------------------------------------------------------------------------------


def _patched_weight(model, key: str) -> torch.Tensor:
    import comfy.lora

    original = model.model.state_dict()[key].float()
    return comfy.lora.calculate_weight(model.patches[key], original.clone(), key)


def test_paired_lora_found_by_content_and_applied_with_the_expected_delta(env):
    out = _unified(env, "FACEID", lora_strength=0.5)
    model = _unwrap(out)[0]
    notes = _notes(out)
    assert FACE_LORA in notes and "equal the LoRA embedded" in notes, notes
    ia = env["sds"]["faceid"]["ip_adapter"]
    for proc, path, proj in ((0, "input_blocks.1.1.transformer_blocks.0.attn1", "to_q"),
                             (1, "input_blocks.1.1.transformer_blocks.0.attn2", "to_k"),
                             (1, "input_blocks.1.1.transformer_blocks.0.attn2", "to_out.0")):
        key = f"diffusion_model.{path}.{proj}.weight"
        name = proj.split(".")[0]
        up, down = (ia[f"{proc}.{name}_lora.{d}.weight"].float() for d in ("up", "down"))
        expected = env["model"].model.state_dict()[key].float() + 0.5 * (up @ down)
        torch.testing.assert_close(_patched_weight(model, key), expected, rtol=1e-4, atol=1e-5)
    assert not env["model"].patches, "the input model was changed"
    embedded = _unwrap(_unified(env, "FACEID", lora_strength=0.5, lora_source="embedded in the adapter file"))[0]
    key = "diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_v.weight"
    torch.testing.assert_close(_patched_weight(embedded, key), _patched_weight(model, key))
    latent = harness.sample(harness.run_node("IPAdapterFaceID", model=model, ipadapter=_unwrap(out)[1],
                                             image=_faces(0), **FACEID)[0])
    without = _unwrap(_unified(env, "FACEID", lora_strength=0.0))
    plain = harness.sample(_unwrap(harness.run_node("IPAdapterFaceID", model=without[0], ipadapter=without[1],
                                                    image=_faces(0), **FACEID))[0])
    assert not torch.equal(latent, plain), "the LoRA had no effect on sampling"


def test_missing_lora_runs_with_a_visible_warning(env, monkeypatch):
    host = harness.pack_module("nodes.host")
    real = host.list_files
    monkeypatch.setattr(host, "list_files", lambda folder: [] if folder == "loras" else real(folder))
    out = _unified(env, "FACEID")
    notes = _notes(out)
    assert "WARNING" in notes and "docs/faceid.md" in notes and "ip-adapter-faceid_sd15_lora" in notes, notes
    model, pipeline = _unwrap(out)
    assert model is env["model"]
    applied = harness.run_node("IPAdapterFaceID", model=model, ipadapter=pipeline, image=_faces(0), **FACEID)
    assert "WARNING" in _notes(applied) and "LoRA" in _notes(applied)
    assert torch.isfinite(harness.sample(_unwrap(applied)[0])).all()


# --- PlusV2, Portrait, batch ----------------------------------------------------------------------


def test_plusv2_clip_weight_scales_only_the_shortcut_branch(env):
    embeds = harness.pack_module("nodes.faceid_embeds")
    options = harness.pack_module("nodes.apply_core").ApplyOptions()
    _, pipeline = _unwrap(_unified(env, "FACEID PLUS V2"))
    kind = pipeline.adapter.kind
    image = _faces(0)
    tokens = {w: embeds.face_tokens(pipeline, kind, image, None, None, w, options)[0] for w in (0.0, 0.5, 1.0, 2.0)}
    # weight 0 = the identity tokens alone: LayerNorm(MLP(face embedding)).
    face = pipeline.insightface.analyze_batch(image, 224).embeddings("normed")
    proj = pipeline.adapter.projection()
    ids = proj.norm(proj.proj(face).reshape(1, kind.tokens, -1))
    torch.testing.assert_close(tokens[0.0], ids, rtol=1e-5, atol=1e-5)
    branch = tokens[1.0] - tokens[0.0]
    assert branch.abs().max() > 1e-3
    distances = [(tokens[w] - tokens[0.0]).norm().item() for w in (0.5, 1.0, 2.0)]
    assert distances[0] < distances[1] < distances[2], distances  # monotonic in the CLIP weight
    torch.testing.assert_close(tokens[2.0] - tokens[0.0], 2.0 * branch, rtol=1e-4, atol=1e-5)
    latents = [harness.sample(_unwrap(harness.run_node(
        "IPAdapterFaceID", model=env["model"], ipadapter=pipeline, image=image,
        **{**FACEID, "weight_faceidv2": w}))[0]) for w in (0.0, 2.0)]
    assert not torch.equal(latents[0], latents[1]), "the CLIP weight did not change the result"
    # v1 (explicit choice): no shortcut, the CLIP weight has no effect.
    v1 = [embeds.face_tokens(pipeline, kind, image, None, None, w, options, plus_version="v1 (no shortcut)")[0]
          for w in (0.0, 2.0)]
    assert torch.equal(v1[0], v1[1])


def test_plus_version_comes_from_the_file_name_and_says_so(env):
    embeds = harness.pack_module("nodes.faceid_embeds")
    pipeline = _model_loader("plusv2")
    shortcut, note = embeds.plus_shortcut(pipeline, pipeline.adapter.kind)
    assert shortcut and "plusv2" in note and "faceid_plus_version" in note
    renamed = pipeline.with_(adapter_file="/x/my-faceid-plus.bin")
    shortcut, note = embeds.plus_shortcut(renamed, pipeline.adapter.kind)
    assert not shortcut and "v1" in note
    assert embeds.plus_shortcut(renamed, pipeline.adapter.kind, "v2 (shortcut)") == (True, None)


def test_portrait_takes_several_faces(env):
    embeds = harness.pack_module("nodes.faceid_embeds")
    options = harness.pack_module("nodes.apply_core").ApplyOptions()
    _, pipeline = _unwrap(_unified(env, "FACEID PORTRAIT (style transfer)"))
    three = _faces(0, 1, 2)
    cond, uncond, crops = embeds.face_tokens(pipeline, pipeline.adapter.kind, three, None, None, 1.0, options)
    assert cond.shape == (3, 16, 768) and uncond.shape == (3, 16, 768) and crops.shape == (3, 224, 224, 3)
    assert not torch.allclose(cond[0], cond[1])
    run = lambda images: harness.sample(_unwrap(harness.run_node(  # noqa: E731
        "IPAdapterFaceID", model=env["model"], ipadapter=pipeline, image=images, **FACEID))[0])
    assert not torch.equal(run(three), run(three[:1]))


def test_batch_node_gives_each_latent_its_face(env):
    pipeline = _unwrap(_unified(env, "FACEID PORTRAIT (style transfer)"))[1]
    model, crops = _unwrap(harness.run_node("IPAAdapterFaceIDBatch", model=env["model"], ipadapter=pipeline,
                                            image=_faces(0, 1), **FACEID))
    latent = harness.sample(model, batch=2)
    base = harness.sample(env["model"], batch=2)
    assert crops.shape[0] == 2 and not torch.equal(latent, base)


# --- user errors ----------------------------------------------------------------------------------


def test_photo_without_a_face_names_the_image_and_the_node(env):
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterFaceID", model=env["model"], ipadapter=_model_loader("faceid"),
                         image=torch.cat([_faces(0), torch.zeros(1, 256, 256, 3)]), insightface=_insightface(),
                         **FACEID)
    text = str(err.value)
    assert "[IPAdapter FaceID" in text and "No face found in image 2 of 2" in text and "What to do:" in text


def test_faceid_model_in_a_plain_node_says_which_node_to_use(env):
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterAdvanced", model=env["model"], ipadapter=_model_loader("faceid"), image=_faces(0),
                         weight=1.0, weight_type="linear", combine_embeds="concat", start_at=0.0, end_at=1.0,
                         embeds_scaling="V only", clip_vision=env["clip_vision"])
    text = str(err.value)
    assert "IPAdapter FaceID" in text and "Unified Loader FaceID" in text and "size mismatch" not in text


def test_faceid_node_without_a_face_model_says_which_loader_to_use(env):
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterFaceID", model=env["model"], ipadapter=_model_loader("faceid"), image=_faces(0),
                         **FACEID)
    text = str(err.value)
    assert "[IPAdapter FaceID" in text and "IPAdapter InsightFace Loader" in text and "input 'insightface'" in text


def test_insightface_loader_uses_yaml_folders_and_reports_the_provider(env):
    host = harness.pack_module("nodes.host")
    assert str(env["root"] / "insightface") in [os.path.normpath(p) for p in host.insightface_roots()]
    out = harness.run_node("IPAdapterInsightFaceLoader", provider="CUDA", model_name="buffalo_l")
    model = _unwrap(out)[0]
    assert model.provider_used == "CPUExecutionProvider"
    assert "not available" in _notes(out) and "CPU" in _notes(out)
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterInsightFaceLoader", provider="CPU", model_name="antelopev2")
    assert "[IPAdapter InsightFace Loader" in str(err.value) and "antelopev2.zip" in str(err.value)


def test_kolors_faceid_needs_encoder_hid_proj(env, unet):
    from types import SimpleNamespace

    pipeline_mod = harness.pack_module("nodes.pipeline")
    adapter_mod = harness.pack_module("ipadapter_core.adapter")
    loading = harness.pack_module("ipadapter_core.loading")
    sdxl = unet("sdxl-reduced")
    sd = adapter_state_dict("Kolors-IP-Adapter-FaceID-Plus.bin", sites=diffusers_widths(sdxl), device="meta")
    adapter = adapter_mod.IPAdapterModel(loading.split_adapter_sections(sd, "Kolors-IP-Adapter-FaceID-Plus.bin"))
    assert adapter.kind.kind == "kolors_faceid_plus"
    pipeline = pipeline_mod.Pipeline(adapter=adapter, adapter_file="Kolors-IP-Adapter-FaceID-Plus.bin")
    with pytest.raises(_error_type()) as err:
        harness.run_node("IPAdapterFaceIDKolors", model=sdxl, ipadapter=pipeline, image=_faces(0),
                         weight_kolors=1.0, insightface=_insightface(), clip_vision=env["clip_vision"], **FACEID)
    text = str(err.value)
    assert "[IPAdapter FaceID Kolors" in text and "encoder_hid_proj" in text and "input 'model'" in text
    # With the projection present, tokens are mapped 4096 -> 2048 and scaled by weight_kolors.
    embeds = harness.pack_module("nodes.faceid_embeds")
    gen = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(4096, 2048)
    with torch.no_grad():
        linear.weight.copy_(0.01 * torch.randn(2048, 4096, generator=gen))
    fake = SimpleNamespace(model=SimpleNamespace(diffusion_model=SimpleNamespace(encoder_hid_proj=linear)))
    tokens = torch.randn(1, 6, 4096, generator=gen)
    mapped = embeds.kolors_context(tokens, embeds.kolors_projection(fake), 0.5)
    with torch.no_grad():
        torch.testing.assert_close(mapped, 0.5 * linear(tokens), rtol=1e-4, atol=1e-5)


def _kolors_faceid_file(model, directory: Path) -> Path:
    """Kolors-IP-Adapter-FaceID-Plus.bin with the published keys and widths (4096-wide tokens, 2048-wide K/V,
    section "adapter_modules"), its perceiver shrunk to one single-head layer that reads the tiny encoder's
    64-wide hidden states: the published depth-4 perceiver alone is 3 GB of fp32."""
    name = "Kolors-IP-Adapter-FaceID-Plus.bin"
    path = directory / name
    if path.exists():
        return path
    proj = image_proj_faceid_plus(4096, vf.TINY_HIDDEN, 6, depth=1, heads=1, ff_mult=1)
    return vf.write_fitted(directory, name, model, name, proj, seed=5)


def test_kolors_faceid_runs_end_to_end_through_the_unets_encoder_hid_proj(env, unet, host_dirs, monkeypatch):
    sdxl = unet("sdxl-reduced")
    gen = torch.Generator().manual_seed(11)
    hid_proj = torch.nn.Linear(4096, 2048)
    with torch.no_grad():
        hid_proj.weight.copy_(0.02 * torch.randn(2048, 4096, generator=gen))
        hid_proj.bias.copy_(0.1 * torch.randn(2048, generator=gen))
    # What a Kolors UNet loader that keeps ChatGLM's projection leaves on the UNet (undone after the test).
    monkeypatch.setattr(sdxl.model.diffusion_model, "encoder_hid_proj", hid_proj, raising=False)
    pipeline = vf.load_path(_kolors_faceid_file(sdxl, host_dirs["work"]))
    assert pipeline.adapter.kind.kind == "kolors_faceid_plus"

    def run(weight_kolors: float):
        return _unwrap(harness.run_node("IPAdapterFaceIDKolors", model=sdxl, ipadapter=pipeline, image=_faces(0),
                                        weight_kolors=weight_kolors, insightface=_insightface(),
                                        clip_vision=env["clip_vision"], **FACEID))

    base = harness.sample(sdxl)
    patched, crops = run(1.0)
    latent = harness.sample(patched)
    assert vf.changed(latent, base), "Kolors FaceID had no effect"
    assert torch.equal(latent, harness.sample(run(1.0)[0])), "the same graph gave a different latent"
    assert crops.shape[0] == 1 and crops.shape[-1] == 3
    # weight_kolors scales the mapped tokens: at 0 the image keys and values are zero, so nothing is added.
    assert torch.equal(harness.sample(run(0.0)[0]), base)
    assert not torch.equal(harness.sample(run(0.5)[0]), latent)
    # The tokens go through the UNet's own projection: another encoder_hid_proj, another result.
    with torch.no_grad():
        hid_proj.weight.mul_(-1.0)
    assert not torch.equal(harness.sample(run(1.0)[0]), latent)
    # The input model was not changed by any of these runs.
    assert torch.equal(harness.sample(sdxl), base)
