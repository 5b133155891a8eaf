"""OpenAI's ``text-embedding-3-small`` embedder, through the ``openai`` client."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from agents.ai.embedders.base import FloatArray, normalise_rows


class EmbeddingsAPI(Protocol):
    """The one call of ``openai.OpenAI().embeddings`` that the embedder makes."""

    def create(self, *, model: str, input: list[str]) -> Any:
        """Embed ``input``; the response has ``data``, items with ``index`` and ``embedding``."""


class EmbeddingsClient(Protocol):
    """What the embedder needs of an ``openai.OpenAI`` client (a test can pass a stand-in)."""

    @property
    def embeddings(self) -> EmbeddingsAPI:
        """The embeddings endpoint."""


class OpenAIEmbedder:
    """OpenAI's ``text-embedding-3-small`` (1536 floats) through the ``openai`` client."""

    batch_size = 100

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: EmbeddingsClient | None = None,
    ) -> None:
        """Use ``client`` when given, else an ``openai.OpenAI(api_key=..., base_url=...)``."""
        self.model = "text-embedding-3-small"
        self.dim = 1536
        self.max_tokens = 8191
        if client is None:
            import openai

            client = openai.OpenAI(api_key=api_key, base_url=base_url)
        self._client: EmbeddingsClient = client

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
