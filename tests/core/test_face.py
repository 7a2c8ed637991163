"""Face analysis through insightface's real FaceAnalysis path, with synthetic ONNX packs built here."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ipadapter_core import face
from ipadapter_core.errors import IPAdapterError
from ipadapter_core.face_align import align_face, similarity, template_for
from tests.fixtures.face_models import SyntheticFace, expected_box, face_image, write_pack

pytest.importorskip("insightface")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # scikit-image deprecation inside insightface

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("insightface")
    write_pack(root, "buffalo_l")
    write_pack(root, "antelopev2", seed=1)
    return root


@pytest.fixture(scope="module")
def model(root):
    return face.load_face_model([str(root)], "buffalo_l", "CPU")


def _images(*sizes: tuple[int, int], seed: int = 0) -> torch.Tensor:
    return torch.stack([torch.from_numpy(face_image(w, h, seed + i)) for i, (w, h) in enumerate(sizes)])


def test_detects_the_face_with_insightface_letterbox_geometry(model):
    batch = model.analyze_batch(_images((400, 300)), crop_size=224)
    found = batch.faces[0]
    np.testing.assert_allclose(found.bbox, expected_box(400, 300), atol=0.5)
    assert found.score == pytest.approx(0.875)
    assert found.detection_size == 640
    assert batch.crops().shape == (1, 224, 224, 3)
    assert 0.0 <= batch.crops().min() and batch.crops().max() <= 1.0


def test_insightface_deprecation_noise_does_not_reach_the_console(model):
    """insightface 2.1 + scikit-image warn on every face; the pack's own warnings stay the only ones shown."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        batch = model.analyze_batch(_images((320, 320)), crop_size=224)
    assert batch.embeddings("normed").shape == (1, 512)
    assert [str(w.message) for w in seen if "insightface" in w.filename] == []


