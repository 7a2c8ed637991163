"""The pack loads through ComfyUI's own custom-node loader, from any folder name, with or without InsightFace."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.host import harness

CORE_NODE_IDS = [
    "IPAdapterUnifiedLoader", "IPAdapterModelLoader", "IPAdapter", "IPAdapterAdvanced", "IPAdapterEncoder",
    "IPAdapterEmbeds",
]


def test_pack_loads_with_comfyui_loader_from_an_odd_folder_name(pack, comfy):
    assert any(c in harness.PACK_FOLDER for c in ".- ()"), "the folder name must be awkward to prove anything"
    for node_id in CORE_NODE_IDS:
        assert node_id in pack.NODE_CLASS_MAPPINGS, f"{node_id} missing from NODE_CLASS_MAPPINGS"
        assert comfy.NODE_CLASS_MAPPINGS[node_id] is pack.NODE_CLASS_MAPPINGS[node_id]
        assert node_id in pack.NODE_DISPLAY_NAME_MAPPINGS
    clashes = set(pack.NODE_CLASS_MAPPINGS) & harness._state["core_node_ids"]
    assert not clashes, f"these ids clash with ComfyUI's own nodes and would be ignored: {clashes}"


def test_import_nodes_is_comfyuis_not_ours(comfy, comfyui_root):
    import nodes

    assert nodes is comfy
    assert nodes.__file__ == str(comfyui_root / "nodes.py")


def test_ipadapter_folder_keeps_extra_model_paths_entries(pack, ipadapter_dir):
    fp = harness.folder_paths()
    paths, extensions = fp.folder_names_and_paths["ipadapter"]
    assert str(ipadapter_dir) in paths, "the path from extra_model_paths.yaml was dropped"
    assert any(p.endswith("models/ipadapter") or p.endswith("models\\ipadapter") for p in paths)
    assert {".safetensors", ".bin"} <= set(extensions)
    (ipadapter_dir / "probe-listing.safetensors").write_bytes(b"")
    (ipadapter_dir / "notes.txt").write_text("not a model")
    try:
        listed = fp.get_filename_list("ipadapter")
        assert "probe-listing.safetensors" in listed
        assert "notes.txt" not in listed
    finally:
        (ipadapter_dir / "probe-listing.safetensors").unlink()
        (ipadapter_dir / "notes.txt").unlink()


def test_every_node_declares_inputs_the_host_can_read(pack):
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        spec = cls.INPUT_TYPES()
        assert "required" in spec, node_id
        assert callable(getattr(cls(), cls.FUNCTION)), node_id
        assert isinstance(cls.RETURN_TYPES, tuple), node_id


def test_pack_imports_without_insightface(comfy, tmp_path):
    """FaceID is optional: with `import insightface` failing, the pack must still load."""
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.modules["insightface"] = None  # any `import insightface` now raises ImportError
        from tests.host import harness
        harness.boot(Path({str(harness._state["comfy_root"])!r}), Path({str(tmp_path / "models")!r}))
        pack = harness.load_pack(Path({str(tmp_path)!r}))
        assert "insightface" not in [m for m, v in sys.modules.items() if v is not None]
        print("LOADED", len(pack.NODE_CLASS_MAPPINGS))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env=harness.env_for_subprocess(), cwd=str(harness.REPO_ROOT))
    assert result.returncode == 0 and "LOADED" in result.stdout, result.stdout[-3000:] + result.stderr[-6000:]
