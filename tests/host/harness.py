"""In-process ComfyUI for the host tier (comfyui-host.md §7.4).

``boot`` imports ComfyUI in CPU mode with its root first on ``sys.path`` (so ``import nodes`` is
ComfyUI's ``nodes.py``, never this repo's ``nodes/`` package); ``load_pack`` installs the repo as a
custom node under an awkward folder name and imports it with ComfyUI's own loader; ``sample`` runs
a few KSampler steps in memory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import types
from pathlib import Path

import torch

from bench.host_compat import no_api_nodes

REPO_ROOT = Path(__file__).resolve().parents[2]
# Dots, a dash, spaces and brackets: ComfyUI turns "." into "_x_" in the module name; all must work.
PACK_FOLDER = "IPAdapter-Suite (dev) v1.0"

_state: dict = {}
# Objects built once per test session (models, captured inputs ...); cleared at session end so
# ComfyUI's ModelPatcher finalizers run while ComfyUI is still importable.
CACHE: dict = {}


def release() -> None:
    import gc

    CACHE.clear()
    gc.collect()


def device() -> str:
    """The device the host tier runs on: ``$IPAS_DEVICE`` (``cpu``, the default, or ``cuda``)."""
    return os.environ.get("IPAS_DEVICE", "cpu").strip().lower() or "cpu"


def host_args() -> list[str]:
    """Extra ComfyUI command-line flags for the in-process host (``$IPAS_HOST_ARGS``, e.g. ``--lowvram``)."""
    import shlex

    return shlex.split(os.environ.get("IPAS_HOST_ARGS", ""))


def _apply_host_args(args) -> None:
    """Set the flags of ``host_args()`` on ComfyUI's parsed ``args``, as if given on its command line."""
    from comfy.cli_args import parser

    given = parser.parse_args(host_args())
    for name, value in vars(given).items():
        if value != parser.get_default(name):
            setattr(args, name, value)


def boot(comfy_root: Path, models_root: Path | None = None) -> types.ModuleType:
    """Import ComfyUI (CPU unless ``$IPAS_DEVICE=cuda``; no API nodes) and return its ``nodes`` module.

    Idempotent. ``$IPAS_HOST_ARGS`` adds ComfyUI flags (``--fp16-unet``, ``--lowvram`` ...).

    ``models_root`` gets an ``extra_model_paths.yaml``-style registration of ``ipadapter`` and
    ``clip_vision`` sub-folders *before* the pack loads, the way users point ComfyUI at models.
    """
    if "nodes" in _state:
        return _state["nodes"]
    comfy_root = Path(comfy_root).resolve()
    if str(comfy_root) in sys.path:
        sys.path.remove(str(comfy_root))
    sys.path.insert(0, str(comfy_root))
    # Our repo's `nodes/` package may have been imported by name; ComfyUI's must win.
    for name in [m for m in sys.modules if m == "nodes" or m.startswith("nodes.")]:
        if not str(getattr(sys.modules[name], "__file__", "") or "").startswith(str(comfy_root)):
            del sys.modules[name]

    from comfy.cli_args import args

    args.cpu = device() == "cpu"
    _apply_host_args(args)
    no_api_nodes(args)
    import comfy.model_management as mm

    if device() == "cpu":
        assert mm.cpu_state == mm.CPUState.CPU, "ComfyUI was imported before args.cpu was set"
    elif not torch.cuda.is_available():
        raise RuntimeError(f"IPAS_DEVICE={device()} but torch sees no CUDA device")
    import folder_paths
    import utils.extra_config  # noqa: F401  (the `utils` package, before nodes.py puts comfy/ first on sys.path)

    if models_root is not None:
        _register_models(models_root)
    import nodes

    actual = Path(nodes.__file__).resolve()
    assert actual == comfy_root / "nodes.py", f"`import nodes` resolved to {actual}, not ComfyUI's nodes.py"
    _state.update(nodes=nodes, folder_paths=folder_paths, comfy_root=comfy_root)
    return nodes


def _register_models(models_root: Path) -> None:
    """Point ComfyUI at temp model folders through an extra_model_paths.yaml, as users do."""
    import utils.extra_config

    models_root = Path(models_root)
    for sub in ("ipadapter", "clip_vision"):
        (models_root / sub).mkdir(parents=True, exist_ok=True)
    config = models_root / "extra_model_paths.yaml"
    config.write_text(f"ipas_tests:\n  base_path: {models_root}\n  ipadapter: ipadapter\n  clip_vision: clip_vision\n")
    utils.extra_config.load_extra_path_config(str(config))


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def load_pack(workdir: Path) -> types.ModuleType:
    """Install the repo as ``custom_nodes/<PACK_FOLDER>`` (a symlink) and load it with ComfyUI's loader.

    Fails with the host's logged traceback if the import fails. Returns the pack module, whose
    ``NODE_CLASS_MAPPINGS`` ComfyUI has registered.
    """
    if "pack" in _state:
        return _state["pack"]
    nodes = _state["nodes"]
    custom_nodes = Path(workdir) / "custom_nodes"
    custom_nodes.mkdir(parents=True, exist_ok=True)
    link = custom_nodes / PACK_FOLDER
    if not link.exists():
        link.symlink_to(REPO_ROOT, target_is_directory=True)
    core_nodes = set(nodes.NODE_CLASS_MAPPINGS)
    handler = _Collect()
    logging.getLogger().addHandler(handler)
    try:
        ok = asyncio.run(nodes.load_custom_node(str(link), ignore=core_nodes, module_parent="custom_nodes"))
    finally:
        logging.getLogger().removeHandler(handler)
    log = "\n".join(handler.lines)
    assert ok, f"ComfyUI could not load the pack from {link} (IMPORT FAILED):\n{log}"
    module = sys.modules[str(link).replace(".", "_x_")]
    mappings = getattr(module, "NODE_CLASS_MAPPINGS", None)
    assert mappings, "the pack exports no NODE_CLASS_MAPPINGS"
    for node_id, cls in mappings.items():
        assert nodes.NODE_CLASS_MAPPINGS.get(node_id) is cls, f"{node_id} was not registered with ComfyUI"
    _state.update(pack=module, core_node_ids=core_nodes)
    return module


