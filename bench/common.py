"""What every benchmark shares: ComfyUI in CPU mode, the pack as a package, the machine report, a pinned allocator.

Import it as a sibling module (``from common import ...``); run the scripts as ``python bench/<name>.py``.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from host_compat import no_api_nodes

REPO_ROOT = Path(__file__).resolve().parents[1]
PACK_NAME = "ipadapter_suite"
DEFAULT_COMFYUI = Path(os.environ.get("COMFYUI_PATH", Path.home() / "ComfyUI"))

# glibc serves large blocks with fresh mmap()s (its threshold moves as blocks are freed) and hands freed heap
# back to the kernel, so the same tensor allocation sometimes costs thousands of page faults and sometimes
# none: one host attention call at a 4096-query site moved between 7 and 17 ms. A fixed mmap threshold (32 MiB,
# glibc's largest) and no trimming keep freed memory in the heap, for every variant alike.
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 31)}


def pin_allocator(native: bool) -> str:
    """Re-run this script with ALLOCATOR_ENV set (glibc reads it at start-up) unless ``native``; describe it."""
    if native:
        return "glibc defaults (--native-malloc)"
    if any(os.environ.get(k) != v for k, v in ALLOCATOR_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **ALLOCATOR_ENV})
    return "glibc, mmap threshold 32 MiB, no trim (freed memory stays in the heap; --native-malloc: defaults)"


def _test_unets() -> ModuleType:
    """tests/fixtures/comfy_models.py, loaded by path (plain data and torch at import; ComfyUI has a ``tests``
    package of its own, so not as ``tests.fixtures``): the published UNet layouts live there once."""
    spec = importlib.util.spec_from_file_location("ipadapter_suite_test_unets",
                                                  REPO_ROOT / "tests" / "fixtures" / "comfy_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The published SD1.5 and SDXL block layouts at their real width (what ComfyUI's model detection derives).
_UNETS = _test_unets().UNET_CONFIGS
SD15_UNET_CONFIG: dict[str, Any] = {**_UNETS["sd15-topology"], "model_channels": 320}
SDXL_UNET_CONFIG: dict[str, Any] = {**_UNETS["sdxl-topology"], "model_channels": 320}


def boot_comfyui(root: Path) -> None:
    """Make ComfyUI importable in CPU mode (root first on sys.path, args.cpu before model_management)."""
    root = root.resolve()
    if not (root / "comfy" / "model_management.py").is_file():
        sys.exit(f"ComfyUI not found at {root} (set --comfyui or COMFYUI_PATH)")
    sys.path.insert(0, str(root))
    from comfy.cli_args import args

    args.cpu = True
    no_api_nodes(args)
    import comfy.model_management as mm

    if mm.cpu_state != mm.CPUState.CPU:
        sys.exit("comfy.model_management was imported before args.cpu was set")
    import folder_paths  # noqa: F401  (the pack's host layer imports it)
    import utils.extra_config  # noqa: F401  (ComfyUI's `utils` package, before anything imports its nodes.py)


def load_pack() -> ModuleType:
    """Import the repo as the package ``ipadapter_suite`` (its modules use relative imports)."""
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    spec = importlib.util.spec_from_file_location(
        PACK_NAME, REPO_ROOT / "__init__.py", submodule_search_locations=[str(REPO_ROOT)]
    )
    if spec is None or spec.loader is None:
        sys.exit(f"cannot load the pack from {REPO_ROOT}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    spec.loader.exec_module(module)
    return module


def init_parameters(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Give every parameter a defined value: normal(0.02) for >=2-D, ones for 1-D weights, zeros for biases.

    ComfyUI's ops skip initialisation, so without this the UNet holds whatever memory it was given.
    """
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith("bias"):
                param.zero_()
            elif param.dim() >= 2:
                param.normal_(0.0, 0.02, generator=generator)
            else:
                param.fill_(1.0)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import comfy.ldm.modules.attention as comfy_attention

    try:
        import comfyui_version

        comfy_version = comfyui_version.__version__
    except ImportError:
        comfy_version = "unknown"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "comfyui": comfy_version,
        "attention": comfy_attention.optimized_attention.__name__,
    }


def load_average() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 and a >= 0 else f"n/a ({a:.1f} vs {b:.1f} ms)"


class Timed:
    """Wraps a callable (an attn2 replacement, or the text attention inside one) and adds its wall time to
    ``spent[0]``."""

    def __init__(self, fn: Callable, spent: list[float]) -> None:
        self.fn, self.spent = fn, spent

    def __call__(self, *args):
        start = time.perf_counter()
        out = self.fn(*args)
        self.spent[0] += time.perf_counter() - start
        return out


def time_text_attention(table: dict[tuple, Callable], spent: list[float]) -> None:
    """Time the host attention each replacement runs for the text tokens (ours: ``attention``, the naive
    reference: ``text_attention``): the unpatched work, whose own run-to-run spread is larger than the
    difference measured here, so it is subtracted per call rather than per round."""
    for fn in table.values():
        for attr in ("attention", "text_attention"):
            if hasattr(fn, attr):
                setattr(fn, attr, Timed(getattr(fn, attr), spent))
