"""Issue 17 at the core: hostile files in listed folders, pickles from upload folders, and oversized inputs.

Every file here is generated at test time. The pickles that would run code do so by creating a marker
file when unpickled; each test asserts the marker never appears.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from ipadapter_core import doctor, embeds_io, inventory, limits, loading, parsing, pickle_header, schedules
from ipadapter_core.adapter import IPAdapterModel, build_application
from ipadapter_core.errors import IPAdapterError
from ipadapter_core.loading import split_adapter_sections
from ipadapter_core.sites import Site
from ipadapter_core.weighting import LayerWeight
from tests.fixtures.adapters import adapter_state_dict, cached_adapter


class _OpensAFile:
    """Unpickling this calls open(path, "w"): the marker file appears if anything ever unpickles it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _header_file(path, header_bytes: bytes, size: int | None = None) -> str:
    """A safetensors-shaped file: 8-byte little-endian length, then ``header_bytes`` (nothing after)."""
    n = len(header_bytes) if size is None else size
    with open(path, "wb") as f:
        f.write(n.to_bytes(8, "little") + header_bytes)
    return str(path)


def _ours(path) -> str:
    embeds_io.save_embeds(str(path), torch.ones(1, 8))
    return str(path)


# Malformed headers as uploads carry them (the review's 29-byte file is the first).
MALFORMED = {
    "broken_29_bytes": (b"\x15\x00\x00\x00\x00\x00\x00\x00" + b'{"__metadata__": 123}', None),
    "metadata_is_a_list": (json.dumps({"__metadata__": ["format", embeds_io.FORMAT]}).encode(), None),
    "metadata_is_a_string": (json.dumps({"__metadata__": "ipadapter-suite/embeds"}).encode(), None),
    "deep_nesting": (b"[" * 60_000 + b"]" * 60_000, None),
    "deep_nesting_in_metadata": (b'{"__metadata__": ' + b"[" * 60_000 + b"]" * 60_000 + b"}", None),
    "not_utf8": (b'{"__metadata__": {"format": "\xff\xfe"}}', None),
    "size_larger_than_file": (b"{}", 1 << 40),
    "size_zero": (b"", 0),
    "truncated_length": (b"", None),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_headers_never_raise_and_are_not_listed(tmp_path, case):
    data, size = MALFORMED[case]
    bad = tmp_path / "bad.safetensors"
    if case == "broken_29_bytes":
        bad.write_bytes(data)
        assert len(data) == 29
    elif case == "truncated_length":
        bad.write_bytes(b"\x05\x00\x00")
    else:
        _header_file(bad, data, size)
    good = _ours(tmp_path / "good_00001_.safetensors")
    header = embeds_io.read_header(str(bad))
    assert header is None or isinstance(header, dict)
    assert embeds_io.is_embeds_file(str(bad)) is False
    assert embeds_io.list_embeds_files(str(tmp_path)) == [os.path.basename(good)]
    with pytest.raises(IPAdapterError):  # picked anyway (a raw string): an error naming the input, no traceback
        embeds_io.load_embeds(str(bad))


def test_symlink_loop_is_listed_once(tmp_path):
    (tmp_path / "sub").mkdir()
    _ours(tmp_path / "sub" / "e_00001_.safetensors")
    os.symlink(tmp_path, tmp_path / "sub" / "loop")  # sub/loop -> the root: a cycle
    os.symlink(tmp_path / "sub", tmp_path / "sub" / "again")  # and one onto itself
    assert embeds_io.list_embeds_files(str(tmp_path)) == ["sub/e_00001_.safetensors"]
    assert inventory.model_files([str(tmp_path)]) == [str(tmp_path / "sub" / "e_00001_.safetensors")]


def test_listing_is_bounded_in_depth(tmp_path):
    deep = tmp_path
    for i in range(40):
        deep = deep / f"d{i}"
    deep.mkdir(parents=True)
    _ours(deep / "e_00001_.safetensors")
    _ours(tmp_path / "top_00001_.safetensors")
    assert embeds_io.list_embeds_files(str(tmp_path)) == ["top_00001_.safetensors"]


# --- pickles from upload folders: refused unless torch >= 2.10 -----------------------------------------


@pytest.mark.parametrize("version,allowed", [((2, 5), False), ((2, 9), False), ((2, 10), True), ((3, 0), True)])
def test_untrusted_pickles_follow_the_torch_version(monkeypatch, version, allowed):
    monkeypatch.setattr(loading, "torch_version", lambda: version)
    assert loading.untrusted_pickles_allowed() is allowed


def test_torch_version_parses_the_installed_torch():
    major, minor = loading.torch_version()
    assert f"{major}.{minor}" in torch.__version__


def test_ipadpt_is_refused_on_old_torch_before_it_is_opened(tmp_path, monkeypatch):
    monkeypatch.setattr(loading, "torch_version", lambda: (2, 9))
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.ipadpt"
    torch.save(_OpensAFile(str(marker)), evil)
    fine = tmp_path / "fine.ipadpt"
    torch.save(torch.ones(1, 8), fine)
    opened = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: opened.append(a) or pytest.fail("torch.load was called"))
    for path in (evil, fine):
        with pytest.raises(IPAdapterError) as err:
            embeds_io.load_embeds(str(path))
        text = str(err.value)
        assert "2.10" in text and "safetensors" in text and "Save Embeds" in text and err.value.input == "embeds"
    assert not marker.exists() and not opened


