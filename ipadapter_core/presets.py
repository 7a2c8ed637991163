"""Unified-loader presets: which file a preset wants for a base family, and how to explain a miss."""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from typing import Any

from . import config
from .errors import IPAdapterError

FAMILIES = ("sd15", "sdxl", "flux", "sd3")  # preset rows; Kolors checkpoints use the sdxl rows


@dataclass(frozen=True)
class PresetEntry:
    """One preset's file for one base family. ``tokens``: the token count the file must also have, where one
    kind has several releases (XLabs v1/v2)."""

    preset: str
    family: str
    patterns: tuple[str, ...]
    file: str
    url: str
    encoder: str
    kind: str
    tokens: int | None = None

    def content_problem(self, kind: Any) -> str | None:
        """Why an adapter whose content is ``kind`` (a ModelKind) is not this preset's file, or None if it is."""
        if kind.kind != self.kind:
            return f"its content is a {kind.label} adapter, not the {self.kind} kind '{self.preset}' needs"
        if self.tokens is not None and kind.tokens != self.tokens:
            return f"it is a {kind.label} adapter, but '{self.preset}' needs the {self.tokens}-token release"
        return None


def preset_entry(preset: str, family: str) -> PresetEntry:
    presets = config.presets()
    if preset not in presets:
        raise IPAdapterError(f"Unknown preset '{preset}'.", expected=", ".join(presets),
                             fix="Pick a preset from the list.", input="preset")
    family_key = "sdxl" if family in ("sdxl", "kolors") else family
    entry = presets[preset].get(family_key)
    if entry is None or "unsupported" in entry:
        reason = entry["unsupported"] if entry else f"it has no file for {family}"
        raise IPAdapterError(f"The preset '{preset}' cannot be used with this checkpoint: {reason}",
                             expected="a preset available for this base model", fix="Pick another preset.",
                             input="preset")
    cfg = config.load_config()
    return PresetEntry(preset, family_key, tuple(entry["patterns"]), entry["file"], entry["url"], entry["encoder"],
                       cfg["preset_kinds"][preset], cfg.get("preset_tokens", {}).get(preset))


def find_file(names: list[str], patterns: tuple[str, ...] | list[str]) -> str | None:
    """The first file (in sorted order) matching the first pattern that matches anything."""
    ordered = sorted(names)
    for pattern in patterns:
        rx = re.compile(pattern, re.IGNORECASE)
        for name in ordered:
            if rx.search(name):
                return name
    return None


def near_misses(names: list[str], expected: str, limit: int = 3) -> list[str]:
    base = {os.path.basename(n).lower(): n for n in names}
    close = difflib.get_close_matches(expected.lower(), list(base), n=limit, cutoff=0.5)
    return [base[c] for c in close]


def not_found(what: str, folder_key: str, folders: list[str], names: list[str], patterns, file: str, url: str,
              input: str = "preset") -> IPAdapterError:
    """The message for a missing file: every folder searched, what would match, near misses, download."""
    near = near_misses(names, file)
    lines = [f"No {what} file was found for this preset."]
    lines.append("Folders searched (models/" + folder_key + " and extra_model_paths.yaml entries): "
                 + ("; ".join(folders) if folders else "none registered"))
    lines.append(f"Files present there: {len(names)}" + (f" (e.g. {', '.join(sorted(names)[:5])})" if names else ""))
    if near:
        lines.append("Near misses (rename if one of these is the right file): " + ", ".join(near))
    return IPAdapterError(
        "\n".join(lines),
        expected=f"a file named like '{file}' (matching {' or '.join(repr(p) for p in patterns)})",
        fix=f"Download {file} from {url} into {folders[0] if folders else 'models/' + folder_key}, then press "
        "'Refresh' in ComfyUI.",
        input=input,
    )
