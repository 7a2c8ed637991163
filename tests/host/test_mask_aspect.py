"""A stretched attn_mask (issue 14 part 5): the adapter still applies, and while sampling the pack warns in
the log and sends the warning to the applying node's notes box; a matching mask is silent and clears it.

Sampled in-process by ComfyUI's own sampler: SD1.5 (attn2 patches), Tiled (only the user's mask is
checked, not the tile masks), and Flux/SD3.5 (transformer hooks). The notes message is caught by a
stand-in for the server's ``send_sync``, with the node id ComfyUI's executor would have set."""

from __future__ import annotations

import logging
import sys
import types

import pytest
import torch

from tests.host import adapters, harness
from tests.host import dit_cases as dc

WIDE = torch.ones(1, 64, 256)  # 4:1, drawn for another picture
SQUARE = torch.ones(1, 96, 96)


@pytest.fixture
def sent(monkeypatch):
    """Messages the pack sends to the frontend (a stand-in ``server.PromptServer.instance``)."""
    messages: list[tuple[str, dict, object]] = []
    instance = types.SimpleNamespace(client_id="client-1",
                                     send_sync=lambda event, data, sid=None: messages.append((event, data, sid)))
    fake = types.ModuleType("server")
    fake.PromptServer = types.SimpleNamespace(instance=instance)
    monkeypatch.setitem(sys.modules, "server", fake)
    return messages


@pytest.fixture
def sd15(unet, ipadapter_dir, clip_vision, reference_image):
    model = unet("sd15-reduced")
    ip = adapters.load(adapters.adapter_file(ipadapter_dir, "sd15-reduced", model, seed=0))
    return dict(model=model, ip=ip, cv=clip_vision, image=reference_image)


def _as_node(node_id: str, make):
    """Run ``make()`` as ComfyUI's executor runs a node: with that node's execution context."""
    from comfy_execution.utils import CurrentNodeContext

    with CurrentNodeContext("prompt-1", node_id):
        return make()


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "attn_mask is" in r.getMessage()]


def test_a_4_to_1_mask_on_a_square_latent_runs_and_warns_in_the_log_and_the_notes_box(sd15, sent, caplog):
    patched = _as_node("12", lambda: adapters.apply(sd15["model"], sd15["ip"], sd15["image"], sd15["cv"],
                                                    attn_mask=WIDE))
    with caplog.at_level(logging.WARNING, logger="ipadapter_suite"):
        latent = harness.sample(patched, size=8)
    assert torch.isfinite(latent).all()
    logged = _warnings(caplog)
    assert len(logged) == 1, logged
    assert "256x64" in logged[0] and "8x8" in logged[0] and "node 12" in logged[0] and "4.00x" in logged[0]
    assert "IPAdapter Advanced (node 12, " in logged[0], "the warning names the node as the user sees it"
    notes = [data for event, data, _ in sent if event == "ipadapter_suite.notes"]
    shown = "WARNING: " + logged[0].removeprefix("[IPAdapter Suite] ")
    assert notes == [{"node": "12", "key": "mask_aspect", "text": [shown]}]
    assert sent[0][2] == "client-1", "the message goes to the client that queued the prompt"


def test_the_stretched_mask_still_applies_as_before(sd15):
    """Warning only: the mask is stretched to the grid exactly as a mask of the latent's shape would be."""
    stretched = torch.nn.functional.interpolate(WIDE.unsqueeze(1), size=(8, 8), mode="bilinear").squeeze(1)
    wide = adapters.apply(sd15["model"], sd15["ip"], sd15["image"], sd15["cv"], attn_mask=WIDE * 0.5)
    fit = adapters.apply(sd15["model"], sd15["ip"], sd15["image"], sd15["cv"], attn_mask=stretched * 0.5)
    assert torch.equal(harness.sample(wide, size=8), harness.sample(fit, size=8))


def test_a_matching_mask_is_silent_and_clears_an_earlier_warning(sd15, sent, caplog):
    patched = _as_node("12", lambda: adapters.apply(sd15["model"], sd15["ip"], sd15["image"], sd15["cv"],
                                                    attn_mask=SQUARE))
    with caplog.at_level(logging.WARNING, logger="ipadapter_suite"):
        harness.sample(patched, size=8)
    assert not _warnings(caplog)
    assert [data for _, data, _ in sent] == [{"node": "12", "key": "mask_aspect", "text": []}]


