"""A BERT encoder on numpy alone (no torch): any depth and width, read from a safetensors file.

:class:`BertEncoder` turns batches of token ids into the last layer's hidden
states; the sentence embedders (:mod:`agents.ai.embedders.local`: mean or CLS
pooling) and the cross-encoder reranker (:mod:`agents.ai.rerank`: pooler and
classification head) sit on top. The number of layers and the hidden size come
from the weights; the number of attention heads is the model's (12 for
all-MiniLM-L6-v2, bge-small-en-v1.5 and ms-marco-MiniLM-L-6-v2).
"""

from __future__ import annotations

import math
import re

import numpy as np
import numpy.typing as npt

from agents.ai.embedders.base import FloatArray
from bus.errors import ModelWeightsError

_LAYER_NORM_EPS = 1e-12
_GELU_ROWS = 64  # rows of the (tokens, 4·hidden) activation per GELU chunk: temporaries stay in cache

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


def layer_norm(x: FloatArray, weight: FloatArray, bias: FloatArray) -> FloatArray:
    """LayerNorm over the last axis, with BERT's epsilon."""
    mean = x.mean(axis=-1, keepdims=True)
    centred: FloatArray = x - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    centred /= np.sqrt(var + _LAYER_NORM_EPS)
    centred *= weight
    centred += bias
    return centred


def linear(w: dict[str, FloatArray], name: str) -> tuple[FloatArray, FloatArray]:
    """Weight (stored as (in, out), contiguous) and bias of the linear layer ``name``."""
    return (
        np.ascontiguousarray(w[f"{name}.weight"].T, dtype=np.float32),
        np.asarray(w[f"{name}.bias"], dtype=np.float32),
    )


class _Layer:
    """Weights of one BERT encoder layer, linear weights stored as (in, out)."""

    def __init__(self, w: dict[str, FloatArray], prefix: str, heads: int) -> None:
        q, k, v = (linear(w, f"{prefix}.attention.self.{n}") for n in ("query", "key", "value"))
        self.heads = heads
        # Fold the attention scale 1/√head_dim into the query projection.
        scale = np.float32(1.0 / math.sqrt(q[0].shape[1] // heads))
        self.qkv_w = np.ascontiguousarray(np.concatenate([q[0] * scale, k[0], v[0]], axis=1))
        self.qkv_b = np.concatenate([q[1] * scale, k[1], v[1]])
        self.attn_out_w, self.attn_out_b = linear(w, f"{prefix}.attention.output.dense")
        self.attn_ln_w = w[f"{prefix}.attention.output.LayerNorm.weight"]
        self.attn_ln_b = w[f"{prefix}.attention.output.LayerNorm.bias"]
        self.inter_w, self.inter_b = linear(w, f"{prefix}.intermediate.dense")
        self.out_w, self.out_b = linear(w, f"{prefix}.output.dense")
        self.out_ln_w = w[f"{prefix}.output.LayerNorm.weight"]
        self.out_ln_b = w[f"{prefix}.output.LayerNorm.bias"]

    def __call__(self, x: FloatArray, mask_bias: FloatArray, batch: int, seq: int) -> FloatArray:
        hidden = x.shape[1]
        heads = self.heads
        head_dim = hidden // heads
        qkv = x @ self.qkv_w
        qkv += self.qkv_b
        # (batch·seq, 3·hidden) -> (3, batch, heads, seq, head_dim)
        q, k, v = qkv.reshape(batch, seq, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
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
        x = layer_norm(attn, self.attn_ln_w, self.attn_ln_b)
        inter: FloatArray = x @ self.inter_w
        inter += self.inter_b
        _gelu_inplace(inter)
        out: FloatArray = inter @ self.out_w
        out += self.out_b
        out += x
        return layer_norm(out, self.out_ln_w, self.out_ln_b)


class BertEncoder:
    """BERT's embeddings and encoder layers; ``prefix`` is where they sit in the file (``bert.`` or none)."""

    def __init__(self, weights: dict[str, FloatArray], *, heads: int, prefix: str = "") -> None:
        try:
            self.word = weights[f"{prefix}embeddings.word_embeddings.weight"]
            self.position = weights[f"{prefix}embeddings.position_embeddings.weight"]
            self.token_type = weights[f"{prefix}embeddings.token_type_embeddings.weight"]
            self.emb_ln_w = weights[f"{prefix}embeddings.LayerNorm.weight"]
            self.emb_ln_b = weights[f"{prefix}embeddings.LayerNorm.bias"]
            pattern = re.compile(rf"^{re.escape(prefix)}encoder\.layer\.(\d+)\.")
            depth = 1 + max(int(m.group(1)) for key in weights if (m := pattern.match(key)))
            self.layers = [_Layer(weights, f"{prefix}encoder.layer.{i}", heads) for i in range(depth)]
        except (KeyError, ValueError) as exc:
            raise ModelWeightsError(f"not a BERT model: missing {exc}") from exc
        self.hidden = int(self.word.shape[1])
        if self.hidden % heads:
            raise ModelWeightsError(f"hidden size {self.hidden} does not split into {heads} heads")

    @property
    def max_positions(self) -> int:
        return int(self.position.shape[0])

    def __call__(
        self, batch_ids: list[list[int]], type_ids: list[list[int]] | None = None
    ) -> tuple[FloatArray, FloatArray]:
        """Last hidden states ``(batch, seq, hidden)`` and the mask ``(batch, seq)`` of real tokens."""
        batch = len(batch_ids)
        seq = max(len(ids) for ids in batch_ids)
        input_ids = np.zeros((batch, seq), dtype=np.int64)  # [PAD] is id 0
        types = np.zeros((batch, seq), dtype=np.int64)
        mask = np.zeros((batch, seq), dtype=np.float32)
        for row, ids in enumerate(batch_ids):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1.0
            if type_ids is not None:
                types[row, : len(ids)] = type_ids[row]
        x: FloatArray = self.word[input_ids] + self.position[:seq] + self.token_type[types]
        x = layer_norm(x.reshape(batch * seq, self.hidden), self.emb_ln_w, self.emb_ln_b)
        # Padding keys get the lowest float so softmax gives them weight exactly 0.
        mask_bias = np.where(mask == 0.0, np.finfo(np.float32).min, np.float32(0.0)).astype(np.float32)
        mask_bias = mask_bias.reshape(batch, 1, 1, seq)
        for layer in self.layers:
            x = layer(x, mask_bias, batch, seq)
        return x.reshape(batch, seq, self.hidden), mask
