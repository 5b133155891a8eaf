"""``bgagents bench rag --synthetic N``: hybrid search latency at N random chunks, with or without reranking.

N chunks of random unit vectors and Zipf-distributed made-up words are bulk
loaded under the MiniLM model name, so its HNSW index serves the queries. With
``--rerank`` each query's fused top 30 is reordered by a cross-encoder of
ms-marco-MiniLM-L-6-v2's shape (6 layers, 384 wide, 12 heads: MiniLM's own
encoder weights with a random head), which costs exactly what the real one
costs; its scores mean nothing, its time is the point. Each query is also
embedded by the real all-MiniLM-L6-v2 (its vector then swapped for a random one
that fits the random corpus), so the figures are a whole search's.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.ai import knowledge
from agents.ai.embedders import HashingEmbedder, LocalMiniLM, ensure_minilm_weights
from agents.ai.embedders.base import FloatArray
from agents.ai.embedders.bert import BertEncoder, linear
from agents.ai.embedders.local import load_tokenizers, load_weights
from agents.ai.rerank import DEPTH
from agents.bench.common import percentile
from bus import knowledge as store
from bus.client import Bus
from bus.knowledge import Fusion


def _vocabulary(size: int = 20000) -> list[str]:
    """Pronounceable made-up words, so full-text matches are as sparse as in real text."""
    rng = random.Random(11)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    return ["".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(size)]


class ShapeOnlyReranker:
    """A cross-encoder with ms-marco-MiniLM-L-6-v2's shape: MiniLM's encoder and a random head."""

    def __init__(self, data_dir: Path) -> None:
        model_dir = ensure_minilm_weights(data_dir)
        weights = load_weights(model_dir, "all-MiniLM-L6-v2")
        self.model = "shape-of-ms-marco-MiniLM-L-6-v2"
        self._encoder = BertEncoder(weights, heads=12)
        self._tokenizer, _ = load_tokenizers(model_dir, 512)
        rng = np.random.default_rng(3)
        fake = {
            "pooler.weight": rng.standard_normal((384, 384)).astype(np.float32) * 0.05,
            "pooler.bias": np.zeros(384, dtype=np.float32),
            "head.weight": rng.standard_normal((1, 384)).astype(np.float32),
            "head.bias": np.zeros(1, dtype=np.float32),
        }
        self._pooler = linear(fake, "pooler")
        self._head = linear(fake, "head")

    def score(self, query: str, passages: Sequence[str]) -> FloatArray:
        encodings = self._tokenizer.encode_batch([(query, p) for p in passages])
        out = np.zeros(len(passages), dtype=np.float32)
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), 16):
            chunk = order[start : start + 16]
            tokens, _ = self._encoder(
                [encodings[i].ids for i in chunk], [encodings[i].type_ids for i in chunk]
            )
            pooled = np.tanh(tokens[:, 0, :] @ self._pooler[0] + self._pooler[1])
            out[chunk] = (pooled @ self._head[0] + self._head[1])[:, 0]
        return out


async def synthetic(
    bus: Bus,
    n: int,
    queries: int = 200,
    *,
    data_dir: Path | None = None,
    rerank: bool = False,
    words_per_chunk: int = 60,
    fusion: Fusion = knowledge.FUSION,
) -> dict[str, Any]:
    """N random 384-dimension chunks; p50/p95/p99 of hybrid queries against them (reranked if asked)."""
    rng = np.random.default_rng(7)
    words = _vocabulary()
    weights = [1 / (rank + 1) ** 1.1 for rank in range(len(words))]  # Zipf, as in natural text
    pool = bus.pool
    await store.clear(pool)
    model = "all-MiniLM-L6-v2"
    # Loading is faster without the HNSW index; it is rebuilt once, as a bulk load would.
    await store.drop_minilm_index(pool)
    for start in range(0, n, 5000):
        size = min(5000, n - start)
        vectors = rng.standard_normal((size, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        texts = [" ".join(random.choices(words, weights, k=words_per_chunk)) for _ in range(size)]
        await store.load_synthetic(pool, "synthetic", texts, list(vectors), model, start)
    await store.build_minilm_index(pool)

    minilm = LocalMiniLM(ensure_minilm_weights(data_dir)) if data_dir is not None else None

    class Fixed(HashingEmbedder):
        """Random query vectors under the MiniLM model name, so its HNSW index serves them."""

        def __init__(self) -> None:
            super().__init__()
            # An instance attribute: HashingEmbedder's own __init__ names it hashing-384, and a
            # class attribute here would lose to it (the vector half then matched nothing).
            self.model = model

        def embed(self, texts: list[str]) -> Any:
            if minilm is not None:
                minilm.embed(texts)  # the real model's time; its vector would fit no random chunk
            q = rng.standard_normal((len(texts), 384)).astype(np.float32)
            return q / np.linalg.norm(q, axis=1, keepdims=True)

    embedder = Fixed()
    reranker = ShapeOnlyReranker(data_dir) if rerank and data_dir is not None else None
    latencies = []
    hit_counts: list[int] = []
    for _ in range(queries):
        text = " ".join(random.choices(words[:2000], k=3))
        began = time.perf_counter()
        hits = await knowledge.search(pool, embedder, text, 10, reranker=reranker, fusion=fusion)
        latencies.append((time.perf_counter() - began) * 1000)
        hit_counts.append(len(hits))
    await store.clear(pool)
    if not hit_counts or min(hit_counts) < 10:
        raise RuntimeError(f"synthetic searches returned {min(hit_counts, default=0)} hits, expected 10")
    return {
        "chunks": n,
        "queries": queries,
        "rerank_depth": DEPTH if reranker else 0,
        "query_embedding": "all-MiniLM-L6-v2" if minilm is not None else "none (random vectors)",
        "p50_ms": percentile(latencies, 0.5),
        "p95_ms": percentile(latencies, 0.95),
        "p99_ms": percentile(latencies, 0.99),
    }
