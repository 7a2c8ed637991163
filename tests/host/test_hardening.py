"""Issue 17 in-process: what a prompt can name or send to the pack's nodes, through ``run_node``.

Names are absolute, '..' or symlinked out of their folder; values arrive as raw JSON on custom sockets
or as out-of-range numbers; uploads are malformed. Every file is generated here.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from tests.host import harness


class _OpensAFile:
    """Unpickling this creates the marker file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _error_type():
    return harness.error_type()




def _save(path) -> None:
    harness.pack_module("ipadapter_core.embeds_io").save_embeds(str(path), torch.ones(1, 8))


def _refused(node: str, input_name: str, **inputs) -> str:
    with pytest.raises(_error_type()) as err:
        harness.run_node(node, **inputs)
    return harness.assert_actionable(err.value, f"input '{input_name}'")


# --- paths confined to their folder -----------------------------------------------------------------------


def test_load_embeds_refuses_names_outside_the_input_folder(io_dirs):
    outside = io_dirs["outside"]
    _save(outside / "secret.safetensors")
    marker = outside / "ran"
    torch.save(_OpensAFile(str(marker)), outside / "evil.ipadpt")
    os.symlink(outside / "secret.safetensors", io_dirs["input"] / "link.safetensors")
    os.symlink(outside, io_dirs["input"] / "linked_dir")
    names = [str(outside / "secret.safetensors"), "../outside/secret.safetensors", "../outside/evil.ipadpt",
             "sub/../../outside/secret.safetensors", "link.safetensors", "linked_dir/secret.safetensors",
             "../outside/secret.safetensors [output]", "secret.safetensors [temp]", "x\x00.safetensors", ""]
    for name in names:
        text = _refused("IPAdapterLoadEmbeds", "embeds", embeds=name)
        assert "Traceback" not in text
    assert not marker.exists()


def test_load_embeds_still_reads_the_input_and_output_folders(io_dirs):
    _save(io_dirs["input"] / "a_00001_.safetensors")
    (io_dirs["output"] / "emb").mkdir()
    _save(io_dirs["output"] / "emb" / "b_00001_.safetensors")
    for name in ("a_00001_.safetensors", "a_00001_.safetensors [input]", "emb/b_00001_.safetensors [output]"):
        assert torch.equal(harness.run_node("IPAdapterLoadEmbeds", embeds=name)[0], torch.ones(1, 8))


def test_save_embeds_prefix_cannot_leave_the_output_folder(io_dirs):
    os.symlink(io_dirs["outside"], io_dirs["output"] / "escape_link")
    for prefix in ("escape_link/emb", str(io_dirs["outside"] / "emb"), "../outside/emb", "a/../../outside/e",
                   "x" * 300, 42):
        _refused("IPAdapterSaveEmbeds", "filename_prefix", embeds=torch.ones(1, 8), filename_prefix=prefix)
    assert not list(io_dirs["outside"].iterdir())
    harness.run_node("IPAdapterSaveEmbeds", embeds=torch.ones(1, 8), filename_prefix="ok/emb")
    assert [p.name for p in (io_dirs["output"] / "ok").iterdir()] == ["emb_00001_.safetensors"]


def test_insightface_pack_name_cannot_be_a_path(io_dirs):
    pack_dir = io_dirs["outside"] / "pack"
    pack_dir.mkdir()
    (pack_dir / "det_10g.onnx").write_bytes(b"not onnx")
    for name in (str(pack_dir), "../../../outside/pack", "buffalo_l/../../x", "..", ""):
        text = _refused("IPAdapterInsightFaceLoader", "model_name", provider="CPU", model_name=name)
        assert "pack name" in text
    _refused("IPAdapterInsightFaceLoader", "provider", provider="Anything", model_name="buffalo_l")


def test_model_names_cannot_leave_the_model_folder(pack):
    for name in ("/etc/hostname", "../../x.safetensors", "..", "a/../../b.bin"):
        text = _refused("IPAdapterModelLoader", "ipadapter_file", ipadapter_file=name)
        assert "absolute or '..'" in text, text


# --- listings survive malformed uploads ------------------------------------------------------------------


