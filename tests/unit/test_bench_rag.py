"""bench rag's arithmetic: recall, MRR, and fusion weights chosen on one set, reported on the other."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.bench import pgdocs
from agents.bench.rag import corpora, cross_tuned, score

ROOT = Path(__file__).resolve().parents[2]


def test_score_counts_ranks_and_paraphrases() -> None:
    r = score([1, 3, None, 7], [10.0, 20.0, 30.0, 40.0], [True, True, False, False])
    assert (r["r_at_1"], r["r_at_5"]) == (0.25, 0.5)
    assert r["mrr_at_10"] == pytest.approx((1 + 1 / 3 + 0 + 1 / 7) / 4)
    assert r["paraphrase_r_at_5"] == 1.0
    assert score([2], [1.0], [False])["paraphrase_r_at_5"] is None


def test_weights_are_chosen_on_the_other_set() -> None:
    def row(mrr: float) -> dict[str, float]:
        return {"mrr_at_10": mrr, "r_at_1": mrr, "r_at_5": mrr}

    results = {
        "ours": {"weights=1:1": row(0.9), "weights=1:0.5": row(0.7), "vectors only": row(0.99)},
        "outside": {"weights=1:1": row(0.5), "weights=1:0.5": row(0.6)},
    }
    tuned = cross_tuned(results)
    assert tuned["ours"]["chosen_on"] == "outside" and tuned["ours"]["weights"] == "1:0.5"
    assert tuned["ours"]["mrr_at_10"] == 0.7  # what the outside set's choice gives here
    assert tuned["outside"]["weights"] == "1:1" and tuned["outside"]["mrr_at_10"] == 0.5


def test_without_the_manual_our_set_still_runs_and_the_note_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pgdocs, "DOC_DIR", tmp_path / "no-manual-here")
    sets, note = corpora(ROOT, tmp_path)
    assert [s.name for s in sets] == ["ours"]
    assert sets[0].files and sets[0].cases
    assert note is not None and "apt-get install -y postgresql-doc-15" in note
