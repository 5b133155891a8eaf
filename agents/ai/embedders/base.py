"""The embedder interface: the :class:`Embedder` protocol, the MiniLM constants, row normalisation."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

MINILM_MODEL = "all-MiniLM-L6-v2"
MINILM_DIM = 384
MINILM_MAX_TOKENS = 256


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length vectors of ``dim`` floats."""

    model: str
    """Name of the model; vectors from different models must never be compared."""
    dim: int
    """Length of each vector."""
    max_tokens: int
    """Longest input the model reads; the rest of a longer text is ignored."""

    def embed(self, texts: list[str]) -> FloatArray:
        """float32 array of shape ``(len(texts), dim)``, each row L2-normalised."""
        ...

    def count_tokens(self, text: str) -> int:
        """How many tokens the model sees for ``text`` before truncation."""
        ...


def normalise_rows(vectors: FloatArray, eps: float = 1e-12) -> FloatArray:
    """``vectors`` with each row divided by its L2 norm (rows of zeros stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    normalised: FloatArray = (vectors / np.maximum(norms, eps)).astype(np.float32, copy=False)
    return normalised
