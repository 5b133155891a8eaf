"""The AI help contract (bus.ai): payloads survive the queue's JSON, and bad ones are refused clearly."""

from __future__ import annotations

import json

import pytest

from bus import ai
from bus.errors import AIHelpNotRunning, FeatureUnavailable, InvalidArgument
from bus.knowledge import Hit


def roundtrip(data: dict[str, object]) -> object:
    return json.loads(json.dumps(data))


def test_requests_and_answers_round_trip_through_json() -> None:
    search = ai.SearchRequest("how do I enqueue", 7)
    assert ai.SearchRequest.from_dict(roundtrip(search.to_dict())) == search
    ask = ai.AskRequest("why is it down?", request_id=12)
    assert ai.AskRequest.from_dict(roundtrip(ask.to_dict())) == ask
    assert ai.AskRequest("plain").to_dict() == {"question": "plain"}
    assert ai.ReportRequest.from_dict(roundtrip(ai.ReportRequest(600).to_dict())) == ai.ReportRequest(600)
    assert ai.ReportRequest.from_dict({}) == ai.ReportRequest(None)
    answer = ai.Answer("It is [1].", [{"n": 1, "source": "README.md", "heading": "Queue"}], "chat", "gpt")
    assert ai.Answer.from_dict(roundtrip(answer.to_dict())) == answer
    hit = Hit("README.md", "Queue", "text", 0.0327)
    assert Hit.from_json(roundtrip(hit.as_json())) == hit


def test_help_events_carry_a_delta_or_the_end() -> None:
    assert ai.HelpEvent(5, "pie").to_dict() == {"task": 5, "delta": "pie"}
    assert ai.HelpEvent(5, done=True).to_dict() == {"task": 5, "done": True}
    assert ai.HelpEvent.from_dict({"task": 5, "done": True}).done
    assert ai.HelpEvent.from_dict({"request_id": 3, "answer": "x"}).task is None


def test_bad_payloads() -> None:
    with pytest.raises(InvalidArgument, match="whole number"):
        ai.SearchRequest.from_dict({"q": "x", "k": "many"})
    assert ai.SearchRequest.from_dict("not a dict") == ai.SearchRequest("", 5)
    assert ai.AskRequest.from_dict({"question": "  padded  "}).question == "padded"


def test_ai_help_not_running_is_unavailable_with_the_fix() -> None:
    err = AIHelpNotRunning()
    assert isinstance(err, FeatureUnavailable)
    assert "ai-help" in str(err) and err.hint and "bgagents" in err.hint
