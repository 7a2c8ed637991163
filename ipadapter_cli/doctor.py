"""``doctor``: the IPAdapter Doctor report from the command line, without starting ComfyUI.

Users who hit "model not found" often cannot run a graph at all, so the same report the
``IPAdapterDoctor`` node shows is available here: it reads the ComfyUI folder (its ``models/`` and
``extra_model_paths.yaml``) and identifies every file by content: UNet adapters, the Flux.1 (XLabs,
InstantX) and SD3.5 (InstantX) ones, and the CLIP ViT / SigLIP encoder each needs. Nothing here
imports ComfyUI.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _core_doctor():
    """``ipadapter_core.doctor``, importable whatever the working directory is."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from ipadapter_core import doctor

    return doctor


def comfyui_root(path: str | os.PathLike | None) -> Path:
    """``path``, else ``$COMFYUI_PATH``, else ``~/ComfyUI``; must hold ``models/`` or an extra_model_paths.yaml.

    A full checkout is not required: a portable install's data folder or a copied ``models`` tree is
    enough to report on.
    """
    root = Path(path or os.environ.get("COMFYUI_PATH") or Path.home() / "ComfyUI").expanduser().resolve()
    if not (root / "models").is_dir() and not (root / "extra_model_paths.yaml").is_file():
        raise FileNotFoundError(
            f"no ComfyUI folder at {root}: it has neither models/ nor extra_model_paths.yaml "
            "(pass --comfyui PATH or set COMFYUI_PATH)"
        )
    return root


def run_doctor(path: str | os.PathLike | None = None) -> str:
    """The report text for the ComfyUI folder at ``path`` (see ``comfyui_root``)."""
    doctor = _core_doctor()
    root = str(comfyui_root(path))
    return doctor.report(doctor.comfyui_folders(root), doctor.comfyui_version_at(root))


def cmd_doctor(args) -> int:
    print(run_doctor(args.comfyui))
    return 0
