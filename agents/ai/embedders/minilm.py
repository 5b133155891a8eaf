"""all-MiniLM-L6-v2 (a 6-layer BERT, hidden size 384) computed with numpy alone, no torch.

Word-piece tokenisation with the ``tokenizers`` package, the BERT encoder, mean
pooling over the real tokens, then L2 normalisation: exactly the pipeline
sentence-transformers runs for this model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from agents.ai.embedders.base import MINILM_DIM, MINILM_MAX_TOKENS, MINILM_MODEL, FloatArray, normalise_rows
from agents.ai.embedders.weights import ensure_minilm_weights
from bus.errors import ModelWeightsError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

_LAYERS = 6
_HEADS = 12
_LAYER_NORM_EPS = 1e-12
_GELU_ROWS = 64  # rows of the (tokens, 1536) activation per GELU chunk: temporaries stay in cache

# Rational minimax approximation erf(x) ≈ x·P(x²)/Q(x²) on [-4, 4] (Eigen's and XLA's float
# erf); outside that interval erf(x) rounds to ±1 in float32. Evaluated in float64 its
# largest absolute error is 6.5e-8; numpy has no erf of its own.
_ERF_P = (
    -2.72614225801306e-10,
    2.77068142495902e-08,
    -2.10102402082508e-06,
    -5.69250639462346e-05,
    -7.34990630326855e-04,
    -2.95459980854025e-03,
    -1.60960333262415e-02,
)
_ERF_Q = (
    -1.45660718464996e-05,
    -2.13374055278905e-04,
    -1.68282697438203e-03,
    -7.37332916720468e-03,
    -1.42647390514189e-02,
)


def erf(x: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """Error function of each element, to within 1e-7 (computed in float64)."""
    z = np.clip(np.asarray(x, dtype=np.float64), -4.0, 4.0)
    z2 = z * z
    p = z2 * _ERF_P[0]
    p += _ERF_P[1]
    for c in _ERF_P[2:]:
        p *= z2
        p += c
    p *= z
    q = z2 * _ERF_Q[0]
    q += _ERF_Q[1]
    for c in _ERF_Q[2:]:
        q *= z2
        q += c
    p /= q
    return p


def _gelu_inplace(x: FloatArray) -> FloatArray:
    """Exact (erf) GELU, ``0.5·x·(1 + erf(x/√2))``, over the rows of 2-D ``x``, in place."""
    inv_sqrt2 = 1.0 / math.sqrt(2.0)
    for start in range(0, x.shape[0], _GELU_ROWS):
        rows = x[start : start + _GELU_ROWS]
        e = erf(rows * inv_sqrt2)
        e += 1.0
        e *= rows
        e *= 0.5
        rows[...] = e
    return x


def _layer_norm(x: FloatArray, weight: FloatArray, bias: FloatArray) -> FloatArray:
    mean = x.mean(axis=-1, keepdims=True)
    centred: FloatArray = x - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    centred /= np.sqrt(var + _LAYER_NORM_EPS)
    centred *= weight
    centred += bias
    return centred


class _Layer:
    """Weights of one BERT encoder layer, linear weights stored as (in, out)."""

    def __init__(self, w: dict[str, FloatArray], prefix: str) -> None:
        def linear(name: str) -> tuple[FloatArray, FloatArray]:
            return (
                np.ascontiguousarray(w[f"{prefix}.{name}.weight"].T, dtype=np.float32),
                np.asarray(w[f"{prefix}.{name}.bias"], dtype=np.float32),
            )

        q, k, v = (linear(f"attention.self.{n}") for n in ("query", "key", "value"))
        # Fold the attention scale 1/√head_dim into the query projection.
        scale = np.float32(1.0 / math.sqrt(q[0].shape[1] // _HEADS))
        self.qkv_w = np.ascontiguousarray(np.concatenate([q[0] * scale, k[0], v[0]], axis=1))
        self.qkv_b = np.concatenate([q[1] * scale, k[1], v[1]])
        self.attn_out_w, self.attn_out_b = linear("attention.output.dense")
        self.attn_ln_w = w[f"{prefix}.attention.output.LayerNorm.weight"]
        self.attn_ln_b = w[f"{prefix}.attention.output.LayerNorm.bias"]
        self.inter_w, self.inter_b = linear("intermediate.dense")
        self.out_w, self.out_b = linear("output.dense")
        self.out_ln_w = w[f"{prefix}.output.LayerNorm.weight"]
        self.out_ln_b = w[f"{prefix}.output.LayerNorm.bias"]

    def __call__(self, x: FloatArray, mask_bias: FloatArray, batch: int, seq: int) -> FloatArray:
        hidden = x.shape[1]
        head_dim = hidden // _HEADS
        qkv = x @ self.qkv_w
        qkv += self.qkv_b
        # (batch·seq, 3·hidden) -> (3, batch, heads, seq, head_dim)
        q, k, v = qkv.reshape(batch, seq, 3, _HEADS, head_dim).transpose(2, 0, 3, 1, 4)
        # Contiguous operands let matmul hand each head to BLAS without copies of its own.
        scores = np.ascontiguousarray(q) @ np.ascontiguousarray(k.transpose(0, 1, 3, 2))
        scores += mask_bias
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * seq, hidden)
        attn = context @ self.attn_out_w
        attn += self.attn_out_b
        attn += x
        x = _layer_norm(attn, self.attn_ln_w, self.attn_ln_b)
        inter: FloatArray = x @ self.inter_w
        inter += self.inter_b
        _gelu_inplace(inter)
        out: FloatArray = inter @ self.out_w
        out += self.out_b
        out += x
        return _layer_norm(out, self.out_ln_w, self.out_ln_b)


class LocalMiniLM:
    """all-MiniLM-L6-v2 on numpy: same vectors as sentence-transformers, no torch.

    ``model_dir`` holds ``model.safetensors`` and ``tokenizer.json`` (see
    :func:`ensure_minilm_weights`). Texts longer than 256 tokens, counting the
    ``[CLS]`` and ``[SEP]`` markers as sentence-transformers does, are truncated.
    """

    def __init__(self, model_dir: Path, *, batch_size: int = 32) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.model = MINILM_MODEL
        self.dim = MINILM_DIM
        self.max_tokens = MINILM_MAX_TOKENS
        self.batch_size = max(1, batch_size)
        model_dir = Path(model_dir)
        try:
            weights: dict[str, FloatArray] = load_file(str(model_dir / "model.safetensors"))
            # tokenizer.json ships with truncation and fixed padding at 128: replace both.
            self._tokenizer: Tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            self._counter: Tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        except Exception as exc:  # safetensors and tokenizers raise their own exception types
            raise ModelWeightsError(f"could not load {MINILM_MODEL} from {model_dir}: {exc}") from exc
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=self.max_tokens)
        self._counter.no_padding()
        self._counter.no_truncation()
        try:
            self._word = weights["embeddings.word_embeddings.weight"]
            self._position = weights["embeddings.position_embeddings.weight"]
            self._token_type = weights["embeddings.token_type_embeddings.weight"][0]
            self._emb_ln_w = weights["embeddings.LayerNorm.weight"]
            self._emb_ln_b = weights["embeddings.LayerNorm.bias"]
            self._layers = [_Layer(weights, f"encoder.layer.{i}") for i in range(_LAYERS)]
        except KeyError as exc:
            raise ModelWeightsError(f"{model_dir / 'model.safetensors'} lacks tensor {exc}") from exc
        if self._word.shape[1] != self.dim or self._position.shape[0] < self.max_tokens:
            raise ModelWeightsError(f"{model_dir / 'model.safetensors'} is not a {MINILM_MODEL} model")

    @classmethod
    def from_data_dir(cls, data_dir: Path, *, batch_size: int = 32) -> LocalMiniLM:
        """The model from ``<data_dir>/models/``, fetching the weights on first use."""
        return cls(ensure_minilm_weights(data_dir), batch_size=batch_size)

    def count_tokens(self, text: str) -> int:
        """Word pieces of ``text`` plus ``[CLS]`` and ``[SEP]``, untruncated (fits if ≤ max_tokens)."""
        return len(self._counter.encode(text).ids)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """The truncated token ids the model reads for each text."""
        return [enc.ids for enc in self._tokenizer.encode_batch(list(texts))]

    def embed(self, texts: list[str]) -> FloatArray:
        """Unit-length sentence vectors, shape ``(len(texts), 384)``."""
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
        batch = len(batch_ids)
        seq = max(len(ids) for ids in batch_ids)
        input_ids = np.zeros((batch, seq), dtype=np.int64)  # [PAD] is id 0
        mask = np.zeros((batch, seq), dtype=np.float32)
        for row, ids in enumerate(batch_ids):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1.0
        x: FloatArray = self._word[input_ids] + self._position[:seq] + self._token_type
        x = _layer_norm(x.reshape(batch * seq, self.dim), self._emb_ln_w, self._emb_ln_b)
        # Padding keys get the lowest float so softmax gives them weight exactly 0.
        mask_bias = np.where(mask == 0.0, np.finfo(np.float32).min, np.float32(0.0)).astype(np.float32)
        mask_bias = mask_bias.reshape(batch, 1, 1, seq)
        for layer in self._layers:
            x = layer(x, mask_bias, batch, seq)
        tokens = x.reshape(batch, seq, self.dim)
        summed = np.einsum("bsh,bs->bh", tokens, mask)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        return normalise_rows(pooled.astype(np.float32))
