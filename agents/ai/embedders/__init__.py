"""Sentence embedders for retrieval (RAG): a local MiniLM, OpenAI, and a hashing fallback.

Every embedder follows :class:`Embedder` (``base``): ``embed`` turns a list of
texts into a float32 array of shape ``(len(texts), dim)`` whose rows have unit
L2 norm, so a dot product is a cosine similarity. :class:`LocalMiniLM`
(``minilm``) is all-MiniLM-L6-v2 on numpy, with its weights fetched and
verified by ``weights``; :class:`HashingEmbedder` (``hashing``) needs no model;
:class:`OpenAIEmbedder` (``openai_embedder``) calls the embeddings API.

:func:`make_embedder` picks one from the ``BGAGENTS_EMBEDDER`` setting.
"""

from __future__ import annotations

import logging
from pathlib import Path

from agents.ai.embedders.base import MINILM_DIM, MINILM_MAX_TOKENS, MINILM_MODEL, Embedder, FloatArray
from agents.ai.embedders.hashing import HashingEmbedder
from agents.ai.embedders.minilm import LocalMiniLM, erf
from agents.ai.embedders.openai_embedder import OpenAIEmbedder
from agents.ai.embedders.weights import MINILM_SHA256, MINILM_WHEEL, PIP_TIMEOUT_S, ensure_minilm_weights
from bus.errors import ModelWeightsError, WeightsIntegrityError

__all__ = [
    "EMBEDDER_KINDS",
    "MINILM_DIM",
    "MINILM_MAX_TOKENS",
    "MINILM_MODEL",
    "MINILM_SHA256",
    "MINILM_WHEEL",
    "PIP_TIMEOUT_S",
    "Embedder",
    "FloatArray",
    "HashingEmbedder",
    "LocalMiniLM",
    "ModelWeightsError",
    "OpenAIEmbedder",
    "WeightsIntegrityError",
    "ensure_minilm_weights",
    "erf",
    "make_embedder",
]

logger = logging.getLogger(__name__)

EMBEDDER_KINDS = ("local", "openai", "hashing")


def make_embedder(
    kind: str,
    data_dir: Path,
    *,
    openai_api_key: str | None = None,
    openai_base_url: str | None = None,
) -> Embedder:
    """The embedder that ``BGAGENTS_EMBEDDER`` names: ``local``, ``openai`` or ``hashing``.

    ``local`` falls back to :class:`HashingEmbedder`, with a warning, when the
    MiniLM weights cannot be fetched, fail their hash check, or cannot be loaded.
    """
    choice = kind.strip().lower()
    if choice == "local":
        try:
            return LocalMiniLM.from_data_dir(data_dir)
        except (ModelWeightsError, ImportError) as exc:
            fallback = HashingEmbedder()
            logger.warning(
                "local embedder %s unavailable, using %s instead: %s", MINILM_MODEL, fallback.model, exc
            )
            return fallback
    if choice == "openai":
        return OpenAIEmbedder(api_key=openai_api_key, base_url=openai_base_url)
    if choice == "hashing":
        return HashingEmbedder()
    raise ValueError(f"BGAGENTS_EMBEDDER={kind!r} is not one of: {', '.join(EMBEDDER_KINDS)}")
