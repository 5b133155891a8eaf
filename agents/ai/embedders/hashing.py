"""The hashing embedder: signed feature hashing of words, the fallback that needs no model."""

from __future__ import annotations

import functools
import hashlib
import itertools
import re

import numpy as np

from agents.ai.embedders.base import MINILM_MAX_TOKENS, FloatArray, normalise_rows

_WORD_RE = re.compile(r"\w+")
_EMPTY_FEATURE = "\x00empty"


@functools.lru_cache(maxsize=1 << 16)
def hash_feature(feature: str, dim: int) -> tuple[int, float]:
    """Bucket and sign of ``feature``: stable across processes, unlike ``hash()``."""
    value = int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "little")
    return (value >> 1) % dim, 1.0 if value & 1 else -1.0


class HashingEmbedder:
    """Signed feature hashing of lowercase word unigrams and bigrams: no model, no downloads.

    Only texts sharing words score as similar; it is the fallback when no real
    model is available.
    """

    def __init__(self, dim: int = 384, *, max_tokens: int = MINILM_MAX_TOKENS) -> None:
        if dim < 2:
            raise ValueError(f"HashingEmbedder needs dim ≥ 2, got {dim}")
        self.dim = dim
        self.model = f"hashing-{dim}"
        self.max_tokens = max_tokens

    @staticmethod
    def _features(text: str) -> list[str]:
        words = _WORD_RE.findall(text.lower())
        return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]

    def count_tokens(self, text: str) -> int:
        """Number of words in ``text``."""
        return len(_WORD_RE.findall(text))

    def embed(self, texts: list[str]) -> FloatArray:
        """Unit-length hashed bag-of-words vectors, shape ``(len(texts), dim)``."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature in self._features(text):
                bucket, sign = hash_feature(feature, self.dim)
                out[row, bucket] += sign
            if not out[row].any():  # no words (or signs cancelled): a fixed unit vector
                bucket, sign = hash_feature(_EMPTY_FEATURE, self.dim)
                out[row, bucket] = sign
        return normalise_rows(out)