def pack_module(name: str) -> types.ModuleType:
    """A submodule of the loaded pack, e.g. ``pack_module("ipadapter_core.attention")``."""
    return sys.modules[f"{_state['pack'].__name__}.{name}"]


def run_node(node_id: str, **inputs):
    """Call a node the way ComfyUI's executor does for V1 classes; returns its output tuple."""
    cls = _state["pack"].NODE_CLASS_MAPPINGS[node_id]
    with torch.inference_mode():
        return getattr(cls(), cls.FUNCTION)(**inputs)


def call_core_node(cls: type, **inputs) -> tuple:
    """Run a core node class, V1 (``FUNCTION``) or V3 (``execute``), and return its output tuple.

    ComfyUI keeps converting core nodes to the V3 schema, where a direct ``RescaleCFG().patch(...)``
    no longer exists; calling through whichever form the class has keeps these tests host-independent.
    """
    function = getattr(cls, "FUNCTION", None)
    if function is not None:
        return tuple(getattr(cls(), function)(**inputs))
    out = cls.execute(**inputs)
    return tuple(getattr(out, "result", out))


def error_type() -> type:
    """The pack's IPAdapterError class (as the loaded pack defines it)."""
    return pack_module("ipadapter_core.errors").IPAdapterError


def assert_actionable(exc: BaseException, *needles: str) -> str:
    """An error a user can act on: it says what was expected and what to do, names ``needles``, and is no raw
    shape error. Returns its text."""
    text = str(exc)
    assert "Expected:" in text and "What to do:" in text, text
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"
    assert "size mismatch" not in text and "mat1 and mat2" not in text, text
    return text


def folder_paths() -> types.ModuleType:
    return _state["folder_paths"]


def swap_model_folders(monkeypatch, root: Path, keys: tuple[str, ...] = ("ipadapter", "clip_vision")) -> None:
    """Point ComfyUI's ``keys`` model folders at fresh sub-folders of ``root`` for one test (undone after it)."""
    fp = folder_paths()
    for key in keys:
        (root / key).mkdir()
        monkeypatch.setitem(fp.folder_names_and_paths, key, ([str(root / key)], fp.supported_pt_extensions))
        monkeypatch.delitem(fp.filename_list_cache, key, raising=False)


# --- sampling ------------------------------------------------------------------------------------


def conditioning(context_dim: int, seed: int, sdxl: bool) -> list:
    """A random text conditioning ``[[tensor[1,77,C], extras]]`` (SDXL also needs a pooled output)."""
    gen = torch.Generator().manual_seed(seed)
    extras = {"pooled_output": torch.randn(1, 1280, generator=gen)} if sdxl else {}
    return [[torch.randn(1, 77, context_dim, generator=gen), extras]]


def sample(model, *, steps: int = 2, cfg: float = 4.0, seed: int = 7, size: int = 8, batch: int = 1,
           positive_hooks=None, negative_hooks=None) -> torch.Tensor:
    """A few Euler steps on a ``size``x``size`` latent with cfg > 1, so cond and uncond chunks both run.

    ``positive_hooks``/``negative_hooks`` (``comfy.hooks.HookGroup``) go on that conditioning, as ComfyUI's
    hook nodes put them there.
    """
    import comfy.hooks
    import comfy.sample

    context = context_dim(model)
    sdxl = context == 2048
    latent = torch.zeros(batch, 4, size, size)
    noise = comfy.sample.prepare_noise(latent, seed)
    positive = conditioning(context, 1000 + seed, sdxl)
    negative = conditioning(context, 2000 + seed, sdxl)
    positive = comfy.hooks.set_hooks_for_conditioning(positive, positive_hooks)
    negative = comfy.hooks.set_hooks_for_conditioning(negative, negative_hooks)
    with torch.inference_mode():
        out = comfy.sample.sample(model, noise, steps, cfg, "euler", "normal", positive, negative, latent,
                                  disable_pbar=True, seed=seed)
    assert torch.isfinite(out).all(), "sampling produced non-finite values"
    return out


def context_dim(model) -> int:
    for name, module in model.model.diffusion_model.named_modules():
        if name.endswith("attn2"):
            return int(module.to_k.weight.shape[1])
    raise ValueError("model has no cross-attention")


def env_for_subprocess() -> dict[str, str]:
    """Environment for a child Python that re-runs the harness (e.g. with a module hidden)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["COMFYUI_PATH"] = str(_state["comfy_root"])
    return env
