"""FaceID nodes: InsightFace loader, FaceID unified loader, FaceID apply nodes."""

from __future__ import annotations

NODES: dict[str, type] = {}
