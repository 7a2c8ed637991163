"""The installation report: versions, providers, every model file identified, and per-preset gaps.

Plain Python: the ComfyUI node passes the folders ComfyUI knows; the command line finds them from a
ComfyUI checkout and its extra_model_paths.yaml.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from collections.abc import Callable
from types import SimpleNamespace

import yaml

from . import __version__, config
from .inventory import FileReport, identify, model_files
from .loading import untrusted_pickles_allowed
from .presets import find_file, preset_entry

FOLDER_KEYS = ("ipadapter", "clip_vision", "loras")


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def onnx_providers() -> str:
    try:
        import onnxruntime
    except Exception as exc:  # not installed, or a broken DLL on Windows
        return f"unavailable ({type(exc).__name__})"
    return ", ".join(onnxruntime.get_available_providers())


def environment(comfyui_version: str | None) -> list[tuple[str, str]]:
    import torch

    ort = next((package_version(n) for n in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml")
                if package_version(n) != "not installed"), "not installed")
    return [
        ("IPAdapter Suite", __version__),
        ("ComfyUI", comfyui_version or "unknown"),
        ("Python", f"{platform.python_version()} ({sys.executable})"),
        ("torch", f"{torch.__version__} (CUDA {'available' if torch.cuda.is_available() else 'not available'})"
                  + ("" if untrusted_pickles_allowed() else "; .ipadpt embeds are refused on torch < 2.10")),
        ("onnxruntime", f"{ort}; providers: {onnx_providers()}"),
        ("insightface", package_version("insightface")),
    ]


def preset_gaps(adapters: list[FileReport], clip_visions: list[FileReport]) -> list[str]:
    """For each preset and family: ready, or what is missing or wrong (by content) and where to get it."""
    lines = []
    by_name = {os.path.basename(r.path): r for r in adapters}
    for preset, families in config.presets().items():
        for family, row in families.items():
            if "unsupported" in row:
                continue
            entry = preset_entry(preset, family)
            enc = config.encoders()[entry.encoder]
            found = find_file(list(by_name), entry.patterns)
            problem = entry.content_problem(_as_kind(by_name[found])) if found else None
            needs_head = found is not None and by_name[found].encoder_output == "siglip_pooled"
            encoders = [r for r in clip_visions if find_file([os.path.basename(r.path)], [enc["pattern"]])
                        and (r.pooling_head or not needs_head)]
            have_enc = find_file([os.path.basename(r.path) for r in encoders], [enc["pattern"]])
            if problem:
                lines.append(f"  wrong    {preset} [{family}]: {found}: {problem}; get {entry.file} from {entry.url}")
                continue
            if found and have_enc:
                lines.append(f"  ready    {preset} [{family}]: {found} + {have_enc}")
                continue
            missing = [] if found else [f"{entry.file} -> models/ipadapter ({entry.url})"]
            head = " with vision_model.head.* (the attention-pooling head)" if needs_head else ""
            missing += [] if have_enc else [f"{enc['file']}{head} -> models/clip_vision ({enc['url']})"]
            lines.append(f"  missing  {preset} [{family}]: " + "; ".join(missing))
    return lines


def _as_kind(r: FileReport) -> SimpleNamespace:
    """What ``PresetEntry.content_problem`` reads, from a file's report."""
    return SimpleNamespace(kind=r.kind, tokens=r.tokens, label=r.label or r.kind)


def report(folders: dict[str, list[str]], comfyui_version: str | None = None,
           progress: Callable[[int, int], None] | None = None) -> str:
    """The whole doctor report as text. ``progress(done, total)`` follows the file scan, one step per model
    file (the node's bar; it may raise to cancel)."""
    out = ["IPAdapter Suite doctor", ""]
    out += [f"{k:16} {v}" for k, v in environment(comfyui_version)]
    scanned: dict[str, list[FileReport]] = {}
    files = {key: _files_to_read(key, folders.get(key, [])) for key in FOLDER_KEYS}
    total = sum(len(v) for v in files.values())
    done = 0
    for key in FOLDER_KEYS:
        paths = folders.get(key, [])
        out += ["", f"models/{key}: " + ("; ".join(paths) if paths else "no folder registered")]
        reports = []
        for path in files[key]:
            reports.append(identify(path))  # headers only; never raises (a broken file is reported as such)
            done += 1
            if progress is not None:
                progress(done, total)
        reports.sort(key=lambda r: r.path)
        scanned[key] = reports
        for r in reports:
            flag = {"broken": "BROKEN ", "other": "WRONG? "}.get(r.role, "       ")
            where = _misplaced(key, r)
            out.append(f"  {flag}{os.path.relpath(r.path, _root_of(r.path, paths))}: {r.summary}{where}")
        if not reports:
            out.append("  (no model files)")
    adapters = [r for r in scanned["ipadapter"] if r.role == "adapter"]
    out += ["", "Unified loader presets:"] + preset_gaps(adapters, [r for r in scanned["clip_vision"]
                                                                    if r.role == "clip_vision"])
    return "\n".join(out)


def _files_to_read(key: str, paths: list[str]) -> list[str]:
    """The files the report names: every model file, except in loras/ only the FaceID ones (by name), so a
    folder of hundreds of LoRAs is not read on every run."""
    found = model_files(paths)
    if key == "loras":
        found = [p for p in found if "faceid" in os.path.basename(p).lower()]
    return found


def _misplaced(folder_key: str, r: FileReport) -> str:
    expected = {"ipadapter": "adapter", "clip_vision": "clip_vision", "loras": "lora"}[folder_key]
    if r.role in ("broken", expected) or (folder_key == "loras" and r.role == "other"):
        return ""
    return f"  <- this is not a {expected.replace('_', ' ')} file; move it to the right folder"


def _root_of(path: str, roots: list[str]) -> str:
    for root in roots:
        if os.path.abspath(path).startswith(os.path.abspath(root) + os.sep):
            return root
    return os.path.dirname(path)


def comfyui_folders(comfyui: str) -> dict[str, list[str]]:
    """The folders ComfyUI would use: its models/ plus extra_model_paths.yaml entries."""
    folders = {key: [os.path.join(comfyui, "models", key)] for key in FOLDER_KEYS}
    yaml_path = os.path.join(comfyui, "extra_model_paths.yaml")
    if os.path.isfile(yaml_path):
        with open(yaml_path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        for section in data.values():
            if not isinstance(section, dict):
                continue
            base = os.path.expandvars(os.path.expanduser(str(section.get("base_path", ""))))
            if base and not os.path.isabs(base):
                base = os.path.join(os.path.dirname(yaml_path), base)
            for key in FOLDER_KEYS:
                for p in str(section.get(key, "") or "").splitlines():
                    if p.strip():
                        folders[key].append(os.path.join(base, os.path.expanduser(p.strip())))
    return folders


def comfyui_version_at(comfyui: str) -> str | None:
    path = os.path.join(comfyui, "comfyui_version.py")
    if os.path.isfile(path):
        for line in open(path, encoding="utf-8"):
            if line.startswith("__version__"):
                return line.split("=", 1)[1].strip().strip("\"'")
    return None
