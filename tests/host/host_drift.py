"""Newer ComfyUI behaviour, simulated at its seam on the 0.3.64 host the tests run (issue 13).

Each context manager swaps one host attribute for the form newer hosts have, so a test can check that
the pack (or a test/bench helper) takes the branch it should. The audit that lists each change, with
file and commit, is ../shared/specs/comfyui-drift.md; docs/compat.md, "Host versions", lists the shims.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


def copy_lists_and_dicts(obj, memo: dict | None = None):
    """What newer ``clone()`` does to model_options: copy dicts and lists, share every other object."""
    memo = {} if memo is None else memo
    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, dict):
        out = {copy_lists_and_dicts(k, memo): copy_lists_and_dicts(v, memo) for k, v in obj.items()}
    elif isinstance(obj, list):
        out = [copy_lists_and_dicts(item, memo) for item in obj]
    else:
        out = obj
    memo[id(obj)] = out
    return out


def host_clone_deep_copies() -> bool:
    """True on hosts whose ``clone()`` deep-copies model_options objects (0.3.64); False after PR #12382."""
    import comfy.utils

    return not hasattr(comfy.utils, "deepcopy_list_dict")


@contextmanager
def newer_clone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """ComfyUI PR #12382 (2026-02): ``clone()`` copies model_options with ``comfy.utils.deepcopy_list_dict``.

    0.3.64's ``clone()`` calls ``copy.deepcopy`` on model_options (its only deepcopy), so the module's
    ``copy`` is swapped for one whose ``deepcopy`` copies only dicts and lists.
    """
    import comfy.model_patcher
    import comfy.utils

    newer_copy = types.SimpleNamespace(**{name: getattr(copy, name) for name in ("copy", "deepcopy", "Error")})
    newer_copy.deepcopy = copy_lists_and_dicts
    with monkeypatch.context() as m:
        m.setattr(comfy.model_patcher, "copy", newer_copy)
        m.setattr(comfy.utils, "deepcopy_list_dict", copy_lists_and_dicts, raising=False)
        yield


@contextmanager
def clip_preprocess_moved(monkeypatch: pytest.MonkeyPatch, calls: list) -> Iterator[None]:
    """ComfyUI PR #11586: ``clip_preprocess`` lives in ``comfy.clip_model``; the clip_vision alias is removed.

    The moved function records its calls in ``calls`` and does what 0.3.64's did.
    """
    import comfy.clip_model
    import comfy.clip_vision

    original = comfy.clip_vision.clip_preprocess

    def moved(*args, **kwargs):
        calls.append(kwargs.get("size"))
        return original(*args, **kwargs)

    with monkeypatch.context() as m:
        m.delattr(comfy.clip_vision, "clip_preprocess")
        m.setattr(comfy.clip_model, "clip_preprocess", moved, raising=False)
        yield


@contextmanager
def strict_annotated_paths(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Newer folder_paths (2026): ``get_annotated_filepath`` raises ValueError for a name leaving its folder."""
    import os

    import folder_paths

    original = folder_paths.get_annotated_filepath

    def strict(name: str, default_dir: str | None = None) -> str:
        path = original(name, default_dir)
        base = os.path.realpath(default_dir or folder_paths.get_input_directory())
        if os.path.commonpath([base, os.path.realpath(path)]) != base:
            raise ValueError(f"Invalid file path: {name}")
        return path

    with monkeypatch.context() as m:
        m.setattr(folder_paths, "get_annotated_filepath", strict)
        yield
