"""The pack and its helpers on newer ComfyUI (up to 0.38), simulated at each seam (issue 13).

Every test here switches one host attribute or signature to its newer form (tests/host/host_drift.py)
and checks the branch our code takes; where the 0.3.64 form is the one loaded, the same test checks
the old branch too. The rows of the audit each one covers are listed in docs/compat.md ("Host versions").
"""

from __future__ import annotations

import copy
import inspect
import json
import types

import pytest
import torch

from bench import host_compat
from ipadapter_cli.convert import convert
from ipadapter_cli.workflow import WORKFLOWS_DIR
from tests.host import adapters, harness, host_drift, probe
from tests.host.server_fixtures import demo_server  # noqa: F401  (fixture)
from tests.host.test_fast_path import (
    _allocated_bytes,
    _our_patches,
    _pointers,
    _stack,
    _tensors_of,
    setup,  # noqa: F401  (the shared fixture)
)

# --- clone(): copied on 0.3.64, shared by identity after PR #12382 ----------------------------------------


class _IncumbentStylePatch:
    """An attn2 patch without ``__deepcopy__`` that holds a tensor (what ComfyUI_IPAdapter_plus installs)."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor

    def __call__(self, q, k, v, extra):
        return q


def _check_clone_guarantees(setup) -> bool:  # noqa: F811
    """Our guarantee, whichever way the host clones: no adapter tensor copied, the parent never changes.

    Returns whether the host copied a foreign patch object on clone (the instrument's own check).
    """
    patched = _stack(setup, 3)
    harness.sample(patched, steps=1)  # per-layout K/V cached, so they are covered too
    ours = _our_patches(patched)
    pointers = _pointers(_tensors_of(ours))
    before = probe.options_snapshot(patched.model_options)
    held = sum(t.untyped_storage().nbytes() for t in _tensors_of(ours).values())
    clones: list = []
    allocated = _allocated_bytes(lambda: clones.append(patched.clone()))
    assert allocated < held, f"clone() allocated {allocated} bytes: our {held} bytes of K/V were copied"
    clone = clones[0]
    for key, patch in _our_patches(clone).items():
        assert patch is ours[key], f"clone() gave {key} another patch object"
    stacked = adapters.apply(clone, setup["ipadapters"][3], setup["image"], setup["clip_vision"], weight=0.5)
    harness.sample(stacked, steps=1)
    assert probe.options_snapshot(patched.model_options) == before, "stacking on a clone changed its parent"
    assert all(len(p.applications) == 3 for p in _our_patches(patched).values())
    assert _pointers(_tensors_of(_our_patches(patched))) == pointers

    carrier = patched.clone()
    foreign = _IncumbentStylePatch(torch.zeros(4096))
    carrier.set_model_attn2_replace(foreign, "input", 1, 0)
    copied = carrier.clone().model_options["transformer_options"]["patches_replace"]["attn2"][("input", 1, 0)]
    return copied is not foreign


def test_clone_guarantees_on_this_host(setup):  # noqa: F811
    foreign_copied = _check_clone_guarantees(setup)
    assert foreign_copied == host_drift.host_clone_deep_copies(), "the clone detection disagrees with the host"


def test_clone_guarantees_when_the_host_shares_patch_objects(setup, monkeypatch):  # noqa: F811
    with host_drift.newer_clone(monkeypatch):
        assert not host_drift.host_clone_deep_copies()
        foreign_copied = _check_clone_guarantees(setup)
    assert not foreign_copied, "the simulated newer clone() still deep-copied a foreign patch"


# --- clip_preprocess moved to comfy.clip_model (PR #11586) -------------------------------------------------


def _masked_encode(clip_vision, image):
    mask = torch.ones(1, image.shape[1], image.shape[2])
    mask[:, :, : image.shape[2] // 2] = 0.0
    return harness.pack_module("nodes.host").encode_image(clip_vision, image, mask)


def test_masked_encode_uses_the_moved_clip_preprocess(clip_vision, reference_image, monkeypatch):
    import comfy.clip_model

    had_new_home = hasattr(comfy.clip_model, "clip_preprocess")
    before = _masked_encode(clip_vision, reference_image)
    calls: list = []
    with host_drift.clip_preprocess_moved(monkeypatch, calls):
        import comfy.clip_vision

        assert not hasattr(comfy.clip_vision, "clip_preprocess")
        after = _masked_encode(clip_vision, reference_image)
    assert calls == [clip_vision.image_size], "the masked encode did not go through comfy.clip_model"
    assert torch.equal(before["image_embeds"], after["image_embeds"])
    if not had_new_home:  # 0.3.64: the old home served the first call
        assert harness.pack_module("nodes.host_compat").clip_preprocess() is comfy.clip_vision.clip_preprocess


# --- get_annotated_filepath raises ValueError for names leaving the folder ---------------------------------


def test_an_embeds_name_leaving_the_input_folder_names_the_input(pack, monkeypatch):
    with host_drift.strict_annotated_paths(monkeypatch):
        with pytest.raises(harness.error_type()) as caught:
            harness.run_node("IPAdapterLoadEmbeds", embeds="../../etc/passwd.ipadpt")
        loader = harness.pack_module("nodes.utility_nodes").IPAdapterLoadEmbeds
        assert loader.IS_CHANGED("../../etc/passwd.ipadpt") == ""  # validation goes on; run() reports it
    harness.assert_actionable(caught.value, "embeds", "input folder")


# --- bench/requeue.py: PromptExecutor(cache_args=...) -----------------------------------------------------


def test_requeue_bench_builds_the_executor_each_host_needs(comfy):
    import execution

    real = host_compat.prompt_executor(execution, server=types.SimpleNamespace(client_id=None))
    takes_args = "cache_args" in inspect.signature(execution.PromptExecutor.__init__).parameters
    assert takes_args == hasattr(real, "cache_args"), "the real executor was built without what it reads"

    class NewerPromptExecutor:  # execution.py 2026: execute_async reads cache_args["ram"] unconditionally
        def __init__(self, server, cache_type=False, cache_args=None, asset_manager=None):
            self.cache_args = cache_args

        def execute(self):
            return self.cache_args["ram"], self.cache_args["ram_inactive"]

    newer = types.SimpleNamespace(PromptExecutor=NewerPromptExecutor, CacheType=execution.CacheType)
    assert host_compat.prompt_executor(newer, server=None).execute() == (0, 0)


# --- ImageBatch (deprecated) in the shipped batch example -------------------------------------------------


def _batch_example() -> dict:
    return json.loads((WORKFLOWS_DIR / "batch_schedule_sd15.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_the_batch_example_converts_to_batchimagesnode_where_imagebatch_is_gone(demo_server):  # noqa: F811
    workflow = _batch_example()
    batch = next(n for n in workflow["nodes"] if n["type"] == "ImageBatch")
    sources = {}
    for link in workflow["links"]:
        if link[3] == batch["id"]:
            sources[link[4]] = [str(link[1]), link[2]]
    assert "ImageBatch" in demo_server.object_info
    kept = convert(workflow, demo_server.object_info)[str(batch["id"])]
    assert kept["class_type"] == "ImageBatch" and kept["inputs"] == {"image1": sources[0], "image2": sources[1]}

    newer = copy.deepcopy(demo_server.object_info)
    del newer["ImageBatch"]
    newer["BatchImagesNode"] = {"input": {"required": {"images": ["COMFY_AUTOGROW_V3", {}]}},
                                "input_order": {"required": ["images"]}, "output": ["IMAGE"]}
    replaced = convert(workflow, newer)[str(batch["id"])]
    assert replaced["class_type"] == "BatchImagesNode"
    assert replaced["inputs"] == {"images.image0": sources[0], "images.image1": sources[1]}


# --- ModelPatcher.cleanup() calls .cleanup() on every patch that has one ------------------------------------


def test_our_patches_have_no_cleanup_hook(setup):  # noqa: F811
    """Newer hosts call ``patch.cleanup()`` on every patch object of a model: ours must not answer to it."""
    patched = _stack(setup, 2)
    table = patched.model_options["transformer_options"]["patches_replace"]["attn2"]
    assert table and not any(hasattr(patch, "cleanup") for patch in table.values())
    assert not hasattr(harness.pack_module("nodes.dit_hooks").DitPatch, "cleanup")
