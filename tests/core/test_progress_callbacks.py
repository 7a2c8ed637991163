"""Core loops a user waits on report ``(done, total)`` to the caller's callback and stop when it raises
(the node passes ComfyUI's progress bar and Cancel check: tests/host/test_progress_cancel.py)."""

from __future__ import annotations

import pytest
import torch

from ipadapter_core import doctor, embeds_io, inventory


class Cancelled(Exception):
    pass


def _recorder(cancel_at: int | None = None):
    calls: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        calls.append((done, total))
        if done == cancel_at:
            raise Cancelled

    return calls, progress


def _models(tmp_path, count: int):
    folders = {key: [str(tmp_path / key)] for key in doctor.FOLDER_KEYS}
    for key in doctor.FOLDER_KEYS:
        (tmp_path / key).mkdir()
    for i in range(count):
        key = doctor.FOLDER_KEYS[i % 3]
        name = f"faceid_lora_{i}.safetensors" if key == "loras" else f"file_{i}.safetensors"  # loras/: FaceID only
        (tmp_path / key / name).write_bytes(b"<html>not a model</html>")
    (tmp_path / "loras" / "style_lora.safetensors").write_bytes(b"x")  # not FaceID: not read, not counted
    return folders


def test_doctor_reports_one_step_per_model_file_over_all_folders(tmp_path):
    folders = _models(tmp_path, 5)
    calls, progress = _recorder()
    doctor.report(folders, progress=progress)
    assert calls == [(i, 5) for i in range(1, 6)]


def test_doctor_scan_stops_when_the_callback_raises(tmp_path, monkeypatch):
    folders = _models(tmp_path, 5)
    read: list[str] = []
    original = inventory.identify
    monkeypatch.setattr(doctor, "identify", lambda path: read.append(path) or original(path))  # as doctor calls it
    calls, progress = _recorder(cancel_at=2)
    with pytest.raises(Cancelled):
        doctor.report(folders, progress=progress)
    assert len(read) == 2 and calls == [(1, 5), (2, 5)]


def test_model_files_lists_without_reading(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.safetensors", "sub/b.bin", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.replace(str(tmp_path), "") for p in inventory.model_files([str(tmp_path)])] == \
        ["/a.safetensors", "/sub/b.bin"]


@pytest.mark.filterwarnings("ignore::FutureWarning")  # scikit-image deprecation inside insightface
def test_insightface_batch_reports_each_picture_and_stops_on_cancel(tmp_path):
    pytest.importorskip("insightface")
    from ipadapter_core import face
    from tests.fixtures.face_models import face_image, write_pack

    write_pack(tmp_path, "buffalo_l")
    model = face.load_face_model([str(tmp_path)], "buffalo_l", "CPU")
    images = torch.stack([torch.from_numpy(face_image(320, 320, seed)) for seed in range(3)])
    calls, progress = _recorder()
    assert len(model.analyze_batch(images, 224, progress=progress).faces) == 3
    assert calls == [(1, 3), (2, 3), (3, 3)]
    calls, progress = _recorder(cancel_at=1)
    with pytest.raises(Cancelled):
        model.analyze_batch(images, 224, progress=progress)
    assert calls == [(1, 3)]


def test_saved_embeds_appear_whole_or_not_at_all(tmp_path, monkeypatch):
    """A save that fails mid-write (disk full, Cancel, crash) leaves no embeds file and no temporary file."""
    import safetensors.torch

    target = tmp_path / "IP_embeds_00001_.safetensors"

    def half_written(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"\x10\x00")
        raise OSError("No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", half_written)
    with pytest.raises(OSError):
        embeds_io.save_embeds(str(target), torch.rand(1, 1024))
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    embeds_io.save_embeds(str(target), torch.rand(1, 1024))
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    assert embeds_io.list_embeds_files(str(tmp_path)) == [target.name]
