"""Session fixtures of the host tier: ComfyUI booted once, the pack loaded once, models built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.host import harness


@pytest.fixture(scope="session")
def host_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("comfy-host")
    return {"work": root, "models": root / "models"}


@pytest.fixture(scope="session")
def comfy(comfyui_root, host_dirs):
    """ComfyUI's ``nodes`` module, imported in-process in CPU mode."""
    return harness.boot(comfyui_root, host_dirs["models"])


@pytest.fixture(scope="session")
def pack(comfy, host_dirs):
    """The pack module as ComfyUI's loader imported it."""
    return harness.load_pack(host_dirs["work"])


@pytest.fixture(scope="session")
def ipadapter_dir(pack, host_dirs) -> Path:
    return host_dirs["models"] / "ipadapter"


@pytest.fixture(scope="session")
def clip_vision(comfy, host_dirs):
    from tests.fixtures.comfy_models import tiny_clip_vision

    return tiny_clip_vision(host_dirs["work"], seed=0)


@pytest.fixture(scope="session", autouse=True)
def _release_models():
    yield
    harness.release()


@pytest.fixture(scope="session")
def unet(comfy):
    """``unet(name, seed=0)``: a cached ModelPatcher of a named test UNet (see comfy_models.UNET_CONFIGS)."""
    from tests.fixtures.comfy_models import build_unet

    def make(name: str, seed: int = 0):
        key = ("unet", name, seed)
        if key not in harness.CACHE:
            harness.CACHE[key] = build_unet(name, seed)
        return harness.CACHE[key]

    return make


@pytest.fixture(scope="session")
def reference_image():
    import torch

    gen = torch.Generator().manual_seed(11)
    return torch.rand(1, 224, 224, 3, generator=gen)


@pytest.fixture
def io_dirs(pack, tmp_path):
    """ComfyUI's input and output folders pointed at temp dirs (never the checkout's), restored afterwards;
    ``outside`` is a sibling folder in neither, for names that try to leave them."""
    fp = harness.folder_paths()
    old = fp.get_input_directory(), fp.get_output_directory()
    dirs = {name: tmp_path / name for name in ("input", "output", "outside")}
    for d in dirs.values():
        d.mkdir()
    fp.set_input_directory(str(dirs["input"]))
    fp.set_output_directory(str(dirs["output"]))
    yield dirs
    fp.set_input_directory(old[0])
    fp.set_output_directory(old[1])