def test_ipadpt_loads_on_a_safe_torch(tmp_path, monkeypatch):
    monkeypatch.setattr(loading, "torch_version", lambda: (2, 10))
    torch.save(torch.ones(1, 8), tmp_path / "fine.ipadpt")
    tensor, meta = embeds_io.load_embeds(str(tmp_path / "fine.ipadpt"))
    assert torch.equal(tensor, torch.ones(1, 8)) and meta == {"format": "ipadpt"}


# --- the doctor: headers only, any file ------------------------------------------------------------------


def _comfy_tree(tmp_path):
    root = tmp_path / "ComfyUI"
    for key in doctor.FOLDER_KEYS:
        (root / "models" / key).mkdir(parents=True)
    return root


def test_doctor_never_unpickles_and_reports_broken_files(tmp_path, monkeypatch):
    root = _comfy_tree(tmp_path)
    models = root / "models"
    marker = tmp_path / "ran"
    # an adapter .bin is still identified, from its pickle's opcodes
    os.symlink(cached_adapter("ip-adapter-faceid_sd15.bin"), models / "ipadapter" / "ip-adapter-faceid_sd15.bin")
    torch.save({"evil": _OpensAFile(str(marker))}, models / "ipadapter" / "evil.bin")
    with open(models / "loras" / "faceid_evil.pt", "wb") as f:  # a protocol-0 pickle, not a torch file
        pickle.dump(_OpensAFile(str(marker)), f, protocol=0)
    torch.save({"x": _OpensAFile(str(marker))}, models / "loras" / "unrelated_style.ckpt")
    _header_file(models / "ipadapter" / "bad_entry.safetensors", json.dumps({"w": 1}).encode())
    _header_file(models / "ipadapter" / "no_offsets.safetensors", json.dumps({"w": {"dtype": "F32"}}).encode())
    _header_file(models / "clip_vision" / "nested.safetensors", b"[" * 50_000)
    (models / "clip_vision" / "random.bin").write_bytes(os.urandom(3000))
    calls = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(a) or pytest.fail("torch.load was called"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: calls.append(a) or pytest.fail("pickle.load was called"))
    read = []
    real = inventory.identify
    monkeypatch.setattr(doctor, "identify", lambda p: read.append(os.path.basename(p)) or real(p))
    text = doctor.report(doctor.comfyui_folders(str(root)), "0.0-test")
    assert not marker.exists() and not calls
    lines = {line.strip().split(":")[0].split()[-1]: line for line in text.splitlines() if ":" in line}
    assert "FaceID" in lines["ip-adapter-faceid_sd15.bin"] and "BROKEN" not in lines["ip-adapter-faceid_sd15.bin"]
    for name in ("bad_entry.safetensors", "no_offsets.safetensors", "nested.safetensors", "random.bin"):
        assert "BROKEN" in lines[name], lines[name]
    assert "unrelated_style.ckpt" not in read  # loras/: only the FaceID ones are looked at
    assert "faceid_evil.pt" in read