def test_embeddings_raw_and_normed(model):
    batch = model.analyze_batch(_images((320, 320), (320, 320)), crop_size=224)
    raw, normed = batch.embeddings("raw"), batch.embeddings("normed")
    assert raw.shape == normed.shape == (2, 512) and raw.dtype == torch.float32
    torch.testing.assert_close(normed.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(normed, raw / raw.norm(dim=1, keepdim=True))
    assert not torch.allclose(normed[0], normed[1]), "the embedding must depend on the pixels"
    again = model.analyze_batch(_images((320, 320)), crop_size=224).embeddings("raw")
    assert torch.equal(again[0], raw[0]), "the same picture must give the same embedding"


def test_crop_is_at_the_encoder_size_and_matches_insightface_norm_crop(model):
    from insightface.utils.face_align import norm_crop

    picture = _images((300, 200))
    rgb = (picture[0] * 255).round().to(torch.uint8).numpy()
    for size in (224, 336, 256):
        found = model.analyze_batch(picture, crop_size=size).faces[0]
        assert found.crop.shape == (size, size, 3)
        reference = norm_crop(rgb, landmark=found.landmarks, image_size=size)
        assert np.abs(reference.astype(int) - found.crop.astype(int)).max() <= 1, size


def test_similarity_recovers_a_known_transform():
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = template_for(112)
    matrix = similarity(src, src @ rot.T + shift)
    np.testing.assert_allclose(matrix[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)
    # A crop aligned from the template itself is the identity warp at 112.
    img = (np.arange(112 * 112 * 3) % 251).astype(np.uint8).reshape(112, 112, 3)
    assert np.array_equal(align_face(img, template_for(112), 112), img)


def test_no_face_error_names_the_image(model):
    images = torch.cat([_images((256, 256)), torch.zeros(1, 256, 256, 3)])
    with pytest.raises(IPAdapterError) as err:
        model.analyze_batch(images, crop_size=224)
    text = str(err.value)
    assert "No face found in image 2 of 2" in text and "input 'image'" in text and "What to do:" in text


def test_small_face_is_found_by_retrying_smaller_detection_sizes(tmp_path):
    """The detector here only fires on canvases <= 448 px: insightface 2.1 needs input_sizes set too."""
    write_pack(tmp_path, "buffalo_l", max_canvas=448)
    small = face.load_face_model([str(tmp_path)], "buffalo_l", "CPU")
    det = small.app.models["detection"]
    before = (det.input_size, getattr(det, "input_sizes", None))
    found = small.analyze_batch(_images((300, 300)), crop_size=224).faces[0]
    assert found.detection_size == 448
    np.testing.assert_allclose(found.bbox, expected_box(300, 300, det_size=448), atol=0.5)
    assert (det.input_size, getattr(det, "input_sizes", None)) == before, "detection size was not restored"
    write_pack(tmp_path / "never", "buffalo_l", max_canvas=256)
    never = face.load_face_model([str(tmp_path / "never")], "buffalo_l", "CPU")
    with pytest.raises(IPAdapterError, match="smallest detection size"):
        never.analyze_batch(_images((300, 300)), crop_size=224)


def test_largest_face_by_default_best_score_on_request(tmp_path):
    big = SyntheticFace(fx=0.5, fy=0.5, k=0.25, score=0.7, stride=32)
    small_confident = SyntheticFace(fx=0.25, fy=0.25, k=0.08, score=0.95, stride=16)
    write_pack(tmp_path, "buffalo_l", faces=(big, small_confident))
    model = face.load_face_model([str(tmp_path)], "buffalo_l", "CPU")
    picture = _images((320, 320))
    largest = model.analyze_batch(picture, 224).faces[0]
    best = model.analyze_batch(picture, 224, select="best score").faces[0]
    np.testing.assert_allclose(largest.bbox, expected_box(320, 320, face=big), atol=0.5)
    np.testing.assert_allclose(best.bbox, expected_box(320, 320, face=small_confident), atol=0.5)
    assert best.score == pytest.approx(0.95) and largest.area > best.area


def test_antelopev2_pack_and_nested_unzip_layout(root, tmp_path):
    antelope = face.load_face_model([str(root)], "antelopev2", "CPU")
    batch = antelope.analyze_batch(_images((256, 256)), 224)
    assert batch.embeddings().shape == (1, 512)
    nested = write_pack(tmp_path / "x", "antelopev2")  # .../models/antelopev2 -> move into antelopev2/antelopev2
    target = tmp_path / "y" / "models" / "antelopev2" / "antelopev2"
    target.parent.mkdir(parents=True)
    nested.rename(target)
    assert face.pack_dir([str(tmp_path / "y")], "antelopev2") == str(target)


def test_missing_pack_is_a_clear_error_and_never_downloads(tmp_path):
    with pytest.raises(IPAdapterError) as err:
        face.load_face_model([str(tmp_path)], "antelopev2", "CPU")
    text = str(err.value)
    assert "antelopev2" in text and "models/insightface/models/antelopev2" in text and "input 'model_name'" in text
    assert not (tmp_path / "models").exists(), "insightface must not have been asked to download"


def test_provider_fallback_warns_and_reports_cpu(root):
    model = face.load_face_model([str(root)], "buffalo_l", "CUDA", available=["CPUExecutionProvider"])
    assert model.provider_used == "CPUExecutionProvider"
    assert model.warnings and "CUDA" in model.warnings[0] and "onnxruntime-gpu" in model.warnings[0]
    assert model.analyze_batch(_images((256, 256)), 224).embeddings().shape == (1, 512)


@pytest.mark.parametrize(
    "choice, available, providers, warns",
    [
        ("CPU", ["CPUExecutionProvider"], ["CPUExecutionProvider"], False),
        ("CUDA", ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"],
         False),
        ("ROCM", ["MIGraphXExecutionProvider", "CPUExecutionProvider"],
         ["MIGraphXExecutionProvider", "CPUExecutionProvider"], False),
        ("DirectML", ["DmlExecutionProvider", "CPUExecutionProvider"],
         ["DmlExecutionProvider", "CPUExecutionProvider"], False),
        ("CoreML", ["AzureExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"], True),
        ("OpenVINO", ["CPUExecutionProvider"], ["CPUExecutionProvider"], True),
    ],
)
def test_provider_plan(choice, available, providers, warns):
    plan = face.plan_providers(choice, available)
    assert plan.providers == providers
    assert (plan.warning is not None) == warns


def test_unknown_provider_is_refused():
    with pytest.raises(IPAdapterError, match="Unknown provider"):
        face.plan_providers("TPU", ["CPUExecutionProvider"])


def test_without_insightface_the_core_imports_and_explains_the_install(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.modules["insightface"] = None
        sys.path.insert(0, {str(REPO)!r})
        from ipadapter_core import face
        from ipadapter_core.errors import IPAdapterError
        try:
            face.load_face_model([{str(tmp_path)!r}], "buffalo_l", "CPU")
        except IPAdapterError as exc:
            print("ERROR", exc)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ERROR" in out.stdout and "pip install" in out.stdout and sys.executable in out.stdout, out.stdout
    assert "insightface>=2.1" in out.stdout
