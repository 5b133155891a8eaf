"""The cross-encoder reranker: a BERT that reads the query and a passage together and scores the pair.

ms-marco-MiniLM-L-6-v2 is the same numpy :class:`~agents.ai.embedders.bert.BertEncoder`
with BERT's pooler (dense + tanh over ``[CLS]``) and a one-logit classification
head, as sentence-transformers' ``CrossEncoder`` runs it. It reorders the fused
top :data:`DEPTH` of a search. It is optional (``BGAGENTS_RERANKER``): without
verified weights, search goes on without it and :func:`make_reranker` says why.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from agents.ai.embedders.base import FloatArray
from agents.ai.embedders.bert import BertEncoder, linear
from agents.ai.embedders.local import ensure_spec_files, load_weights
from agents.ai.embedders.specs import MSMARCO_RERANKER, BertSpec
from bus.errors import ModelWeightsError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

logger = logging.getLogger(__name__)

DEPTH = 30
"""How many fused candidates the reranker reorders."""


class Reranker(Protocol):
    """Scores (query, passage) pairs: higher is more relevant."""

    model: str

    def score(self, query: str, passages: Sequence[str]) -> FloatArray:
        """One relevance score per passage."""
        ...


class CrossEncoder:
    """A BERT cross-encoder with a one-logit head, on numpy; ``model_dir`` holds its files."""

    def __init__(self, spec: BertSpec, model_dir: Path, *, batch_size: int = 16) -> None:
        from tokenizers import Tokenizer

        self.model = spec.name
        self.batch_size = max(1, batch_size)
        model_dir = Path(model_dir)
        weights = load_weights(model_dir, spec.name)
        try:
            self._tokenizer: Tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        except Exception as exc:  # tokenizers raises its own exception types
            raise ModelWeightsError(f"could not load {spec.name}'s tokenizer: {exc}") from exc
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=spec.max_tokens, strategy="longest_first")
        self._encoder = BertEncoder(weights, heads=spec.heads, prefix="bert.")
        try:
            self._pooler_w, self._pooler_b = linear(weights, "bert.pooler.dense")
            self._head_w, self._head_b = linear(weights, "classifier")
        except KeyError as exc:
            raise ModelWeightsError(f"{spec.name} lacks its classification head: {exc}") from exc
        if self._head_w.shape[1] != 1:
            raise ModelWeightsError(f"{spec.name}'s head has {self._head_w.shape[1]} outputs, expected 1")

    def score(self, query: str, passages: Sequence[str]) -> FloatArray:
        """The logit of relevance of each passage to ``query``."""
        out = np.zeros(len(passages), dtype=np.float32)
        if not passages:
            return out
        encodings = self._tokenizer.encode_batch([(query, p) for p in passages])
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            tokens, _ = self._encoder(
                [encodings[i].ids for i in chunk], [encodings[i].type_ids for i in chunk]
            )
            pooled = np.tanh(tokens[:, 0, :] @ self._pooler_w + self._pooler_b)
            out[chunk] = (pooled @ self._head_w + self._head_b)[:, 0]
        return out


def make_reranker(kind: str, data_dir: Path) -> tuple[Reranker | None, str | None]:
    """The reranker ``BGAGENTS_RERANKER`` names, or None and why not (None, None when it is off)."""
    if kind.strip().lower() != "local":
        return None, None
    try:
        return CrossEncoder(MSMARCO_RERANKER, ensure_spec_files(MSMARCO_RERANKER, data_dir)), None
    except (ModelWeightsError, ImportError) as exc:
        reason = f"reranker {MSMARCO_RERANKER.name} unavailable, searching without it: {exc}"
        logger.warning("%s", reason)
        return None, reason
