"""Weight schedules and regional params: Weights, strategies, prompt schedule, combine, regional."""

from __future__ import annotations

NODES: dict[str, type] = {}
