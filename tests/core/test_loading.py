"""Reading adapter files: both published containers, and refusing anything unsafe or broken."""

from __future__ import annotations

import os
import pickle
import struct

import pytest
import torch
from safetensors.torch import save_file

from ipadapter_core.errors import IPAdapterError
from ipadapter_core.loading import load_adapter_file, load_tensor_file, split_adapter_sections
from tests.fixtures.adapters import ADAPTER_LAYOUTS, adapter_state_dict, flatten, write_adapter

SMALL_SITES = [64, 64, 128]


def _assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize(
    "name",
    ["ip-adapter_sd15.safetensors", "ip-adapter-plus_sd15.safetensors", "ip-adapter-faceid-plusv2_sd15.bin"],
)
def test_safetensors_and_bin_load_to_identical_tensors(tmp_path, name: str) -> None:
    st = write_adapter(name, tmp_path / "st", container="safetensors", sites=SMALL_SITES)
    pt = write_adapter(name, tmp_path / "pt", container="bin", sites=SMALL_SITES)
    assert st.endswith(".safetensors") and pt.endswith(".bin")
    a, b = load_adapter_file(st), load_adapter_file(pt)
    _assert_same_tensors(a.image_proj, b.image_proj)
    _assert_same_tensors(a.ip_adapter, b.ip_adapter)
    # ...and equal to what was generated, so nothing was lost or renamed on the way.
    expected = adapter_state_dict(name, sites=SMALL_SITES)
    _assert_same_tensors(a.image_proj, expected["image_proj"])
    _assert_same_tensors(a.ip_adapter, expected["ip_adapter"])
    assert a.path == st


def test_containers_keep_their_published_shape(tmp_path) -> None:
    """.safetensors files are flat and prefixed; .bin files are the nested dict."""
    st = write_adapter("ip-adapter_sd15.safetensors", tmp_path, sites=SMALL_SITES)
    pt = write_adapter("ip-adapter_sd15_light_v11.bin", tmp_path, sites=SMALL_SITES)
    flat = load_tensor_file(st)
    assert all(k.startswith(("image_proj.", "ip_adapter.")) for k in flat)
    assert "ip_adapter.1.to_k_ip.weight" in flat
    nested = load_tensor_file(pt)
    assert set(nested) == {"image_proj", "ip_adapter"}
    assert nested["ip_adapter"]["5.to_v_ip.weight"].shape == (128, 768)


def test_kolors_faceid_adapter_modules_section_in_both_containers() -> None:
    """Kolors FaceID names its attention section "adapter_modules"; it is read as ip_adapter."""
    image_proj = {"norm.weight": torch.ones(8)}
    modules = {"1.to_k_ip.weight": torch.randn(4, 2048), "1.to_v_ip.weight": torch.randn(4, 2048)}
    nested = split_adapter_sections({"image_proj": image_proj, "adapter_modules": modules})
    flat = split_adapter_sections(flatten({"image_proj": image_proj, "adapter_modules": modules}))
    for weights in (nested, flat):
        _assert_same_tensors(weights.ip_adapter, modules)
        _assert_same_tensors(weights.image_proj, image_proj)


def test_published_kolors_faceid_layout_uses_adapter_modules() -> None:
    sd = adapter_state_dict("Kolors-IP-Adapter-FaceID-Plus.bin", device="meta", sites=[64])
    assert set(sd) == {"image_proj", "adapter_modules"}
    assert set(split_adapter_sections(sd).ip_adapter) == {"1.to_k_ip.weight", "1.to_v_ip.weight"}


def test_faceid_bin_carries_lora_of_every_processor() -> None:
    ia = adapter_state_dict("ip-adapter-faceid_sd15.bin", device="meta")["ip_adapter"]
    layout = ADAPTER_LAYOUTS["ip-adapter-faceid_sd15.bin"]
    assert ia["0.to_q_lora.down.weight"].shape == (128, 320)
    assert ia["1.to_k_lora.down.weight"].shape == (128, 768)  # attn2 reads the text context
    assert ia["31.to_out_lora.up.weight"].shape == (1280, 128)  # the middle block, last in diffusers order
    assert sum(k.endswith("_lora.down.weight") for k in ia) == 4 * 2 * len(layout.widths)


def test_other_keys_in_a_safetensors_file_are_ignored(tmp_path) -> None:
    sd = flatten(adapter_state_dict("ip-adapter_sd15.safetensors", sites=SMALL_SITES))
    sd["some_other_tool.metadata_tensor"] = torch.zeros(3)
    path = str(tmp_path / "extra.safetensors")
    save_file(sd, path)
    weights = load_adapter_file(path)
    assert "metadata_tensor" not in " ".join(weights.image_proj) + " ".join(weights.ip_adapter)
    assert len(weights.ip_adapter) == 2 * len(SMALL_SITES)


# --- refusing what must not be loaded -----------------------------------------------------------


def _plant_marker(path: str) -> dict:
    """What a malicious pickle would run on load; here it only leaves a file behind."""
    with open(path, "w") as f:
        f.write("code ran")
    return {}


class _Hostile:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return _plant_marker, (self.marker,)


