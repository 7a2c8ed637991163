"""FaceID LoRA: renaming the LoRA embedded in the .bin, and pairing kohya LoRA files by content."""

from __future__ import annotations

import pytest
import torch

from ipadapter_core import lora
from ipadapter_core.errors import IPAdapterError
from tests.fixtures.adapters import LORA_RANK, SD15_WIDTHS, SDXL_WIDTHS, adapter_state_dict

# Diffusers transformer blocks in processor order (down, up, mid), as kohya names them.
SD15_BLOCKS = (
    [f"down_blocks_{b}_attentions_{a}_transformer_blocks_0" for b in range(3) for a in range(2)]
    + [f"up_blocks_{b}_attentions_{a}_transformer_blocks_0" for b in (1, 2, 3) for a in range(3)]
    + ["mid_block_attentions_0_transformer_blocks_0"]
)
SDXL_BLOCKS = (
    [f"down_blocks_1_attentions_{a}_transformer_blocks_{t}" for a in range(2) for t in range(2)]
    + [f"down_blocks_2_attentions_{a}_transformer_blocks_{t}" for a in range(2) for t in range(10)]
    + [f"up_blocks_0_attentions_{a}_transformer_blocks_{t}" for a in range(3) for t in range(10)]
    + [f"up_blocks_1_attentions_{a}_transformer_blocks_{t}" for a in range(3) for t in range(2)]
    + [f"mid_block_attentions_0_transformer_blocks_{t}" for t in range(10)]
)


def kohya_shapes(blocks, widths, context, rank=LORA_RANK, extra_ff=False) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for block, width in zip(blocks, widths, strict=True):
        for attn, kv_in in (("attn1", width), ("attn2", context)):
            for proj, in_dim in (("to_q", width), ("to_k", kv_in), ("to_v", kv_in), ("to_out_0", width)):
                base = f"lora_unet_{block}_{attn}_{proj}"
                shapes[f"{base}.lora_down.weight"] = (rank, in_dim)
                shapes[f"{base}.lora_up.weight"] = (width, rank)
                shapes[f"{base}.alpha"] = ()
        if extra_ff:
            shapes[f"lora_unet_{block}_ff_net_2.lora_down.weight"] = (rank, 4 * width)
    return shapes


def test_embedded_lora_is_renamed_to_comfyui_generic_keys():
    ia = adapter_state_dict("ip-adapter-faceid_sd15.bin", sites=[320, 640, 1280], dtype=torch.float32)["ip_adapter"]
    paths = ["input_blocks.1.1.transformer_blocks.0", "output_blocks.3.1.transformer_blocks.0",
             "middle_block.1.transformer_blocks.0"]
    assert lora.has_embedded_lora(ia) and lora.embedded_lora_blocks(ia) == 3
    out = lora.convert_embedded_lora(ia, paths)
    assert len(out) == 3 * 2 * 4 * 2
    # processor 2 = attn1 of the 2nd block, 5 = attn2 of the 3rd; to_out -> to_out.0
    assert out["diffusion_model.output_blocks.3.1.transformer_blocks.0.attn1.to_q.lora_down.weight"] is \
        ia["2.to_q_lora.down.weight"]
    assert out["diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_out.0.lora_up.weight"] is \
        ia["5.to_out_lora.up.weight"]
    assert out["diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.lora_down.weight"].shape == \
        (LORA_RANK, 768)
    assert not any("to_k_ip" in k for k in out)


def test_embedded_lora_block_count_must_match_the_model():
    ia = adapter_state_dict("ip-adapter-faceid_sd15.bin", sites=[320, 640], device="meta")["ip_adapter"]
    with pytest.raises(IPAdapterError, match="covers 2 transformer blocks but the model has 3"):
        lora.convert_embedded_lora(ia, ["a", "b", "c"])
    portrait = adapter_state_dict("ip-adapter-faceid-portrait-v11_sd15.bin", sites=[320], device="meta")
    assert not lora.has_embedded_lora(portrait["ip_adapter"])
    with pytest.raises(IPAdapterError, match="no LoRA"):
        lora.convert_embedded_lora(portrait["ip_adapter"], ["a"])


@pytest.mark.parametrize(
    "blocks, widths, context, adapter",
    [(SD15_BLOCKS, SD15_WIDTHS, 768, "ip-adapter-faceid_sd15.bin"),
     (SDXL_BLOCKS, SDXL_WIDTHS, 2048, "ip-adapter-faceid-plusv2_sdxl.bin")],
)
def test_kohya_lora_layout_fits_its_family_only(blocks, widths, context, adapter):
    layout = lora.describe_lora(kohya_shapes(blocks, widths, context))
    assert layout.context_dim == context and layout.widths == tuple(widths) and layout.rank == LORA_RANK
    assert layout.attention_only
    ia = adapter_state_dict(adapter, device="meta")["ip_adapter"]
    assert lora.adapter_widths(ia) == tuple(widths)
    assert lora.fits_adapter(layout, context, lora.adapter_widths(ia))
    other = "ip-adapter-faceid_sdxl.bin" if context == 768 else "ip-adapter-faceid_sd15.bin"
    other_ia = adapter_state_dict(other, device="meta")["ip_adapter"]
    assert not lora.fits_adapter(layout, 2048 if context == 768 else 768, lora.adapter_widths(other_ia))


def test_non_lora_and_style_loras_are_told_apart():
    assert lora.describe_lora({"model.diffusion_model.x.weight": (4, 4)}) is None
    style = lora.describe_lora(kohya_shapes(SD15_BLOCKS, SD15_WIDTHS, 768, rank=16, extra_ff=True))
    assert style is not None and not style.attention_only and style.rank == 16
    assert lora.kohya_first_block(kohya_shapes(SD15_BLOCKS, SD15_WIDTHS, 768)) == \
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"


def test_choose_lora_prefers_content_then_names():
    faceid = lora.describe_lora(kohya_shapes(SD15_BLOCKS, SD15_WIDTHS, 768))
    style = lora.describe_lora(kohya_shapes(SD15_BLOCKS, SD15_WIDTHS, 768, rank=16, extra_ff=True))
    sdxl = lora.describe_lora(kohya_shapes(SDXL_BLOCKS, SDXL_WIDTHS, 2048))
    widths = tuple(SD15_WIDTHS)
    layouts = {"a_style.safetensors": style, "renamed.safetensors": faceid, "sdxl.safetensors": sdxl,
               "other_faceid.safetensors": faceid, "old.bin": None}
    # Content beats a misleading name; among fitting attention-only LoRAs the preset's name decides.
    pick = lora.choose_lora(layouts, 768, widths, ["old.bin", "other_faceid.safetensors"])
    assert pick.name == "other_faceid.safetensors" and "fit" in pick.reason
    assert lora.choose_lora(layouts, 768, widths, []).name == "other_faceid.safetensors"  # first in sorted order
    exact = lora.choose_lora(layouts, 768, widths, ["other_faceid.safetensors"], exact={"renamed.safetensors"})
    assert exact.name == "renamed.safetensors" and "equal" in exact.reason
    # Nothing readable fits: fall back to the file-name pattern; nothing at all: None.
    only_names = {"sdxl.safetensors": sdxl, "ip-adapter-faceid_sd15_lora.bin": None}
    assert lora.choose_lora(only_names, 768, widths, ["ip-adapter-faceid_sd15_lora.bin"]).name == \
        "ip-adapter-faceid_sd15_lora.bin"
    assert lora.choose_lora({"sdxl.safetensors": sdxl}, 768, widths, []) is None