def test_load_embeds_listing_survives_malformed_uploads(io_dirs):
    inp = io_dirs["input"]
    (inp / "broken.safetensors").write_bytes(b"\x15\x00\x00\x00\x00\x00\x00\x00" + b'{"__metadata__": 123}')
    raw = json.dumps({"__metadata__": ["not", "a", "dict"]}).encode()
    (inp / "list_meta.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw)
    deep = b"[" * 40_000 + b"]" * 40_000
    (inp / "deep.safetensors").write_bytes(len(deep).to_bytes(8, "little") + deep)
    os.symlink(inp, inp / "loop")
    _save(inp / "good_00001_.safetensors")
    cls = harness._state["pack"].NODE_CLASS_MAPPINGS["IPAdapterLoadEmbeds"]
    listed = cls.INPUT_TYPES()["required"]["embeds"][0]
    assert listed == ["good_00001_.safetensors"]
    _refused("IPAdapterLoadEmbeds", "embeds", embeds="broken.safetensors")


# --- raw JSON and out-of-range values on sockets ---------------------------------------------------------


def test_weights_strategy_raw_json_is_validated(pack):
    # just over the caps: far bigger values made the unpatched code allocate gigabytes (frames=10**9: 8 GB)
    raw = {"weights": "1, 0", "timing": "linear", "frames": 20_000, "start_frame": 0, "end_frame": 9999,
           "add_starting_frames": 0, "add_ending_frames": 0, "method": "full batch", "frame_count": 0}
    _refused("IPAdapterWeightsFromStrategy", "weights_strategy", weights_strategy=raw)
    _refused("IPAdapterPromptScheduleFromWeightsStrategy", "weights_strategy",
             weights_strategy={**raw, "frames": 3, "frame_count": 20_000}, prompt="a\nb")
    _refused("IPAdapterWeights", "frames", weights="1, 0", timing="linear", frames="3", start_frame=0,
             end_frame=9999, add_starting_frames=0, add_ending_frames=0, method="full batch")
    _refused("IPAdapterWeights", "weights", weights=",".join(["1"] * 5000), timing="custom", frames=0, start_frame=0,
             end_frame=9999, add_starting_frames=0, add_ending_frames=0, method="full batch")
    _refused("IPAdapterCombineWeights", "weights_2", weights_1=[0.5] * 6000, weights_2=[0.5] * 6000)


def test_embeds_raw_json_is_refused(pack):
    _refused("IPAdapterCombineEmbeds", "embed1", embed1=[[0.1] * 8], method="concat")


def test_encode_batch_size_is_checked(pack):
    chunk_count = harness.pack_module("nodes.encoding").chunk_count
    assert chunk_count(10, 4) == 3 and chunk_count(10, 0) == 1
    for bad in ("8", -1, 10**9, 2.5, None):
        with pytest.raises(_error_type()) as err:
            chunk_count(10, bad)
        assert err.value.input == "encode_batch_size"


def test_v1_prompt_handler_ignores_non_dict_inputs(pack, caplog):
    rewrite = harness.pack_module("nodes.legacy_embeds").rewrite_prompt
    for inputs in ([["a"]], "plus", 7, [{"plus": 1}]):
        body = {"prompt": {"1": {"class_type": "IPAdapterEncoder", "inputs": inputs}}}
        assert rewrite(body) is body
    v1 = {"prompt": {"1": {"class_type": "IPAdapterEncoder", "inputs": {"plus": True, "image": ["2", 0]}}}}
    assert rewrite(v1)["prompt"]["1"]["class_type"] == "IPAdapterEncoderV1"


def test_v1_masked_tiles_count_is_checked(pack, unet, ipadapter_dir, reference_image, clip_vision):
    from tests.host import adapters

    model = unet("sd15-reduced")
    ipadapter = adapters.load(adapters.adapter_file(ipadapter_dir, "sd15-reduced", model))
    for bad in (13, -1, "3", 10**9):
        _refused("IPAdapterTilesMasked", "short_side_tiles", ipadapter=ipadapter, clip_vision=clip_vision,
                 image=reference_image, model=model, short_side_tiles=bad)
