"""Face analysis for the FaceID adapters, behind a small interface.

insightface is optional and heavy, so it is imported only when a face model is loaded; without
it the pack loads and the FaceID nodes say exactly what to install for the running Python. Only
the detector and the recognizer of a pack run (never the landmark or gender/age models). The
detection-size retry works on insightface 0.7.x and 2.x: 2.x reads ``input_sizes`` and ignores
``input_size`` (insightface.md §6), so both are set.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import IPAdapterError
from .face_align import align_face

log = logging.getLogger("ipadapter_suite.face")

PACKS = ["buffalo_l", "antelopev2"]
PACK_URLS = {
    "buffalo_l": "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
    "antelopev2": "https://huggingface.co/MonsterMMORPG/tools/resolve/main/antelopev2.zip",
}
PROVIDERS = ["CPU", "CUDA", "ROCM", "DirectML", "OpenVINO", "CoreML"]
# Choice -> onnxruntime provider names to try, in order (ROCm moved to MIGraphX in recent ORT builds).
PROVIDER_NAMES = {
    "CPU": ["CPUExecutionProvider"],
    "CUDA": ["CUDAExecutionProvider"],
    "ROCM": ["ROCMExecutionProvider", "MIGraphXExecutionProvider"],
    "DirectML": ["DmlExecutionProvider"],
    "OpenVINO": ["OpenVINOExecutionProvider"],
    "CoreML": ["CoreMLExecutionProvider"],
}
PROVIDER_PACKAGES = {
    "CUDA": "onnxruntime-gpu", "ROCM": "onnxruntime-migraphx (or onnxruntime-rocm)",
    "DirectML": "onnxruntime-directml", "OpenVINO": "onnxruntime-openvino", "CoreML": "onnxruntime (macOS build)",
}
DETECTION_SIZES = (640, 576, 512, 448, 384, 320)
SELECT = ["largest", "best score"]
DOCS = "docs/faceid.md"


def install_command() -> str:
    """The pip command that installs the FaceID extra into the Python running ComfyUI."""
    return f'"{sys.executable}" -m pip install "insightface>=2.1" onnxruntime'


def _import_insightface():
    """``insightface.app.FaceAnalysis``, or an error that says what to install (and why import failed)."""
    try:
        from insightface.app import FaceAnalysis
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        if missing and str(missing).startswith("insightface"):
            problem = "FaceID models need the insightface package, which is not installed in ComfyUI's Python."
        else:
            problem = f"insightface is installed but could not be imported: {exc}."
        fix = f"Run: {install_command()}  then restart ComfyUI."
        if "libGL" in str(exc) or "cv2" in str(missing):
            fix = ("OpenCV's GUI build needs system GL libraries: install libgl1 (apt install libgl1 libglib2.0-0), "
                   "or replace it: pip uninstall -y opencv-python && pip install opencv-python-headless. ") + fix
        raise IPAdapterError(problem, expected="insightface>=2.1 and onnxruntime in the Python running ComfyUI",
                             fix=f"{fix} See {DOCS}.") from None
    return FaceAnalysis


def available_providers() -> list[str]:
    try:
        import onnxruntime
    except ImportError:
        _import_insightface()  # explains the install; onnxruntime comes with the faceid extra
        raise
    return list(onnxruntime.get_available_providers())


@dataclass(frozen=True)
class ProviderPlan:
    """What to ask onnxruntime for, and the warning to show when the choice is not available."""

    choice: str
    providers: list[str]
    warning: str | None = None


def plan_providers(choice: str, available: list[str]) -> ProviderPlan:
    """Keep only providers this onnxruntime build has, always ending with CPU (never a hard failure)."""
    if choice not in PROVIDER_NAMES:
        raise IPAdapterError(f"Unknown provider '{choice}'.", expected=", ".join(PROVIDERS),
                             fix="Pick a provider from the list.", input="provider")
    wanted = [p for p in PROVIDER_NAMES[choice] if p in available]
    if choice != "CPU" and not wanted:
        package = PROVIDER_PACKAGES.get(choice, "the matching onnxruntime build")
        warning = (f"InsightFace provider '{choice}' is not available in this onnxruntime build "
                   f"(available: {', '.join(available) or 'none'}); running on CPU. Install {package} "
                   "(and uninstall plain onnxruntime) to use it.")
        return ProviderPlan(choice, ["CPUExecutionProvider"], warning)
    return ProviderPlan(choice, wanted[:1] + ["CPUExecutionProvider"] if choice != "CPU" else wanted)


def pack_dir(roots: list[str], name: str) -> str:
    """The folder holding the pack's .onnx files under one of ``roots`` (models/insightface folders).

    Accepts the insightface layout ``<root>/models/<name>``, a pack directly in ``<root>/<name>`` and
    the nested ``<name>/<name>`` left by unzipping antelopev2 into its own folder.
    """
    tried = []
    for root in roots:
        for cand in (os.path.join(root, "models", name), os.path.join(root, name)):
            for folder in (cand, os.path.join(cand, name)):
                tried.append(folder)
                if glob.glob(os.path.join(folder, "*.onnx")):
                    return os.path.abspath(folder)
    raise IPAdapterError(
        f"The InsightFace model pack '{name}' was not found (no .onnx files in: {'; '.join(tried) or 'no folders'}).",
        expected=f"models/insightface/models/{name}/*.onnx (the detector and recognizer of the pack)",
        fix=f"Download {name}.zip ({PACK_URLS.get(name, 'insightface model zoo')}) and unzip it so the .onnx files "
        f"are directly in models/insightface/models/{name}/. Extra folders can be added with an 'insightface:' "
        f"entry in extra_model_paths.yaml. See {DOCS}.",
        input="model_name",
    )


@dataclass
class DetectedFace:
    bbox: np.ndarray  # x1, y1, x2, y2 in image pixels
    landmarks: np.ndarray  # (5, 2)
    score: float
    embedding: np.ndarray  # raw recognizer output (512,)
    normed_embedding: np.ndarray
    crop: np.ndarray  # aligned RGB crop (S, S, 3) uint8
    detection_size: int

    @property
    def area(self) -> float:
        return float(max(0.0, self.bbox[2] - self.bbox[0]) * max(0.0, self.bbox[3] - self.bbox[1]))


@dataclass
class FaceModel:
    """A loaded pack: ``analyze`` finds one face per picture, ``analyze_batch`` does an IMAGE batch."""

    app: object
    pack: str
    path: str
    provider_used: str
    warnings: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"FaceModel({self.pack!r}, provider={self.provider_used!r})"

    def _detect(self, bgr: np.ndarray) -> tuple[list, int]:
        det = self.app.models["detection"]
        saved = {a: getattr(det, a) for a in ("input_size", "input_sizes") if hasattr(det, a)}
        try:
            for size in DETECTION_SIZES:
                det.input_size = (size, size)
                if "input_sizes" in saved:
                    det.input_sizes = [(size, size)]
                with warnings.catch_warnings():
                    # insightface 2.1 calls scikit-image's deprecated SimilarityTransform.estimate for every
                    # face: a FutureWarning per run in the user's console that nobody but insightface can fix.
                    warnings.filterwarnings("ignore", category=FutureWarning, module=r"insightface\.")
                    faces = self.app.get(bgr)
                if faces:
                    return faces, size
        finally:
            for attr, value in saved.items():
                setattr(det, attr, value)
        return [], 0

    def analyze(self, rgb: np.ndarray, crop_size: int, select: str = "largest") -> DetectedFace | None:
        """One face of an RGB uint8 picture: the largest (default) or the best-scoring one; None if none."""
        faces, size = self._detect(np.ascontiguousarray(rgb[..., ::-1]))
        if not faces:
            return None
        if select == "best score":
            face = max(faces, key=lambda f: float(f.det_score))
        else:
            face = max(faces, key=lambda f: float((f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1])))
        if face.embedding is None:
            raise IPAdapterError(f"The InsightFace pack '{self.pack}' has no recognition model.",
                                 expected="a pack with a detector and a recognizer (e.g. buffalo_l)",
                                 fix=f"Download the complete pack into {self.path}.", input="model_name")
        emb = np.asarray(face.embedding, dtype=np.float32)
        normed = emb / max(float(np.linalg.norm(emb)), 1e-12)
        crop = align_face(rgb, np.asarray(face.kps, dtype=np.float64), crop_size)
        return DetectedFace(np.asarray(face.bbox, np.float32), np.asarray(face.kps, np.float32),
                            float(face.det_score), emb, normed, crop, size)

    def analyze_batch(self, images: torch.Tensor, crop_size: int, select: str = "largest",
                      input: str = "image", progress: Callable[[int, int], None] | None = None) -> FaceBatch:
        """Every picture of an IMAGE batch [B, H, W, 3] (0..1) must show a face; errors name the picture.

        ``progress(done, total)`` is called after each picture (the node's bar; it may raise to cancel)."""
        faces = []
        for i, picture in enumerate(images):
            rgb = (picture[..., :3].float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
            face = self.analyze(rgb, crop_size, select)
            if face is None:
                raise IPAdapterError(
                    f"No face found in image {i + 1} of {images.shape[0]} ({rgb.shape[1]}x{rgb.shape[0]} px), even "
                    f"at the smallest detection size ({DETECTION_SIZES[-1]} px).",
                    expected="a photo with a clearly visible, roughly frontal face",
                    fix="Use a picture where the face is visible and not tiny; crop closer around the face, or "
                    "remove that picture from the batch.", input=input,
                )
            faces.append(face)
            if progress is not None:
                progress(i + 1, images.shape[0])
        return FaceBatch(faces)


@dataclass
class FaceBatch:
    faces: list[DetectedFace]

    def embeddings(self, kind: str = "normed") -> torch.Tensor:
        """[N, 512] raw ("raw") or L2-normalised ("normed") identity embeddings."""
        rows = [f.embedding if kind == "raw" else f.normed_embedding for f in self.faces]
        return torch.from_numpy(np.stack(rows)).float()

    def crops(self) -> torch.Tensor:
        """The aligned crops as an IMAGE batch [N, S, S, 3] in 0..1."""
        return torch.from_numpy(np.stack([f.crop for f in self.faces])).float() / 255.0


def load_face_model(roots: list[str], name: str, provider: str, available: list[str] | None = None) -> FaceModel:
    """Load a pack's detector and recognizer with the chosen provider (CPU fallback, with a warning)."""
    FaceAnalysis = _import_insightface()
    path = pack_dir(roots, name)
    plan = plan_providers(provider, available if available is not None else available_providers())
    warnings = [plan.warning] if plan.warning else []
    for message in warnings:
        log.warning(message)
    try:
        with _quiet():
            # An absolute directory as ``name``: no download attempt, no working-directory lookup.
            app = FaceAnalysis(name=path, root=os.path.dirname(path), providers=plan.providers,
                               allowed_modules=["detection", "recognition"])
            app.prepare(ctx_id=0, det_size=(DETECTION_SIZES[0], DETECTION_SIZES[0]))
    except AssertionError:
        raise IPAdapterError(
            f"The InsightFace pack in {path} has no face detector InsightFace recognises.",
            expected=f"the {name} files (e.g. det_10g.onnx and w600k_r50.onnx for buffalo_l)",
            fix=f"Download {name}.zip again and unzip it into {path}. See {DOCS}.", input="model_name",
        ) from None
    if "recognition" not in app.models:
        raise IPAdapterError(f"The InsightFace pack in {path} has no recognition model.",
                             expected="a recognizer .onnx file next to the detector",
                             fix=f"Download the complete {name} pack into {path}.", input="model_name")
    session = getattr(app.models["recognition"], "session", None)
    used = session.get_providers()[0] if session is not None else plan.providers[0]
    return FaceModel(app, name, path, used, warnings)


@contextlib.contextmanager
def _quiet():
    """insightface 0.7 prints model routing to stdout; keep the console for warnings."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield
