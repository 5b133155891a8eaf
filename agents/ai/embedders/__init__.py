"""Sentence embedders for retrieval (RAG): local BERTs on numpy, OpenAI, and a hashing fallback.

Every embedder follows :class:`Embedder` (``base``): ``embed`` turns a list of
texts into a float32 array of shape ``(len(texts), dim)`` whose rows have unit
L2 norm, so a dot product is a cosine similarity. :class:`BertEmbedder`
(``local``, on the numpy BERT of ``bert``) runs the models of ``specs``:
:class:`LocalMiniLM` (``minilm``) is all-MiniLM-L6-v2, with its weights fetched
and verified by ``weights``; bge-small-en-v1.5 pools ``[CLS]`` and prefixes
queries. :class:`HashingEmbedder` (``hashing``) needs no model;
:class:`OpenAIEmbedder` (``openai_embedder``) calls the embeddings API.

:func:`choose_embedder` picks one from the ``BGAGENTS_EMBEDDER`` setting and,
when its weights can't be had, falls back to the model in use before (then
MiniLM, then hashing), saying why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from agents.ai.embedders import specs
from agents.ai.embedders.base import MINILM_DIM, MINILM_MAX_TOKENS, MINILM_MODEL, Embedder, FloatArray
from agents.ai.embedders.hashing import HashingEmbedder
from agents.ai.embedders.local import BertEmbedder
from agents.ai.embedders.minilm import LocalMiniLM, erf
from agents.ai.embedders.openai_embedder import OpenAIEmbedder
from agents.ai.embedders.specs import BGE_SMALL, MINILM, BertSpec
from agents.ai.embedders.weights import MINILM_SHA256, MINILM_WHEEL, PIP_TIMEOUT_S, ensure_minilm_weights
from bus.errors import ModelWeightsError, WeightsIntegrityError

__all__ = [
    "BGE_SMALL",
    "EMBEDDER_KINDS",
    "MINILM",
    "MINILM_DIM",
    "MINILM_MAX_TOKENS",
    "MINILM_MODEL",
    "MINILM_SHA256",
    "MINILM_WHEEL",
    "PIP_TIMEOUT_S",
    "BertEmbedder",
    "BertSpec",
    "Choice",
    "Embedder",
    "FloatArray",
    "HashingEmbedder",
    "LocalMiniLM",
    "ModelWeightsError",
    "OpenAIEmbedder",
    "WeightsIntegrityError",
    "choose_embedder",
    "ensure_minilm_weights",
    "erf",
    "make_embedder",
]

logger = logging.getLogger(__name__)

EMBEDDER_KINDS = ("local", "bge-small", "openai", "hashing")
_LOCAL_KINDS = {"local": MINILM.name, "bge-small": BGE_SMALL.name}
"""The model each local ``BGAGENTS_EMBEDDER`` value names (its spec is looked up in ``specs.EMBEDDERS``)."""


@dataclass(frozen=True)
class Choice:
    """The embedder to use, and why it is not the one asked for (None when it is)."""

    embedder: Embedder
    reason: str | None = None


def _local(spec: BertSpec, data_dir: Path) -> Embedder:
    if spec.name == MINILM.name:
        return LocalMiniLM.from_data_dir(data_dir)
    return BertEmbedder.from_data_dir(spec, data_dir)


def choose_embedder(
    kind: str,
    data_dir: Path,
    *,
    openai_api_key: str | None = None,
    openai_base_url: str | None = None,
    previous: str | None = None,
) -> Choice:
    """The embedder that ``BGAGENTS_EMBEDDER`` names: ``local``, ``bge-small``, ``openai`` or ``hashing``.

    A local model whose weights cannot be fetched, fail their hash check or
    cannot be loaded gives way, with a warning and the reason, to the model
    ``previous`` (the one the stored chunks were embedded with) if it is local,
    then to all-MiniLM-L6-v2, then to :class:`HashingEmbedder`.
    """
    choice = kind.strip().lower()
    if choice in _LOCAL_KINDS:
        wanted = specs.EMBEDDERS[_LOCAL_KINDS[choice]]
        try:
            return Choice(_local(wanted, data_dir))
        except (ModelWeightsError, ImportError) as exc:
            failure = f"local embedder {wanted.name} unavailable: {exc}"
        names = [previous] if previous in specs.EMBEDDERS else []
        names += [MINILM.name] if MINILM.name not in names else []
        for name in names:
            if name == wanted.name:
                continue
            spec = specs.EMBEDDERS[name]
            try:
                embedder = _local(spec, data_dir)
            except (ModelWeightsError, ImportError):
                continue
            reason = f"{failure}; using {embedder.model} instead"
            logger.warning("%s", reason)
            return Choice(embedder, reason)
        fallback = HashingEmbedder()
        reason = f"{failure}; using {fallback.model} instead"
        logger.warning("%s", reason)
        return Choice(fallback, reason)
    if choice == "openai":
        return Choice(OpenAIEmbedder(api_key=openai_api_key, base_url=openai_base_url))
    if choice == "hashing":
        return Choice(HashingEmbedder())
    raise ValueError(f"BGAGENTS_EMBEDDER={kind!r} is not one of: {', '.join(EMBEDDER_KINDS)}")


def make_embedder(
    kind: str,
    data_dir: Path,
    *,
    openai_api_key: str | None = None,
    openai_base_url: str | None = None,
) -> Embedder:
    """The embedder :func:`choose_embedder` picks, without the reason."""
    return choose_embedder(
        kind, data_dir, openai_api_key=openai_api_key, openai_base_url=openai_base_url
    ).embedder
