"""ArcFace 5-point alignment: the face crop the FaceID-Plus adapters' CLIP branch was trained on.

Our own similarity estimate (Umeyama, in numpy) instead of insightface's ``norm_crop``, which goes
through a scikit-image API that is deprecated and due to be removed; the crop geometry is the same
(template scaled by size/112, or by size/128 with an 8/128 x-offset for sizes not divisible by 112).
"""

from __future__ import annotations

import numpy as np

ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


def template_for(size: int) -> np.ndarray:
    """The five landmark positions in a ``size`` x ``size`` crop."""
    if size % 112 == 0 or size % 128 != 0:
        return ARCFACE_TEMPLATE * (size / 112.0)
    ratio = size / 128.0
    dst = ARCFACE_TEMPLATE * ratio
    dst[:, 0] += 8.0 * ratio
    return dst


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 rotation+uniform scale+translation mapping ``src`` points onto ``dst`` in least squares."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # no reflections
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    var = (s**2).sum() / len(src)
    scale = (sig * sign).sum() / var if var > 0 else 1.0
    out = np.zeros((2, 3))
    out[:, :2] = scale * rot
    out[:, 2] = mu_d - scale * rot @ mu_s
    return out


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    """Warp ``image`` (H, W, C uint8) so the 5 ``landmarks`` land on the ArcFace template at ``size``."""
    import cv2  # installed with insightface; only needed when faces are analysed

    matrix = similarity(landmarks, template_for(size))
    return cv2.warpAffine(image, matrix, (size, size), borderValue=0.0)
