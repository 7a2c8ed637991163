"""Every mistake with a Flux or SD3.5 adapter is refused before sampling with its own message (issue 12 §5):
cross-family pairings, a model of another width or depth, the wrong encoder, a SigLIP file without the pooling
head, options a transformer cannot honour."""

from __future__ import annotations

import pytest
import torch

from tests.fixtures import dit_adapters
from tests.fixtures.adapters import adapter_state_dict
from tests.host import dit_cases as dc
from tests.host import harness

_error, _assert_actionable = harness.error_type, harness.assert_actionable


@pytest.fixture
def encs(pack, host_dirs):
    return dc.encoders(host_dirs["work"], host_dirs["models"] / "clip_vision")


def _refused(model, ip, cv, *needles, node="IPAdapterAdvanced", **options):
    with pytest.raises(_error()) as err:
        dc.apply(model, ip, dc.reference_image(), cv, node=node, **options)
    _assert_actionable(err.value, *needles)
    return err.value


@pytest.mark.parametrize("adapter,model,words", [
    ("xlabs", "sd3", ("Flux.1 model", "SD3")),
    ("instantx", "sd3", ("Flux.1 model", "joint blocks")),
    ("sd3", "flux", ("SD3.5 model", "double")),
])
def test_cross_family_pairings_between_transformers(ipadapter_dir, encs, adapter, model, words):
    _refused(dc.model(model), dc.load(ipadapter_dir, adapter), dc.encoder_for(adapter, encs), *words,
             "[IPAdapter Advanced")


def test_a_flux_adapter_on_a_unet_and_a_unet_adapter_on_flux(ipadapter_dir, encs, unet, clip_vision, tmp_path):
    _refused(unet("sd15-reduced"), dc.load(ipadapter_dir, "xlabs"), encs["vit-l"], "Flux.1 model", "SD1.5")
    pipeline = harness.pack_module("nodes.pipeline")
    path = tmp_path / "ip-adapter_sd15.bin"
    torch.save(adapter_state_dict("ip-adapter_sd15.safetensors", sites=[64] * 4), path)
    sd15 = pipeline.Pipeline(adapter=pipeline.load_adapter(str(path)), adapter_file=str(path))
    _refused(dc.model("flux"), sd15, clip_vision, "SD1.5 model", "Flux", "FLUX XLABS")


def test_sd35_adapter_on_a_model_of_another_width(ipadapter_dir, encs):
    from tests.fixtures import dit_models

    other = dc.cached("dit-sd3-depth3", lambda: dit_models.build_sd3(seed=0, depth=3))
    _refused(other, dc.load(ipadapter_dir, "sd3"), encs["siglip"], "width 128", "width 192")


def test_an_adapter_whose_block_count_does_not_match(ipadapter_dir, encs):
    path = ipadapter_dir / "dit" / "xlabs-3-blocks.safetensors"
    if not path.exists():
        dit_adapters.write_file(dit_adapters.xlabs_state_dict(hidden=256, tokens=4, n_double=3, dtype=torch.float32),
                                path)
    ip = harness.run_node("IPAdapterModelLoader", ipadapter_file="dit/xlabs-3-blocks.safetensors")[0]
    err = _refused(dc.model("flux"), ip, encs["vit-l"], "3 per-block entries", "2 double")
    assert err.input == "model"


# (The tiny encoders share one hidden width, so SD3.5's hidden-state check is covered at published widths below.)
@pytest.mark.parametrize("adapter,wrong", [("xlabs", "siglip"), ("instantx", "vit-l")])
def test_a_wrong_encoder_is_named(ipadapter_dir, encs, adapter, wrong):
    err = _refused(dc.model(dc.ADAPTERS[adapter][2]), dc.load(ipadapter_dir, adapter), encs[wrong],
                   "Wrong CLIP vision")
    assert err.input == "clip_vision"


class _FakeEncoder:
    """A CLIP_VISION stand-in with a real encoder's output widths (the tiny test encoders all share one width)."""

    def __init__(self, image_embeds: tuple, hidden: tuple, image_size: int) -> None:
        self.shapes, self.image_size = (image_embeds, hidden), image_size

    def encode_image(self, image, crop=True):
        b = image.shape[0]
        return {"image_embeds": torch.zeros(b, *self.shapes[0]),
                "penultimate_hidden_states": torch.zeros(b, *self.shapes[1])}


FAKES = {
    "vit-h": ((1024,), (257, 1280), 224), "vit-l": ((768,), (257, 1024), 224), "vit-l-336": ((768,), (577, 1024), 336),
    "siglip": ((729, 1152), (729, 1152), 384),
}


@pytest.mark.parametrize("adapter,given,need_word,got_word", [
    ("xlabs", "vit-h", "ViT-L-14 (OpenAI, 224", "ViT-H-14"),
    ("xlabs", "vit-l-336", "ViT-L-14 (OpenAI, 224", "ViT-L-14-336"),
    ("xlabs", "siglip", "ViT-L-14 (OpenAI, 224", "SigLIP"),
    ("instantx", "vit-l", "SigLIP", "ViT-L-14 (OpenAI"),
    ("sd3", "vit-h", "SigLIP", "ViT-H-14"),
    ("sd3", "vit-l", "SigLIP", "ViT-L-14"),
])
def test_wrong_encoders_at_published_widths_name_both(pack, adapter, given, need_word, got_word):
    """Published-size kinds (shapes only) against encoders with the published output widths."""
    kinds = harness.pack_module("ipadapter_core.kinds")
    loading = harness.pack_module("ipadapter_core.loading")
    encoding = harness.pack_module("nodes.encoding")
    sd = {"xlabs": lambda: dit_adapters.xlabs_state_dict(device="meta"),
          "instantx": lambda: dit_adapters.instantx_flux_state_dict(device="meta"),
          "sd3": lambda: dit_adapters.instantx_sd3_state_dict(device="meta")}[adapter]()
    weights = loading.split_adapter_sections(sd)
    kind = kinds.detect_kind(weights.image_proj, weights.ip_adapter)
    with pytest.raises(_error()) as err:
        encoding.encode(_FakeEncoder(*FAKES[given]), kind, dc.reference_image())
    _assert_actionable(err.value, need_word, got_word)


def test_a_siglip_encoder_without_its_pooling_head_file(ipadapter_dir, pack, host_dirs):
    from tests.fixtures import dit_encoders

    other = dc.cached("siglip-headless", lambda: dit_encoders.tiny_siglip_vision(host_dirs["work"], seed=9))
    _refused(dc.model("flux"), dc.load(ipadapter_dir, "instantx"), other, "vision_model.head",
             "siglip-so400m-patch14-384", "ipadapter_cli siglip-head")


@pytest.mark.parametrize("options,words", [
    ({"weight_type": "ease in"}, ("'ease in'", "linear")),
    ({"embeds_scaling": "K+V"}, ("K+V", "V only")),
])
def test_unet_only_options_are_refused_not_ignored(ipadapter_dir, encs, options, words):
    _refused(dc.model("flux"), dc.load(ipadapter_dir, "xlabs"), encs["vit-l"], *words, **options)


def test_style_and_composition_nodes_are_refused_on_transformers(ipadapter_dir, encs):
    with pytest.raises(_error()) as err:
        harness.run_node("IPAdapterStyleComposition", model=dc.model("flux"), ipadapter=dc.load(ipadapter_dir, "xlabs"),
                         image_style=dc.reference_image(), image_composition=dc.reference_image(1), weight_style=1.0,
                         weight_composition=1.0, expand_style=False, combine_embeds="concat", start_at=0.0,
                         end_at=1.0, embeds_scaling="V only", clip_vision=encs["vit-l"])
    _assert_actionable(err.value)


def test_layer_weights_name_the_adapters_blocks(ipadapter_dir, encs):
    _refused(dc.model("flux"), dc.load(ipadapter_dir, "xlabs"), encs["vit-l"], "block", node="IPAdapterMS",
             weight_faceidv2=1.0, layer_weights="3:1.0")
