"""The ``bgagents bench`` group with every benchmark's command added."""

from __future__ import annotations

from agents.bench import agents, events, queue, rag, soak, sse
from agents.bench.common import bench

BENCHMARKS = (agents, events, queue, rag, soak, sse)
"""Each module adds its command to :data:`bench` when imported."""

__all__ = ["BENCHMARKS", "bench"]
