"""Embeds files: our safetensors with metadata, the incumbent's .ipadpt pickles, weights-only refusal."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from ipadapter_core import __version__, embeds_io
from ipadapter_core.errors import IPAdapterError


def _embeds(*shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape)))


class _OpensAFile:
    """Pickles to a call of open(path, "w"): loading it without weights_only creates the file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("shape,output,encoder", [((2, 1024), "image_embeds", "vit-h"),
                                                  ((1, 257, 1280), "penultimate_hidden_states", "vit-h"),
                                                  ((3, 1280), "image_embeds", "vit-bigg"),
                                                  ((1, 5, 64), "penultimate_hidden_states", "")])
def test_save_load_round_trip_with_metadata(tmp_path, shape, output, encoder):
    t = _embeds(*shape)
    before = t.clone()
    path = str(tmp_path / "e_00001_.safetensors")
    meta = embeds_io.save_embeds(path, t, kind="plus", kind_label="SD1.5 plus")
    assert torch.equal(t, before)
    loaded, read_meta = embeds_io.load_embeds(path)
    assert torch.equal(loaded, t)
    assert read_meta == meta
    assert meta["format"] == embeds_io.FORMAT and meta["version"] == __version__
    assert json.loads(meta["shape"]) == list(shape)
    assert (meta["encoder_output"], meta["encoder"], meta["kind"]) == (output, encoder, "plus")
    assert embeds_io.is_embeds_file(path)


def test_incumbent_ipadpt_loads(tmp_path):
    t = _embeds(1, 257, 1280).half()
    path = tmp_path / "IP_embeds_00001.ipadpt"
    torch.save(t, path)
    loaded, meta = embeds_io.load_embeds(str(path))
    assert torch.equal(loaded, t) and meta == {"format": "ipadpt"}


def test_hostile_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ipadpt"
    torch.save(_OpensAFile(str(marker)), path)
    with pytest.raises(IPAdapterError) as err:
        embeds_io.load_embeds(str(path))
    assert not marker.exists()
    text = str(err.value)
    assert "evil.ipadpt" in text and "refused" in text and "nothing in it was run" in text
    assert err.value.input == "embeds" and err.value.fix
    # the payload is real: an unsafe load would have run it
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("payload,needle", [({"a": torch.zeros(2, 4)}, "dict"), (torch.zeros(4), "shape (4,)"),
                                            (torch.zeros(2, 4, dtype=torch.int64), "torch.int64"),
                                            (torch.full((1, 4), float("nan")), "NaN")])
def test_ipadpt_that_is_not_embeds_is_refused(tmp_path, payload, needle):
    path = tmp_path / "odd.ipadpt"
    torch.save(payload, path)
    with pytest.raises(IPAdapterError) as err:
        embeds_io.load_embeds(str(path))
    assert needle in str(err.value) and "odd.ipadpt" in str(err.value)


def test_foreign_and_broken_files_are_refused(tmp_path):
    model = tmp_path / "model.safetensors"
    save_file({"embeds": torch.zeros(1, 4)}, str(model))  # right key, but no metadata of ours
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"<html>not a file</html>")
    truncated = tmp_path / "cut.ipadpt"
    truncated.write_bytes(b"PK\x03\x04 nope")
    for path, needle in [(model, "not one 'IPAdapter Save Embeds' wrote"), (broken, "not one"),
                         (truncated, "could not be read"), (tmp_path / "none.ipadpt", "does not exist"),
                         (tmp_path / "x.png", "does not exist")]:
        with pytest.raises(IPAdapterError) as err:
            embeds_io.load_embeds(str(path))
        assert needle in str(err.value), str(err.value)
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG")
    with pytest.raises(IPAdapterError, match="not an embeds file"):
        embeds_io.load_embeds(str(png))


def test_listing_finds_ours_and_ipadpt_recursively(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    embeds_io.save_embeds(str(tmp_path / "b_00001_.safetensors"), _embeds(1, 1024))
    embeds_io.save_embeds(str(tmp_path / "sub" / "deeper" / "c.safetensors"), _embeds(1, 1024))
    torch.save(_embeds(1, 1024), tmp_path / "sub" / "a.ipadpt")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 4)
    (tmp_path / "photo.png").write_bytes(b"\x89PNG")
    assert embeds_io.list_embeds_files(str(tmp_path)) == ["b_00001_.safetensors", "sub/a.ipadpt",
                                                          "sub/deeper/c.safetensors"]


def test_check_embeds_rejects_non_tensors():
    with pytest.raises(IPAdapterError) as err:
        embeds_io.check_embeds([1.0, 2.0], "embed2")
    assert err.value.input == "embed2" and "list" in str(err.value)
    with pytest.raises(IPAdapterError):
        embeds_io.save_embeds("/nonexistent/never.safetensors", torch.zeros(0, 4))
