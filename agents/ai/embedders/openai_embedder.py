"""OpenAI's ``text-embedding-3-small`` embedder, through the ``openai`` client."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agents.ai.embedders.base import FloatArray, normalise_rows

if TYPE_CHECKING:
    import openai


class OpenAIEmbedder:
    """OpenAI's ``text-embedding-3-small`` (1536 floats) through the ``openai`` client."""

    batch_size = 100

    def __init__(self, *, api_key: str | None = None, base_url: str | None = None) -> None:
        import openai

        self.model = "text-embedding-3-small"
        self.dim = 1536
        self.max_tokens = 8191
        self._client: openai.OpenAI = openai.OpenAI(api_key=api_key, base_url=base_url)

    def count_tokens(self, text: str) -> int:
        """Rough token count (about four characters a token) without a tokenizer."""
        return len(text) // 4 + 1

    def embed(self, texts: list[str]) -> FloatArray:
        """Vectors from the embeddings API, ``batch_size`` texts a request."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            # The API rejects empty strings; a lone space embeds the same "nothing".
            batch = [text or " " for text in texts[start : start + self.batch_size]]
            response = self._client.embeddings.create(model=self.model, input=batch)
            if len(response.data) != len(batch):
                raise RuntimeError(
                    f"{self.model} returned {len(response.data)} vectors for {len(batch)} texts"
                )
            for item in response.data:
                vector = np.asarray(item.embedding, dtype=np.float32)
                if vector.shape != (self.dim,):
                    raise RuntimeError(f"{self.model} returned a vector of shape {vector.shape}")
                out[start + item.index] = vector
        return normalise_rows(out)