def test_the_same_patched_model_warns_again_on_every_run_and_the_input_model_keeps_nothing(sd15, caplog):
    from comfy.patcher_extension import WrappersMP

    model = sd15["model"]
    before = repr(model.wrappers)
    patched = adapters.apply(model, sd15["ip"], sd15["image"], sd15["cv"], attn_mask=WIDE)
    assert repr(model.wrappers) == before
    assert not model.get_wrappers(WrappersMP.OUTER_SAMPLE, "ipadapter_suite.mask_aspect")
    with caplog.at_level(logging.WARNING, logger="ipadapter_suite"):
        harness.sample(patched, size=8)
        harness.sample(patched, size=8)
    assert len(_warnings(caplog)) == 2


def test_two_adapters_with_masks_warn_for_their_own_nodes(sd15, sent):
    first = _as_node("3", lambda: adapters.apply(sd15["model"], sd15["ip"], sd15["image"], sd15["cv"],
                                                 attn_mask=WIDE))
    second = _as_node("4", lambda: adapters.apply(first, sd15["ip"], sd15["image"], sd15["cv"], attn_mask=SQUARE))
    harness.sample(second, size=8)
    by_node = {data["node"]: data["text"] for _, data, _ in sent}
    assert set(by_node) == {"3", "4"} and len(by_node["3"]) == 1 and by_node["4"] == []


def _tiled(model, ip, cv, **options):
    wide_image = torch.rand(1, 64, 160, 3, generator=torch.Generator().manual_seed(4))  # several tiles
    return harness.run_node(
        "IPAdapterTiled", model=model, ipadapter=ip, image=wide_image, weight=1.0, weight_type="linear",
        start_at=0.0, end_at=1.0, sharpening=0.0, embeds_scaling="V only", combine_embeds="concat",
        encode_batch_size=0, clip_vision=cv, **options)[0]


def test_tiled_checks_the_users_mask_once_and_never_its_tile_masks(sd15, caplog):
    with caplog.at_level(logging.WARNING, logger="ipadapter_suite"):
        harness.sample(_tiled(sd15["model"], sd15["ip"], sd15["cv"]), size=8)
        assert not _warnings(caplog), "tile masks place the tiles; they are not the user's mistake"
        harness.sample(_tiled(sd15["model"], sd15["ip"], sd15["cv"], attn_mask=WIDE), size=8)
    assert len(_warnings(caplog)) == 1


@pytest.mark.parametrize("name", ["xlabs", "sd3"])
def test_transformer_adapters_warn_the_same_way(name, pack, ipadapter_dir, host_dirs, sent, caplog):
    family = dc.ADAPTERS[name][2]
    encs = dc.encoders(host_dirs["work"], host_dirs["models"] / "clip_vision")
    patched = _as_node("7", lambda: dc.apply(dc.model(family), dc.load(ipadapter_dir, name), dc.reference_image(),
                                             dc.encoder_for(name, encs), attn_mask=WIDE))
    with caplog.at_level(logging.WARNING, logger="ipadapter_suite"):
        dc.sample(patched, family)
    logged = _warnings(caplog)
    assert len(logged) == 1 and "256x64" in logged[0] and f"{dc.LATENT}x{dc.LATENT}" in logged[0]
    assert [data["node"] for _, data, _ in sent] == ["7"]


def test_the_latent_size_is_read_the_way_each_host_passes_it(pack):
    """0.3.64 passes the noise; newer hosts pack several latents and pass ``latent_shapes`` (video first)."""
    latent_size = harness.pack_module("nodes.mask_watch").latent_size
    assert latent_size((torch.zeros(1, 4, 60, 80),), {}) == (60, 80)
    assert latent_size((torch.zeros(1, 16, 5, 30, 40),), {}) == (30, 40)  # video [B, C, T, H, W]
    packed = torch.zeros(1, 1, 9999)
    assert latent_size((packed,), {"latent_shapes": [(1, 128, 4, 24, 32), (1, 8, 100)]}) == (24, 32)
    assert latent_size((packed,), {"latent_shapes": None}) is None


def test_notes_go_to_the_client_of_the_running_prompt_where_the_host_tracks_it(pack, sent, monkeypatch):
    """Newer hosts keep the client id in a context variable (prompts run side by side); 0.3.64 on the server."""
    import comfy_execution.utils as utils

    send_notes = harness.pack_module("nodes.host_notes").send_notes
    assert send_notes("5", "k", ["a"]) and sent[-1][2] == "client-1"  # 0.3.64: the server's client_id
    monkeypatch.setattr(utils, "has_current_client_id", lambda: True, raising=False)
    monkeypatch.setattr(utils, "get_current_client_id", lambda: "client-2", raising=False)
    assert send_notes("5", "k", ["a"]) and sent[-1][2] == "client-2"
    assert not send_notes(None, "k", ["a"]), "no node, nothing to show it in"
