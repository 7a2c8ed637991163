"""File names from a prompt -> paths, confined to the folder each input is meant for.

A prompt posted to a ``--listen`` server may carry any string where a file name is expected: ComfyUI's
combo check stops a name not in the list, but not when another pack's "any type" node feeds the
input. So every name is checked here, whatever reached the node:

* input-folder files (Load Embeds): after resolving ``..`` and symlinks, the file is inside ComfyUI's
  input folder, or inside the output folder for a name ending in " [output]"; nothing else;
* ``filename_prefix`` (Save Embeds): the file it makes is inside the output folder, symlinks resolved;
* model names: relative, no ``..`` leaving the model folder (symlinks the owner put *in* a model folder are
  followed, as ComfyUI does: sharing model files that way is common and uploads cannot create links);
* InsightFace pack names: one plain folder name.
"""

from __future__ import annotations

import os
import re

import folder_paths

from ..ipadapter_core.errors import IPAdapterError

OUTPUT_MARK = " [output]"
INPUT_MARK = " [input]"
MAX_NAME = 1024  # characters of a file name or prefix (a path component is at most 255 on most systems)
_ANNOTATION = re.compile(r"\s\[[A-Za-z0-9_-]+\]$")
_PACK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")


def _refuse(name: object, why: str, input_name: str | None, expected: str, fix: str) -> IPAdapterError:
    shown = name if isinstance(name, str) and len(name) <= 200 else f"{str(name)[:200]}..."
    return IPAdapterError(f"'{shown}' {why}", expected=expected, fix=fix, input=input_name)


def _plain(name: object, input_name: str | None, expected: str, fix: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise _refuse(name, "is not a file name.", input_name, expected, fix)
    if len(name) > MAX_NAME or "\x00" in name:
        raise _refuse(name, f"is not a usable file name (over {MAX_NAME} characters, or a NUL byte).", input_name,
                      expected, fix)
    return name


def inside(base: str, relative: str) -> str | None:
    """``base/relative`` with symlinks and ``..`` resolved, if that stays strictly inside ``base``; else None."""
    if os.path.isabs(relative) or os.path.splitdrive(relative)[0]:
        return None
    root = os.path.realpath(base)
    full = os.path.realpath(os.path.join(root, relative))
    try:
        ok = os.path.commonpath([root, full]) == root and full != root
    except ValueError:  # different drives (Windows)
        ok = False
    return full if ok else None


def input_file_path(name: object, input_name: str = "embeds") -> str:
    """The path of a file picked from the input folder, or from the output folder for a "name [output]"."""
    expected = "a file name listed by the node, inside ComfyUI's input folder (or output folder, marked [output])"
    fix = "Pick the file from the list, or copy it into ComfyUI's input folder first."
    name = _plain(name, input_name, expected, fix)
    if name.endswith(OUTPUT_MARK):
        base, relative = folder_paths.get_output_directory(), name[: -len(OUTPUT_MARK)]
    elif name.endswith(INPUT_MARK):
        base, relative = folder_paths.get_input_directory(), name[: -len(INPUT_MARK)]
    elif _ANNOTATION.search(name):
        raise _refuse(name, "names a folder other than input or output.", input_name, expected, fix)
    else:
        base, relative = folder_paths.get_input_directory(), name
    path = inside(base, relative)
    if path is None:
        raise _refuse(name, "is not a file inside ComfyUI's input or output folder (absolute, '..' or a link "
                      "leading out of it).", input_name, expected, fix)
    return path


def output_save_path(filename_prefix: object, extension: str) -> tuple[str, str, str]:
    """A fresh ``<prefix>_<counter:05>_<extension>`` path in the output folder, with ComfyUI's counter.

    Returns (full path, file name, subfolder). The trailing underscore before the extension is what
    ComfyUI's counter parses, so each save gets the next number instead of overwriting.
    """
    expected = "a file name prefix, optionally with sub-folders inside the output folder"
    fix = "Use a prefix such as 'IP_embeds' or 'embeds/portrait'."
    prefix = _plain(filename_prefix, "filename_prefix", expected, fix)
    if len(prefix) > 200:
        raise _refuse(prefix, "is too long for a file name prefix (over 200 characters).", "filename_prefix",
                      expected, fix)
    output_dir = folder_paths.get_output_directory()
    if inside(output_dir, prefix) is None:
        raise _refuse(prefix, "leaves the output folder (absolute, '..' or a link leading out of it).",
                      "filename_prefix", expected, fix)
    try:
        folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(prefix, output_dir)
    except Exception as exc:  # the host raises a bare Exception for prefixes leaving the output folder
        raise IPAdapterError(
            f"Cannot save with the prefix '{prefix}': {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}",
            expected=expected, fix=fix, input="filename_prefix",
        ) from None
    name = f"{filename}_{counter:05}_{extension}"
    path = inside(output_dir, os.path.relpath(os.path.join(folder, name), output_dir))
    if path is None:
        raise _refuse(prefix, "leads out of the output folder through a link.", "filename_prefix", expected, fix)
    return path, name, subfolder


def model_name(folder: str, filename: object, input_name: str | None = None) -> str:
    """A model file name as it may be looked up in a model folder: relative, never leaving it."""
    expected = f"a file name listed in the {folder} folder"
    fix = "Pick the file from the list (press 'r' to refresh it)."
    name = _plain(filename, input_name, expected, fix)
    normal = os.path.normpath(name)
    if os.path.isabs(name) or os.path.splitdrive(name)[0] or normal == ".." or normal.startswith(("../", "..\\")):
        raise _refuse(name, f"is not a file inside the {folder} folder (absolute or '..').", input_name, expected,
                      fix)
    return name


def pack_name(name: object, input_name: str = "model_name") -> str:
    """An InsightFace pack name: one plain folder name (buffalo_l, antelopev2 ...), never a path."""
    expected = "an InsightFace pack name such as buffalo_l or antelopev2 (a folder in models/insightface/models)"
    fix = "Pick the pack from the list."
    name = _plain(name, input_name, expected, fix)
    if not _PACK_NAME.fullmatch(name):
        raise _refuse(name, "is not an InsightFace pack name (a path or unusual characters).", input_name,
                      expected, fix)
    return name