def test_pickle_reader_reads_both_formats_without_running_anything(tmp_path):
    marker = tmp_path / "ran"
    sd = {"image_proj": {"proj.weight": torch.zeros(3, 4, dtype=torch.float16)},
          "ip_adapter": {"1.to_k_ip.weight": torch.nn.Parameter(torch.zeros(5, 6))},
          "trap": _OpensAFile(str(marker))}
    for legacy in (False, True):
        path = tmp_path / f"m{legacy}.bin"
        torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
        got = pickle_header.read_pickle_tensors(str(path))
        assert got == {"image_proj.proj.weight": pickle_header.TensorHeader((3, 4), "float16"),
                       "ip_adapter.1.to_k_ip.weight": pickle_header.TensorHeader((5, 6), "float32")}
    assert not marker.exists()


# --- fuzzing: no reader raises on arbitrary bytes -------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
_headers = st.one_of(
    st.binary(max_size=600),
    st.builds(lambda b: len(b).to_bytes(8, "little") + b, st.binary(max_size=400)),
    st.builds(lambda v: (lambda raw: len(raw).to_bytes(8, "little") + raw)(json.dumps(v).encode()), _json),
    st.builds(lambda v: (lambda raw: len(raw).to_bytes(8, "little") + raw)(json.dumps({"__metadata__": v}).encode()),
              _json),
)
_FUZZ_DIR = tempfile.mkdtemp(prefix="ipas-fuzz-")


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=_headers, ext=st.sampled_from([".safetensors", ".ipadpt", ".bin", ".pt", ".ckpt"]))
def test_fuzz_header_readers_never_raise(data, ext):
    path = os.path.join(_FUZZ_DIR, "f" + ext)
    with open(path, "wb") as f:
        f.write(data)
    header = embeds_io.read_header(path)
    assert header is None or isinstance(header, dict)
    assert isinstance(embeds_io.header_metadata(header), dict)
    assert isinstance(embeds_io.is_embeds_file(path), bool)
    assert isinstance(embeds_io.list_embeds_files(_FUZZ_DIR), list)
    report = inventory.identify(path)
    assert report.role in ("adapter", "clip_vision", "lora", "other", "broken")


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=800))
def test_fuzz_pickle_reader_only_raises_what_identify_catches(data):
    path = os.path.join(_FUZZ_DIR, "p.bin")
    with open(path, "wb") as f:
        f.write(b"\x80\x02" + data)
    try:
        tensors = pickle_header.read_pickle_tensors(path)
    except Exception:
        tensors = None
    assert tensors is None or isinstance(tensors, dict)
    assert inventory.identify(path).role in ("other", "broken", "adapter", "clip_vision", "lora")


# --- bounded work ------------------------------------------------------------------------------------------


def test_weight_strings_are_capped():
    with pytest.raises(IPAdapterError) as err:
        schedules.parse_weights(",".join(["1"] * (limits.MAX_ENTRIES + 1)))
    assert err.value.input == "weights" and "at most" in str(err.value)
    with pytest.raises(IPAdapterError) as err:
        parsing.layer_weights(", ".join(f"{i}:1" for i in range(limits.MAX_ENTRIES + 5)), range(16))
    assert err.value.input == "layer_weights" and f"{limits.MAX_ENTRIES:,}" in str(err.value)


@pytest.mark.parametrize("field,value", [("frames", "many"), ("start_frame", 50_000), ("end_frame", -3),
                                         ("frame_count", 10**7), ("timing", "sideways"), ("method", ["x"]),
                                         ("weights", 3.5), ("add_ending_frames", 2.5), ("frames", True)])
def test_raw_json_strategy_is_validated_like_the_widgets(field, value):
    raw = {**schedules.Strategy().as_dict(), field: value}
    with pytest.raises(IPAdapterError) as err:
        schedules.Strategy.from_dict(raw)
    assert err.value.input == "weights_strategy" and field in str(err.value)