def _hostile_file(directory, marker: str, hidden: bool) -> str:
    path = os.path.join(directory, "ip-adapter_sd15.bin")
    payload: object = _Hostile(marker)
    if hidden:  # buried next to genuine tensors, where a key-only check would not look
        sd = adapter_state_dict("ip-adapter_sd15.safetensors", sites=[64])
        sd["image_proj"]["norm.extra"] = payload
        payload = sd
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("hidden", [False, True], ids=["top-level", "inside-the-state-dict"])
def test_hostile_pickle_is_refused_and_never_runs(tmp_path, hidden: bool) -> None:
    marker = str(tmp_path / "marker")
    path = _hostile_file(tmp_path, marker, hidden)
    assert not os.path.exists(marker)
    with pytest.raises(IPAdapterError) as err:
        load_adapter_file(path)
    assert not os.path.exists(marker), "the pickle's code ran"
    assert "ip-adapter_sd15.bin" in str(err.value)


def test_hostile_pickle_control_would_run_code_without_protection(tmp_path) -> None:
    """Proves the payload above is live: an unprotected unpickler does run it."""
    marker = str(tmp_path / "marker")
    path = _hostile_file(tmp_path, marker, hidden=False)
    torch.load(path, weights_only=False)
    assert os.path.exists(marker)


HTML = b"<!DOCTYPE html>\n<html><head><title>IP-Adapter - Hugging Face</title></head><body>...</body></html>\n"


def test_html_page_saved_as_safetensors(tmp_path) -> None:
    path = tmp_path / "ip-adapter_sd15.safetensors"
    path.write_bytes(HTML * 20)
    with pytest.raises(IPAdapterError) as err:
        load_adapter_file(str(path))
    message = str(err.value)
    assert "ip-adapter_sd15.safetensors" in message
    assert "HTML" in message or "header" in message.lower()


@pytest.mark.parametrize("case", ["empty", "truncated", "header-length-lies"])
def test_broken_safetensors(tmp_path, case: str) -> None:
    good = write_adapter("ip-adapter_sd15.safetensors", tmp_path / "good", sites=SMALL_SITES)
    data = open(good, "rb").read()
    path = tmp_path / "ip-adapter_sd15.safetensors"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(struct.pack("<Q", 2**40) + data[8:])
    with pytest.raises(IPAdapterError) as err:
        load_adapter_file(str(path))
    assert "ip-adapter_sd15.safetensors" in str(err.value)


@pytest.mark.parametrize("content", [HTML, b"", b"\x00" * 64], ids=["html", "empty", "zeros"])
def test_garbage_bin(tmp_path, content: bytes) -> None:
    path = tmp_path / "ip-adapter-faceid_sd15.bin"
    path.write_bytes(content)
    with pytest.raises(IPAdapterError) as err:
        load_adapter_file(str(path))
    assert "ip-adapter-faceid_sd15.bin" in str(err.value)


def test_bin_that_is_not_a_dict(tmp_path) -> None:
    path = tmp_path / "list.bin"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(IPAdapterError) as err:
        load_tensor_file(str(path))
    assert "list.bin" in str(err.value)


@pytest.mark.parametrize("ext", [".gguf", ".onnx", ".txt", ""])
def test_unknown_extension_is_refused(tmp_path, ext: str) -> None:
    path = tmp_path / f"ip-adapter_sd15{ext}"
    save_file(flatten(adapter_state_dict("ip-adapter_sd15.safetensors", sites=[64])), str(path))
    with pytest.raises(IPAdapterError) as err:
        load_adapter_file(str(path))
    assert ext in str(err.value) if ext else "extension" in str(err.value)


def test_missing_file(tmp_path) -> None:
    path = str(tmp_path / "nowhere" / "ip-adapter_sd15.safetensors")
    with pytest.raises(IPAdapterError) as err:
        load_adapter_file(path)
    assert "does not exist" in str(err.value)


@pytest.mark.parametrize(
    ("keys", "missing"),
    [
        ({"image_proj.proj.weight": torch.zeros(8, 4)}, "ip_adapter"),
        ({"ip_adapter.1.to_k_ip.weight": torch.zeros(8, 4)}, "image_proj"),
        ({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4)}, "image_proj"),
    ],
    ids=["no-ip_adapter", "no-image_proj", "a-checkpoint"],
)
def test_safetensors_without_a_section(tmp_path, keys: dict, missing: str) -> None:
    path = tmp_path / "not-an-adapter.safetensors"
    save_file(keys, str(path))
    with pytest.raises(IPAdapterError) as err:
        load_adapter_file(str(path))
    message = str(err.value)
    assert "not-an-adapter.safetensors" in message
    assert f"no {missing}" in message


def test_empty_ip_adapter_section_in_bin(tmp_path) -> None:
    path = tmp_path / "empty.bin"
    torch.save({"image_proj": {"proj.weight": torch.zeros(8, 4)}, "ip_adapter": {}}, path)
    with pytest.raises(IPAdapterError, match="no ip_adapter"):
        load_adapter_file(str(path))


def test_pickle_module_error_type_is_not_leaked(tmp_path) -> None:
    """Callers catch IPAdapterError only: a raw UnpicklingError must not escape."""
    path = tmp_path / "bad.pt"
    path.write_bytes(pickle.dumps(_Hostile(str(tmp_path / "m")), protocol=2))
    with pytest.raises(IPAdapterError):
        load_tensor_file(str(path))
    assert not (tmp_path / "m").exists()