def test_schedule_frames_are_capped_before_anything_is_repeated(monkeypatch):
    strategy = schedules.Strategy(",".join(["1"] * 4000), "custom")
    with pytest.raises(IPAdapterError) as err:
        schedules.schedule(strategy, torch.zeros(3, 1, 1, 3))  # 12,000 frames
    assert "frames" in str(err.value) and f"{limits.MAX_FRAMES:,}" in str(err.value)
    weights, _, total, image_1, _ = schedules.schedule(strategy, torch.zeros(2, 1, 1, 3))
    assert total == 8000 and image_1.shape[0] == 8000
    monkeypatch.setattr(schedules, "MAX_SCHEDULE_VALUES", 10_000)  # (the real cap is 4 GiB: not allocated here)
    with pytest.raises(IPAdapterError) as err:  # few frames, but large images repeated
        schedules.schedule(schedules.Strategy("1, 0", "linear", frames=100), torch.zeros(2, 8, 8, 3))
    assert "GiB" in str(err.value) and err.value.input == "image"


def test_raw_json_params_are_validated_like_the_widgets():
    image = torch.zeros(1, 8, 8, 3)
    good = {"image": [image], "attn_mask": [None], "weight": [0.5], "weight_type": ["linear"], "start_at": [0.0],
            "end_at": [1.0]}
    assert parsing.params_entries(good)[0].start_at == 0.0
    for key, value in (("start_at", "abc"), ("end_at", 7.0), ("weight", float("nan")), ("weight_type", "nope"),
                       ("image", "img.png"), ("attn_mask", [[1]]), ("weight", ["x"])):
        with pytest.raises(IPAdapterError) as err:
            parsing.params_entries({**good, key: [value]})
        assert err.value.input == "ipadapter_params", key
    many = {k: v * (limits.MAX_REGIONS + 1) for k, v in good.items()}
    with pytest.raises(IPAdapterError, match="regions"):
        parsing.params_entries(many)


SITES = [Site(("input", 1, 0), 0, 64, 2), Site(("middle", 0, 0), 1, 128, 4), Site(("output", 1, 0), 2, 64, 2)]


@pytest.fixture(scope="module")
def tiny_adapter() -> IPAdapterModel:
    sd = adapter_state_dict("ip-adapter_sd15.safetensors", seed=2, dtype=torch.float32, sites=[64, 64, 128])
    return IPAdapterModel(split_adapter_sections(sd, "tiny.safetensors"), "tiny.safetensors")


def test_kv_rows_are_built_per_image_not_per_frame(tiny_adapter):
    """The review's finding: 1,000 per-frame weights with one image built 1,000 K/V rows at every site."""
    cond, uncond = torch.randn(1, 4, 768), torch.randn(1, 4, 768)
    weights = {s.key: LayerWeight(1.0) for s in SITES}
    frames = torch.linspace(0, 1, 1000)
    app = build_application(tiny_adapter, SITES, cond, uncond, weights, unfold=True, frame_weights=frames)
    for kv in app.sites.values():
        assert kv.k_cond.shape[0] == 1 and kv.v_uncond.shape[0] == 1
        assert isinstance(kv.scale, torch.Tensor) and kv.scale.shape[0] == 1000


def test_kv_rows_per_frame_are_capped(tiny_adapter, monkeypatch):
    cond, uncond = torch.randn(1, 4, 768), torch.randn(1, 4, 768)
    weights = {s.key: LayerWeight(1.0) for s in SITES}
    with pytest.raises(IPAdapterError) as err:
        build_application(tiny_adapter, SITES, cond, uncond, weights, unfold=True,
                          frame_weights=torch.ones(limits.MAX_FRAMES + 1))
    assert err.value.input == "weight"
    monkeypatch.setattr("ipadapter_core.adapter.MAX_KV_BYTES", 1 << 20)
    with pytest.raises(IPAdapterError) as err:  # K+V folds each frame's weight into its own rows
        build_application(tiny_adapter, SITES, cond, uncond, weights, unfold=True, embeds_scaling="K+V",
                          frame_weights=torch.ones(2000))
    assert "V only" in str(err.value)
    app = build_application(tiny_adapter, SITES, cond, uncond, weights, unfold=True, embeds_scaling="K+V",
                            frame_weights=torch.ones(16))
    assert next(iter(app.sites.values())).k_cond.shape[0] == 16


def test_safetensors_written_by_save_file_still_read(tmp_path):
    """The stricter header check keeps real files: a plain safetensors model is identified, not broken."""
    path = tmp_path / "model.safetensors"
    save_file({"visual_projection.weight": torch.zeros(1024, 1280)}, str(path))
    assert inventory.identify(str(path)).encoder == "vit-h"
